//! Idempotency records (see `http::middleware::idempotency` for the `Idempotency-Key`
//! protocol): reservations and finished answers, in Redis, shared by the replicas, or in this
//! replica's memory while Redis is unavailable (or not configured). In Redis a reservation is a
//! short lease the running request keeps renewing, so that a replica that dies mid-request
//! frees the key for the client's retry within [`LEASE`] instead of blocking it for the
//! request timeout.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use redis::Script;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SharedState;

/// Entries the in-process store keeps at most; beyond it the soonest to expire go first.
const LOCAL_CAPACITY: usize = 100_000;

/// Reserves KEYS[1] with ARGV[1] for ARGV[2] ms; returns nil when reserved, else the record
/// that holds the key.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
",
    )
});

/// How long a reservation in Redis lasts unless renewed, and how often a running request
/// renews it.
pub const LEASE: Duration = Duration::from_secs(5);
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Extends our reservation ARGV[1] of KEYS[1] to ARGV[2] ms from now.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Replaces our reservation ARGV[1] with the finished record ARGV[2] for ARGV[3] ms; also
/// when the lease lapsed meanwhile (a Redis blip), unless another request took the key.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] or not held then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// Deletes KEYS[1] if it still holds our reservation ARGV[1].
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// What a key holds, as JSON (in Redis and in memory alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// Reserved by a running request; `token` tells its reservation from a later one.
    InProgress { token: String, fingerprint: String },
    /// A finished 2xx answer; `body` in base64.
    Done { fingerprint: String, status: u16, content_type: Option<String>, body: String },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::InProgress { fingerprint, .. } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records serialize")
    }
}

/// Idempotency records of this replica: used without Redis and while it is down.
#[derive(Default)]
pub struct LocalStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl LocalStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The semantics of [`BEGIN`].
    fn begin(&self, key: &str, marker: &str, ttl: Duration) -> Option<String> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some((record, expires)) = entries.get(key)
            && *expires > now
        {
            return Some(record.clone());
        }
        if entries.len() >= LOCAL_CAPACITY {
            entries.retain(|_, (_, expires)| *expires > now);
            while entries.len() >= LOCAL_CAPACITY {
                let soonest = entries.iter().min_by_key(|(_, (_, expires))| *expires).map(|(k, _)| k.clone());
                let Some(soonest) = soonest else { break };
                entries.remove(&soonest);
            }
        }
        entries.insert(key.to_owned(), (marker.to_owned(), now + ttl));
        None
    }

    /// The semantics of [`COMPLETE`].
    fn complete(&self, key: &str, marker: &str, record: &str, ttl: Duration) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key)
            && entry.0 == marker
        {
            *entry = (record.to_owned(), Instant::now() + ttl);
        }
    }

    /// Keeps a finished record whatever the key holds (its reservation was in Redis).
    fn put(&self, key: &str, record: &str, ttl: Duration) {
        self.lock().insert(key.to_owned(), (record.to_owned(), Instant::now() + ttl));
    }

    /// The semantics of [`RELEASE`].
    fn release(&self, key: &str, marker: &str) {
        let mut entries = self.lock();
        if entries.get(key).is_some_and(|(record, _)| record == marker) {
            entries.remove(key);
        }
    }
}

/// A reservation held by the running request.
#[derive(Clone)]
pub struct Ticket {
    key: String,
    marker: String,
    fingerprint: String,
    /// Reserved in Redis, where it is a lease to renew; else in this replica's memory.
    pub on_redis: bool,
}

/// A finished 2xx answer, as kept for replays.
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What holds a key when a request asks for it.
pub enum Begin {
    /// Nothing did: the key is now the caller's.
    Reserved(Ticket),
    /// The same request finished before: its answer.
    Replay(StoredAnswer),
    /// The same request is still running.
    InProgress,
    /// Another request used the key.
    Reused,
}

/// A stored record that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("unreadable idempotency record: {0}")]
pub struct UnreadableRecord(String);

