//! Deciding through a database outage. Every replica holds every template in its 1:N index,
//! with a card per subject (collection, external id), and a copy of the API keys: enough to
//! answer verify and identify while the database cannot be reached. Their decisions and
//! audit events wait in the replica's [`Spool`] and are written when it answers again.
//! Enrolment, erasure and listings need the database and still answer 503
//! `storage_unavailable`.
//!
//! "Down" is noticed by the first request whose database call fails as unavailable; from then
//! on requests skip the database (no request waits `database.acquire_timeout_seconds` for a
//! connection that will not come) until the watcher's ping gets an answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use visage_store::{ApiKeyRecord, CollectionId, StoreError};

pub mod spool;

use spool::Spool;

pub struct Outage {
    /// The database failed as unavailable and has not answered since.
    down: AtomicBool,
    /// Whether verify and identify are answered from memory while it is down
    /// (`database.outage_reads`).
    serve_reads: bool,
    spool: Arc<Spool>,
    /// Every API key as last read, for authenticating while the database is down.
    keys: RwLock<HashMap<String, ApiKeyRecord>>,
    /// Every collection as last read: one without templates still exists during an outage.
    collections: RwLock<HashSet<CollectionId>>,
}

impl Outage {
    pub fn new(spool: Arc<Spool>, serve_reads: bool) -> Self {
        Self {
            down: AtomicBool::new(false),
            serve_reads,
            spool,
            keys: RwLock::new(HashMap::new()),
            collections: RwLock::new(HashSet::new()),
        }
    }

    /// The database is down and reads are answered from memory.
    pub fn serving_from_memory(&self) -> bool {
        self.serve_reads && self.is_down()
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Whether `err` means the database cannot be reached; if so it is marked down.
    pub fn noticed(&self, err: &StoreError) -> bool {
        if !err.is_retryable() {
            return false;
        }
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %err, "database unreachable: verify and identify answer from memory, writes are spooled");
        }
        true
    }

    /// Whether a read may be answered from memory instead, after `err`.
    pub fn read_from_memory_after(&self, err: &StoreError) -> bool {
        self.noticed(err) && self.serve_reads
    }

    pub fn mark_up(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!("database reachable again");
        }
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// The key as last read from the database.
    pub fn known_key(&self, id: &str) -> Option<ApiKeyRecord> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Keeps a key the copy lacks (one created since the last read of the keys).
    pub fn remember_new_key(&self, key: &ApiKeyRecord) {
        if !self.keys.read().unwrap_or_else(|p| p.into_inner()).contains_key(&key.id) {
            self.remember_key(key);
        }
    }

    /// Keeps a key as just revoked, before the next refresh of the copy.
    pub fn remember_key(&self, key: &ApiKeyRecord) {
        self.keys.write().unwrap_or_else(|p| p.into_inner()).insert(key.id.clone(), key.clone());
    }

    /// Whether the collection existed when the collections were last read.
    pub fn known_collection(&self, id: &CollectionId) -> bool {
        self.collections.read().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    /// Replaces the copies of the keys and the collection names with a fresh read.
    pub fn remember(&self, keys: Vec<ApiKeyRecord>, collections: Vec<CollectionId>) {
        *self.collections.write().unwrap_or_else(|p| p.into_inner()) = collections.into_iter().collect();
        self.remember_keys(keys);
    }

    fn remember_keys(&self, keys: Vec<ApiKeyRecord>) {
        let keys = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }
}
