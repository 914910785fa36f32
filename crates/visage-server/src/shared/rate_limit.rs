//! Per-key token buckets in this process: the rate limiter without Redis, and the fallback
//! while Redis is down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A key sent more requests than its rate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {retry_after} s")]
pub struct RateLimited {
    /// Whole seconds until the key's bucket has a token again.
    pub retry_after: u64,
}

/// Token buckets per key id, in this process: the limiter without Redis, and the fallback while
/// Redis is down (the shared buckets are in Redis, see [`super::SharedState::check_rate_limit`]).
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

    pub fn check(&self, key_id: &str) -> Result<(), RateLimited> {
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
            Err(RateLimited { retry_after })
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
        assert!(matches!(limiter.check("k"), Err(RateLimited { retry_after: 2 })));
        limiter.check("other").unwrap();
        let off = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            off.check("k").unwrap();
        }
    }
}
