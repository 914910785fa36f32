//! The retention job: subjects whose consent expired are erased (ground `consent_expired`,
//! performed by `visage:retention`), each with its destruction record and audit event. Every
//! replica runs it; a lease in the database lets one at a time do the work.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use visage_store::{CollectionScope, DestructionGround, Role};

use super::{Caller, ServiceError, ServiceResult, subjects};
use crate::state::{App, AppState};

/// Who the job's erasures name as their performer.
pub const PERFORMER: &str = "visage:retention";
const LEASE: &str = "retention";
/// Subjects erased per round at most; the next round takes the rest.
const BATCH: u32 = 100;

pub fn spawn(app: &AppState) -> tokio::task::JoinHandle<()> {
    let app = Arc::downgrade(app);
    // This replica's name in the lease table.
    let holder = Uuid::now_v7().to_string();
    tokio::spawn(async move {
        loop {
            let Some(state) = app.upgrade() else { return };
            let every = Duration::from_secs(state.config.retention.sweep_interval_seconds.max(1));
            if let Err(err) = sweep(&state, &holder).await {
                tracing::warn!(error = %err, "retention round failed: retrying next round");
            }
            drop(state);
            tokio::time::sleep(every).await;
        }
    })
}

/// One round: takes the lease (or leaves the round to the replica holding it) and erases the
/// subjects whose consent expired; returns how many.
pub async fn sweep(app: &App, holder: &str) -> ServiceResult<u64> {
    let now = Utc::now();
    let every = app.config.retention.sweep_interval_seconds.max(1);
    let until = now + chrono::Duration::seconds(i64::try_from(every * 2).unwrap_or(i64::MAX / 2));
    if !app.store.try_lease(LEASE, holder, now, until).await? {
        return Ok(0);
    }
    let job = Caller { key_id: PERFORMER.into(), role: Role::Admin, scope: CollectionScope::All };
    let mut erased = 0;
    for id in app.store.expired_consents(now, BATCH).await? {
        match subjects::erase_on(app, &job, id, DestructionGround::ConsentExpired).await {
            Ok(_) => {
                erased += 1;
                app.metrics.retention_erasures.with_label_values(&["consent_expired"]).inc();
            }
            // Erased meanwhile, by a request or another round.
            Err(ServiceError::SubjectNotFound) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(erased)
}
