-- The care desk's priority filter (server.care.desk, /care/enquiries?priority=) read
-- enquiries_care_desk_idx (0048) in the desk's order from the priority's rank down to the closed ones,
-- and dropped every enquiry of another priority on the way: the lower priorities being worked, then
-- the closed ones of every priority. On 150,000 enquiries, 45,000 being worked, the worst page of
-- urgent fetched 40,709 rows for its 51 (64 ms), and a page of one priority's closed ones up to 689.
-- This index is the desk's order within each priority, so a page filtered by priority, with or
-- without a status, seeks to its priority and reads its own rows (51 a page, 0.17 ms at worst on the
-- same database). 9 MB for those 150,000 enquiries.
CREATE INDEX enquiries_care_desk_by_priority_idx
    ON enquiries (priority, enquiry_care_rank(status, priority), opened_at, enquiry_id);
