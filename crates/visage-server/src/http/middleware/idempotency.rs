//! `Idempotency-Key` on the requests that create something (a subject, an enrolment): a client
//! that retries (after a timeout, a dropped connection, a failover to another replica) with the
//! same key gets the first answer again, replayed, instead of a second enrolment.
//!
//! A key is scoped by API key, route and header value. The first request reserves it; a 2xx
//! answer is kept with a fingerprint of the request for `redis.idempotency_ttl_seconds`, any
//! other answer releases the key so the client can try again. The same key with another
//! request is 422 `idempotency_key_reused`; while the first request runs it is 409
//! `idempotency_in_progress`. Keys live in Redis, shared by the replicas, or in this replica's
//! memory while Redis is unavailable (or not configured). In Redis a reservation is a short
//! lease the running request keeps renewing, so that a replica that dies mid-request frees the
//! key for the client's retry within [`LEASE`] instead of blocking it for the request timeout.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use redis::Script;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use crate::app::{App, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, REQUEST_ID};
use crate::shared_state::SharedState;

pub const HEADER: &str = "idempotency-key";
/// Set on an answer that is a replay of the first one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// POST routes that take the header, with the name that scopes their keys.
const ROUTES: [(&str, &str); 2] =
    [("/v1/subjects", "subject.create"), ("/v1/subjects/{id}/faces", "face.enrol")];

/// The paths whose POST takes the header (for the OpenAPI document).
pub fn routes() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|(path, _)| *path)
}

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
const RENEW_EVERY: Duration = Duration::from_secs(1);

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

/// The header value, checked: 1-255 visible ASCII characters, sent once. `None` without one.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest("send one Idempotency-Key header, not several".into()));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key must be 1-255 visible ASCII characters (no spaces)".into(),
        ));
    }
    Ok(value.to_str().ok())
}

