-- The care desk's source filter (server.care.desk, /care/enquiries?source=) read enquiries_care_desk_idx
-- (0048) in the desk's order and dropped every enquiry of another source on the way: a page of the
-- 3,000 customers' among 150,000 enquiries passed over 549 to 11,504 others (up to 47-100 ms a page,
-- growing with the other sources), and a source none of the ranks left holds was the whole index. This
-- index is the desk's order within each source, so a page filtered by source seeks to its source
-- and reads its own rows (0.04-0.08 ms a page on the same database). 7.3 MB for 150,000 enquiries.
CREATE INDEX enquiries_care_desk_by_source_idx
    ON enquiries (source, enquiry_care_rank(status, priority), opened_at, enquiry_id);
