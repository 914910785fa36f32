//! The retention job. Each round erases the subjects due (consent expired, consent withdrawn
//! `retention.after_withdrawal_days` ago, inactive for `retention.inactive_subject_days`), each
//! with its destruction record and audit event, performed by `visage:retention`; then deletes
//! decision records, audit events and destruction records past their retention period. Every
//! replica runs it; a lease in the database lets one at a time do the work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use visage_store::{AuditAction, AuditOutcome, CollectionScope, ErasureCutoffs, RetainedRecord, Role};

use super::audit::{self, Entry};
use super::{Caller, ServiceError, ServiceResult, subjects};
use crate::state::{App, AppState};

/// Who the job's erasures name as their performer.
pub const PERFORMER: &str = "visage:retention";
const LEASE: &str = "retention";
/// Subjects erased per round at most; the next round takes the rest.
const ERASURES_PER_ROUND: u32 = 100;
/// Records deleted per statement: short transactions that let writers in between.
const PRUNE_BATCH: u32 = 5000;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Subjects erased.
    pub erased: u64,
    /// Records deleted, per kind.
    pub pruned: Vec<(RetainedRecord, u64)>,
}

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

/// One round: takes the lease (or leaves the round to the replica holding it), erases the
/// subjects due and prunes old records.
pub async fn sweep(app: &App, holder: &str) -> ServiceResult<Round> {
    sweep_at(app, holder, Utc::now()).await
}

/// [`sweep`] as if it were `now`: what is due then is done (tests look ahead with it).
pub async fn sweep_at(app: &App, holder: &str, now: DateTime<Utc>) -> ServiceResult<Round> {
    let every = app.config.retention.sweep_interval_seconds.max(1);
    let until = now + chrono::Duration::seconds(i64::try_from(every * 2).unwrap_or(i64::MAX / 2));
    if !app.store.try_lease(LEASE, holder, now, until).await? {
        return Ok(Round::default());
    }
    let erased = erase_due(app, now).await?;
    let pruned = prune(app, now).await?;
    Ok(Round { erased, pruned })
}

fn days_before(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

async fn erase_due(app: &App, now: DateTime<Utc>) -> ServiceResult<u64> {
    let retention = &app.config.retention;
    let cutoffs = ErasureCutoffs {
        now,
        withdrawn_before: days_before(now, retention.after_withdrawal_days),
        inactive_before: (retention.inactive_subject_days > 0)
            .then(|| days_before(now, retention.inactive_subject_days)),
    };
    let job = Caller { key_id: PERFORMER.into(), role: Role::Admin, scope: CollectionScope::All };
    let mut erased = 0;
    for (id, ground) in app.store.due_erasures(&cutoffs, ERASURES_PER_ROUND).await? {
        match subjects::erase_on(app, &job, id, ground).await {
            Ok(_) => {
                erased += 1;
                app.metrics.retention_erasures.with_label_values(&[ground.as_str()]).inc();
            }
            // Erased meanwhile, by a request or another round.
            Err(ServiceError::SubjectNotFound) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(erased)
}

/// Deletes what outlived its retention period; one audit event names what went.
async fn prune(app: &App, now: DateTime<Utc>) -> ServiceResult<Vec<(RetainedRecord, u64)>> {
    let retention = &app.config.retention;
    let periods = [
        (RetainedRecord::Decisions, retention.decision_days),
        (RetainedRecord::AuditEvents, retention.audit_days),
        (RetainedRecord::DestructionRecords, retention.destruction_record_days),
    ];
    let mut pruned = Vec::new();
    for (record, days) in periods {
        if days == 0 {
            continue;
        }
        let before = days_before(now, days);
        let mut total = 0;
        loop {
            let deleted = app.store.prune(record, before, PRUNE_BATCH).await?;
            total += deleted;
            app.metrics.retention_pruned.with_label_values(&[record.as_str()]).inc_by(deleted);
            if deleted < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        if total > 0 {
            pruned.push((record, total));
        }
    }
    if !pruned.is_empty() {
        let mut detail = serde_json::Map::new();
        for (record, count) in &pruned {
            detail.insert(record.as_str().to_owned(), json!(count));
        }
        let job = Caller { key_id: PERFORMER.into(), role: Role::Admin, scope: CollectionScope::All };
        audit::record(
            app,
            &job,
            Entry::new(AuditAction::RetentionPrune, AuditOutcome::Ok).detail(detail.into()),
        )
        .await;
    }
    Ok(pruned)
}
