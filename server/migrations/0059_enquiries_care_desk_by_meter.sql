-- The care desk gains a meter filter (server.care.desk, /care/enquiries?meter=): a meter's page lists
-- its first 25 enquiries and links "all of them" to the desk filtered by the meter. Without an index in
-- the desk's order within each meter, a page of one meter's enquiries read enquiries_care_desk_idx (0048)
-- in the desk's order and dropped every other meter's on the way, or 0042's enquiries_meter_idx and
-- sorted all of the meter's. This index is the desk's order within each meter, so a page filtered by
-- meter, with or without the other filters, seeks to its meter (and rank) and reads its own rows.
-- It begins with meter_id, so it serves what 0042's enquiries_meter_idx (meter_id) served too
-- (place_enquiries' look-up of a meter's enquiries, a meter page's first 25, now without a sort):
-- that one is dropped rather than kept up on every write beside it.
CREATE INDEX enquiries_care_desk_by_meter_idx
    ON enquiries (meter_id, enquiry_care_rank(status, priority), opened_at, enquiry_id);
DROP INDEX enquiries_meter_idx;
