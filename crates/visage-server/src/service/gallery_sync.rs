//! Keeps this replica's 1:N index equal to the database: after its own writes, and in the
//! background for the writes of other replicas (see [`crate::gallery`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::{App, AppState};

/// Brings the 1:N index up to date after a write of this replica, so the caller's next search
/// sees it. The write was also applied to the index directly, so a failure here only delays
/// changes made elsewhere until the next poll.
pub async fn refresh(app: &App) {
    match app.gallery.catch_up(app.store.as_ref(), &app.keys).await {
        Ok(outcome) if outcome.reloaded => app.metrics.index_reloads.inc(),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not read gallery changes after a write"),
    }
}

/// How often a replica prunes the gallery change log.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Keeps the index in step with changes other replicas make: woken by the database's
/// notifications, and at least every `index.poll_interval_ms`. Also prunes the change log of
/// entries older than `index.change_log_retention_hours`.
pub fn spawn(app: &AppState) -> tokio::task::JoinHandle<()> {
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
                    if let Err(err) = super::calibrations::reload(&state).await {
                        tracing::warn!(error = %err, "cannot read the collection calibrations: keeping those read before");
                    }
                }
                Err(err) => {
                    state.metrics.gallery_sync_errors.inc();
                    state.outage.noticed(&err);
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
