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

use super::status::Shared;
use consul::Backoff;

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

#[cfg(test)]
mod tests {
    //! The loop against a scripted Consul: what is delivered, what is
    //! counted, which index is sent after an error. Timings are tiny so a
    //! hung read is abandoned quickly; no assertion is about elapsed time.

    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use super::*;

    enum Answer {
        Value(&'static str, u64),
        NoLeader(u64),
        Error,
        Hang,
    }

    type Read = Pin<Box<dyn Future<Output = Result<Response<&'static str>, consul::Error>> + Send>>;

    /// What [`start`] hands back: delivered events, the indexes sent, the task.
    type Started = (mpsc::Receiver<(&'static str, u64)>, Arc<Mutex<Vec<u64>>>, tokio::task::JoinHandle<()>);

    /// Runs the loop over `script` (then hangs forever); returns the events
    /// channel, the indexes the loop sent, and the task.
    fn start(shared: Arc<Shared>, script: Vec<Answer>) -> Started {
        let timing = Timing {
            wait: Duration::from_millis(10),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
        };
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(16);
        let seen = sent.clone();
        let read = move |o: QueryOptions| -> Read {
            seen.lock().unwrap().push(o.index);
            let next = script.lock().unwrap().pop_front().unwrap_or(Answer::Hang);
            let resp = |value, index, known_leader| Response { value, index, known_leader, last_contact_ms: 0 };
            Box::pin(async move {
                match next {
                    Answer::Value(v, i) => Ok(resp(v, i, true)),
                    Answer::NoLeader(i) => Ok(resp("stale", i, false)),
                    Answer::Error => Err(consul::Error::Status {
                        endpoint: "GET /v1/test".into(),
                        status: 500,
                        body: "No cluster leader".into(),
                    }),
                    Answer::Hang => std::future::pending().await,
                }
            })
        };
        let task = tokio::spawn(run("test".into(), timing, shared, tx, read, |v, i| (v, i)));
        (rx, sent, task)
    }

    #[tokio::test]
    async fn failures_deliver_nothing_are_counted_and_reset_the_index() {
        let shared = Shared::new();
        let script = vec![
            Answer::Value("a", 5),
            Answer::NoLeader(7),
            Answer::Error,
            Answer::Value("a", 5),
            Answer::Value("b", 9),
        ];
        let (mut rx, sent, task) = start(shared.clone(), script);
        assert_eq!(rx.recv().await, Some(("a", 5)));
        // The stale answer without a leader and the error are not delivered;
        // the re-read from index 0 after them is (the caller cannot know
        // nothing changed meanwhile).
        assert_eq!(rx.recv().await, Some(("a", 5)));
        assert_eq!(rx.recv().await, Some(("b", 9)));
        assert_eq!(shared.status.errors(), 2);
        assert_eq!(shared.status.failing(), 0, "the watch recovered");
        assert!(shared.status.last_error().is_some_and(|e| e.contains("No cluster leader")));
        assert_eq!(sent.lock().unwrap()[..5], [0, 5, 0, 0, 5]);
        task.abort();
    }

    #[tokio::test]
    async fn a_hung_read_is_abandoned_and_retried() {
        let shared = Shared::new();
        let (mut rx, _sent, task) = start(shared.clone(), vec![Answer::Hang, Answer::Value("x", 3)]);
        assert_eq!(rx.recv().await, Some(("x", 3)));
        assert_eq!(shared.status.errors(), 1);
        assert!(shared.status.last_error().is_some_and(|e| e.contains("no answer within")));
        task.abort();
    }

    #[tokio::test]
    async fn a_failing_watch_is_marked_until_cancelled() {
        let shared = Shared::new();
        let (_rx, sent, task) = start(shared.clone(), (0..1000).map(|_| Answer::Error).collect());
        while sent.lock().unwrap().len() < 3 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(shared.status.failing(), 1);
        assert!(shared.status.errors() >= 2);
        task.abort();
        let _ = task.await;
        assert_eq!(shared.status.failing(), 0, "a cancelled watch no longer counts as failing");
    }
}
