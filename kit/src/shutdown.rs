//! The stop signal: one [`Stop`] per process, triggered by SIGTERM/SIGINT
//! or by a supervised task whose end is fatal, and watched by every task
//! through a [`StopWatch`] (pingora's `ShutdownWatch`, linkerd's drain).
//! One policy for all daemons: handlers that cannot be installed are a
//! start-up error, and the first signal starts the stop (a second one does
//! not cut the drain short: the orchestrator's SIGKILL does that).

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Triggers the stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop { tx: Arc::new(watch::channel(false).0) }
    }

    /// A watch for one task.
    pub fn watch(&self) -> StopWatch {
        StopWatch { rx: self.tx.subscribe() }
    }

    /// Starts the stop (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

/// What a task holds to learn that the process is stopping.
#[derive(Debug, Clone)]
pub struct StopWatch {
    rx: watch::Receiver<bool>,
}

impl StopWatch {
    /// A watch that never fires, for tests and tools that run one task alone.
    pub fn never() -> StopWatch {
        let (tx, rx) = watch::channel(false);
        // Leaked on purpose: a closed channel would read as "stopping".
        std::mem::forget(tx);
        StopWatch { rx }
    }

    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the stop was triggered (at once if it already was).
    pub async fn stopped(&mut self) {
        // An error means every `Stop` is gone: nothing can trigger any more,
        // and a process without its stop is stopping.
        drop(self.rx.wait_for(|s| *s).await);
    }

    /// The underlying channel, for code written against `watch::Receiver<bool>`.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// SIGTERM and SIGINT, installed at once so a failure is a start-up error.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs both handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Resolves with the name of the first signal received.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_watch_sees_the_trigger() {
        let stop = Stop::new();
        let (mut a, mut b) = (stop.watch(), stop.watch());
        assert!(!a.is_stopping());
        let waiter = tokio::spawn(async move { a.stopped().await });
        stop.trigger();
        waiter.await.expect("watch task");
        b.stopped().await;
        assert!(b.is_stopping() && stop.is_triggered());
        let mut late = stop.watch();
        late.stopped().await;
    }

    #[tokio::test]
    async fn a_watch_without_its_stop_reads_as_stopping() {
        let stop = Stop::new();
        let mut w = stop.watch();
        drop(stop);
        w.stopped().await;
        let never = StopWatch::never();
        assert!(!never.is_stopping());
    }
}
