//! Opening what the service and the offline jobs run on: the store, the template keys, the
//! models and the 1:N index, each from the one configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use visage_face::{BackendKind, EngineConfig, FaceEngine, LivenessModel, ModelPaths, Numerics};
use visage_store::crypto::{KeyRing, TemplateKey};
use visage_store::{PostgresOptions, PostgresStore, SqliteStore, Store, StoreError};

use crate::config::{Config, ImageBackend, ImagesConfig, Profile};
use crate::gallery::GalleryIndex;
use crate::inference::Pipeline;

/// Where images are kept: `data_dir/images`, or the configured bucket.
pub fn image_backend(config: &Config) -> visage_objects::Backend {
    let images = &config.images;
    match images.backend {
        ImageBackend::Local => visage_objects::Backend::Local { dir: config.storage.data_dir.join("images") },
        ImageBackend::S3 => visage_objects::Backend::S3(visage_objects::S3Options {
            endpoint: ImagesConfig::non_empty(&images.s3_endpoint),
            bucket: ImagesConfig::non_empty(&images.s3_bucket).unwrap_or_default(),
            region: images.s3_region.clone(),
            access_key_id: ImagesConfig::non_empty(&images.s3_access_key_id),
            secret_access_key: images
                .s3_secret_access_key
                .as_ref()
                .map(|s| s.expose().to_owned())
                .filter(|s| !s.is_empty()),
            timeout: Duration::from_secs(images.timeout_seconds),
        }),
    }
}

/// Reads the template keys: configured, from a file, or (development only) generated once
/// into the data directory.
pub fn key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    let active = match (&config.encryption.key, &config.encryption.key_file) {
        (Some(key), _) => TemplateKey::from_base64(key.expose())?,
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the template key file {}", file.display()))?;
            TemplateKey::from_base64(&text)?
        }
        (None, None) => {
            anyhow::ensure!(
                config.profile == Profile::Development,
                "the production profile needs a template key"
            );
            development_key(&config.storage.data_dir.join("template.key"))?
        }
    };
    let previous = config
        .encryption
        .previous_keys
        .iter()
        .map(|k| TemplateKey::from_base64(k.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeyRing::new(active, previous))
}

fn development_key(path: &Path) -> anyhow::Result<TemplateKey> {
    if !path.exists() {
        tracing::warn!(path = %path.display(), "no template key configured: generating a development key");
        let key = TemplateKey::generate_base64();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(path)?, key.as_bytes())?;
    }
    let text = std::fs::read_to_string(path)?;
    Ok(TemplateKey::from_base64(&text)?)
}

/// Opens the configured store: PostgreSQL when `database.url` is set, else the embedded SQLite
/// file in the data directory. Pending migrations are applied either way. A database that does
/// not answer yet is retried for `database.startup_timeout_seconds`.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = config.database.postgres_url() {
        let options = PostgresOptions {
            url: url.to_owned(),
            read_url: config.database.read_url().map(str::to_owned),
            max_connections: config.database.max_connections,
            acquire_timeout: Duration::from_secs(config.database.acquire_timeout_seconds),
        };
        let redacted = config.database.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(config.database.startup_timeout_seconds);
        let mut pause = Duration::from_millis(250);
        loop {
            match PostgresStore::connect(&options).await {
                Ok(store) => return Ok(Arc::new(store)),
                Err(StoreError::Unavailable(err)) if Instant::now() + pause < deadline => {
                    tracing::warn!(error = %err, database = %redacted, "database not reachable yet: retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot open the PostgreSQL database {redacted}"));
                }
            }
        }
    }
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.storage.data_dir.display()))?;
    let store = SqliteStore::open(&config.database_path())
        .await
        .with_context(|| format!("cannot open {}", config.database_path().display()))?;
    Ok(Arc::new(store))
}

/// The backend and precision a service with this configuration runs (after any fallback),
/// without loading a model: for offline jobs whose thresholds must match the service's.
pub fn running_numerics(config: &Config) -> anyhow::Result<Numerics> {
    let paths = ModelPaths::new(&config.models.dir);
    let (backend, _) = config.models.backend.create_or_fall_back(&paths, 1, config.inference.precision)?;
    Ok(backend.numerics())
}

