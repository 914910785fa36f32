//! What the probes and the scrape ask: readiness, and the gauges read at scrape time.

use std::sync::atomic::Ordering;

use chrono::Utc;
use serde_json::{Map, Value, json};
use visage_store::CollectionId;

use visage_store::{CollectionCounts, Role};

use super::{Caller, ServiceResult};
use crate::observability::metrics::{ObservedRates, TrafficSummary, observed_rates};
use crate::state::App;

/// How much of the service a replica can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Models loaded and warmed up, storage answering.
    Ready,
    /// The database cannot be reached: verify and identify are answered from memory (their
    /// decisions spooled), everything else answers 503 `storage_unavailable`.
    ReadOnly,
    Unavailable,
}

impl Readiness {
    /// `checks.mode` of the readiness answer.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Ready => "read-write",
            Self::ReadOnly => "read-only",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What the replica can serve now, with the checks behind it. Redis being down is reported
/// but is no reason to be unready: the service goes on with per-replica state.
pub async fn readiness(app: &App) -> (Readiness, Map<String, Value>) {
    let mut checks = Map::new();
    let models_ok = app.ready.load(Ordering::SeqCst);
    checks.insert("models".into(), json!(if models_ok { "ok" } else { "not ready" }));
    // While it is known down the watcher pings it; a probe need not wait for the timeout too.
    let storage_ok = !app.outage.is_down()
        && match app.store.ping().await {
            Ok(()) => true,
            Err(err) => {
                app.outage.noticed(&err);
                false
            }
        };
    checks.insert("storage".into(), json!(if storage_ok { "ok" } else { "unavailable" }));
    checks.insert("inference_queue".into(), json!(app.pool.queue_depth()));
    checks.insert("index_version".into(), json!(app.gallery.version()));
    checks.insert("redis".into(), json!(app.shared.readiness().await));
    checks.insert("spooled_events".into(), json!(app.outage.spool().waiting()));
    let state = match (models_ok, storage_ok) {
        (true, true) => Readiness::Ready,
        (true, false) if app.config.database.outage_reads => Readiness::ReadOnly,
        _ => Readiness::Unavailable,
    };
    checks.insert("mode".into(), json!(state.mode()));
    (state, checks)
}

/// Gauges read at scrape time: pool and queue state, stored counts, error rates from feedback.
pub async fn refresh_gauges(app: &App) {
    let m = &app.metrics;
    m.inference_queue_depth.set(app.pool.queue_depth() as i64);
    m.inference_workers_busy.set(app.pool.busy() as i64);
    let pool = app.store.pool_stats();
    m.db_connections_in_use.set(i64::from(pool.in_use));
    m.db_connections_max.set(i64::from(pool.max));
    m.observe_gallery(app.gallery.version(), app.gallery.memory_bytes());
    app.shared.refresh_metrics().await;
    if let Ok(counts) = app.store.counts().await {
        for c in counts {
            m.enrolled_subjects.with_label_values(&[&c.collection]).set(c.subjects as i64);
            m.enrolled_templates.with_label_values(&[&c.collection]).set(c.templates as i64);
            let indexed = CollectionId::parse(c.collection.clone()).map_or(0, |id| app.gallery.len(&id));
            m.index_templates.with_label_values(&[&c.collection]).set(indexed as i64);
        }
    }
    if let Ok(rates) = feedback_rates(app).await {
        m.set_error_rates("feedback", &rates);
        m.set_labelled(rates.genuine, rates.impostor);
    }
}

/// FAR, FRR and EER from the decisions labelled in the feedback window.
async fn feedback_rates(app: &App) -> ServiceResult<ObservedRates> {
    let window = &app.config.monitoring;
    let since = Utc::now() - chrono::Duration::hours(window.feedback_window_hours as i64);
    let labelled = app.store.labelled_verifications(since, window.feedback_window_size).await?;
    Ok(observed_rates(&labelled, window.min_labelled))
}

/// What the console's overview shows: one page of the service's health for an operator.
pub struct Overview {
    pub ready: bool,
    pub checks: Map<String, Value>,
    /// Subjects and templates of the collections the caller may see, with the calibration
    /// each one's decisions use.
    pub collections: Vec<(CollectionCounts, String)>,
    pub traffic: TrafficSummary,
    /// FAR, FRR and EER from labelled decisions, as the gauges have them.
    pub error_rates: ObservedRates,
    pub min_labelled: usize,
    pub feedback_window_hours: u64,
    pub grafana_url: Option<String>,
}

pub async fn overview(app: &App, caller: &Caller) -> ServiceResult<Overview> {
    caller.require(Role::Read)?;
    let (state, checks) = readiness(app).await;
    let ready = state == Readiness::Ready;
    let mut collections = app.store.counts().await?;
    collections
        .retain(|c| CollectionId::parse(c.collection.clone()).is_ok_and(|id| caller.scope.allows(&id)));
    let window = &app.config.monitoring;
    Ok(Overview {
        ready,
        checks,
        collections: collections
            .into_iter()
            .map(|c| {
                let calibration = match CollectionId::parse(c.collection.clone()) {
                    Ok(id) => super::calibrations::name_for(app, &id),
                    Err(_) => app.calibration.source.clone(),
                };
                (c, calibration)
            })
            .collect(),
        traffic: app.metrics.traffic(),
        error_rates: feedback_rates(app).await?,
        min_labelled: window.min_labelled,
        feedback_window_hours: window.feedback_window_hours,
        grafana_url: window.grafana_url.clone().filter(|url| !url.is_empty()),
    })
}
