//! Start-up: storage, keys, models, the 1:N index and the router, bound to a port; then
//! serving until a shutdown signal, with a grace period for requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use visage_calibration::Calibration;
use visage_objects::ImageStore;

use crate::config::Config;
use crate::http::server::ConnectionLimits;
use crate::inference::{InferencePool, QueueWait};
use crate::observability::metrics::{Metrics, ObservedRates};
use crate::outage::Outage;
use crate::resources::{check_template_keys, key_ring, load_gallery, load_pipeline, open_store};
use crate::service::{degraded, enum_name, gallery_sync, review};
use crate::shared::SharedState;
use crate::state::{App, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    gallery_sync: tokio::task::JoinHandle<()>,
    probe_sweeper: Option<tokio::task::JoinHandle<()>>,
    retention: tokio::task::JoinHandle<()>,
    outage_watch: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens storage, loads models, binds the listener (port 0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
            format!("cannot create the data directory {}", config.storage.data_dir.display())
        })?;
        let store = open_store(&config).await?;
        let keys = key_ring(&config)?;
        check_template_keys(store.as_ref(), &keys).await?;
        let workers = match config.inference.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let mut pipeline = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || load_pipeline(&config, workers)).await??
        };
        let numerics = pipeline.numerics;
        let calibration =
            Calibration::load(&config.models.dir, config.models.recognizer, numerics, config.liveness.model)?;
        anyhow::ensure!(
            calibration.point(config.verification.far_target).is_some(),
            "verification.far_target {} is not calibrated for this recognizer; calibrated: {:?} ({})",
            config.verification.far_target,
            calibration.targets(),
            calibration.source
        );
        let liveness_threshold = config.liveness.threshold.unwrap_or(calibration.liveness_threshold);
        pipeline.liveness_threshold = liveness_threshold;
        let model = enum_name(&config.models.recognizer);
        let gallery =
            load_gallery(store.as_ref(), &keys, &model, config.models.recognizer.dimension()).await?;
        let pool = InferencePool::start(Arc::new(pipeline), workers, config.inference.queue_capacity)
            .with_max_queue_wait(match config.inference.max_queue_wait_ms {
                0 => QueueWait::Unbounded,
                ms => QueueWait::At(Duration::from_millis(ms)),
            });
        let images = ImageStore::open(&crate::resources::image_backend(&config))?;
        let listener = TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let metrics = Metrics::new(
            env!("CARGO_PKG_VERSION"),
            &model,
            &enum_name(&config.liveness.model),
            numerics.backend.as_str(),
            numerics.precision.as_str(),
        );
        metrics.inference_workers.set(workers as i64);
        let points: Vec<(f64, f32)> = calibration.points.iter().map(|p| (p.far, p.threshold)).collect();
        metrics.set_calibration(&calibration.source, &points);
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
        let spool_dir = config.database.spool_dir(&config.storage.data_dir);
        let spool = crate::outage::spool::Spool::open(&spool_dir)
            .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?;
        metrics.spooled_events.set(spool.waiting() as i64);
        let outage = Outage::new(spool, config.database.outage_reads);
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
            numerics,
            collection_calibrations: Default::default(),
            liveness_threshold,
            model,
            ready: AtomicBool::new(false),
            outage,
        });
        state.metrics.mark_gallery_synced();
        crate::service::calibrations::reload(&state).await?;
        let gallery_sync = gallery_sync::spawn(&state);
        let probe_sweeper = review::spawn_probe_sweeper(&state);
        let retention = crate::service::retention::spawn(&state);
        // Entries an earlier run spooled go to the database before anything else is decided.
        degraded::replay(&state).await;
        let outage_watch = degraded::spawn_watch(&state);
        let router = crate::http::router(state.clone());
        state.ready.store(true, Ordering::SeqCst);
        tracing::info!(address = %listener.local_addr()?, workers, "visage is ready");
        Ok(Self { listener, router, state, gallery_sync, probe_sweeper, retention, outage_watch })
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
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(state.config.server.header_read_timeout_seconds),
            max_connections: state.config.server.max_connections,
        };
        let serve = crate::http::server::serve(self.listener, self.router, limits, signal);
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
        self.outage_watch.abort();
        self.retention.abort();
        if let Some(sweeper) = &self.probe_sweeper {
            sweeper.abort();
        }
        state.store.close().await;
        result
    }
}
