-- The gallery change log is pruned of entries older than a retention period. A replica whose
-- last applied change is older than the newest pruned one may have missed a change and
-- reloads its whole index instead of replaying; `pruned_through` tells it.
CREATE TABLE gallery_log_state (
    id              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    pruned_through  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO gallery_log_state DEFAULT VALUES;
CREATE INDEX gallery_changes_changed_at ON gallery_changes (changed_at);
