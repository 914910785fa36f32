-- What was destroyed, when, why, how and by whom: the record Roskomnadzor's order No. 179
-- (2022) asks for after personal data is destroyed. Written in the transaction that destroys
-- the data. No template, image or name; the operator's id of the subject only when configured.
CREATE TABLE destruction_records (
    id             BLOB PRIMARY KEY NOT NULL,
    destroyed_at   TEXT NOT NULL,
    subject_id     BLOB NOT NULL,              -- the subject's internal id (no longer resolvable)
    collection_id  TEXT NOT NULL,
    external_id    TEXT,                       -- only with retention.destruction_records_keep_external_id
    ground         TEXT NOT NULL,              -- erasure_request, face_deletion, ...
    categories     TEXT NOT NULL,              -- JSON: [{"category": ..., "items": n}]
    method         TEXT NOT NULL,
    performed_by   TEXT NOT NULL               -- the API key id, or visage:<job>
);
CREATE INDEX destruction_records_at ON destruction_records (destroyed_at);
