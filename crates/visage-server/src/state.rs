//! What the handlers, the services and the background tasks share: one [`App`] per process.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use visage_calibration::Calibration;
use visage_objects::ImageStore;
use visage_store::Store;
use visage_store::crypto::KeyRing;

use crate::config::Config;
use crate::gallery::GalleryIndex;
use crate::inference::InferencePool;
use crate::observability::Metrics;
use crate::outage::Outage;
use crate::shared::SharedState;

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
    /// Enrolment images (sealed), when `storage.store_images` is on; see `service::images`.
    pub images: ImageStore,
    /// Name of the running recognizer, stored with every template.
    pub model: String,
    /// Models loaded and warmed up, and not shutting down.
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// Whether the database answers, and what carries on while it does not.
    pub outage: Outage,
}

pub type AppState = Arc<App>;
