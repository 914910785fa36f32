//! Inference off the async runtime: a fixed set of threads fed through a bounded queue. A full
//! queue is refused at once (503 `overloaded`) instead of building an unbounded backlog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::pipeline::Pipeline;

type Job = Box<dyn FnOnce(&Pipeline) + Send>;

/// Why a job did not run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// Every worker is busy and the queue is full: try again shortly.
    #[error("the inference queue is full")]
    Overloaded,
    #[error("the inference pool has stopped")]
    Stopped,
    #[error("an inference job panicked")]
    Panicked,
}

pub struct InferencePool {
    sender: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
    workers: usize,
}

impl InferencePool {
    /// Starts `workers` threads; up to `queue_capacity` jobs may wait for one of them.
    pub fn start(pipeline: Arc<Pipeline>, workers: usize, queue_capacity: usize) -> Self {
        let (sender, receiver) = sync_channel::<Job>(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let waiting = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        for index in 0..workers {
            let (receiver, pipeline) = (receiver.clone(), pipeline.clone());
            let (waiting, busy) = (waiting.clone(), busy.clone());
            std::thread::Builder::new()
                .name(format!("inference-{index}"))
                .spawn(move || worker(&receiver, &pipeline, &waiting, &busy))
                .expect("spawning an inference thread");
        }
        Self { sender, waiting, busy, workers }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Workers running a job now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Jobs accepted but not yet picked up by a worker.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
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
        let job: Job = Box::new(move |pipeline| {
            tracing::dispatcher::with_default(&dispatch, || {
                let _entered = span.enter();
                // The caller may have gone (client disconnected); the result is then dropped.
                let _ = reply.send(work(pipeline));
            });
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(InferenceError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(InferenceError::Stopped);
            }
        }
        result.await.map_err(|_| InferenceError::Panicked)
    }
}

fn worker(receiver: &Mutex<Receiver<Job>>, pipeline: &Pipeline, waiting: &AtomicUsize, busy: &AtomicUsize) {
    loop {
        let job = {
            let guard = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        waiting.fetch_sub(1, Ordering::Relaxed);
        busy.fetch_add(1, Ordering::Relaxed);
        // A panic in one job must not take the worker down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(pipeline)));
        busy.fetch_sub(1, Ordering::Relaxed);
    }
}
