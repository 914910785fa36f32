//! What the handlers, the services and the background tasks share: one [`App`] per process.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use visage_calibration::{Calibration, CollectionCalibration};
use visage_objects::ImageStore;
use visage_store::crypto::KeyRing;
use visage_store::{CollectionId, Store};

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
    /// The deployment-wide calibration.
    pub calibration: Calibration,
    /// The backend and precision computing the scores (what calibrations must match).
    pub numerics: visage_face::Numerics,
    /// Collections' own thresholds, from their labelled decisions; they take precedence over
    /// `calibration` for the FAR targets they resolve.
    pub collection_calibrations: CollectionCalibrations,
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

/// The collections' own calibrations, as the database last listed them (see
/// `service::calibrations`).
#[derive(Default)]
pub struct CollectionCalibrations(RwLock<HashMap<CollectionId, Arc<CollectionCalibration>>>);

impl CollectionCalibrations {
    pub fn get(&self, collection: &CollectionId) -> Option<Arc<CollectionCalibration>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(collection).cloned()
    }

    /// Replaces them all; true when anything changed.
    pub fn replace(&self, all: HashMap<CollectionId, Arc<CollectionCalibration>>) -> bool {
        let mut held = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *held == all {
            return false;
        }
        *held = all;
        true
    }

    pub fn all(&self) -> Vec<Arc<CollectionCalibration>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }
}
