-- The web page's care desk (/care/enquiries, server.care.desk) lists every enquiry, the ones being
-- worked first: urgent to low, the newest first within each, then the closed ones, newest first.
-- Before, the page reached an enquiry only through the 25 alerts it shows: one a customer raised
-- through Open311, or one of an alert not among them, could not be opened from it.
--
-- No index held that order: enquiries_open_idx (0030) is by status, then priority's letters
-- ('high' < 'low' < 'normal' < 'urgent'). The order is one number and two columns, all descending,
-- so a page's end is one row value to continue after (keyset), read off this index however many
-- enquiries there are: 4 urgent, 3 high, 2 normal, 1 low (as 0045's priority_rank), 0 closed. It
-- calls no function of ours: an index is built with search_path set to pg_catalog alone.
CREATE FUNCTION enquiry_care_rank(status text, priority text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN status = 'closed' THEN 0
                ELSE CASE priority WHEN 'urgent' THEN 4 WHEN 'high' THEN 3 WHEN 'normal' THEN 2 ELSE 1 END END
$$;

CREATE INDEX enquiries_care_desk_idx ON enquiries (enquiry_care_rank(status, priority), opened_at, enquiry_id);
