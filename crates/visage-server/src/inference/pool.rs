//! Inference off the async runtime: a fixed set of threads fed through a bounded queue. A full
//! queue is refused at once (503 `overloaded`) instead of building an unbounded backlog.
//!
//! Under sustained overload a full queue alone would make every accepted request wait for the
//! whole queue ahead of it. So the workers also shed load the way CoDel does for packets: when
//! the jobs they pick up have waited longer than a target (`inference.max_queue_wait_ms`) for
//! longer than a grace period (five targets), a job that has waited longer than the target is
//! answered `overloaded` instead of run. A burst shorter than the grace period is queued as
//! before; under overload the accepted requests wait about the target at most
//! (docs/reliability.md has the figures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::pipeline::Pipeline;

/// The work of a job: run with the pipeline, or (`None`) answered `overloaded` without running.
type Task = Box<dyn FnOnce(Option<&Pipeline>) + Send>;

struct Job {
    queued_at: Instant,
    task: Task,
}

/// Why a job did not run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// Every worker is busy and the queue is full, or jobs have waited too long for a while:
    /// try again shortly.
    #[error("the inference queue is full")]
    Overloaded,
    #[error("the inference pool has stopped")]
    Stopped,
    #[error("an inference job panicked")]
    Panicked,
}

/// How long a job may wait in the queue, once waits have stayed above it for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueWait {
    /// Only the queue's capacity bounds it (offline work, which should wait).
    Unbounded,
    At(Duration),
}

/// Grace period of the shedding, in targets: waits above the target for shorter than this are
/// a burst, not overload.
const GRACE_TARGETS: u32 = 5;

pub struct InferencePool {
    sender: SyncSender<Job>,
    shared: Arc<Shared>,
    workers: usize,
    batch_size: usize,
}

/// What the pool and its workers share.
struct Shared {
    waiting: AtomicUsize,
    busy: AtomicUsize,
    max_wait: Mutex<QueueWait>,
    shedding: Mutex<Shedding>,
}

#[derive(Default)]
struct Shedding {
    /// When waits above the target, unbroken since, become overload.
    overload_from: Option<Instant>,
    /// The last job refused. Overload that has just been shed is not a burst: without this,
    /// every job that happens to wait less than the target would open a new grace period, and
    /// the stale jobs queued behind it would run in it.
    last_shed: Option<Instant>,
}

impl Shared {
    fn target(&self) -> Option<Duration> {
        match *self.max_wait.lock().unwrap_or_else(|p| p.into_inner()) {
            QueueWait::Unbounded => None,
            QueueWait::At(limit) => Some(limit),
        }
    }

    /// Whether a job that waited `waited` is run (else it is refused as overload).
    fn admits(&self, waited: Duration, now: Instant) -> bool {
        let Some(target) = self.target() else { return true };
        let mut shedding = self.shedding.lock().unwrap_or_else(|p| p.into_inner());
        if waited < target {
            shedding.overload_from = None;
            return true;
        }
        let grace = target * GRACE_TARGETS;
        let shedding_lately =
            shedding.last_shed.is_some_and(|at| now.saturating_duration_since(at) < grace * 4);
        let overloaded = match shedding.overload_from {
            _ if shedding_lately => true,
            None => {
                shedding.overload_from = Some(now + grace);
                false
            }
            Some(from) => now >= from,
        };
        if overloaded {
            shedding.last_shed = Some(now);
        }
        !overloaded
    }
}

