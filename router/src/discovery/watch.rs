//! One blocking-query loop, shared by every watch (nodes, one per node,
//! checks, overrides): block on the index, hand each change to the
//! coordinator, and on any failure (unreachable, an error status, no known
//! leader, or no answer within twice the wait) keep nothing new, count the
//! error, back off and read again from index 0 so a restarted Consul with a
//! lower index is not waited on for a whole wait period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use consul::{QueryOptions, Response, WatchIndex};
use rand::Rng;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::status::Shared;

/// Timing of every watch.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Wait time sent to Consul with each blocking read.
    pub wait: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// Marks the watch as failing in [`super::status::Status`] while it is, and
/// clears the mark if the watch is cancelled mid-failure.
struct FailMark {
    shared: Arc<Shared>,
    failing: bool,
}

impl FailMark {
    fn set(&mut self, failing: bool) {
        if self.failing != failing {
            self.failing = failing;
            self.shared.status.mark_failing(failing);
        }
    }
}

impl Drop for FailMark {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Runs until the coordinator's channel closes. `read` performs one read
/// with the given options; `event` turns a changed value into the message.
pub async fn run<T, E, F, Fut>(
    name: String,
    timing: Timing,
    shared: Arc<Shared>,
    tx: mpsc::Sender<E>,
    mut read: F,
    event: impl Fn(T, u64) -> E,
) where
    F: FnMut(QueryOptions) -> Fut,
    Fut: Future<Output = Result<Response<T>, consul::Error>>,
{
    let mut index = WatchIndex::new();
    let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max);
    let mut mark = FailMark { shared: shared.clone(), failing: false };
    let limit = timing.wait * 2;
    loop {
        let opts = QueryOptions::blocking(index.get(), timing.wait);
        let error = match tokio::time::timeout(limit, read(opts)).await {
            Err(_) => format!("no answer within {}; restarting the watch", humantime::format_duration(limit)),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(r)) if !r.known_leader => "Consul has no known leader; keeping the last good state".to_string(),
            Ok(Ok(r)) => {
                mark.set(false);
                backoff.reset();
                if index.advance(r.index) {
                    tracing::trace!(watch = %name, index = r.index, "changed");
                    if tx.send(event(r.value, r.index)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        mark.set(true);
        shared.status.record_error(format!("{name}: {error}"));
        index.reset();
        let delay = backoff.next_delay();
        let jitter = Duration::from_millis(rand::rng().random_range(0..=delay.as_millis() as u64 / 4));
        tracing::warn!(watch = %name, %error, retry_in = ?(delay + jitter), "Consul read failed");
        tokio::time::sleep(delay + jitter).await;
        if tx.is_closed() {
            return;
        }
    }
}
