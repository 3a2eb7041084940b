-- Open311 GeoReport v2 over customer care's enquiries (server.open311). Before, only detection
-- raised enquiries: no person or app could. A civic app now lists the services (the categories
-- enquiries are filed under), raises one (POST requests.json) and follows it (GET requests.json).
--
-- The services people raise, and how each becomes an enquiry: its kind and category (distinct from
-- the categories detection files under, so a category names one service), its priority, and what
-- the app tells the person once it is raised (service_notice). Detection's categories are not
-- copied here: open311_service_list reads them from alert_enquiry_rules, coded 'detected_' and the
-- category ('meter fault' is detected_meter_fault); the meters raise those, not people.
CREATE TABLE open311_services (
    service_code   text PRIMARY KEY CHECK (service_code ~ '^[a-z][a-z0-9_]{0,63}$' AND service_code !~ '^detected_'),
    position       int NOT NULL,
    service_name   text NOT NULL,
    description    text NOT NULL,
    group_name     text NOT NULL,
    keywords       text[] NOT NULL DEFAULT '{}',
    kind           text NOT NULL CHECK (kind IN ('enquiry', 'complaint', 'service_request')),
    category       text NOT NULL UNIQUE,
    priority       text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    service_notice text NOT NULL
);
INSERT INTO open311_services VALUES
    ('leak_street', 1, 'Leak in the street',
     'Water coming up through a road, pavement or verge, or from a hydrant or a valve cover',
     'Leaks and supply', '{leak,burst,street,road,pavement,hydrant}', 'service_request', 'street leak', 'high',
     'Thank you. A leak in the street is looked at within 24 hours.'),
    ('no_water', 2, 'No water or low pressure',
     'No water at the taps, or too little pressure to use it',
     'Leaks and supply', '{supply,pressure,outage,interruption}', 'service_request', 'no water or low pressure', 'high',
     'Thank you. Customer care will check for work in your area and call you back.'),
    ('water_quality', 3, 'Water quality',
     'Discoloured, cloudy or bad-tasting water, or water that smells',
     'Water quality', '{discoloured,taste,smell,cloudy,quality}', 'service_request', 'water quality', 'high',
     'Thank you. Customer care will contact you; until then, run the cold kitchen tap for a few minutes.'),
    ('billing_query', 4, 'Billing query',
     'A question about a bill, a payment or an account',
     'Account and billing', '{bill,payment,account,charge}', 'enquiry', 'billing', 'normal',
     'Thank you. Customer care answers billing queries within 5 working days.'),
    ('meter_problem', 5, 'Meter problem',
     'A meter that looks broken, leaks, cannot be read, or reads what you did not use',
     'Account and billing', '{meter,reading,broken,fault}', 'service_request', 'meter problem', 'normal',
     'Thank you. Customer care will arrange a check of the meter.'),
    ('complaint', 6, 'Complaint',
     'Something the utility did or did not do that you are not satisfied with',
     'Complaints', '{complaint,dissatisfied,service}', 'complaint', 'complaint', 'normal',
     'Thank you. Complaints are answered within 10 working days.');

-- What a service asks besides the request's own fields (GeoReport v2's attributes: the code, its
-- datatype, whether it is required, and the question shown). Only text answers for now; a
-- singlevaluelist or multivaluelist needs its values, which a later table can hold.
CREATE TABLE open311_service_attributes (
    service_code text NOT NULL REFERENCES open311_services ON DELETE CASCADE,
    code         text NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{0,63}$'),
    position     int NOT NULL,
    datatype     text NOT NULL CHECK (datatype IN ('string', 'number', 'datetime', 'text')),
    required     boolean NOT NULL DEFAULT false,
    description  text NOT NULL,
    datatype_description text NOT NULL DEFAULT '',
    PRIMARY KEY (service_code, code)
);
-- 'account' and 'meter' are the utility's references: the request is linked to the account or
-- meter they name, when it is one (server.open311.repository).
INSERT INTO open311_service_attributes (service_code, code, position, datatype, description, datatype_description)
SELECT s.service_code, a.code, a.position, 'string', a.description, a.datatype_description
FROM open311_services s
CROSS JOIN (VALUES
    ('account', 1, 'Your account number, if you know it', 'as printed on your bill'),
    ('meter', 2, 'The meter''s number, if you know it', 'as printed on the meter')
) AS a (code, position, description, datatype_description)
WHERE s.service_code <> 'leak_street' AND (a.code = 'account' OR s.service_code IN ('no_water', 'meter_problem'));

-- Every service, people's and detection's, as services.json lists them.
CREATE FUNCTION open311_detected_code(category text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'detected_' || trim(BOTH '_' FROM regexp_replace(lower(category), '[^a-z0-9]+', '_', 'g'))
$$;

CREATE VIEW open311_service_list AS
SELECT service_code, service_name, description, group_name, keywords, kind, category, priority, service_notice,
       true AS raised_by_people, position
FROM open311_services
UNION ALL
SELECT open311_detected_code(category), initcap(category) || ' (detected)',
       'Raised by the meters'' own detection: ' || string_agg(title, '; ' ORDER BY alert_kind),
       'Detected by the meters', array_agg(alert_kind ORDER BY alert_kind), 'service_request', category,
       (array_agg(priority ORDER BY CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2
                                                  ELSE 3 END))[1],
       '', false, 1000
FROM alert_enquiry_rules
GROUP BY category;

-- What a person or an app gave with the request: the Open311 service, the words as written, where,
-- the references given (kept as given; the enquiry is linked only to an account or meter that
-- exists), and the person's contact details. The contact details are personal data: no GET serves
-- them (GeoReport v2's GET requests has no field for them either).
CREATE TABLE open311_requests (
    enquiry_id     bigint PRIMARY KEY REFERENCES enquiries,
    service_code   text NOT NULL REFERENCES open311_services,
    description    text,
    lat            double precision CHECK (lat BETWEEN -90 AND 90),
    long           double precision CHECK (long BETWEEN -180 AND 180),
    address_string text,
    address_id     text,
    media_url      text,
    email          text,
    first_name     text,
    last_name      text,
    phone          text,
    attributes     jsonb NOT NULL DEFAULT '{}',
    raised_by      text NOT NULL,
    CHECK ((lat IS NULL) = (long IS NULL))
);

-- GET requests.json's default window (the last 90 days) reads enquiries by when they were opened.
CREATE INDEX enquiries_opened_idx ON enquiries (opened_at DESC);

-- An enquiry as GeoReport v2's GET requests.json shows it: its service is the one it was raised
-- under, else the people's service filing under its category, else detection's.
CREATE VIEW open311_enquiries AS
SELECT e.enquiry_id, e.status, e.subject, e.opened_at, e.updated_at,
       coalesce(r.service_code, s.service_code, open311_detected_code(e.category)) AS service_code,
       r.description, r.lat, r.long, r.address_string, r.address_id, r.media_url,
       (SELECT u.note FROM enquiry_updates u WHERE u.enquiry_id = e.enquiry_id ORDER BY u.at DESC, u.update_id DESC
        LIMIT 1) AS latest_note
FROM enquiries e
LEFT JOIN open311_requests r ON r.enquiry_id = e.enquiry_id
LEFT JOIN open311_services s ON s.category = e.category AND r.enquiry_id IS NULL;
