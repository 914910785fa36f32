//! What a replica does while the database cannot be reached (see [`crate::outage`]): spools
//! decisions and audit events, watches the database, and replays the spool once it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use visage_store::StoreError;

use crate::outage::spool::{SpoolError, Spooled};
use crate::state::{App, AppState};

/// How often the watcher pings a database that is down, and looks for spooled entries.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Writes a decision or audit event to the spool instead of the database.
pub async fn spool(app: &App, entry: Spooled) -> Result<(), SpoolError> {
    app.outage.spool().append(entry).await?;
    app.metrics.spooled_events.set(app.outage.spool().waiting() as i64);
    Ok(())
}

/// An audit event's entry in the spool.
pub fn audit_entry(event: visage_store::NewAuditEvent, event_id: Uuid) -> Spooled {
    Spooled::Audit { event_id, at: chrono::Utc::now(), event }
}

/// Watches the database: pings it while it is down, replays the spool once it answers, and
/// keeps the copies of the API keys and the collection names fresh (every
/// `index.poll_interval_ms`) while it is up.
pub fn spawn_watch(app: &AppState) -> tokio::task::JoinHandle<()> {
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut keys_read = None::<Instant>;
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Some(app) = app.upgrade() else { return };
            let outage = &app.outage;
            if outage.is_down() || outage.spool().waiting() > 0 {
                if app.store.ping().await.is_err() {
                    continue;
                }
                outage.mark_up();
                replay(&app).await;
            }
            let poll = Duration::from_millis(app.config.index.poll_interval_ms);
            if keys_read.is_none_or(|at| at.elapsed() >= poll) {
                let read = async {
                    Ok::<_, StoreError>((
                        app.store.list_api_keys().await?,
                        app.store.list_collections().await?,
                    ))
                };
                match read.await {
                    Ok((keys, collections)) => {
                        outage.remember(keys, collections.into_iter().map(|c| c.id).collect());
                        keys_read = Some(Instant::now());
                    }
                    Err(err) => {
                        outage.noticed(&err);
                    }
                }
            }
        }
    })
}

/// Writes what the spool holds to the database.
pub async fn replay(app: &App) {
    let spool = app.outage.spool();
    let waiting = spool.waiting();
    match spool.replay(app.store.as_ref()).await {
        Ok(done) => {
            app.metrics.spool_replayed.inc_by(done.written);
            if done.written + done.already_there + done.unreadable > 0 {
                tracing::info!(
                    written = done.written,
                    already_there = done.already_there,
                    unreadable = done.unreadable,
                    waiting_before = waiting,
                    "spooled decisions and audit events written to the database"
                );
            }
        }
        Err(err) => {
            if let SpoolError::Store(store) = &err {
                app.outage.noticed(store);
            }
            tracing::warn!(error = %err, "spool replay stopped: the rest waits for the next");
        }
    }
    app.metrics.spooled_events.set(spool.waiting() as i64);
}
