-- An enquiry's answer and page now list the enquiries folded into it as its duplicates (0045's
-- duplicate_of): looked up by the one they were folded into, on every GET /enquiries/{id}. Few are
-- duplicates, so only they are indexed.
CREATE INDEX enquiries_duplicate_of_idx ON enquiries (duplicate_of) WHERE duplicate_of IS NOT NULL;
