-- Galleries: every subject belongs to exactly one.
CREATE TABLE collections (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO collections (id, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE subjects (
    id             BLOB PRIMARY KEY NOT NULL,   -- UUIDv7: time-ordered, so it pages by creation
    collection_id  TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    external_id    TEXT NOT NULL,
    metadata       TEXT,                        -- JSON chosen by the caller
    consent        TEXT,                        -- JSON: given_by, given_at, purpose, reference
    created_at     TEXT NOT NULL,
    UNIQUE (collection_id, external_id)
);

-- Face templates, sealed with AES-256-GCM; key_id names the key so keys can rotate.
CREATE TABLE templates (
    id          BLOB PRIMARY KEY NOT NULL,
    subject_id  BLOB NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    quality     TEXT NOT NULL,                  -- JSON quality measures (no biometric data)
    image_ref   TEXT,                           -- stored enrolment image, when enabled
    created_at  TEXT NOT NULL
);
CREATE INDEX templates_subject ON templates (subject_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,                 -- SHA-256 of the random secret; the key itself is never stored
    role         TEXT NOT NULL,
    collections  TEXT NOT NULL,                 -- JSON array of collection ids, or ["*"]
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);

-- Decisions, kept for ground-truth feedback and error-rate monitoring. No images, no templates.
CREATE TABLE verifications (
    id             BLOB PRIMARY KEY NOT NULL,
    created_at     TEXT NOT NULL,
    api_key_id     TEXT,
    mode           TEXT NOT NULL,               -- verify | identify
    collection_id  TEXT,
    subject_id     BLOB,                        -- cleared on erasure
    similarity     REAL,
    threshold      REAL NOT NULL,
    far_target     REAL,
    decision       TEXT NOT NULL,               -- match | no_match | spoof | ...
    liveness_score REAL,
    truth          TEXT,                        -- genuine | impostor, from feedback
    truth_source   TEXT,
    labelled_at    TEXT
);
CREATE INDEX verifications_subject ON verifications (subject_id);

-- Who did what and when, with the outcome; never biometric data or names.
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    api_key_id     TEXT,
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    collection_id  TEXT,
    subject_id     BLOB,
    detail         TEXT NOT NULL                -- JSON
);
