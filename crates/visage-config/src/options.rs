//! Every option with its environment variable and meaning, for `visage serve --help`.

/// Every option with its environment variable and meaning, for `visage serve --help`.
/// A test keeps this table and [`Config`] in step.
pub const OPTIONS: &[(&str, &str)] = &[
    ("profile", "development | production (also from ENVIRONMENT=production) [development]"),
    ("server.listen", "address:port to listen on [0.0.0.0:8000]"),
    ("server.shutdown_grace_seconds", "time in-flight requests get after SIGTERM [30]"),
    ("server.request_timeout_seconds", "requests running longer are answered 503 timeout [30]"),
    ("server.header_read_timeout_seconds", "a client must send a request's whole header within this [10]"),
    ("server.max_connections", "connections served at once; more wait in the listen backlog [1024]"),
    ("models.dir", "model directory (scripts/models/fetch.sh) [models]"),
    (
        "models.backend",
        "openvino (falls back to onnxruntime where it cannot run) | onnxruntime | tract [openvino]",
    ),
    ("models.recognizer", "sface | mobilefacenet [sface]"),
    ("models.face_selection", "single | central | largest: the face a single-face request uses [central]"),
    ("storage.data_dir", "embedded database, development key and images [data]"),
    ("storage.store_images", "keep enrolment images (encrypted) [false]"),
    ("images.backend", "where kept images go: local (data_dir/images) | s3 [local]"),
    ("images.s3_endpoint", "S3 server, e.g. http://minio:9000 (path-style requests); unset = AWS [unset]"),
    ("images.s3_bucket", "bucket for images; required with images.backend = s3 [unset]"),
    ("images.s3_region", "S3 region [us-east-1]"),
    ("images.s3_access_key_id", "S3 access key id [AWS_ACCESS_KEY_ID]"),
    ("images.s3_secret_access_key", "S3 secret key (secret) [AWS_SECRET_ACCESS_KEY]"),
    ("images.timeout_seconds", "bound on one image upload, download or deletion, retries included [10]"),
    ("database.url", "PostgreSQL URL (password redacted when printed); unset = embedded SQLite [unset]"),
    ("database.max_connections", "PostgreSQL connections per replica [10]"),
    ("database.acquire_timeout_seconds", "wait for a connection before 503 storage_unavailable [3]"),
    ("database.read_url", "PostgreSQL streaming replica for listings and monitoring queries [unset]"),
    (
        "database.outage_reads",
        "answer verify and identify from memory while the database is unreachable [true]",
    ),
    (
        "database.spool_dir",
        "decisions and audit events made while the database is unreachable wait here [data_dir/spool]",
    ),
    ("database.startup_timeout_seconds", "how long start-up waits for the database to answer [60]"),
    ("index.poll_interval_ms", "check for gallery changes made by other replicas at least this often [1000]"),
    (
        "index.change_log_retention_hours",
        "prune gallery change log entries older than this; a replica further behind reloads its index [24]",
    ),
    ("encryption.key", "template key, 32 bytes base64; required in production (secret)"),
    ("encryption.key_file", "file holding the template key, instead of encryption.key"),
    ("encryption.previous_keys", "retired keys that still open older templates (secret)"),
    ("inference.workers", "inference threads, 0 = one per core [0]"),
    (
        "inference.precision",
        "auto (bf16 where the CPU has it) | f32 | bf16; openvino only, the others run f32 [auto]",
    ),
    ("inference.queue_capacity", "requests that may wait for a worker before 503 overloaded [32]"),
    (
        "inference.max_queue_wait_ms",
        "under sustained overload, longer waits for a worker are answered 503 overloaded; 0 = off [100]",
    ),
    ("limits.max_body_bytes", "largest request body [33554432]"),
    ("limits.max_image_bytes", "largest image file [15728640]"),
    ("limits.max_pixels", "largest width x height [40000000]"),
    ("limits.max_batch_images", "most images in one enrolment [10]"),
    ("enrolment.require_consent", "refuse subjects without a consent record [true]"),
    ("verification.far_target", "false-accept rate the threshold stands for [0.001]"),
    ("verification.max_top_k", "most identification candidates [20]"),
    ("liveness.model", "minifasnet | faceplugin | ensemble [ensemble]"),
    (
        "liveness.threshold",
        "live when the score is at least this [calibrated; 0.1 without a calibration file]",
    ),
    ("liveness.verify", "off | report | require [report; require in production]"),
    ("liveness.identify", "off | report | require [off]"),
    ("liveness.enrol", "off | report | require [off]"),
    ("rate_limit.requests_per_second", "per API key, 0 = off [0]"),
    ("rate_limit.burst", "requests above the sustained rate a key may send at once [20]"),
    (
        "redis.url",
        "Redis shared by the replicas (password redacted when printed); unset = per replica [unset]",
    ),
    ("redis.key_prefix", "prefix of every Redis key visage writes [visage:]"),
    ("redis.command_timeout_ms", "longest wait for one Redis command before the in-process fallback [250]"),
    ("redis.idempotency_ttl_seconds", "how long a response is kept for Idempotency-Key replays [86400]"),
    ("monitoring.feedback_window_hours", "FAR/FRR/EER gauges use labelled decisions of this many hours [24]"),
    ("monitoring.feedback_window_size", "and at most this many of them [10000]"),
    ("monitoring.min_labelled", "labelled attempts of a class needed before its gauge appears [30]"),
    ("monitoring.grafana_url", "the Grafana dashboard the console's overview links to [unset]"),
    (
        "review.keep_probe_images_hours",
        "keep decisions' probe images (sealed) this long for reviewers, 0 = none, at most 720 [0]",
    ),
    (
        "retention.destruction_records_keep_external_id",
        "destruction records keep the subject's external_id (else only its internal id) [false]",
    ),
    (
        "retention.sweep_interval_seconds",
        "how often the retention job erases what is due and prunes (one replica at a time) [60]",
    ),
    (
        "retention.after_withdrawal_days",
        "days from a consent withdrawal to the erasure, out of matching meanwhile; at most 30 [0]",
    ),
    (
        "retention.inactive_subject_days",
        "erase subjects neither enrolled nor matched this long, 0 = never [0]",
    ),
    ("retention.decision_days", "delete decision records older than this, 0 = keep [0]"),
    ("retention.audit_days", "delete audit events older than this, 0 = keep [0]"),
    (
        "retention.destruction_record_days",
        "delete destruction records older than this (order No. 179: 3 years), 0 = keep [1095]",
    ),
    ("tracing.otlp_endpoint", "OTLP/HTTP collector, e.g. http://jaeger:4318; unset = no traces [unset]"),
    ("tracing.service_name", "service.name of the exported spans [visage]"),
    ("tracing.sample_ratio", "fraction of new traces exported; a sampled traceparent is followed [1.0]"),
];

/// The options table as `visage serve --help` prints it.
pub fn options_help() -> String {
    let mut text = String::from(
        "Configuration: defaults, then --config FILE (TOML), then VISAGE_* environment variables\n\
         (nesting with __, e.g. VISAGE_SERVER__LISTEN=127.0.0.1:8000), then explicit flags.\n\n",
    );
    for (key, help) in OPTIONS {
        let env = format!("VISAGE_{}", key.replace('.', "__").to_uppercase());
        text.push_str(&format!("  {key:<34} {env}\n      {help}\n"));
    }
    text
}
