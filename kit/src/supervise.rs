//! Supervision of long-lived tasks: every task's end is logged with its
//! reason (returned, failed with an error, panicked), and either restarts
//! it after a backoff ([`OnEnd::Restart`]) or stops the whole process with
//! a non-zero status ([`OnEnd::Exit`]). A task that is down shows in
//! [`Health`] so `/health` can say so. Every task gets a [`StopWatch`]; an
//! end while the process is stopping is the normal way out.
//!
//! Before this, a panicked discovery task left the router routing with a
//! frozen table and `/health` at 200, and a panicked registrar sync loop
//! ended the process with status 0.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::shutdown::{Signals, Stop, StopWatch};

/// What to do when a task ends while the process is not stopping.
#[derive(Debug, Clone)]
pub enum OnEnd {
    /// Start it again after the backoff's next delay. The backoff resets
    /// once a run outlived the backoff's cap.
    Restart(Backoff),
    /// The process cannot do its job without it: stop everything and exit
    /// non-zero.
    Exit,
}

/// Which supervised tasks are down, and why.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<BTreeMap<&'static str, String>>,
}

impl Health {
    /// Tasks not running right now (ended, waiting for a restart or for the
    /// process to stop), with the reason of their end.
    pub fn down(&self) -> Vec<(&'static str, String)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Marks `task` down with `reason`, or up again with `None` (the
    /// supervisor does this; public so a health page can be tested).
    pub fn set(&self, task: &'static str, reason: Option<String>) {
        let mut down = self.lock();
        match reason {
            Some(r) => down.insert(task, r),
            None => down.remove(task),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        // The map is always consistent (one insert or remove at a time).
        self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why the process stopped with a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} ended: {reason}")]
pub struct Fatal {
    pub task: &'static str,
    pub reason: String,
}

/// Owns the process's tasks and its stop.
pub struct Supervisor {
    stop: Stop,
    health: Arc<Health>,
    guards: JoinSet<()>,
    fatal_tx: mpsc::UnboundedSender<Fatal>,
    fatal_rx: mpsc::UnboundedReceiver<Fatal>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        Supervisor { stop: Stop::new(), health: Arc::default(), guards: JoinSet::new(), fatal_tx, fatal_rx }
    }

    /// The process's stop (to trigger it from elsewhere, or to watch it).
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs `make(stop)` now and, per `on_end`, again each time it ends
    /// before the process stops.
    pub fn spawn<F, Fut, E>(&mut self, task: &'static str, on_end: OnEnd, mut make: F)
    where
        F: FnMut(StopWatch) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.guard(task, on_end, move |stop| Some(make(stop)));
    }

    /// Runs a task that owns what it runs on (a listener): it cannot be
    /// started twice, so its end stops the process ([`OnEnd::Exit`]).
    pub fn spawn_essential<F, Fut, E>(&mut self, task: &'static str, make: F)
    where
        F: FnOnce(StopWatch) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let mut make = Some(make);
        self.guard(task, OnEnd::Exit, move |stop| make.take().map(|f| f(stop)));
    }

    /// The loop around one task.
    fn guard<F, Fut, E>(&mut self, task: &'static str, mut on_end: OnEnd, mut make: F)
    where
        F: FnMut(StopWatch) -> Option<Fut> + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let stop = self.stop.clone();
        let health = self.health.clone();
        let fatal = self.fatal_tx.clone();
        self.guards.spawn(async move {
            let mut watch = stop.watch();
            loop {
                let started = Instant::now();
                // In a set of one so that dropping the guard aborts the run.
                // Only `spawn_essential`'s factory gives `None`, after its one
                // run, which `OnEnd::Exit` never asks for again.
                let Some(fut) = make(stop.watch()) else { return };
                let mut run = JoinSet::new();
                run.spawn(fut);
                let Some(end) = run.join_next().await else { return };
                if stop.is_triggered() {
                    match end {
                        Ok(Ok(())) => tracing::debug!(task, "task stopped"),
                        other => tracing::warn!(task, reason = %reason(other), "task ended badly while stopping"),
                    }
                    return;
                }
                let why = reason(end);
                health.set(task, Some(why.clone()));
                match &mut on_end {
                    OnEnd::Exit => {
                        tracing::error!(task, reason = %why, "essential task ended; stopping the process");
                        let _ = fatal.send(Fatal { task, reason: why });
                        stop.trigger();
                        return;
                    }
                    OnEnd::Restart(backoff) => {
                        if started.elapsed() > backoff.cap() {
                            backoff.reset();
                        }
                        let delay = backoff.next_delay();
                        tracing::error!(task, reason = %why, restart_in = ?delay, "task ended; restarting");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = watch.stopped() => return,
                        }
                        health.set(task, None);
                        tracing::info!(task, "task restarted");
                    }
                }
            }
        });
    }

    /// Waits for SIGTERM/SIGINT, a fatal task end or a trigger of
    /// [`Supervisor::stop`] from elsewhere, stops every task and
    /// waits up to `grace` for them to finish (the rest are abandoned with
    /// a warning). `Err` names the task whose end stopped the process.
    pub async fn run(mut self, mut signals: Signals, grace: Duration) -> Result<(), Fatal> {
        let mut stopped = self.stop.watch();
        let fatal = tokio::select! {
            biased;
            Some(f) = self.fatal_rx.recv() => Some(f),
            name = signals.recv() => {
                tracing::info!(signal = name, "shutting down");
                None
            }
            () = stopped.stopped() => None,
        };
        self.stop.trigger();
        let all_done = async { while self.guards.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(left = self.guards.len(), grace = ?grace, "tasks still running after the grace; abandoned");
        }
        // A second fatal end while stopping does not replace the first.
        match fatal {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The reason of one run's end, in words.
fn reason<E: Display>(end: Result<Result<(), E>, JoinError>) -> String {
    match end {
        Ok(Ok(())) => "returned".to_string(),
        Ok(Err(e)) => format!("failed: {e:#}"),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text payload".to_string());
            format!("panicked: {msg}")
        }
        Err(_) => "cancelled".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> OnEnd {
        OnEnd::Restart(Backoff::new(Duration::from_millis(1), Duration::from_millis(2)))
    }

    #[tokio::test]
    async fn a_panicked_task_is_restarted_and_shown_down_meanwhile() {
        let mut sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let (r, health) = (runs.clone(), sup.health());
        sup.spawn("flaky", quick(), move |mut stop| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let (seen, health) = (seen_tx.clone(), health.clone());
            async move {
                // What the health said while this run was being started.
                let _ = seen.send(health.down());
                if n < 2 {
                    panic!("run {n} broke");
                }
                stop.stopped().await;
                Ok::<(), String>(())
            }
        });
        assert_eq!(seen_rx.recv().await, Some(vec![]));
        // Restarted twice; health is clear again once a run is up.
        assert_eq!(seen_rx.recv().await, Some(vec![]));
        assert_eq!(seen_rx.recv().await, Some(vec![]));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        sup.stop().trigger();
        let signals = Signals::install().expect("signal handlers");
        assert_eq!(sup.run(signals, Duration::from_secs(5)).await, Ok(()));
    }

    #[tokio::test]
    async fn health_holds_the_reason_while_a_task_waits_for_its_restart() {
        let mut sup = Supervisor::new();
        let health = sup.health();
        sup.spawn(
            "slow-restart",
            OnEnd::Restart(Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600))),
            |_| async { Err::<(), _>("lost Consul") },
        );
        while health.down().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(health.down(), vec![("slow-restart", "failed: lost Consul".to_string())]);
        sup.stop().trigger();
        let signals = Signals::install().expect("signal handlers");
        assert_eq!(sup.run(signals, Duration::from_secs(5)).await, Ok(()), "the stop cuts the restart wait");
    }

    #[tokio::test]
    async fn an_essential_task_ending_stops_every_task_and_fails_the_run() {
        let mut sup = Supervisor::new();
        let (stopped_tx, mut stopped_rx) = mpsc::unbounded_channel();
        sup.spawn("worker", quick(), move |mut stop| {
            let stopped = stopped_tx.clone();
            async move {
                stop.stopped().await;
                let _ = stopped.send(());
                Ok::<(), String>(())
            }
        });
        sup.spawn("sync", OnEnd::Exit, |_| async { Ok::<(), String>(()) });
        let signals = Signals::install().expect("signal handlers");
        let end = sup.run(signals, Duration::from_secs(5)).await;
        assert_eq!(end, Err(Fatal { task: "sync", reason: "returned".into() }));
        assert_eq!(stopped_rx.recv().await, Some(()), "the other task saw the stop");
    }

    #[tokio::test]
    async fn a_task_ignoring_the_stop_is_abandoned_after_the_grace() {
        let mut sup = Supervisor::new();
        sup.spawn("stubborn", quick(), |_| std::future::pending::<Result<(), String>>());
        sup.stop().trigger();
        let signals = Signals::install().expect("signal handlers");
        assert_eq!(sup.run(signals, Duration::from_millis(20)).await, Ok(()));
    }

    #[test]
    fn reasons_name_how_a_task_ended() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let panicked = rt.block_on(async { tokio::spawn(async { panic!("boom") }).await });
        assert_eq!(reason::<String>(panicked.map(|()| Ok(()))), "panicked: boom");
        assert_eq!(reason::<String>(Ok(Err("no leader".into()))), "failed: no leader");
        assert_eq!(reason::<String>(Ok(Ok(()))), "returned");
    }
}