impl InferencePool {
    /// Starts `workers` threads; up to `queue_capacity` jobs may wait for one of them.
    pub fn start(pipeline: Arc<Pipeline>, workers: usize, queue_capacity: usize) -> Self {
        let batch_size = pipeline.engine.batch_size();
        let (sender, receiver) = sync_channel::<Job>(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            waiting: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            max_wait: Mutex::new(QueueWait::Unbounded),
            shedding: Mutex::new(Shedding::default()),
        });
        for index in 0..workers {
            let (receiver, pipeline, shared) = (receiver.clone(), pipeline.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("inference-{index}"))
                .spawn(move || worker(&receiver, &pipeline, &shared))
                .expect("spawning an inference thread");
        }
        Self { sender, shared, workers, batch_size }
    }

    /// Sheds jobs that waited longer than `max_wait` once waits have stayed above it for a
    /// while (see the module's documentation).
    pub fn with_max_queue_wait(self, max_wait: QueueWait) -> Self {
        *self.shared.max_wait.lock().unwrap_or_else(|p| p.into_inner()) = max_wait;
        self
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Faces the recognizer embeds in one inference ([`Pipeline::probe_many`] with more
    /// images embeds them in several).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// How many of `count` images one job takes ([`Pipeline::probe_many`]): see [`share`].
    pub fn share(&self, count: usize) -> usize {
        share(count, self.workers, self.batch_size)
    }

    /// Workers running a job now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Jobs accepted but not yet picked up by a worker.
    pub fn queue_depth(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Runs `work` on an inference thread and waits for its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, InferenceError>
    where
        T: Send + 'static,
        F: FnOnce(&Pipeline) -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        // The job runs in the caller's span and under its subscriber (which a test may have
        // scoped to itself), so the stage spans join the request's trace.
        let span = tracing::Span::current();
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        let task: Task = Box::new(move |pipeline: Option<&Pipeline>| {
            let Some(pipeline) = pipeline else {
                let _ = reply.send(Err(InferenceError::Overloaded));
                return;
            };
            // The caller may have gone while the job waited (client disconnected, request timed
            // out): its work would be thrown away.
            if reply.is_closed() {
                return;
            }
            tracing::dispatcher::with_default(&dispatch, || {
                let _entered = span.enter();
                let _ = reply.send(Ok(work(pipeline)));
            });
        });
        self.shared.waiting.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job { queued_at: Instant::now(), task }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(InferenceError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(InferenceError::Stopped);
            }
        }
        result.await.map_err(|_| InferenceError::Panicked)?
    }
}

/// How many of `count` images one job takes: batches as large as the recognizer takes (fewer
/// inferences), yet at least one job per worker while the images allow (an idle pool answers
/// a request of 4 images as two jobs of 2, side by side, sooner than one job of 4).
fn share(count: usize, workers: usize, batch_size: usize) -> usize {
    let jobs = count.div_ceil(batch_size.max(1)).max(count.min(workers)).max(1);
    count.div_ceil(jobs).max(1)
}

fn worker(receiver: &Mutex<Receiver<Job>>, pipeline: &Pipeline, shared: &Shared) {
    loop {
        let job = {
            let guard = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        shared.waiting.fetch_sub(1, Ordering::Relaxed);
        let now = Instant::now();
        if !shared.admits(now - job.queued_at, now) {
            (job.task)(None);
            continue;
        }
        shared.busy.fetch_add(1, Ordering::Relaxed);
        // A panic in one job must not take the worker down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.task)(Some(pipeline))));
        shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_wait: QueueWait) -> Shared {
        Shared {
            waiting: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            max_wait: Mutex::new(max_wait),
            shedding: Mutex::new(Shedding::default()),
        }
    }

    #[test]
    fn images_are_shared_in_batches_over_every_worker() {
        // (images, workers, batch size) -> images per job
        for (count, workers, batch, per_job) in [
            (1, 2, 4, 1),
            (2, 2, 4, 1),
            (4, 2, 4, 2),
            (5, 2, 4, 3),
            (8, 2, 4, 4),
            (10, 2, 4, 4),
            (32, 2, 4, 4),
            (4, 2, 1, 1),
            (4, 8, 4, 1),
            (0, 2, 4, 1),
        ] {
            assert_eq!(
                share(count, workers, batch),
                per_job,
                "{count} images, {workers} workers, batch {batch}"
            );
        }
    }

    /// A burst (waits above the target for less than the grace period) is run; waits above it
    /// for longer start the shedding, which a job that waited less than the target ends.
    #[test]
    fn sheds_only_after_waits_stay_above_the_target_for_the_grace_period() {
        // A 20 ms target: a 100 ms grace period.
        let pool = shared(QueueWait::At(Duration::from_millis(20)));
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        assert!(pool.admits(ms(10), t0), "under the target");
        assert!(pool.admits(ms(60), t0), "above it: the grace period starts");
        assert!(pool.admits(ms(90), t0 + ms(90)), "still a burst at 90 ms of 100");
        assert!(!pool.admits(ms(95), t0 + ms(100)), "overload: shed");
        assert!(!pool.admits(ms(21), t0 + ms(101)), "shedding goes on above the target");
        assert!(pool.admits(ms(19), t0 + ms(102)), "a short wait is run");
        assert!(!pool.admits(ms(25), t0 + ms(103)), "but overload shed lately is no burst: no new grace");
        assert!(pool.admits(ms(10), t0 + ms(1000)), "once it is over...");
        assert!(pool.admits(ms(80), t0 + ms(1001)), "...a new burst gets its grace period");
        assert!(shared(QueueWait::Unbounded).admits(ms(10_000), t0), "offline work always waits");
        let fixed = shared(QueueWait::At(ms(100)));
        assert!(fixed.admits(ms(150), t0) && !fixed.admits(ms(150), t0 + ms(500)), "a 500 ms grace period");
    }
}
