-- The same schema as the embedded backend (migrations/sqlite), in native PostgreSQL types.

-- Galleries: every subject belongs to exactly one.
CREATE TABLE collections (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO collections (id, created_at) VALUES ('default', date_trunc('milliseconds', now()));

CREATE TABLE subjects (
    id             UUID PRIMARY KEY,             -- UUIDv7: time-ordered, so it pages by creation
    collection_id  TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    external_id    TEXT NOT NULL,
    metadata       JSONB,                        -- chosen by the caller
    consent        JSONB,                        -- given_by, given_at, purpose, reference
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (collection_id, external_id)
);

-- Face templates, sealed with AES-256-GCM by the service; key_id names the key so keys can rotate.
CREATE TABLE templates (
    id          UUID PRIMARY KEY,
    subject_id  UUID NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    quality     JSONB NOT NULL,                  -- quality measures (no biometric data)
    image_ref   TEXT,                            -- stored enrolment image, when enabled
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX templates_subject ON templates (subject_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,                 -- SHA-256 of the random secret; the key itself is never stored
    role         TEXT NOT NULL,
    collections  JSONB NOT NULL,                 -- array of collection ids, or ["*"]
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);

-- Decisions, kept for ground-truth feedback and error-rate monitoring. No images, no templates.
CREATE TABLE verifications (
    id             UUID PRIMARY KEY,
    created_at     TIMESTAMPTZ NOT NULL,
    api_key_id     TEXT,
    mode           TEXT NOT NULL,                -- verify | identify
    collection_id  TEXT,
    subject_id     UUID,                         -- cleared on erasure
    similarity     REAL,
    threshold      REAL NOT NULL,
    far_target     DOUBLE PRECISION,
    decision       TEXT NOT NULL,                -- match | no_match | spoof | ...
    liveness_score REAL,
    truth          TEXT,                         -- genuine | impostor, from feedback
    truth_source   TEXT,
    labelled_at    TIMESTAMPTZ
);
CREATE INDEX verifications_subject ON verifications (subject_id);
CREATE INDEX verifications_labelled ON verifications (labelled_at) WHERE truth IS NOT NULL;

-- Who did what and when, with the outcome; never biometric data or names.
CREATE TABLE audit_events (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    api_key_id     TEXT,
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    collection_id  TEXT,
    subject_id     UUID,
    detail         JSONB NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject_id);