impl SharedState {
    /// Reserves the key (for [`LEASE`] in Redis, renewed by the request; for `local_ttl` in
    /// this replica's memory, which dies with it), or says what holds it.
    pub async fn idempotency_begin(
        &self,
        key: String,
        fingerprint: String,
        local_ttl: Duration,
    ) -> Result<Begin, UnreadableRecord> {
        let marker =
            Record::InProgress { token: Uuid::new_v4().to_string(), fingerprint: fingerprint.clone() }
                .to_json();
        let mut from_redis = None;
        if let Some(redis) = self.redis() {
            let (k, m) = (key.clone(), marker.clone());
            let millis = LEASE.as_millis() as u64;
            let reserved = redis
                .run("idempotency", |mut connection| async move {
                    BEGIN.key(k).arg(m).arg(millis).invoke_async::<Option<String>>(&mut connection).await
                })
                .await;
            match reserved {
                Ok(existing) => from_redis = Some(existing),
                Err(_) => self.count_fallback("idempotency"),
            }
        }
        let (on_redis, existing) = match from_redis {
            Some(existing) => (true, existing),
            None => (false, self.local_idempotency.begin(&key, &marker, local_ttl)),
        };
        let Some(existing) = existing else {
            self.count_cache("idempotency", "miss");
            return Ok(Begin::Reserved(Ticket { key, marker, fingerprint, on_redis }));
        };
        let record: Record = serde_json::from_str(&existing).map_err(|e| UnreadableRecord(e.to_string()))?;
        if record.fingerprint() != fingerprint {
            return Ok(Begin::Reused);
        }
        match record {
            Record::InProgress { .. } => Ok(Begin::InProgress),
            Record::Done { status, content_type, body, .. } => {
                self.count_cache("idempotency", "hit");
                let body = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .map_err(|e| UnreadableRecord(e.to_string()))?;
                Ok(Begin::Replay(StoredAnswer { status, content_type, body }))
            }
        }
    }

    /// Keeps a finished answer for replays.
    pub async fn idempotency_complete(&self, ticket: &Ticket, answer: &StoredAnswer, ttl: Duration) {
        let record = Record::Done {
            fingerprint: ticket.fingerprint.clone(),
            status: answer.status,
            content_type: answer.content_type.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&answer.body),
        }
        .to_json();
        if ticket.on_redis
            && let Some(redis) = self.redis()
        {
            let (k, m, r) = (ticket.key.clone(), ticket.marker.clone(), record.clone());
            let millis = ttl.as_millis() as u64;
            let stored = redis
                .run("idempotency", |mut connection| async move {
                    COMPLETE.key(k).arg(m).arg(r).arg(millis).invoke_async::<i64>(&mut connection).await
                })
                .await;
            if stored.is_ok() {
                return;
            }
            // Redis went away meanwhile: this replica at least replays it.
            self.count_fallback("idempotency");
            self.local_idempotency.put(&ticket.key, &record, ttl);
            return;
        }
        self.local_idempotency.complete(&ticket.key, &ticket.marker, &record, ttl);
    }

    /// Extends the Redis lease of a running request. A failure is left to the next renewal:
    /// the lease outlasts several.
    pub async fn idempotency_renew(&self, ticket: &Ticket) {
        let Some(redis) = self.redis().filter(|_| ticket.on_redis) else { return };
        let (k, m) = (ticket.key.clone(), ticket.marker.clone());
        let millis = LEASE.as_millis() as u64;
        let _ = redis
            .run("idempotency", |mut connection| async move {
                RENEW.key(k).arg(m).arg(millis).invoke_async::<i64>(&mut connection).await
            })
            .await;
    }

    /// Frees the key after a failed request, so that the client may try again.
    pub async fn idempotency_release(&self, ticket: &Ticket) {
        if ticket.on_redis
            && let Some(redis) = self.redis()
        {
            let (k, m) = (ticket.key.clone(), ticket.marker.clone());
            // On failure the reservation expires by itself.
            let _ = redis
                .run("idempotency", |mut connection| async move {
                    RELEASE.key(k).arg(m).invoke_async::<i64>(&mut connection).await
                })
                .await;
            return;
        }
        self.local_idempotency.release(&ticket.key, &ticket.marker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_store_reserves_completes_and_releases_like_the_redis_scripts() {
        let store = LocalStore::default();
        let ttl = Duration::from_secs(60);
        let marker = Record::InProgress { token: "t1".into(), fingerprint: "f".into() }.to_json();
        assert_eq!(store.begin("k", &marker, ttl), None, "a new key is reserved");
        assert_eq!(store.begin("k", "other", ttl), Some(marker.clone()), "a second begin sees the first");
        store.release("k", "not ours");
        assert_eq!(store.begin("k", "other", ttl), Some(marker.clone()), "only the holder releases");
        store.release("k", &marker);
        assert_eq!(store.begin("k", "second", ttl), None, "released: free again");
        store.complete("k", &marker, "done", ttl);
        assert_eq!(store.begin("k", "x", ttl), Some("second".into()), "a stale ticket does not complete");
        store.complete("k", "second", "done", ttl);
        assert_eq!(store.begin("k", "x", ttl), Some("done".into()));
        assert_eq!(store.begin("gone", "m", Duration::ZERO), None);
        assert_eq!(store.begin("gone", "n", ttl), None, "an expired entry is free");
    }
}