/// SHA-256 (hex) of what makes two requests the same: method, path and query, media type and
/// body. A multipart body is hashed with its boundary replaced, since a client that builds the
/// same form again picks a new random boundary.
pub fn fingerprint(method: &Method, uri: &Uri, content_type: Option<&str>, body: &[u8]) -> String {
    let content_type = content_type.unwrap_or_default();
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or_default().trim().to_ascii_lowercase();
    let boundary = params
        .filter_map(|p| p.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|b| media_type.starts_with("multipart/") && !b.is_empty());
    let mut hash = Sha256::new();
    for part in [method.as_str(), uri.path_and_query().map_or("", |p| p.as_str()), &media_type] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    match boundary {
        Some(boundary) => {
            let delimiter = format!("--{boundary}");
            let mut rest = 0;
            for at in memchr::memmem::find_iter(body, delimiter.as_bytes()) {
                hash.update(&body[rest..at]);
                hash.update(b"--boundary");
                rest = at + delimiter.len();
            }
            hash.update(&body[rest..]);
        }
        None => hash.update(body),
    }
    format!("{:x}", hash.finalize())
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
struct Ticket {
    key: String,
    marker: String,
    fingerprint: String,
    on_redis: bool,
}

enum Begin {
    Reserved(Ticket),
    Replay(Response),
    InProgress,
    Reused,
}

impl SharedState {
    /// Reserves the key (for [`LEASE`] in Redis, renewed by the request; for `local_ttl` in
    /// this replica's memory, which dies with it), or says what holds it.
    async fn idempotency_begin(
        &self,
        key: String,
        fingerprint: String,
        local_ttl: Duration,
    ) -> ApiResult<Begin> {
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
        let record: Record = serde_json::from_str(&existing)
            .map_err(|e| ApiError::Internal(format!("unreadable idempotency record: {e}")))?;
        if record.fingerprint() != fingerprint {
            return Ok(Begin::Reused);
        }
        match record {
            Record::InProgress { .. } => Ok(Begin::InProgress),
            Record::Done { status, content_type, body, .. } => {
                self.count_cache("idempotency", "hit");
                let body = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .map_err(|e| ApiError::Internal(format!("unreadable idempotency record: {e}")))?;
                let status = StatusCode::from_u16(status)
                    .map_err(|e| ApiError::Internal(format!("unreadable idempotency record: {e}")))?;
                let mut response = (status, body).into_response();
                if let Some(value) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    response.headers_mut().insert(header::CONTENT_TYPE, value);
                }
                response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
                Ok(Begin::Replay(response))
            }
        }
    }

    /// Keeps a finished answer for replays.
    async fn idempotency_complete(&self, ticket: &Ticket, record: &Record, ttl: Duration) {
        let record = record.to_json();
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
    async fn idempotency_renew(&self, ticket: &Ticket) {
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
    async fn idempotency_release(&self, ticket: &Ticket) {
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

/// How long a reservation in this replica's memory outlives a request that never finishes:
/// the request timeout twice, and some.
fn local_reservation_ttl(app: &App) -> Duration {
    Duration::from_secs(2 * app.config.server.request_timeout_seconds + 10)
}

/// The middleware: requests without the header, and other routes, pass untouched.
pub async fn middleware(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let scope = ROUTES.iter().find(|(path, _)| Some(*path) == route).map(|(_, scope)| *scope);
    match scope {
        Some(scope) if request.method() == Method::POST && request.headers().contains_key(HEADER) => {
            idempotent(app, scope, request, next).await.unwrap_or_else(IntoResponse::into_response)
        }
        _ => next.run(request).await,
    }
}

async fn idempotent(app: AppState, scope: &str, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // The key belongs to the caller: authenticate first (the handler reuses the caller).
    let caller = Caller::from_request_parts(&mut parts, &app).await?;
    parts.extensions.insert(caller.clone());
    let header_key = parse_key(&parts.headers)?.unwrap_or_default();
    let header_hash = format!("{:x}", Sha256::digest(header_key.as_bytes()));
    // Read under the body limit the handler would apply (`DefaultBodyLimit`).
    let mut reading = Request::new(body);
    *reading.extensions_mut() = parts.extensions.clone();
    let bytes = Bytes::from_request(reading, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: app.config.limits.max_body_bytes }
        } else {
            ApiError::InvalidRequest(rejection.body_text())
        }
    })?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let fingerprint = fingerprint(&parts.method, &parts.uri, content_type, &bytes);
    let key = app.shared.key(&["idempotency", caller.key_id.as_str(), scope, header_hash.as_str()]);
    let ticket = match app.shared.idempotency_begin(key, fingerprint, local_reservation_ttl(&app)).await? {
        Begin::Reserved(ticket) => ticket,
        Begin::Replay(response) => return Ok(response),
        Begin::InProgress => return Err(ApiError::IdempotencyInProgress),
        Begin::Reused => return Err(ApiError::IdempotencyKeyReused),
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    // The handler and the bookkeeping run to the end on a task of their own, even when the
    // client hangs up or the request times out: the outcome is then kept (or the key freed)
    // for the retry that follows.
    let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let running = {
        let (app, ticket) = (app.clone(), ticket.clone());
        let work = async move {
            let renewal =
                ticket.on_redis.then(|| RenewalTask(tokio::spawn(renew_lease(app.clone(), ticket.clone()))));
            let response = next.run(request).await;
            drop(renewal);
            settle(&app, &ticket, response).await
        };
        tokio::spawn(REQUEST_ID.scope(request_id, work).in_current_span())
    };
    match running.await {
        Ok(response) => Ok(response),
        Err(err) => {
            app.shared.idempotency_release(&ticket).await;
            Err(ApiError::Internal(format!("the request task failed: {err}")))
        }
    }
}

/// The lease renewal of a running request; stopped when dropped, also by a panic's unwinding.
struct RenewalTask(tokio::task::JoinHandle<()>);

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the reservation until aborted when the request is over.
async fn renew_lease(app: AppState, ticket: Ticket) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        ticks.tick().await;
        app.shared.idempotency_renew(&ticket).await;
    }
}

