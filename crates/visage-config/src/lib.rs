//! The one typed configuration of visage: defaults, then an optional TOML file, then
//! `VISAGE_*` environment variables (`__` separates levels: `VISAGE_SERVER__LISTEN`). Validated
//! before anything starts. A crate of its own: the fuzz targets read configuration files
//! without building the server.

use std::path::{Path, PathBuf};

mod options;
mod secret;

pub use options::{OPTIONS, options_help};
pub use secret::{DatabaseUrl, Secret};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use visage_face::{BackendKind, DecodeLimits, FaceSelection, Precision, RecognizerKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Laptop defaults: a template key is generated in the data directory if none is given.
    Development,
    /// Refuses to start without a configured template key; liveness required on verify.
    Production,
}

/// What a request does about liveness, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// No liveness check.
    Off,
    /// Check and report, but decide on the face alone.
    Report,
    /// Refuse a spoof (422 `spoof_detected`) or an image too poor to judge (422 `liveness_inconclusive`).
    Require,
}

impl LivenessMode {
    /// The mode a request runs with: its own choice, except that in production it cannot go
    /// below the configured mode, so a caller cannot switch off a required anti-spoofing check.
    pub fn for_request(requested: Option<Self>, configured: Self, profile: Profile) -> Self {
        match requested {
            Some(asked) if profile == Profile::Production => asked.max(configured),
            Some(asked) => asked,
            None => configured,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub storage: StorageConfig,
    pub images: ImagesConfig,
    pub database: DatabaseConfig,
    pub index: IndexConfig,
    pub encryption: EncryptionConfig,
    pub inference: InferenceConfig,
    pub limits: LimitsConfig,
    pub enrolment: EnrolmentConfig,
    pub verification: VerificationConfig,
    pub liveness: LivenessConfig,
    pub rate_limit: RateLimitConfig,
    pub redis: RedisConfig,
    pub monitoring: MonitoringConfig,
    pub review: ReviewConfig,
    pub retention: RetentionConfig,
    pub tracing: TracingConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Address and port to listen on; port 0 picks a free port.
    pub listen: String,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// Seconds after which a request is answered 503 `timeout`; it bounds a body trickled in
    /// byte by byte too.
    pub request_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole header; a connection that has not is
    /// closed (slowloris).
    pub header_read_timeout_seconds: u64,
    /// Connections served at once; more wait in the listen backlog. Keeps a flood of idle or
    /// slow connections from exhausting the process's file descriptors.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    pub backend: BackendKind,
    pub recognizer: RecognizerKind,
    /// Which face a single-face request uses when the photo holds several.
    pub face_selection: FaceSelection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageConfig {
    /// Directory for the embedded database, the generated development key and stored images.
    pub data_dir: PathBuf,
    /// Keep enrolment images (encrypted) beside the templates; off: templates are enough.
    pub store_images: bool,
}

/// Where enrolment images are kept (when `storage.store_images` is on). They are sealed with
/// the template key before they are written: the bucket or directory holds only ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagesConfig {
    pub backend: ImageBackend,
    /// S3 server, e.g. `http://minio:9000` (plain HTTP allowed for `http://` endpoints);
    /// unset: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: String,
    /// Unset: `AWS_ACCESS_KEY_ID` (and the other standard AWS variables).
    pub s3_access_key_id: Option<String>,
    /// Unset: `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_access_key: Option<Secret>,
    /// Bound on one image upload, download or deletion, retries included.
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageBackend {
    /// Files under `storage.data_dir/images`.
    Local,
    /// An S3 bucket (MinIO, AWS).
    S3,
}

impl ImagesConfig {
    /// An empty value (`VISAGE_IMAGES__S3_ENDPOINT=`) counts as unset.
    pub fn non_empty(value: &Option<String>) -> Option<String> {
        value.clone().filter(|v| !v.is_empty())
    }
}

/// The PostgreSQL server backend; without a URL the embedded SQLite database is used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/visage`; unset or empty: embedded SQLite.
    pub url: Option<DatabaseUrl>,
    /// Connections this replica keeps at most.
    pub max_connections: u32,
    /// Seconds a request waits for a connection before it is answered 503
    /// `storage_unavailable` (how fast requests fail while the database is down).
    pub acquire_timeout_seconds: u64,
    /// A streaming replica (`postgres://…`) for listings and monitoring queries; the primary
    /// answers them when unset or when the replica cannot be reached.
    pub read_url: Option<DatabaseUrl>,
    /// How long start-up waits for the database to answer before giving up (replicas and the
    /// database often start together).
    pub startup_timeout_seconds: u64,
    /// Answer verify and identify from the in-memory index while the database cannot be
    /// reached (decisions and audit events are spooled); off: they answer 503 like the rest.
    pub outage_reads: bool,
    /// Where decisions and audit events made during an outage wait (fsync'd) for the
    /// database; unset: `spool` in the data directory. Per replica, on a persistent disk.
    pub spool_dir: Option<PathBuf>,
}

impl DatabaseConfig {
    pub fn spool_dir(&self, data_dir: &Path) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| data_dir.join("spool"))
    }