/// Loads the models and warms them up (blocking: call from a blocking thread). The liveness
/// threshold is the configured one or the model's built-in one; the service replaces it with
/// the one calibrated for the backend and precision that run.
pub fn load_pipeline(config: &Config, workers: usize) -> anyhow::Result<Pipeline> {
    let paths = ModelPaths::new(&config.models.dir);
    let requested = config.models.backend;
    let (backend, fallback) = requested.create_or_fall_back(&paths, workers, config.inference.precision)?;
    if let Some(fallback) = fallback {
        tracing::warn!(
            requested = fallback.requested.as_str(),
            running = backend.name(),
            reason = %fallback.reason,
            "the {} backend cannot run here: running on {} instead",
            fallback.requested.as_str(),
            backend.name()
        );
    }
    let numerics = backend.numerics();
    if numerics.backend == BackendKind::OpenVino {
        tracing::info!(
            backend = numerics.backend.as_str(),
            precision = numerics.precision.as_str(),
            "inference backend"
        );
    } else {
        tracing::info!(
            backend = numerics.backend.as_str(),
            precision = numerics.precision.as_str(),
            "inference backend (inference.precision applies to openvino only; this one runs f32)"
        );
    }
    let engine_config = EngineConfig {
        recognizer: config.models.recognizer,
        decode: config.decode_limits(),
        selection: config.models.face_selection,
        ..EngineConfig::default()
    };
    let engine = FaceEngine::load(&paths, backend.as_ref(), engine_config)?;
    let liveness = LivenessModel::load(&paths, backend.as_ref(), config.liveness.model)?;
    let liveness_threshold =
        config.liveness.threshold.unwrap_or_else(|| config.liveness.model.default_threshold());
    let pipeline = Pipeline { engine, liveness, liveness_threshold, numerics };
    pipeline.warm_up()?;
    Ok(pipeline)
}

/// Opens the stored templates of the running recognizer into the in-memory index. Templates of
/// other recognizers (before, during and after a model change: `visage reembed`) are left out
/// and counted; when none is of this recognizer but others exist the service refuses to start,
/// since it would match nobody.
/// Refuses to start when stored templates need a key that is not configured: they could not
/// be matched, and the service would answer "nobody" for the people they belong to.
pub async fn check_template_keys(store: &dyn Store, keys: &KeyRing) -> anyhow::Result<()> {
    let missing: Vec<String> = store
        .template_key_usage()
        .await?
        .into_iter()
        .filter(|usage| !keys.contains(&usage.key_id))
        .map(|usage| format!("{} templates need key {}", usage.templates, usage.key_id))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "stored templates were sealed with a template key that is not configured ({}): put that key back \
         in encryption.previous_keys (then `visage keys rotate-template-key` re-seals them under the \
         active key, after which it can go)",
        missing.join("; ")
    );
    Ok(())
}

pub async fn load_gallery(
    store: &dyn Store,
    keys: &KeyRing,
    model: &str,
    dim: usize,
) -> anyhow::Result<GalleryIndex> {
    let gallery = GalleryIndex::new(dim, model);
    let started = Instant::now();
    let report = gallery.load(store, keys).await.context("loading the 1:N index")?;
    tracing::info!(
        templates = report.indexed,
        version = gallery.version(),
        millis = started.elapsed().as_millis() as u64,
        "1:N index loaded"
    );
    if report.other_models.is_empty() {
        return Ok(gallery);
    }
    let others =
        report.other_models.iter().map(|(m, n)| format!("{n} of {m}")).collect::<Vec<_>>().join(", ");
    anyhow::ensure!(
        report.indexed > 0,
        "no stored template was made by recognizer {model}, which this service runs ({others}): \
         run `visage reembed --to {model}` first (it needs stored images), or start with the \
         recognizer that made them (models.recognizer)"
    );
    let status = store.model_status(model).await?;
    tracing::warn!(
        loaded = report.indexed,
        other_recognizers = %others,
        without_twin = status.untwinned,
        "templates of other recognizers are not loaded; those without a {model} twin are not matched \
         until `visage reembed --to {model}` runs"
    );
    Ok(gallery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn images_go_to_the_data_directory_or_the_configured_bucket() {
        let mut config = Config::defaults(Profile::Development);
        assert!(
            matches!(image_backend(&config), visage_objects::Backend::Local { dir } if dir.ends_with("images"))
        );
        config.images.backend = ImageBackend::S3;
        config.images.s3_bucket = Some("visage-images".into());
        config.images.s3_endpoint = Some("http://minio:9000".into());
        config.images.s3_access_key_id = Some(String::new());
        config.images.s3_secret_access_key = Some(Secret::new("minio-secret-123"));
        let visage_objects::Backend::S3(options) = image_backend(&config) else { panic!("s3") };
        assert_eq!(
            (options.endpoint.as_deref(), options.bucket.as_str(), options.region.as_str()),
            (Some("http://minio:9000"), "visage-images", "us-east-1")
        );
        assert_eq!(options.access_key_id, None, "an empty value counts as unset");
        assert_eq!(options.secret_access_key.as_deref(), Some("minio-secret-123"));
    }
}
