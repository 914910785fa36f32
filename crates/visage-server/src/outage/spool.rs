//! Decisions and audit events made while the database cannot be reached, kept on this
//! replica's disk until it can. Each is one JSON line, written and fsync'd before the answer
//! goes out, so an acknowledged decision survives a crash of the replica too.
//!
//! Replay takes the whole file aside (`replaying.jsonl`), so new entries keep being appended
//! while it runs, and writes its entries in order. Writing is idempotent: a decision by its
//! id, an audit event by its event id. A replay cut short (the database gone again, the
//! process killed) is simply run again from the start, and every entry is still kept once.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use visage_store::{NewAuditEvent, Store, StoreError, VerificationRecord};

const PENDING: &str = "pending.jsonl";
const REPLAYING: &str = "replaying.jsonl";

/// One write the database missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spooled {
    Decision(VerificationRecord),
    Audit { event_id: Uuid, at: DateTime<Utc>, event: NewAuditEvent },
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Entries written to the database now.
    pub written: u64,
    /// Entries the database already had (a replay run again after being cut short).
    pub already_there: u64,
    /// Lines that could not be read: the torn end of a write a crash interrupted (never
    /// acknowledged, since the answer waits for the fsync).
    pub unreadable: u64,
}

pub struct Spool {
    dir: PathBuf,
    /// The open pending file; appends and the hand-over to a replay take turns on it.
    pending: Mutex<File>,
    /// Entries not yet in the database, in both files.
    waiting: AtomicU64,
    /// One replay at a time.
    replay: tokio::sync::Mutex<()>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

fn open_pending(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))
}

fn count_lines(path: &Path) -> u64 {
    File::open(path).map_or(0, |file| BufReader::new(file).lines().count() as u64)
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

impl Spool {
    /// Opens (creating) the spool in `dir`; entries left by an earlier run are counted and
    /// wait for the next replay.
    pub fn open(dir: &Path) -> Result<Arc<Self>, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let pending = dir.join(PENDING);
        let file = open_pending(&pending)?;
        let waiting = count_lines(&pending) + count_lines(&dir.join(REPLAYING));
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            pending: Mutex::new(file),
            waiting: AtomicU64::new(waiting),
            replay: tokio::sync::Mutex::new(()),
        }))
    }

    /// Entries waiting for the database.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Appends an entry and returns once it is on disk.
    pub async fn append(self: &Arc<Self>, entry: Spooled) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(&entry).expect("spool entries serialize");
        line.push(b'\n');
        let spool = self.clone();
        tokio::task::spawn_blocking(move || spool.append_blocking(&line))
            .await
            .expect("spool append does not panic")
    }

    fn append_blocking(&self, line: &[u8]) -> Result<(), SpoolError> {
        let path = self.dir.join(PENDING);
        let mut file = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line).and_then(|()| file.sync_data()).map_err(io_error(&path))?;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Writes every waiting entry to the database, oldest first. On an error the entries not
    /// yet written stay for the next replay.
    pub async fn replay(self: &Arc<Self>, store: &dyn Store) -> Result<Replayed, SpoolError> {
        let _one_at_a_time = self.replay.lock().await;
        let spool = self.clone();
        let entries = tokio::task::spawn_blocking(move || spool.take_entries())
            .await
            .expect("spool read does not panic")?;
        let mut replayed = Replayed { unreadable: entries.unreadable, ..Replayed::default() };
        for entry in &entries.entries {
            let fresh = match entry {
                Spooled::Decision(record) => store.record_verification(record).await?,
                Spooled::Audit { event_id, at, event } => {
                    store.append_audit_once(event, *event_id, *at).await?
                }
            };
            if fresh {
                replayed.written += 1;
            } else {
                replayed.already_there += 1;
            }
        }
        let replaying = self.dir.join(REPLAYING);
        if replaying.exists() {
            fs::remove_file(&replaying).map_err(io_error(&replaying))?;
            sync_dir(&self.dir)?;
        }
        let done = entries.entries.len() as u64 + entries.unreadable;
        self.waiting.fetch_sub(done.min(self.waiting()), Ordering::SeqCst);
        Ok(replayed)
    }

    /// The entries of the file being replayed; when none is, the pending file becomes it.
    fn take_entries(&self) -> Result<Entries, SpoolError> {
        let replaying = self.dir.join(REPLAYING);
        if !replaying.exists() {
            let pending = self.dir.join(PENDING);
            let mut file = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if file.metadata().map_err(io_error(&pending))?.len() == 0 {
                return Ok(Entries::default());
            }
            fs::rename(&pending, &replaying).map_err(io_error(&pending))?;
            *file = open_pending(&pending)?;
            sync_dir(&self.dir)?;
        }
        let file = File::open(&replaying).map_err(io_error(&replaying))?;
        let mut entries = Entries::default();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io_error(&replaying))?;
            match serde_json::from_str::<Spooled>(&line) {
                Ok(entry) => entries.entries.push(entry),
                Err(err) => {
                    entries.unreadable += 1;
                    tracing::error!(error = %err, "an unreadable spool line was skipped");
                }
            }
        }
        Ok(entries)
    }
}

