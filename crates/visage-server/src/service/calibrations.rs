//! Which threshold a decision uses. A collection's own calibration (made from its labelled
//! decisions by `visage calibrate --from-feedback` and kept in the database, so every replica
//! reads the same) for the FAR targets it resolves; the deployment-wide calibration otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use visage_calibration::{CollectionCalibration, OperatingPoint};
use visage_store::{CollectionId, StoreResult};

use super::{ServiceError, ServiceResult};
use crate::state::App;

/// A decision's threshold and the calibration it comes from, which the decision names.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub point: OperatingPoint,
    pub calibration: String,
}

/// The threshold for a FAR target (the configured one when absent) in `collection`.
pub fn threshold(
    app: &App,
    collection: Option<&CollectionId>,
    far_target: Option<f64>,
) -> ServiceResult<Threshold> {
    let far = far_target.unwrap_or(app.config.verification.far_target);
    let own = collection.and_then(|c| app.collection_calibrations.get(c));
    if let Some(own) = own.as_ref()
        && let Some(point) = own.point(far)
    {
        return Ok(Threshold { point, calibration: own.name.clone() });
    }
    match app.calibration.point(far) {
        Some(point) => Ok(Threshold { point, calibration: app.calibration.source.clone() }),
        None => Err(ServiceError::InvalidRequest(format!(
            "far_target {far} is not calibrated; calibrated targets: {:?}",
            app.calibration.targets()
        ))),
    }
}

/// The calibration `collection`'s decisions use: its own (for the FAR targets it resolves),
/// else the deployment's.
pub fn name_for(app: &App, collection: &CollectionId) -> String {
    app.collection_calibrations
        .get(collection)
        .map_or_else(|| app.calibration.source.clone(), |c| c.name.clone())
}

/// Reads the collections' calibrations from the database: at start-up, and on every poll of
/// the gallery so that a new one reaches every replica within `index.poll_interval_ms`. One
/// made for another recognizer does not apply; one that cannot be read is left out, loudly.
pub async fn reload(app: &App) -> StoreResult<()> {
    let stored = app.store.collection_calibrations().await?;
    let mut all = HashMap::new();
    for c in stored.into_iter().filter(|c| c.model == app.model) {
        match CollectionCalibration::parse(&c.name, &c.document, app.config.models.recognizer, app.numerics) {
            Ok(calibration) => {
                all.insert(c.collection, Arc::new(calibration));
            }
            Err(reason) => {
                tracing::error!(calibration = %c.name, %reason, "a collection calibration cannot be used: the global one applies");
            }
        }
    }
    if app.collection_calibrations.replace(all) {
        let series: Vec<(String, Vec<(f64, f32)>)> = app
            .collection_calibrations
            .all()
            .iter()
            .map(|c| (c.name.clone(), c.points.iter().map(|p| (p.far, p.threshold)).collect()))
            .collect();
        app.metrics.set_collection_calibrations(&series);
        tracing::info!(collections = series.len(), "collection calibrations loaded");
    }
    Ok(())
}
