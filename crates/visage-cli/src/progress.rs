//! Progress of long runs (evaluation, calibration, re-embedding) on stderr, with counts and an
//! estimated time to completion.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// A line redrawn in place on a terminal, a line per 5% otherwise (logs stay short).
pub struct Progress {
    what: &'static str,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Self {
        Self {
            what,
            total,
            done: AtomicUsize::new(0),
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        // Work found after the start (enrolments during a re-embedding) grows the total.
        let total = self.total.max(done);
        let step = (total / 20).max(1);
        if !(self.terminal || done.is_multiple_of(step) || done == total) {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = elapsed / done as f64 * (total - done) as f64;
        let width = 30;
        let filled = done * width / total.max(1);
        let line = format!(
            "{} [{}{}] {done}/{total} {elapsed:.0}s, eta {eta:.0}s",
            self.what,
            "#".repeat(filled),
            "-".repeat(width - filled),
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}");
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// A [`Progress`] that starts when the service's operation knows its total.
#[derive(Default)]
pub struct Deferred(OnceLock<Progress>);

impl visage_server::jobs::reembed::Progress for Deferred {
    fn start(&self, what: &'static str, total: u64) {
        let _ = self.0.set(Progress::new(what, total as usize));
    }

    fn tick(&self) {
        if let Some(progress) = self.0.get() {
            progress.tick();
        }
    }
}
