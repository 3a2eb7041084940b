-- An enquiry raised through Open311 (0043) took as its subject the service's name and the first 120
-- characters of the description, and its first update quoted an account or meter reference that
-- matched nothing: both are the person's own words (a name, a phone number, why the bill is wrong),
-- and every key that reads enquiries (reader and meterization too) sees subjects and updates. Now
-- the subject is the service's name and the account and meter linked ('Billing query (account
-- A-1)'), and the first update says a reference matched nothing without quoting it
-- (server.open311.repository). The enquiries raised before are rewritten the same way; what the
-- person gave stays in open311_requests, which only customer care is served. An Open311 enquiry's
-- account and meter are set when it is raised and never moved (0042 moves only alerts' enquiries),
-- so they still say which references matched. updated_at is left: no one worked the enquiry.
UPDATE enquiries e
SET subject = s.service_name
              || coalesce(' (' || nullif(concat_ws(', ', 'account ' || e.account_id, 'meter ' || e.meter_id), '') || ')', '')
FROM open311_requests r
JOIN open311_services s USING (service_code)
WHERE e.enquiry_id = r.enquiry_id;

UPDATE enquiry_updates u
SET note = concat_ws('; ', format('raised through Open311 (%s)', e.source),
                     CASE WHEN r.attributes ? 'account' AND e.account_id IS NULL
                          THEN 'an account reference was given that matches no account (see the request''s details)'
                     END,
                     CASE WHEN r.attributes ? 'meter' AND e.meter_id IS NULL
                          THEN 'a meter reference was given that matches no meter (see the request''s details)'
                     END)
FROM enquiries e
JOIN open311_requests r USING (enquiry_id)
WHERE u.enquiry_id = e.enquiry_id
  AND u.update_id = (SELECT min(f.update_id) FROM enquiry_updates f WHERE f.enquiry_id = e.enquiry_id)
  AND u.note LIKE 'raised through Open311 (%';
