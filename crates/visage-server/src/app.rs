//! Start-up: storage, keys, models, the 1:N index and the router, bound to a port.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;
use uuid::Uuid;
use visage_calibration::Calibration;
use visage_face::{EngineConfig, FaceEngine, LivenessModel, ModelPaths};
use visage_objects::ImageStore;
use visage_store::crypto::{KeyRing, TemplateKey};
use visage_store::{
    AuditAction, AuditOutcome, CollectionId, NewAuditEvent, PostgresOptions, PostgresStore, SqliteStore,
    Store, StoreError,
};

use crate::auth::Caller;
use crate::config::{Config, Profile};
use crate::dto::enum_name;
use crate::error::{ApiError, REQUEST_ID};
use crate::gallery::GalleryIndex;
use crate::metrics::{Metrics, ObservedRates};
use crate::pipeline::Pipeline;
use crate::pool::InferencePool;
use crate::shared_state::SharedState;

/// Everything a request handler may use.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub pool: InferencePool,
    pub gallery: GalleryIndex,
    pub keys: KeyRing,
    pub calibration: Calibration,
    pub liveness_threshold: f32,
    /// Rate limits and idempotency keys: in Redis, shared by the replicas, or in this process.
    pub shared: SharedState,
    /// Enrolment images (sealed), when `storage.store_images` is on; see images.rs.
    pub images: ImageStore,
    /// Name of the running recognizer, stored with every template.
    pub model: String,
    pub ready: AtomicBool,
    pub metrics: Metrics,
}

pub type AppState = Arc<App>;

impl App {
    /// Writes an audit event; a failure is logged, not returned, because the action it
    /// describes has already happened.
    pub async fn audit(
        &self,
        caller: Option<&Caller>,
        action: AuditAction,
        outcome: AuditOutcome,
        collection: Option<&CollectionId>,
        subject_id: Option<Uuid>,
        detail: serde_json::Value,
    ) {
        let event = NewAuditEvent {
            api_key_id: caller.map(|c| c.key_id.clone()),
            action,
            outcome,
            collection: collection.cloned(),
            subject_id,
            detail,
        };
        if let Err(err) = self.store.append_audit(&event).await {
            tracing::error!(action = action.as_str(), error = %err, "audit event lost");
        }
    }

    /// Brings the 1:N index up to date after a write of this replica, so the caller's next
    /// search sees it. The write was also applied to the index directly, so a failure here
    /// only delays changes made elsewhere until the next poll.
    pub async fn refresh_gallery(&self) {
        match self.gallery.catch_up(self.store.as_ref(), &self.keys).await {
            Ok(outcome) if outcome.reloaded => self.metrics.index_reloads.inc(),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not read gallery changes after a write"),
        }
    }
}