    /// The PostgreSQL URL, when one is configured (an empty value counts as unset).
    pub fn postgres_url(&self) -> Option<&str> {
        self.url.as_ref().map(DatabaseUrl::expose).filter(|url| !url.is_empty())
    }

    /// The read replica's URL, when one is configured.
    pub fn read_url(&self) -> Option<&str> {
        self.read_url.as_ref().map(DatabaseUrl::expose).filter(|url| !url.is_empty())
    }
}

/// The in-memory 1:N index of every replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Milliseconds between checks of the database's change log, on top of PostgreSQL's
    /// notifications: the longest a lost notification delays a change made elsewhere.
    pub poll_interval_ms: u64,
    /// Hours the change log keeps an entry. A replica that falls further behind (its sync
    /// failing all that time) reloads its whole index instead of replaying.
    pub change_log_retention_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptionConfig {
    /// Active template key: 32 bytes, base64 (`openssl rand -base64 32`).
    pub key: Option<Secret>,
    /// File holding the active key (base64), instead of `key`.
    pub key_file: Option<PathBuf>,
    /// Retired keys (base64) that still open templates sealed before a rotation.
    pub previous_keys: Vec<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceConfig {
    /// Inference threads; 0 means one per available core.
    pub workers: usize,
    /// Requests that may wait for a worker; beyond it the answer is 503 `overloaded`.
    pub queue_capacity: usize,
    /// Under sustained overload, requests that waited longer than this for a worker are
    /// answered 503 `overloaded` instead of run (bursts shorter than five times it are
    /// queued as before); 0: no such bound, only `queue_capacity`.
    pub max_queue_wait_ms: u64,
    /// Arithmetic precision of the OpenVINO backend: auto (bf16 where the CPU has it), f32 or
    /// bf16. ONNX Runtime and tract always run f32.
    pub precision: Precision,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest image file, in bytes (checked before decoding).
    pub max_image_bytes: usize,
    /// Largest width x height, in pixels (checked from the image header).
    pub max_pixels: u64,
    /// Most images in one batch enrolment.
    pub max_batch_images: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolmentConfig {
    /// Refuse to create a subject without a consent record (`consent_required`).
    pub require_consent: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerificationConfig {
    /// The false-accept rate the decision threshold stands for; the threshold comes from the
    /// calibration of the recognizer for this target.
    pub far_target: f64,
    /// Most candidates an identification returns.
    pub max_top_k: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LivenessConfig {
    /// Which liveness model scores faces.
    pub model: visage_face::LivenessKind,
    /// A face is live when its score is at least this; unset: the calibrated threshold.
    pub threshold: Option<f32>,
    pub verify: LivenessMode,
    pub identify: LivenessMode,
    pub enrol: LivenessMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Sustained requests per second per API key; 0 turns the limit off.
    pub requests_per_second: f64,
    /// Requests a key may send at once above the sustained rate.
    pub burst: u32,
}

/// Redis shared by the replicas: per-key rate limits and idempotency keys. Without it (or while
/// it is down) both are kept in each replica's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisConfig {
    /// `redis://:password@host:6379/0` (password redacted when printed); unset or empty: no Redis.
    pub url: Option<DatabaseUrl>,
    /// Prefix of every key visage writes, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one Redis command (or connection attempt); after a failure Redis is
    /// left alone for a second and the in-process fallbacks answer.
    pub command_timeout_ms: u64,
    /// How long a finished request's response is kept for replay under its `Idempotency-Key`.
    pub idempotency_ttl_seconds: u64,
}

impl RedisConfig {
    /// The Redis URL, when one is configured (an empty value counts as unset).
    pub fn redis_url(&self) -> Option<&str> {
        self.url.as_ref().map(DatabaseUrl::expose).filter(|url| !url.is_empty())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitoringConfig {
    /// The error-rate gauges use labelled decisions of the last this many hours...
    pub feedback_window_hours: u64,
    /// ...at most this many, the most recently labelled first.
    pub feedback_window_size: u32,
    /// Fewer labelled attempts than this of a class leave its gauge absent.
    pub min_labelled: usize,
    /// The Grafana dashboard the console's overview links to; unset = no link.
    pub grafana_url: Option<String>,
}

/// The longest probe retention: review happens within days, and every hour kept is a photo
/// held about a person.
pub const MAX_PROBE_HOURS: u64 = 720;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewConfig {
    /// Keep the probe image of each decision this many hours for reviewers (sealed, deleted at
    /// expiry and with any subject it shows); 0 keeps none.
    pub keep_probe_images_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// Whether destruction records keep the operator's id of the subject (`external_id`).
    /// Off: the record names the subject by its internal id only, which no longer resolves
    /// to anyone once the subject is erased.
    pub destruction_records_keep_external_id: bool,
    /// How often the retention job runs (one replica at a time, under a lease in the database):
    /// erasures due, then pruning.
    pub sweep_interval_seconds: u64,
    /// Days between a withdrawal of consent and the erasure (the subject is out of matching
    /// meanwhile); 0 erases at once, 152-FZ allows at most 30.
    pub after_withdrawal_days: u32,
    /// Erase subjects neither enrolled nor matched for this many days; 0 = never.
    pub inactive_subject_days: u32,
    /// Delete decision records older than this; 0 = keep them. Longer than probe images are
    /// kept (`review.keep_probe_images_hours`): a decision's photo goes first.
    pub decision_days: u32,
    /// Delete audit events older than this; 0 = keep them.
    pub audit_days: u32,
    /// Delete destruction records older than this; the default is the 3 years Roskomnadzor's
    /// order No. 179 sets. 0 = keep them.
    pub destruction_record_days: u32,
}

/// The longest delay between a withdrawal of consent and the erasure: 152-FZ art. 9(5) and
/// 21(5) give the operator 30 days.
pub const MAX_AFTER_WITHDRAWAL_DAYS: u32 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TracingConfig {
    /// OTLP/HTTP collector base URL (Jaeger: `http://jaeger:4318`); spans go to
    /// `{endpoint}/v1/traces`. Unset: no spans are exported and no exporter exists.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Fraction of new traces kept; a caller's sampled `traceparent` is always followed.
    pub sample_ratio: f64,
}

impl TracingConfig {
    /// An empty endpoint (`VISAGE_TRACING__OTLP_ENDPOINT=`) counts as unset.
    fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().filter(|endpoint| !endpoint.is_empty())
    }

    pub fn enabled(&self) -> bool {
        self.endpoint().is_some()
    }

    /// The traces URL: the OTLP/HTTP path is added unless the endpoint already names it.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint()?.trim_end_matches('/');
        Some(if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        })
    }
}

impl Config {
    pub fn defaults(profile: Profile) -> Self {
        let decode = DecodeLimits::default();
        let production = profile == Profile::Production;
        Self {
            profile,
            server: ServerConfig {
                listen: "0.0.0.0:8000".into(),
                shutdown_grace_seconds: 30,
                request_timeout_seconds: 30,
                header_read_timeout_seconds: 10,
                max_connections: 1024,
            },
            models: ModelsConfig {
                dir: "models".into(),
                backend: BackendKind::OpenVino,
                recognizer: RecognizerKind::Sface,
                face_selection: FaceSelection::Central,
            },
            storage: StorageConfig { data_dir: "data".into(), store_images: false },
            database: DatabaseConfig {
                url: None,
                max_connections: 10,
                acquire_timeout_seconds: 3,
                read_url: None,
                startup_timeout_seconds: 60,
                outage_reads: true,
                spool_dir: None,
            },
            index: IndexConfig { poll_interval_ms: 1000, change_log_retention_hours: 24 },
            images: ImagesConfig {
                backend: ImageBackend::Local,
                s3_endpoint: None,
                s3_bucket: None,
                s3_region: "us-east-1".into(),
                s3_access_key_id: None,
                s3_secret_access_key: None,
                timeout_seconds: 10,
            },
            encryption: EncryptionConfig { key: None, key_file: None, previous_keys: Vec::new() },
            inference: InferenceConfig {
                workers: 0,
                queue_capacity: 32,
                max_queue_wait_ms: 100,
                precision: Precision::Auto,
            },
            limits: LimitsConfig {
                max_body_bytes: 32 * 1024 * 1024,
                max_image_bytes: decode.max_bytes,
                max_pixels: decode.max_pixels,
                max_batch_images: 10,
            },
            enrolment: EnrolmentConfig { require_consent: true },
            verification: VerificationConfig { far_target: 1e-3, max_top_k: 20 },
            liveness: LivenessConfig {
                model: visage_face::LivenessKind::default(),
                threshold: None,
                verify: if production { LivenessMode::Require } else { LivenessMode::Report },
                identify: LivenessMode::Off,
                enrol: LivenessMode::Off,
            },
            rate_limit: RateLimitConfig { requests_per_second: 0.0, burst: 20 },
            redis: RedisConfig {
                url: None,
                key_prefix: "visage:".into(),
                command_timeout_ms: 250,
                idempotency_ttl_seconds: 24 * 60 * 60,
            },
            monitoring: MonitoringConfig {
                feedback_window_hours: 24,
                feedback_window_size: 10_000,
                min_labelled: 30,
                grafana_url: None,
            },
            review: ReviewConfig { keep_probe_images_hours: 0 },
            retention: RetentionConfig {
                destruction_records_keep_external_id: false,
                sweep_interval_seconds: 60,
                after_withdrawal_days: 0,
                inactive_subject_days: 0,
                decision_days: 0,
                audit_days: 0,
                destruction_record_days: 3 * 365,
            },
            tracing: TracingConfig { otlp_endpoint: None, service_name: "visage".into(), sample_ratio: 1.0 },
        }
    }

    /// Defaults for the profile named by `VISAGE_PROFILE` (or `ENVIRONMENT=production`), then
    /// `file`, then `VISAGE_*` variables, then `overrides` (explicit command-line values).
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_sources(figment.merge(Env::prefixed("VISAGE_").split("__")).merge(overrides))
    }

    /// Defaults, then the TOML `text` alone (no file, no environment): what `load` makes of a
    /// configuration file with that content and no `VISAGE_*` variables set.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Figment::from(Toml::string(text)))
    }

    /// Defaults for the profile `figment` names (else as `ENVIRONMENT` says), then `figment`.
    fn from_sources(figment: Figment) -> Result<Self, ConfigError> {
        let profile: Profile = match figment.extract_inner::<Profile>("profile") {
            Ok(profile) => profile,
            Err(err) if err.missing() => match std::env::var("ENVIRONMENT").as_deref() {
                Ok("production") => Profile::Production,
                _ => Profile::Development,
            },
            Err(err) => return Err(ConfigError::Invalid(err.to_string())),
        };
        let config: Config = Figment::from(Serialized::defaults(Self::defaults(profile)))
            .merge(figment)
            .merge(Serialized::default("profile", profile))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(self.verification.far_target > 0.0 && self.verification.far_target < 1.0) {
            problems.push("verification.far_target must lie in (0, 1)".to_owned());
        }
        if self.server.header_read_timeout_seconds == 0 || self.server.max_connections == 0 {
            problems.push(
                "server.header_read_timeout_seconds and server.max_connections must be at least 1".to_owned(),
            );
        }
        if self.liveness.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            problems.push("liveness.threshold must lie in [0, 1]".to_owned());
        }
        if self.limits.max_image_bytes > self.limits.max_body_bytes {
            problems.push("limits.max_image_bytes must not exceed limits.max_body_bytes".to_owned());
        }
        if self.limits.max_batch_images == 0 || self.verification.max_top_k == 0 {
            problems.push("limits.max_batch_images and verification.max_top_k must be at least 1".to_owned());
        }
        if self.rate_limit.requests_per_second < 0.0 {
            problems.push("rate_limit.requests_per_second must not be negative".to_owned());
        }
        if self.review.keep_probe_images_hours > MAX_PROBE_HOURS {
            problems
                .push(format!("review.keep_probe_images_hours must not exceed {MAX_PROBE_HOURS} (30 days)"));
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            problems.push("tracing.sample_ratio must lie in [0, 1]".to_owned());
        }
        // The exporter is built without TLS: collectors are reached inside the deployment.
        if let Some(url) = self.tracing.traces_url()
            && !url.starts_with("http://")
        {
            problems
                .push("tracing.otlp_endpoint must be an http:// URL (no TLS to the collector)".to_owned());
        }
        if let Some(url) = self.database.postgres_url()
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            problems.push("database.url must be a postgres:// URL".to_owned());
        }
        if let Some(url) = self.database.read_url() {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push("database.read_url must be a postgres:// URL".to_owned());
            }
            if self.database.postgres_url().is_none() {
                problems.push("database.read_url needs database.url (the primary)".to_owned());
            }
        }
        if self.index.poll_interval_ms == 0 {
            problems.push("index.poll_interval_ms must be at least 1".to_owned());
        }
        if self.index.change_log_retention_hours == 0 {
            problems.push("index.change_log_retention_hours must be at least 1".to_owned());
        }
        if self.database.max_connections == 0 || self.database.acquire_timeout_seconds == 0 {
            problems.push(
                "database.max_connections and database.acquire_timeout_seconds must be at least 1".to_owned(),
            );
        }
        if let Some(url) = self.redis.redis_url()
            && !url.starts_with("redis://")
        {
            problems.push("redis.url must be a redis:// URL".to_owned());
        }
        if self.redis.command_timeout_ms == 0 || self.redis.idempotency_ttl_seconds == 0 {
            problems.push(
                "redis.command_timeout_ms and redis.idempotency_ttl_seconds must be at least 1".to_owned(),
            );
        }
        if self.images.backend == ImageBackend::S3
            && ImagesConfig::non_empty(&self.images.s3_bucket).is_none()
        {
            problems.push("images.backend = \"s3\" needs images.s3_bucket".to_owned());
        }
        if let Some(endpoint) = ImagesConfig::non_empty(&self.images.s3_endpoint)
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push("images.s3_endpoint must be an http:// or https:// URL".to_owned());
        }
        if self.images.timeout_seconds == 0 {
            problems.push("images.timeout_seconds must be at least 1".to_owned());
        }
        if self.retention.after_withdrawal_days > MAX_AFTER_WITHDRAWAL_DAYS {
            problems.push(format!(
                "retention.after_withdrawal_days must be at most {MAX_AFTER_WITHDRAWAL_DAYS} (152-FZ)"
            ));
        }
        let decision_days = u64::from(self.retention.decision_days);
        if decision_days > 0 && decision_days * 24 <= self.review.keep_probe_images_hours {
            problems.push(
                "retention.decision_days must exceed review.keep_probe_images_hours (a decision's probe image goes first)"
                    .to_owned(),
            );
        }
        if self.retention.sweep_interval_seconds == 0 {
            problems.push("retention.sweep_interval_seconds must be at least 1".to_owned());
        }
        if self.encryption.key.is_some() && self.encryption.key_file.is_some() {
            problems.push("set encryption.key or encryption.key_file, not both".to_owned());
        }
        if self.profile == Profile::Production
            && self.encryption.key.is_none()
            && self.encryption.key_file.is_none()
        {
            problems.push(
                "the production profile needs a template key: set VISAGE_ENCRYPTION__KEY or VISAGE_ENCRYPTION__KEY_FILE"
                    .to_owned(),
            );
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems.join("; "))) }
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits { max_bytes: self.limits.max_image_bytes, max_pixels: self.limits.max_pixels }
    }

    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("visage.db")
    }

    /// The configuration as JSON, secrets redacted: what `visage serve` prints at start.
    pub fn redacted_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the configuration serializes")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_requests_may_raise_the_liveness_mode_but_not_lower_it() {
        use LivenessMode::{Off, Report, Require};
        let mode = LivenessMode::for_request;
        assert_eq!(mode(None, Require, Profile::Production), Require);
        assert_eq!(mode(Some(Off), Require, Profile::Production), Require);
        assert_eq!(mode(Some(Report), Require, Profile::Production), Require);
        assert_eq!(mode(Some(Require), Off, Profile::Production), Require);
        assert_eq!(mode(Some(Off), Report, Profile::Production), Report);
        // A development service does what the request asks.
        assert_eq!(mode(Some(Off), Require, Profile::Development), Off);
        assert_eq!(mode(None, Report, Profile::Development), Report);
    }

    fn leaf_keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    if v.is_object() { leaf_keys(v, &key, out) } else { out.push(key) }
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn the_help_table_lists_every_option() {
        let mut keys = Vec::new();
        leaf_keys(&Config::defaults(Profile::Development).redacted_json(), "", &mut keys);
        let documented: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
        for key in &keys {
            assert!(documented.contains(&key.as_str()), "{key} is not in OPTIONS");
        }
        for key in documented {
            assert!(keys.iter().any(|k| k == key), "OPTIONS lists {key}, which Config lacks");
        }
    }

    #[test]
    fn secrets_never_print() {
        let mut config = Config::defaults(Profile::Production);
        config.encryption.key = Some(Secret::new("c2VjcmV0"));
        let printed = format!("{:?} {}", config, config.redacted_json());
        assert!(!printed.contains("c2VjcmV0"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn database_passwords_never_print() {
        let mut config = Config::defaults(Profile::Development);
        for url in [
            "postgres://visage:hunter2@db:5432/visage",
            "postgresql://visage:hunter2@db/visage?sslmode=disable",
            "postgres://db/visage?user=visage&password=hunter2",
        ] {
            config.database.url = Some(DatabaseUrl::new(url));
            let printed = format!("{:?} {}", config, config.redacted_json());
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("db"), "the host still shows");
        }
        config.redis.url = Some(DatabaseUrl::new("redis://:hunter2@cache:6379/0"));
        let printed = format!("{:?} {}", config, config.redacted_json());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redis://:[redacted]@cache:6379/0"), "{printed}");
        let plain = DatabaseUrl::new("postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(plain.redacted(), "postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(
            DatabaseUrl::new("postgres://visage:hunter2@db:5432/visage").redacted(),
            "postgres://visage:[redacted]@db:5432/visage"
        );
    }

    #[test]
    fn the_s3_backend_needs_a_bucket_and_an_http_endpoint() {
        let mut config = Config::defaults(Profile::Development);
        config.images.backend = ImageBackend::S3;
        assert!(config.validate().unwrap_err().to_string().contains("images.s3_bucket"));
        config.images.s3_bucket = Some("visage-images".into());
        config.images.s3_endpoint = Some("minio:9000".into());
        assert!(config.validate().unwrap_err().to_string().contains("images.s3_endpoint"));
        config.images.s3_endpoint = Some("http://minio:9000".into());
        config.images.s3_secret_access_key = Some(Secret::new("minio-secret-123"));
        config.validate().unwrap();
        assert!(!format!("{:?} {}", config, config.redacted_json()).contains("minio-secret-123"));
    }

    #[test]
    fn a_toml_text_is_read_over_the_defaults_and_validated() {
        let config =
            Config::from_toml("[server]\nmax_connections = 64\n[verification]\nfar_target = 0.0001\n")
                .unwrap();
        assert_eq!((config.server.max_connections, config.verification.far_target), (64, 0.0001));
        assert_eq!(
            config.limits.max_body_bytes,
            Config::defaults(Profile::Development).limits.max_body_bytes
        );
        for bad in [
            "[verification]\nfar_target = 2.0",
            "[server]\nmax_connections = \"many\"",
            "[server",
            "profile = \"nope\"",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn production_refuses_to_start_without_a_key() {
        let err = Config::defaults(Profile::Production).validate().unwrap_err();
        assert!(err.to_string().contains("VISAGE_ENCRYPTION__KEY"));
        assert!(Config::defaults(Profile::Development).validate().is_ok());
    }
}
