-- The gallery change log is pruned of entries older than a retention period. A process whose
-- last applied change is older than the newest pruned one may have missed a change and
-- reloads its whole index instead of replaying; `pruned_through` tells it.
CREATE TABLE gallery_log_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO gallery_log_state (id) VALUES (1);
CREATE INDEX gallery_changes_changed_at ON gallery_changes (changed_at);
