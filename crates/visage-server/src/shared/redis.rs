//! State the replicas share through Redis (`redis.url`): per-key rate limits and idempotency
//! keys. Without Redis, or while it is down, each replica keeps them in its own memory and
//! goes on serving: Redis is never a reason to refuse a request.
//!
//! Every command runs under `redis.command_timeout_ms`. After a failure Redis is marked down
//! and left alone for [`BACKOFF`], so that requests do not each wait for a timeout; the first
//! request after that reconnects.

use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Script};

use crate::auth::{RateLimiter, retry_after_seconds};
use crate::config::Config;
use crate::error::ApiError;
use crate::idempotency::LocalStore;
use crate::metrics::Metrics;

/// How long Redis is left alone after a failure.
pub const BACKOFF: Duration = Duration::from_secs(1);

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

/// Redis could not be asked (not connected, in back-off, failed or timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

enum Link {
    Up(MultiplexedConnection),
    /// Not connected; the next attempt waits until `retry_at`.
    Down {
        retry_at: Instant,
    },
    /// One caller is connecting; the others use the fallbacks meanwhile.
    Connecting,
}

struct LinkState {
    link: Link,
    /// Whether the outage was logged, so that it is logged once, not per request.
    reported_down: bool,
}

struct Inner {
    client: redis::Client,
    connection_config: AsyncConnectionConfig,
    timeout: Duration,
    state: Mutex<LinkState>,
    up: IntGauge,
    errors: IntCounterVec,
}

/// A connection to Redis that is never waited on for longer than the command timeout.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_up(&self, connection: MultiplexedConnection) {
        let mut state = self.lock();
        if state.reported_down {
            tracing::info!("Redis answers again: rate limits and idempotency keys are shared");
        }
        state.reported_down = false;
        state.link = Link::Up(connection);
        self.up.set(1);
    }

    fn set_down(&self, operation: &'static str, reason: &dyn std::fmt::Display) {
        self.errors.with_label_values(&[operation]).inc();
        let mut state = self.lock();
        if !state.reported_down {
            tracing::warn!(
                operation,
                error = %reason,
                "Redis is unavailable: rate limits and idempotency keys are per replica until it is back"
            );
        }
        state.reported_down = true;
        state.link = Link::Down { retry_at: Instant::now() + BACKOFF };
        self.up.set(0);
    }

    async fn connect(&self) -> Option<MultiplexedConnection> {
        let attempt = self.client.get_multiplexed_async_connection_with_config(&self.connection_config);
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(connection)) => {
                self.set_up(connection.clone());
                Some(connection)
            }
            Ok(Err(err)) => {
                self.set_down("connect", &err);
                None
            }
            Err(_) => {
                self.set_down("connect", &"connection attempt timed out");
                None
            }
        }
    }
}

impl Redis {
    /// Prepares the client (parsing the URL); nothing is connected yet.
    pub fn new(url: &str, timeout: Duration, metrics: &Metrics) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let inner = Arc::new(Inner {
            client,
            connection_config,
            timeout,
            state: Mutex::new(LinkState {
                link: Link::Down { retry_at: Instant::now() },
                reported_down: false,
            }),
            up: metrics.redis_up(),
            errors: metrics.redis_errors.clone(),
        });
        Ok(Self { inner })
    }

    /// The connection, connecting when the back-off is over. While another caller connects,
    /// or during the back-off, there is none: the caller falls back at once.
    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        {
            let mut state = self.inner.lock();
            match &state.link {
                Link::Up(connection) => return Ok(connection.clone()),
                Link::Connecting => return Err(Unavailable),
                Link::Down { retry_at } if Instant::now() < *retry_at => return Err(Unavailable),
                Link::Down { .. } => state.link = Link::Connecting,
            }
        }
        // On a task of its own, so that the link is settled even when the request that started
        // the attempt is dropped halfway.
        let inner = self.inner.clone();
        let attempt = tokio::spawn(async move { inner.connect().await });
        attempt.await.ok().flatten().ok_or(Unavailable)
    }

    /// Runs one command (or script) under the timeout; a failure marks Redis down.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, command: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.connection().await?;
        match tokio::time::timeout(self.inner.timeout, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                self.inner.set_down(operation, &err);
                Err(Unavailable)
            }
            Err(_) => {
                self.inner.set_down(operation, &"command timed out");
                Err(Unavailable)
            }
        }
    }

    /// Asks Redis whether it answers (reconnecting when the back-off is over).
    pub async fn ping(&self) -> bool {
        let answer = self
            .run("ping", |mut connection| async move {
                redis::cmd("PING").query_async::<String>(&mut connection).await
            })
            .await;
        if answer.is_err() {
            // Also during the back-off, when no command was sent.
            self.inner.up.set(0);
        }
        answer.is_ok()
    }
}

/// Rate limits and idempotency keys: in Redis when it answers, else in this process.
pub struct SharedState {
    redis: Option<Redis>,
    key_prefix: String,
    requests_per_second: f64,
    burst: u32,
    /// The fallback (and, without Redis, the only) rate limiter.
    local_limiter: RateLimiter,
    pub(crate) local_idempotency: LocalStore,
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

    pub(crate) fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// A Redis key under the configured prefix.
    pub(crate) fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.key_prefix, parts.join(":"))
    }

    pub(crate) fn count_fallback(&self, feature: &'static str) {
        self.fallbacks.with_label_values(&[feature]).inc();
    }

    pub(crate) fn count_cache(&self, cache: &'static str, result: &'static str) {
        self.cache_requests.with_label_values(&[cache, result]).inc();
    }

    /// Takes a token from the key's bucket: the bucket in Redis, shared by all replicas, or
    /// this replica's own while Redis does not answer.
    pub async fn check_rate_limit(&self, key_id: &str) -> Result<(), ApiError> {
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
                    return Err(ApiError::RateLimited { retry_after: retry_after_seconds(wait) });
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
