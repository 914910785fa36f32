-- The enrolment a request with an Idempotency-Key stored, written in the same transaction as
-- its templates: a retry after a crash between that commit and the answer (when the shared
-- idempotency record never learnt the outcome) finds it here instead of enrolling again.
-- request_key is a hash of the caller's key id and its Idempotency-Key; it goes with the subject.
CREATE TABLE enrolment_requests (
    request_key   TEXT PRIMARY KEY NOT NULL,
    subject_id    BLOB NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    template_ids  TEXT NOT NULL,                -- JSON array of template ids
    created_at    TEXT NOT NULL
);
CREATE INDEX enrolment_requests_subject ON enrolment_requests (subject_id);
