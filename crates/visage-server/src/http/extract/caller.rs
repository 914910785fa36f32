//! API keys (`Authorization: Bearer vsg_…` or `X-API-Key: vsg_…`), roles, collection scopes
//! and per-key rate limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use visage_store::{CollectionId, CollectionScope, Role, apikey};

use crate::app::AppState;
use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
    pub scope: CollectionScope,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.includes(role) { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    pub fn require_in(&self, role: Role, collection: &CollectionId) -> Result<(), ApiError> {
        self.require(role)?;
        if self.scope.allows(collection) { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get("x-api-key") {
        return value.to_str().ok();
    }
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Already authenticated (and counted) by a middleware that needed the caller first.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = presented_token(parts).ok_or(ApiError::Unauthorized)?;
        let (id, secret) = apikey::parse(token).ok_or(ApiError::Unauthorized)?;
        let record = state.store.get_api_key(id).await?.ok_or(ApiError::Unauthorized)?;
        if record.revoked_at.is_some() || !apikey::matches(secret, &record.secret_hash) {
            return Err(ApiError::Unauthorized);
        }
        state.shared.check_rate_limit(&record.id).await?;
        Ok(Caller { key_id: record.id, role: record.role, scope: record.scope })
    }
}

/// Token buckets per key id, in this process: the limiter without Redis, and the fallback while
/// Redis is down (`shared_state` keeps the shared buckets in Redis).
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refreshed: Instant,
}

impl RateLimiter {
    /// `per_second` of 0 turns limiting off.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket =
            buckets.entry(key_id.to_owned()).or_insert(Bucket { tokens: self.burst, refreshed: now });
        let elapsed = now.duration_since(bucket.refreshed).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refreshed = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let retry_after = retry_after_seconds((1.0 - bucket.tokens) / self.per_second);
            Err(ApiError::RateLimited { retry_after })
        }
    }
}

/// `Retry-After` for a bucket that has a token again in `wait` seconds: whole seconds, at least 1.
pub(crate) fn retry_after_seconds(wait: f64) -> u64 {
    wait.ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let limiter = RateLimiter::new(0.5, 3);
        for _ in 0..3 {
            limiter.check("k").unwrap();
        }
        assert!(matches!(limiter.check("k"), Err(ApiError::RateLimited { retry_after: 2 })));
        limiter.check("other").unwrap();
        let off = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            off.check("k").unwrap();
        }
    }
}