/// Keeps a 2xx answer for replays, or frees the key after any other.
async fn settle(app: &App, ticket: &Ticket, response: Response) -> Response {
    if !response.status().is_success() {
        app.shared.idempotency_release(ticket).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            app.shared.idempotency_release(ticket).await;
            return ApiError::Internal(format!("could not read the response: {err}")).into_response();
        }
    };
    let record = Record::Done {
        fingerprint: ticket.fingerprint.clone(),
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: base64::engine::general_purpose::STANDARD.encode(&bytes),
    };
    let ttl = Duration::from_secs(app.config.redis.idempotency_ttl_seconds);
    app.shared.idempotency_complete(ticket, &record, ttl).await;
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn a_key_is_one_header_of_1_to_255_visible_ascii_characters() {
        assert_eq!(parse_key(&headers(&[])).unwrap(), None);
        assert_eq!(parse_key(&headers(&[b"order-42/retry_1"])).unwrap(), Some("order-42/retry_1"));
        let (longest, too_long) = ("k".repeat(255), "k".repeat(256));
        assert_eq!(parse_key(&headers(&[longest.as_bytes()])).unwrap(), Some(longest.as_str()));
        let bad: [&[u8]; 5] = [b"", too_long.as_bytes(), b"two words", b"tab\there", "caf\u{e9}".as_bytes()];
        for value in bad {
            let err = parse_key(&headers(&[value])).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{value:?}");
        }
        assert_eq!(parse_key(&headers(&[b"a", b"b"])).unwrap_err().code(), "invalid_request");
    }

    #[test]
    fn fingerprints_tell_requests_apart_but_not_multipart_boundaries() {
        let uri: Uri = "/v1/subjects/1/faces".parse().unwrap();
        let post = Method::POST;
        let form = |boundary: &str, image: &str| {
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n{image}\r\n--{boundary}--\r\n"
            )
        };
        let a = fingerprint(
            &post,
            &uri,
            Some("multipart/form-data; boundary=abc"),
            form("abc", "JPEG1").as_bytes(),
        );
        let b = fingerprint(
            &post,
            &uri,
            Some("multipart/form-data; boundary=\"xyz123\""),
            form("xyz123", "JPEG1").as_bytes(),
        );
        assert_eq!(a, b, "the same form with another boundary");
        let other_image = fingerprint(
            &post,
            &uri,
            Some("multipart/form-data; boundary=abc"),
            form("abc", "JPEG2").as_bytes(),
        );
        assert_ne!(a, other_image);
        let other_path =
            fingerprint(&post, &"/v1/subjects/2/faces".parse().unwrap(), Some("image/jpeg"), b"JPEG1");
        let same_path = fingerprint(&post, &uri, Some("image/jpeg"), b"JPEG1");
        assert_ne!(other_path, same_path);
        assert_ne!(
            same_path,
            fingerprint(
                &post,
                &"/v1/subjects/1/faces?liveness=require".parse().unwrap(),
                Some("image/jpeg"),
                b"JPEG1"
            )
        );
        assert_ne!(same_path, fingerprint(&post, &uri, Some("image/png"), b"JPEG1"));
        assert_eq!(same_path, fingerprint(&post, &uri, Some("IMAGE/JPEG"), b"JPEG1"));
        assert_ne!(same_path, fingerprint(&Method::PUT, &uri, Some("image/jpeg"), b"JPEG1"));
        // Fixed bytes, fixed hash: the fingerprint is SHA-256 of its parts.
        let expected = format!("{:x}", Sha256::digest(b"POST\n/v1/subjects/1/faces\nimage/jpeg\nJPEG1"));
        assert_eq!(same_path, expected);
    }

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
