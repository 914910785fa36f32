-- When a subject's consent ends (copied from the consent record, so the retention job can find
-- the expired ones with an index), and the leases that let one replica at a time run a job.
ALTER TABLE subjects ADD COLUMN consent_expires_at TIMESTAMPTZ;
CREATE INDEX subjects_consent_expiry ON subjects (consent_expires_at) WHERE consent_expires_at IS NOT NULL;
CREATE TABLE job_leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   TIMESTAMPTZ NOT NULL
);
