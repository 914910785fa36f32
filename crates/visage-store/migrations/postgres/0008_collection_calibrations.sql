-- Thresholds a collection earned from its own labelled decisions (`visage calibrate
-- --from-feedback`), in the calibration file's format; every replica reads them from here.
CREATE TABLE collection_calibrations (
    collection_id TEXT PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,               -- feedback:<collection>:<date>
    model         TEXT NOT NULL,               -- the recognizer the thresholds belong to
    document      TEXT NOT NULL,               -- the calibration file (JSON)
    created_at    TIMESTAMPTZ NOT NULL
);
-- Which calibration and recognizer each decision was made with, so that labels are only ever
-- turned into thresholds for the scores they were given on.
ALTER TABLE verifications ADD COLUMN calibration TEXT;
ALTER TABLE verifications ADD COLUMN model TEXT;
