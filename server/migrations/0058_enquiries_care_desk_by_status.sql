-- The care desk's status filter (server.care.desk, /care/enquiries?status=, with or without a
-- priority) read enquiries_care_desk_idx (0048) over the ranks of the enquiries being worked, or
-- 0055's index within the priority, and dropped the enquiries of the other two statuses being worked
-- on the way: on 150,000 enquiries, 45,000 being worked, a page of open ones fetched up to 201 rows
-- for its 51, one of open normal ones 196; and a page of open urgent ones fetched all 1,550 through
-- a bitmap and sorted them, 3,093 for open high ones: the planner took priority = 'urgent' for a
-- further filter on the rank that already says it, and a status and a rank for independent (on
-- 20,000 enquiries it counted 6 open urgent ones of 200). This index is the desk's order within each
-- status, so a page filtered by a status being worked, with or without a priority (the desk asks for
-- that priority's rank, not the priority itself), seeks to its status and rank and reads its own
-- rows: 51 a page on the same database, 0.18 ms at worst. The statistics tell the planner how many
-- enquiries each status has at each rank (a rank above 0 is never closed): without them, on 20,000 it
-- counted 60 open urgent ones of 200 and still took a bitmap and a sort. (Closed ones are rank 0,
-- within 0048's or, by priority, 0055's index already.)
CREATE INDEX enquiries_care_desk_by_status_idx
    ON enquiries (status, enquiry_care_rank(status, priority), opened_at, enquiry_id);
CREATE STATISTICS enquiries_status_and_care_rank (mcv) ON status, enquiry_care_rank(status, priority) FROM enquiries;
