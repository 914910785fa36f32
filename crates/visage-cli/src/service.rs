//! `visage serve` and `visage keys`: the HTTP service and its API keys.

use std::path::{Path, PathBuf};

use chrono::Utc;
use figment::Figment;
use figment::providers::Serialized;
use visage_face::{BackendKind, FaceSelection, LivenessKind, Precision, RecognizerKind};
use visage_server::observability::telemetry::{self, LogOptions};
use visage_server::resources::open_store;
use visage_server::{Application, Config};
use visage_store::{ApiKeyRecord, CollectionId, CollectionScope, Role};
use visage_wire::api_key;

/// Values given explicitly on the command line (or by their own environment variables),
/// which override the configuration file and `VISAGE_*__*` variables.
#[derive(Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    pub precision: Option<Precision>,
    pub recognizer: Option<RecognizerKind>,
    pub face_selection: Option<FaceSelection>,
    pub max_image_bytes: Option<usize>,
    pub max_pixels: Option<u64>,
    pub liveness_model: Option<LivenessKind>,
}

impl Overrides {
    fn figment(&self) -> Figment {
        let mut figment = Figment::new();
        let mut set = |key: &str, value: Option<serde_json::Value>| {
            if let Some(value) = value {
                figment = std::mem::take(&mut figment).merge(Serialized::default(key, value));
            }
        };
        set("server.listen", self.listen.clone().map(Into::into));
        set("storage.data_dir", self.data_dir.as_ref().map(|p| p.display().to_string().into()));
        set("models.dir", self.models_dir.as_ref().map(|p| p.display().to_string().into()));
        // By their serde names: the names the configuration reads.
        set("models.backend", self.backend.map(|kind| serde_json::json!(kind)));
        set("inference.precision", self.precision.map(|p| serde_json::json!(p)));
        set("models.recognizer", self.recognizer.map(|kind| serde_json::json!(kind)));
        set("models.face_selection", self.face_selection.map(|kind| serde_json::json!(kind)));
        set("limits.max_image_bytes", self.max_image_bytes.map(Into::into));
        set("limits.max_pixels", self.max_pixels.map(Into::into));
        set("liveness.model", self.liveness_model.map(|kind| serde_json::json!(kind)));
        figment
    }
}

pub fn load_config(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(Config::load(file, overrides.figment())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&config.tracing, &LogOptions::from_env())?;
    tracing::info!(config = %config.redacted_json(), "configuration");
    let served = runtime()?.block_on(async move {
        let application = Application::build(config).await?;
        if application.state().store.list_api_keys().await?.iter().all(|k| k.revoked_at.is_some()) {
            tracing::warn!(
                "no API key exists yet: create one with `visage keys create --name admin --role admin`"
            );
        }
        application.run_until_stopped(shutdown_signal()).await?;
        Ok(())
    });
    // Also after a failed start: its spans may explain it.
    telemetry.shutdown();
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

pub fn create_key(config: &Config, name: &str, role: Role, collections: &[String]) -> anyhow::Result<()> {
    let scope = if collections.is_empty() || collections.iter().any(|c| c == "*") {
        CollectionScope::All
    } else {
        CollectionScope::Only(
            collections
                .iter()
                .map(CollectionId::parse)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
        )
    };
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let key = api_key::generate();
        store
            .create_api_key(&ApiKeyRecord {
                id: key.id.clone(),
                name: name.to_owned(),
                secret_hash: key.secret_hash.clone(),
                role,
                scope: scope.clone(),
                created_at: Utc::now(),
                revoked_at: None,
            })
            .await?;
        store
            .append_audit(&visage_store::NewAuditEvent {
                api_key_id: None,
                action: visage_store::AuditAction::KeyCreate,
                outcome: visage_store::AuditOutcome::Ok,
                collection: None,
                subject_id: None,
                detail: serde_json::json!({ "key_id": key.id, "role": role.as_str(), "collections": scope.to_string() }),
            })
            .await?;
        eprintln!("created key {} ({}, role {}, collections {scope}); it is shown once:", key.id, name, role.as_str());
        println!("{}", key.token.as_str());
        store.close().await;
        Ok(())
    })
}