/// Reads the template keys: configured, from a file, or (development only) generated once
/// into the data directory.
pub(crate) fn key_ring(config: &Config) -> anyhow::Result<KeyRing> {
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

/// Loads the models and warms them up (blocking: call from a blocking thread).
pub(crate) fn load_pipeline(
    config: &Config,
    workers: usize,
    liveness_threshold: f32,
) -> anyhow::Result<Pipeline> {
    let paths = ModelPaths::new(&config.models.dir);
    let backend = config.models.backend.create(&paths, workers)?;
    let engine_config = EngineConfig {
        recognizer: config.models.recognizer,
        decode: config.decode_limits(),
        selection: config.models.face_selection,
        ..EngineConfig::default()
    };
    let engine = FaceEngine::load(&paths, backend.as_ref(), engine_config)?;
    let liveness = LivenessModel::load(&paths, backend.as_ref(), config.liveness.model)?;
    let pipeline = Pipeline { engine, liveness, liveness_threshold };
    pipeline.warm_up()?;
    Ok(pipeline)
}

/// Opens the stored templates of the running recognizer into the in-memory index. Templates of
/// other recognizers (before, during and after a model change: `visage reembed`) are left out
/// and counted; when none is of this recognizer but others exist the service refuses to start,
/// since it would match nobody.
async fn load_gallery(
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

/// How often a replica prunes the gallery change log.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Keeps the index in step with changes other replicas make: woken by the database's
/// notifications, and at least every `index.poll_interval_ms`. Also prunes the change log of
/// entries older than `index.change_log_retention_hours`.
fn spawn_gallery_sync(app: &AppState) -> tokio::task::JoinHandle<()> {
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut failing = false;
        // Every replica prunes now and then; pruning is idempotent, so they need not agree.
        let mut next_prune = Instant::now() + PRUNE_EVERY / 10;
        loop {
            let Some(state) = app.upgrade() else { return };
            let poll = Duration::from_millis(state.config.index.poll_interval_ms);
            let store = state.store.clone();
            drop(state);
            store.wait_for_gallery_change(poll).await;
            let Some(state) = app.upgrade() else { return };
            match state.gallery.catch_up(state.store.as_ref(), &state.keys).await {
                Ok(outcome) => {
                    if failing {
                        tracing::info!("1:N index in step with the database again");
                        failing = false;
                    }
                    state.metrics.gallery_changes_applied.inc_by(outcome.applied as u64);
                    if outcome.reloaded {
                        state.metrics.index_reloads.inc();
                    }
                    state.metrics.mark_gallery_synced();
                }
                Err(err) => {
                    state.metrics.gallery_sync_errors.inc();
                    if !failing {
                        tracing::warn!(error = %err, "cannot read gallery changes: retrying");
                        failing = true;
                    }
                }
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                let retention = state.config.index.change_log_retention_hours;
                let before = chrono::Utc::now() - chrono::Duration::hours(retention as i64);
                match state.store.prune_gallery_changes(before).await {
                    Ok(pruned) => state.metrics.gallery_changes_pruned.inc_by(pruned),
                    Err(err) => tracing::warn!(error = %err, "cannot prune the gallery change log"),
                }
            }
        }
    })
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    gallery_sync: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens storage, loads models, binds the listener (port 0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
            format!("cannot create the data directory {}", config.storage.data_dir.display())
        })?;
        let store = open_store(&config).await?;
        let keys = key_ring(&config)?;
        let calibration =
            Calibration::load(&config.models.dir, config.models.recognizer, config.liveness.model)?;
        anyhow::ensure!(
            calibration.point(config.verification.far_target).is_some(),
            "verification.far_target {} is not calibrated for this recognizer; calibrated: {:?} ({})",
            config.verification.far_target,
            calibration.targets(),
            calibration.source
        );
        let liveness_threshold = config.liveness.threshold.unwrap_or(calibration.liveness_threshold);
        let workers = match config.inference.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let pipeline = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || load_pipeline(&config, workers, liveness_threshold)).await??
        };
        let model = enum_name(&config.models.recognizer);
        let gallery =
            load_gallery(store.as_ref(), &keys, &model, config.models.recognizer.dimension()).await?;
        let pool = InferencePool::start(Arc::new(pipeline), workers, config.inference.queue_capacity);
        let images = ImageStore::open(&config.image_backend())?;
        let listener = TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let metrics = Metrics::new(env!("CARGO_PKG_VERSION"), &model, &enum_name(&config.liveness.model));
        metrics.inference_workers.set(workers as i64);
        if let Some(evaluation) = calibration.evaluation {
            metrics.set_error_rates(
                "calibration",
                &ObservedRates {
                    far_percent: Some(evaluation.far_percent),
                    frr_percent: Some(evaluation.frr_percent),
                    eer_percent: Some(evaluation.eer_percent),
                    ..ObservedRates::default()
                },
            );
        }
        let shared = SharedState::connect(&config, &metrics).await;
        let state = Arc::new(App {
            metrics,
            shared,
            config,
            store,
            pool,
            gallery,
            images,
            keys,
            calibration,
            liveness_threshold,
            model,
            ready: AtomicBool::new(false),
        });
        state.metrics.mark_gallery_synced();
        let gallery_sync = spawn_gallery_sync(&state);
        let router = router(state.clone());
        state.ready.store(true, Ordering::SeqCst);
        tracing::info!(address = %listener.local_addr()?, workers, "visage is ready");
        Ok(Self { listener, router, state, gallery_sync })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests
    /// `server.shutdown_grace_seconds` to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let ready = state.clone();
        let signal = async move {
            shutdown.await;
            ready.ready.store(false, Ordering::SeqCst);
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping.send(());
        };
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(signal).into_future();
        let result = tokio::select! {
            result = serve => result,
            () = async move {
                if stopped.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!("shutdown grace period over: dropping the requests still running");
                Ok(())
            }
        };
        self.gallery_sync.abort();
        state.store.close().await;
        result
    }
}

fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let timeout = Duration::from_secs(state.config.server.request_timeout_seconds);
    crate::routes::routes()
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), crate::idempotency::middleware))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("a handler panicked".into()).into_response()))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// Gives every request an id (kept from `x-request-id` when it is sane), echoes it in the
/// response, and turns the framework's own bodiless errors into the API's error shape.
async fn request_context(State(app): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let max_body = app.config.limits.max_body_bytes;
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    app.metrics.http_in_flight.inc();
    let in_flight = InFlight(&app.metrics.http_in_flight);
    // Every log line of the request carries its id and, when tracing, its trace id (never the
    // path: it may hold ids). The otel.* fields are only filled when spans are exported.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    let tracing_on = app.config.tracing.enabled();
    if tracing_on {
        crate::telemetry::trace_request(&span, request.headers(), method.as_str(), &route);
    }
    let request_span = span.clone();
    let mut response = REQUEST_ID
        .scope(request_id.clone(), async move {
            let response = next.run(request).instrument(span).await;
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if is_json || response.status().is_success() {
                return response;
            }
            let status = response.status();
            match status {
                StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge { limit: max_body }.into_response()
                }
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
                    ApiError::Timeout.into_response()
                }
                StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    ApiError::UnsupportedMediaType("expected application/json".into()).into_response()
                }
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                    // The framework's own rejections (malformed JSON, a bad path or query) as text.
                    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
                    ApiError::InvalidRequest(String::from_utf8_lossy(&text).into_owned()).into_response()
                }
                _ => response,
            }
        })
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if tracing_on {
        crate::telemetry::trace_response(&request_span, response.status().as_u16());
    }
    drop(in_flight);
    let seconds = started.elapsed().as_secs_f64();
    let status_class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics.http_requests.with_label_values(&[method.as_str(), &route, status_class]).inc();
    app.metrics.http_duration.with_label_values(&[method.as_str(), &route]).observe(seconds);
    // Inside the request span, so that this line carries the trace id too.
    request_span.in_scope(|| {
        tracing::info!(
            request_id,
            %method,
            route,
            status = response.status().as_u16(),
            millis = (seconds * 1000.0).round() as u64,
            "request"
        );
    });
    response
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
