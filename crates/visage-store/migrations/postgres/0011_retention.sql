-- Retention. A subject whose consent was withdrawn stays out of matching (its templates leave
-- every replica's 1:N index) until the retention job erases it, `retention.after_withdrawal_days`
-- later. `last_active_at`: the subject's latest enrolment or matching decision, for erasing
-- subjects inactive for `retention.inactive_subject_days`; kept on the subject because decision
-- records may be pruned sooner. Decisions and audit events are pruned by age. Re-sealing
-- under a new template key (`visage keys rotate-template-key`) asks whether an image is still in use.
ALTER TABLE subjects ADD COLUMN consent_withdrawn_at TIMESTAMPTZ;
ALTER TABLE subjects ADD COLUMN last_active_at TIMESTAMPTZ;
UPDATE subjects SET last_active_at = GREATEST(
    created_at,
    (SELECT MAX(t.created_at) FROM templates t WHERE t.subject_id = subjects.id),
    (SELECT MAX(v.created_at) FROM verifications v WHERE v.subject_id = subjects.id AND v.decision = 'match')
);
ALTER TABLE subjects ALTER COLUMN last_active_at SET NOT NULL;
CREATE INDEX subjects_consent_withdrawn ON subjects (consent_withdrawn_at) WHERE consent_withdrawn_at IS NOT NULL;
CREATE INDEX subjects_last_active ON subjects (last_active_at);
CREATE INDEX verifications_created ON verifications (created_at);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX templates_image ON templates (image_ref) WHERE image_ref IS NOT NULL;