pub fn list_keys(config: &Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        for key in store.list_api_keys().await? {
            let line = serde_json::json!({
                "id": key.id,
                "name": key.name,
                "role": key.role.as_str(),
                "collections": key.scope.to_string(),
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            });
            println!("{line}");
        }
        store.close().await;
        Ok(())
    })
}

pub fn revoke_key(config: &Config, id: &str) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let revoked = store.revoke_api_key(id).await?;
        anyhow::ensure!(revoked, "no active key with id {id}");
        store
            .append_audit(&visage_store::NewAuditEvent {
                api_key_id: None,
                action: visage_store::AuditAction::KeyRevoke,
                outcome: visage_store::AuditOutcome::Ok,
                collection: None,
                subject_id: None,
                detail: serde_json::json!({ "key_id": id }),
            })
            .await?;
        eprintln!("revoked key {id}");
        store.close().await;
        Ok(())
    })
}

/// `visage calibrate --from-feedback`: each collection's thresholds from its labelled decisions.
pub fn calibrate_from_feedback(
    config: &Config,
    collection: Option<&str>,
    far_targets: Vec<f64>,
    min_genuine: usize,
    out: Option<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<()> {
    use visage_server::jobs::calibration::{FromFeedback, from_feedback};
    let options = FromFeedback {
        collection: collection.map(CollectionId::parse).transpose().map_err(anyhow::Error::msg)?,
        far_targets,
        min_genuine,
        out,
        dry_run,
    };
    let report = runtime()?.block_on(from_feedback(config, &options))?;
    for c in &report.collections {
        match (&c.calibration, &c.kept_global_because) {
            (Some(name), _) if dry_run => eprintln!("{}: would keep {name} (--dry-run)", c.collection),
            (Some(name), _) => {
                eprintln!("{}: kept {name}; replicas use it within index.poll_interval_ms", c.collection)
            }
            (None, Some(why)) => eprintln!("{}: keeps the global calibration: {why}", c.collection),
            (None, None) => {}
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `visage calibrate --from-feedback --reset --collection C`.
pub fn reset_calibration(config: &Config, collection: &str) -> anyhow::Result<()> {
    let collection = CollectionId::parse(collection).map_err(anyhow::Error::msg)?;
    let dropped = runtime()?.block_on(visage_server::jobs::calibration::reset(config, &collection))?;
    match dropped {
        true => eprintln!(
            "{collection}: back on the global calibration (replicas follow within index.poll_interval_ms)"
        ),
        false => eprintln!("{collection}: had no calibration of its own"),
    }
    Ok(())
}

/// `visage destruction-records export`.
pub fn export_destruction_records(
    config: &Config,
    from: Option<chrono::DateTime<Utc>>,
    to: Option<chrono::DateTime<Utc>>,
    format: visage_server::jobs::destruction::Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written =
        runtime()?.block_on(visage_server::jobs::destruction::export(config, from, to, format, &mut out))?;
    eprintln!("{written} destruction records");
    Ok(())
}

/// `--from`: a day (its first instant, UTC) or an RFC 3339 instant.
pub fn parse_from(text: &str) -> Result<chrono::DateTime<Utc>, String> {
    parse_day_or_instant(text, 0)
}

/// `--to`: a day (through its end: the next day's first instant) or an RFC 3339 instant.
pub fn parse_to(text: &str) -> Result<chrono::DateTime<Utc>, String> {
    parse_day_or_instant(text, 1)
}

fn parse_day_or_instant(text: &str, days_after: i64) -> Result<chrono::DateTime<Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = (day + chrono::Duration::days(days_after)).and_time(chrono::NaiveTime::MIN);
        return Ok(start.and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 instant"))
}
