//! State the replicas share through Redis (`redis.url`): per-key rate limits and idempotency
//! keys. Without Redis, or while it is down, each replica keeps them in its own memory and
//! goes on serving: Redis is never a reason to refuse a request.

pub mod idempotency;
pub mod rate_limit;
pub mod redis;

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use prometheus::IntCounterVec;

use self::idempotency::LocalStore;
use self::rate_limit::{RateLimited, RateLimiter, retry_after_seconds};
use self::redis::{Redis, Unavailable};
use crate::config::Config;
use crate::observability::Metrics;

/// What `/health/ready` says about Redis.
pub const REDIS_UNAVAILABLE: &str = "unavailable: rate limits and idempotency keys are per replica";

/// A token bucket per API key (KEYS[1]) with ARGV[1] tokens per second and room for ARGV[2]:
/// the semantics of [`RateLimiter`], on Redis' clock so that every replica sees the same time.
/// Returns `{1, "0"}` when a token was taken, else `{0, seconds until there is one}`.
static RATE_LIMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1]) or burst
local at = tonumber(stored[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.6f', now))
-- Gone once it would be full again (at most 30 days): absent means full.
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst / rate * 1000) + 1000, 2592000000))
return {taken, string.format('%.17g', wait)}
",
    )
});

/// Rate limits and idempotency keys: in Redis when it answers, else in this process.
pub struct SharedState {
    redis: Option<Redis>,
    key_prefix: String,
    requests_per_second: f64,
    burst: u32,
    /// The fallback (and, without Redis, the only) rate limiter.
    local_limiter: RateLimiter,
    local_idempotency: LocalStore,
    fallbacks: IntCounterVec,
    cache_requests: IntCounterVec,
}

impl SharedState {
    /// Connects to Redis when one is configured. A Redis that does not answer (or a URL the
    /// client cannot use) is logged, not fatal: the service starts on the fallbacks and
    /// connects later.
    pub async fn connect(config: &Config, metrics: &Metrics) -> Self {
        let redis = config.redis.redis_url().and_then(|url| {
            let timeout = Duration::from_millis(config.redis.command_timeout_ms);
            match Redis::new(url, timeout, metrics) {
                Ok(redis) => Some(redis),
                Err(err) => {
                    tracing::error!(error = %err, "redis.url cannot be used: running without Redis");
                    None
                }
            }
        });
        if let Some(redis) = &redis
            && redis.ping().await
        {
            tracing::info!("Redis answers: rate limits and idempotency keys are shared by the replicas");
        }
        let rate = &config.rate_limit;
        Self {
            redis,
            key_prefix: config.redis.key_prefix.clone(),
            requests_per_second: rate.requests_per_second,
            burst: rate.burst,
            local_limiter: RateLimiter::new(rate.requests_per_second, rate.burst),
            local_idempotency: LocalStore::default(),
            fallbacks: metrics.redis_fallbacks.clone(),
            cache_requests: metrics.cache_requests.clone(),
        }
    }

    fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// A Redis key under the configured prefix.
    pub(crate) fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.key_prefix, parts.join(":"))
    }

    fn count_fallback(&self, feature: &'static str) {
        self.fallbacks.with_label_values(&[feature]).inc();
    }

    fn count_cache(&self, cache: &'static str, result: &'static str) {
        self.cache_requests.with_label_values(&[cache, result]).inc();
    }

    /// Takes a token from the key's bucket: the bucket in Redis, shared by all replicas, or
    /// this replica's own while Redis does not answer.
    pub async fn check_rate_limit(&self, key_id: &str) -> Result<(), RateLimited> {
        if self.requests_per_second <= 0.0 {
            return Ok(());
        }
        if let Some(redis) = &self.redis {
            let key = self.key(&["rate", key_id]);
            let (per_second, burst) = (self.requests_per_second, self.burst.max(1));
            let decided = redis
                .run("rate_limit", |mut connection| async move {
                    RATE_LIMIT
                        .key(key)
                        .arg(per_second)
                        .arg(burst)
                        .invoke_async::<(i64, String)>(&mut connection)
                        .await
                })
                .await;
            match decided {
                Ok((1, _)) => return Ok(()),
                Ok((_, wait)) => {
                    let wait = wait.parse::<f64>().unwrap_or(1.0);
                    return Err(RateLimited { retry_after: retry_after_seconds(wait) });
                }
                Err(Unavailable) => self.count_fallback("rate_limit"),
            }
        }
        self.local_limiter.check(key_id)
    }

    /// `checks.redis` of the readiness answer. Redis being down does not make the service
    /// unready: it goes on with per-replica state.
    pub async fn readiness(&self) -> &'static str {
        match &self.redis {
            None => "not configured",
            Some(redis) if redis.ping().await => "ok",
            Some(_) => REDIS_UNAVAILABLE,
        }
    }

    /// Brings `redis_up` up to date (at scrape time).
    pub async fn refresh_metrics(&self) {
        if let Some(redis) = &self.redis {
            redis.ping().await;
        }
    }
}