#[derive(Default)]
struct Entries {
    entries: Vec<Spooled>,
    unreadable: u64,
}

#[cfg(test)]
mod tests {
    use visage_store::{AuditAction, AuditOutcome, Decision, SqliteStore, VerificationMode};

    use super::*;

    fn decision() -> VerificationRecord {
        VerificationRecord {
            id: Uuid::now_v7(),
            created_at: Utc::now(),
            api_key_id: Some("k1".into()),
            mode: VerificationMode::Identify,
            collection: None,
            subject_id: None,
            similarity: Some(0.2),
            threshold: 0.36,
            far_target: Some(1e-3),
            decision: Decision::NoMatch,
            liveness_score: None,
            probe_quality: None,
            probe: None,
            calibration: Some("built-in".into()),
            model: Some("sface".into()),
        }
    }

    fn audit(id: Uuid) -> Spooled {
        let event = NewAuditEvent {
            api_key_id: Some("k1".into()),
            action: AuditAction::Identify,
            outcome: AuditOutcome::NoMatch,
            collection: None,
            subject_id: None,
            detail: serde_json::json!({ "verification_id": id }),
        };
        Spooled::Audit { event_id: Uuid::now_v7(), at: Utc::now(), event }
    }

    /// Entries survive a restart, a torn last line (a write a crash cut short, never
    /// acknowledged) is skipped, and a replay cut short and run again keeps every entry once.
    #[tokio::test]
    async fn entries_survive_a_restart_and_a_replay_run_twice_keeps_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("visage.db")).await.unwrap();
        let spool_dir = dir.path().join("spool");
        let first = decision();
        {
            let spool = Spool::open(&spool_dir).unwrap();
            spool.append(Spooled::Decision(first.clone())).await.unwrap();
            spool.append(audit(first.id)).await.unwrap();
            assert_eq!(spool.waiting(), 2);
        }
        let mut pending = OpenOptions::new().append(true).open(spool_dir.join(PENDING)).unwrap();
        pending.write_all(br#"{"kind":"decision","id":"#).unwrap();

        let spool = Spool::open(&spool_dir).unwrap();
        assert_eq!(spool.waiting(), 3, "two entries and a torn line");
        let kept = fs::read(spool_dir.join(PENDING)).unwrap();
        let replayed = spool.replay(&store).await.unwrap();
        assert_eq!(replayed, Replayed { written: 2, already_there: 0, unreadable: 1 });
        assert_eq!(spool.waiting(), 0);
        assert!(store.get_verification(first.id).await.unwrap().is_some());

        // A replay killed before it removed its file runs again from the start.
        fs::write(spool_dir.join(REPLAYING), kept).unwrap();
        let second = decision();
        spool.append(Spooled::Decision(second.clone())).await.unwrap();
        let replayed = spool.replay(&store).await.unwrap();
        assert_eq!(replayed, Replayed { written: 0, already_there: 2, unreadable: 1 });
        let replayed = spool.replay(&store).await.unwrap();
        assert_eq!(
            replayed,
            Replayed { written: 1, already_there: 0, unreadable: 0 },
            "then what came meanwhile"
        );
        let audited = store.list_audit(&visage_store::AuditFilter::default(), None, 100).await.unwrap();
        assert_eq!(audited.len(), 1, "the audit event once");
        assert!(store.get_verification(second.id).await.unwrap().is_some());
        assert_eq!(spool.replay(&store).await.unwrap(), Replayed::default(), "nothing left");
    }
}
