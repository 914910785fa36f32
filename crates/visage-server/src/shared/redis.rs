//! The connection to Redis (`redis.url`) that no request ever waits on for longer than
//! `redis.command_timeout_ms`. After a failure Redis is marked down and left alone for
//! [`BACKOFF`], so that requests do not each wait for a timeout; the first request after that
//! reconnects.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use crate::observability::Metrics;

/// How long Redis is left alone after a failure.
pub const BACKOFF: Duration = Duration::from_secs(1);

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
