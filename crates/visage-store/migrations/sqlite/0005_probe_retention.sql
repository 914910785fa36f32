-- Probe images kept for review (`review.keep_probe_images_hours`, off by default): one sealed
-- object per request, named by probe_ref (shared by the decisions of one photo), deleted at
-- probe_expires_at or, with every decision that names it, when one of their subjects is
-- erased. probe_quality: the probe face's quality measures (JSON; no biometric data).
ALTER TABLE verifications ADD COLUMN probe_ref TEXT;
ALTER TABLE verifications ADD COLUMN probe_expires_at TEXT;
ALTER TABLE verifications ADD COLUMN probe_quality TEXT;
CREATE INDEX verifications_probe_expiry ON verifications (probe_expires_at) WHERE probe_ref IS NOT NULL;
CREATE INDEX verifications_probe_ref ON verifications (probe_ref) WHERE probe_ref IS NOT NULL;
