//! One blocking-query loop, shared by every watch (nodes, one per node,
//! checks, overrides): block on the index, hand each change to the
//! coordinator, keep the last good state through anything else.
//!
//! The rules, each for a measured reason (issue 10):
//! - Blocking reads are `stale`: the local server answers from its own state.
//!   With default consistency a follower forwards every read to the leader,
//!   and a leader that vanished without closing its connections held them
//!   23-34 s. A read from index 0 (the first, and the one after an error)
//!   is not stale: it goes to the leader, so a restarted server that is
//!   still catching up cannot hand the router an old state (measured: a
//!   returning node took the VIP with a table missing a service); the
//!   blocking reads after it carry that index, and the local server answers
//!   them only once its own index has passed it.
//! - Freshness comes from each answer's `X-Consul-KnownLeader` and
//!   `X-Consul-LastContact` ([`fresh`]): an answer from a server that has no
//!   leader, or last heard from it longer than `max_stale` ago, is not
//!   delivered (a new empty server would empty the table) and is not an
//!   error either: the index is kept and the read repeated with a short wait,
//!   so the first change after an election is delivered as the local server
//!   applies it.
//! - An answer whose index is below the one held comes from a server that
//!   is behind the one that gave that index (a restarted server still
//!   catching up, reached as a fallback or as the local agent): it is not
//!   delivered, and the read is sent again from index 0, which the leader
//!   answers. Delivered, it replaced the table with an older one (measured:
//!   404s for 3.4 s on the VIP holder whose own server, the leader, was
//!   killed, while a fallback that had restarted seconds before answered).
//!   A cluster rebuilt with a lower index is still followed: the leader's
//!   answer from index 0 is taken whatever its index.
//! - Unreachable, an error status, or no answer within twice the wait: count
//!   the error, back off (doubling, jitter inside the cap, reset by the first
//!   answer) and read again from index 0, so a restarted Consul with a lower
//!   index is not waited on for a whole wait period.
//! - A server that stopped answering is found by the liveness probe within
//!   about a second ([`super::probe`]); every watch then abandons its read.
//! - When the probe sees the leader replaced or gone, every watch abandons
//!   its blocking read and sends it again with the same index, not an
//!   error: a server that restarted moments before and has not yet heard
//!   from the leader forwards even `stale` reads to it, and a blocking one
//!   stays parked at the leader for the whole wait. A leader whose node
//!   died silently kept it there: the VIP holder's router never saw a
//!   service registered after the election (30 s, then the test gave up).
//! - A read the server could not get a leader to answer (a 500 "No cluster
//!   leader" or "rpc error ...", or a read from index 0 held past
//!   [`FIRST_READ_LIMIT`] or the client's own time limit) is an election,
//!   not this node cut off: it is counted and retried within
//!   [`STALE_RECHECK`], but does not mark the watch failing. How long no
//!   leader was seen (`--consul-max-stale`) judges it, the same on every
//!   node. Marked failing, it failed `/health/consul` on the one node whose
//!   watch happened to be reading from index 0 when the leader died, and
//!   moved the VIP (measured: a request lost, issue 10's "leader killed ->
//!   0 failed").

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use consul::{QueryOptions, Response, Step, WatchIndex};
use tokio::sync::mpsc;

use super::status::Shared;
use kit::Backoff;

/// Timing of every watch.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Wait time sent to Consul with each blocking read.
    pub wait: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Longest `X-Consul-LastContact` of an answer still taken as fresh, and
    /// how long the leader may go unseen before `/health/consul` fails.
    pub max_stale: Duration,
}

/// The wait of reads while the answering server has no leader: how soon
/// the watch finds out the view is fresh again when nothing changes.
const STALE_RECHECK: Duration = Duration::from_secs(1);

/// How long a read from index 0 may take. It does not block, so a slow one
/// is a follower forwarding it to a leader that vanished without closing
/// its connections, which Consul holds for about 30 s (seen once as a
/// 28 s late route in the three-node test: a node watch started during an
/// election). Abandoned sooner, it is sent again after the backoff and
/// reaches the new leader once one is elected.
const FIRST_READ_LIMIT: Duration = Duration::from_secs(3);

/// How long one read may take before the watch gives up on it: a read from
/// index 0 does not block ([`FIRST_READ_LIMIT`]); a blocking read gets
/// twice its wait, and never less than the wait plus [`FIRST_READ_LIMIT`]:
/// with the 1 s wait of a stale re-check, twice the wait left no room for a
/// read moved to a fallback server and answered after its own wait there
/// (measured: "no answer within 2s" failed `/health/consul` and moved the
/// VIP during a leader kill).
fn read_limit(index: u64, wait: Duration) -> Duration {
    if index == 0 { (wait * 2).min(FIRST_READ_LIMIT) } else { (wait * 2).max(wait + FIRST_READ_LIMIT) }
}

/// Whether a failed read only says that the answering server has no leader
/// to forward it to (see the module doc).
pub fn leader_unavailable(error: &consul::Error) -> bool {
    matches!(error, consul::Error::Status { status: 500, body, .. }
        if body.contains("No cluster leader") || body.starts_with("rpc error"))
}

/// Whether a failed read only means "no leader right now" (module doc): the
/// server said so, or a read from index 0 (which the server forwards to the
/// leader, and holds while there is none) got no answer in time, whether
/// the watch's own limit or the client's ran out first (the client's is
/// shorter at a fallback server: its 1 s wait plus 1 s, which is how
/// `/health/consul` still dropped on the node whose own server died).
pub fn election(error: &consul::Error, index: u64) -> bool {
    leader_unavailable(error) || (index == 0 && error.is_timeout())
}

/// A read from index 0 goes to the leader; a blocking read after it is stale.
pub fn read_options(index: u64, wait: Duration) -> QueryOptions {
    if index == 0 { QueryOptions::blocking(0, wait) } else { QueryOptions::stale_blocking(index, wait) }
}

/// Whether an answer may replace the state the router holds.
pub fn fresh(known_leader: bool, last_contact_ms: u64, max_stale: Duration) -> bool {
    known_leader && u128::from(last_contact_ms) <= max_stale.as_millis()
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
    let mut lost = shared.status.lost();
    lost.mark_unchanged();
    let mut leader_lost = shared.status.leader_lost();
    leader_lost.mark_unchanged();
    let mut stale = false;
    loop {
        let wait = if stale { timing.wait.min(STALE_RECHECK) } else { timing.wait };
        let limit = read_limit(index.get(), wait);
        let opts = read_options(index.get(), wait);
        // Errors carry whether they only mean "no leader" (module doc).
        let outcome = tokio::select! {
            r = tokio::time::timeout(limit, read(opts)) => match r {
                Err(_) => Err((
                    format!("no answer within {}; restarting the watch", humantime::format_duration(limit)),
                    index.get() == 0,
                )),
                Ok(r) => r.map_err(|e| (e.to_string(), election(&e, index.get()))),
            },
            changed = lost.changed() => {
                if changed.is_err() {
                    return;
                }
                Err(("the Consul agent stopped answering the liveness probe; read abandoned".to_string(), false))
            }
            changed = leader_lost.changed(), if index.get() > 0 => {
                if changed.is_err() {
                    return;
                }
                tracing::debug!(watch = %name, index = index.get(), "the leader changed; blocking read sent again");
                continue;
            }
        };
        let (error, no_leader) = match outcome {
            Err(error) => error,
            Ok(r) => {
                mark.set(false);
                backoff.reset();
                let is_fresh = fresh(r.known_leader, r.last_contact_ms, timing.max_stale);
                shared.status.record_view(is_fresh, r.last_contact_ms);
                if !is_fresh {
                    if !stale {
                        tracing::warn!(
                            watch = %name, known_leader = r.known_leader, last_contact_ms = r.last_contact_ms,
                            "Consul answers without a leader in contact; keeping the last good state"
                        );
                    }
                    stale = true;
                    if index.get() == 0 {
                        // A read from index 0 does not block: pace it.
                        tokio::time::sleep(STALE_RECHECK / 4).await;
                    }
                    continue;
                }
                if stale {
                    tracing::info!(watch = %name, "Consul has a leader again");
                    stale = false;
                }
                let held = index.get();
                match index.advance(r.index) {
                    Step::Changed => {
                        tracing::trace!(watch = %name, index = r.index, "changed");
                        if tx.send(event(r.value, r.index)).await.is_err() {
                            return;
                        }
                    }
                    Step::Unchanged => {}
                    // Reset to 0: the next read goes to the leader.
                    Step::Behind => tracing::warn!(
                        watch = %name, held, answered = r.index,
                        "a Consul server answered with an older state than the one held; asking the leader"
                    ),
                }
                continue;
            }
        };
        shared.status.record_error(format!("{name}: {error}"));
        index.reset();
        let delay = if no_leader {
            backoff.next_delay().min(STALE_RECHECK)
        } else {
            mark.set(true);
            backoff.next_delay()
        };
        tracing::warn!(watch = %name, %error, no_leader, retry_in = ?delay, "Consul read failed");
        tokio::time::sleep(delay).await;
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted Consul: what is delivered, what is
    //! counted, which index is sent after an error or a stale answer. Timings
    //! are tiny so a hung read is abandoned quickly; no assertion is about
    //! elapsed time.

    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use super::*;

    enum Answer {
        Value(&'static str, u64),
        NoLeader(u64),
        /// A leader is known but last heard from this many ms ago.
        LastContact(u64, u64),
        Error,
        /// A 500 from a server that could not reach a leader.
        NoLeaderError(&'static str),
        Hang,
    }

    type Read = Pin<Box<dyn Future<Output = Result<Response<&'static str>, consul::Error>> + Send>>;

    /// What [`start`] hands back: delivered events, the options sent, the task.
    type Started = (mpsc::Receiver<(&'static str, u64)>, Arc<Mutex<Vec<QueryOptions>>>, tokio::task::JoinHandle<()>);

    fn timing(wait: Duration) -> Timing {
        Timing {
            wait,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            max_stale: Duration::from_secs(5),
        }
    }

    /// Runs the loop over `script` (then hangs forever); returns the events
    /// channel, the options of every read, and the task.
    fn start(shared: Arc<Shared>, wait: Duration, script: Vec<Answer>) -> Started {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(16);
        let seen = sent.clone();
        let read = move |o: QueryOptions| -> Read {
            seen.lock().unwrap().push(o);
            let next = script.lock().unwrap().pop_front().unwrap_or(Answer::Hang);
            let resp =
                |value, index, known_leader, last_contact_ms| Response { value, index, known_leader, last_contact_ms };
            Box::pin(async move {
                match next {
                    Answer::Value(v, i) => Ok(resp(v, i, true, 0)),
                    Answer::NoLeader(i) => Ok(resp("stale", i, false, 0)),
                    Answer::LastContact(i, ms) => Ok(resp("stale", i, true, ms)),
                    Answer::Error => Err(consul::Error::Status {
                        endpoint: "GET /v1/test".into(),
                        status: 403,
                        body: "Permission denied".into(),
                    }),
                    Answer::NoLeaderError(body) => {
                        Err(consul::Error::Status { endpoint: "GET /v1/test".into(), status: 500, body: body.into() })
                    }
                    Answer::Hang => std::future::pending().await,
                }
            })
        };
        let task = tokio::spawn(run("test".into(), timing(wait), shared, tx, read, |v, i| (v, i)));
        (rx, sent, task)
    }

    fn indexes(sent: &Mutex<Vec<QueryOptions>>) -> Vec<u64> {
        sent.lock().unwrap().iter().map(|o| o.index).collect()
    }

    #[tokio::test]
    async fn failures_deliver_nothing_are_counted_and_reset_the_index() {
        let shared = Shared::new();
        let script = vec![Answer::Value("a", 5), Answer::Error, Answer::Value("a", 5), Answer::Value("b", 9)];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_millis(10), script);
        assert_eq!(rx.recv().await, Some(("a", 5)));
        // The re-read from index 0 after the error is delivered (the caller
        // cannot know nothing changed meanwhile).
        assert_eq!(rx.recv().await, Some(("a", 5)));
        assert_eq!(rx.recv().await, Some(("b", 9)));
        assert_eq!(shared.status.errors(), 1);
        assert_eq!(shared.status.failing(), 0, "the watch recovered");
        assert!(shared.status.last_error().is_some_and(|e| e.contains("Permission denied")));
        assert_eq!(indexes(&sent)[..4], [0, 5, 0, 5]);
        assert!(
            sent.lock().unwrap().iter().all(|o| o.stale == (o.index > 0)),
            "blocking reads may be answered by any server, reads from index 0 only by the leader"
        );
        task.abort();
    }

    #[tokio::test]
    async fn answers_without_a_leader_in_contact_are_kept_out_but_are_not_errors() {
        let shared = Shared::new();
        let script =
            vec![Answer::Value("a", 5), Answer::NoLeader(7), Answer::LastContact(8, 60_000), Answer::Value("b", 9)];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_secs(30), script);
        assert_eq!(rx.recv().await, Some(("a", 5)));
        assert_eq!(rx.recv().await, Some(("b", 9)), "the stale answers were not delivered");
        assert_eq!(shared.status.errors(), 0, "a server that answers is reachable");
        assert_eq!(shared.status.failing(), 0);
        let sent = sent.lock().unwrap();
        // The index is kept, so the first change after the election wakes the
        // read at once; the wait is short while the view is stale.
        assert_eq!(sent.iter().map(|o| o.index).collect::<Vec<_>>()[..4], [0, 5, 5, 5]);
        assert_eq!(sent[1].wait, Some(Duration::from_secs(30)));
        assert_eq!(sent[2].wait, Some(STALE_RECHECK));
        assert_eq!(sent[3].wait, Some(STALE_RECHECK));
        assert!(shared.status.leader_seen_ago().is_some());
        task.abort();
    }

    /// A server behind the one that gave the held index (a restarted one
    /// catching up) answers with an older state: not delivered, not an
    /// error, and the next read goes to the leader from index 0.
    #[tokio::test]
    async fn an_answer_older_than_the_held_index_is_not_delivered() {
        let shared = Shared::new();
        let script =
            vec![Answer::Value("a", 9), Answer::Value("old", 4), Answer::Value("a", 9), Answer::Value("b", 12)];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_millis(10), script);
        assert_eq!(rx.recv().await, Some(("a", 9)));
        assert_eq!(rx.recv().await, Some(("a", 9)), "the leader's answer from index 0, not the older state");
        assert_eq!(rx.recv().await, Some(("b", 12)));
        assert_eq!(indexes(&sent)[..4], [0, 9, 0, 9]);
        assert!(!sent.lock().unwrap()[2].stale, "the re-read goes to the leader");
        assert_eq!(shared.status.errors(), 0);
        assert_eq!(shared.status.failing(), 0);
        task.abort();
    }

    /// A cluster rebuilt with a lower index (a new data directory) is
    /// followed: the leader's answer from index 0 is taken.
    #[tokio::test]
    async fn a_rebuilt_cluster_with_a_lower_index_is_followed() {
        let shared = Shared::new();
        let script = vec![Answer::Value("a", 900), Answer::Value("new", 4), Answer::Value("new", 4)];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_millis(10), script);
        assert_eq!(rx.recv().await, Some(("a", 900)));
        assert_eq!(rx.recv().await, Some(("new", 4)));
        assert_eq!(indexes(&sent)[..4], [0, 900, 0, 4]);
        task.abort();
    }

    /// A blocking read parked at a leader that vanished is sent again when
    /// the probe sees the leader change: same index, not an error.
    #[tokio::test]
    async fn a_leader_change_sends_the_blocking_read_again() {
        let shared = Shared::new();
        let script = vec![Answer::Value("a", 5), Answer::Hang, Answer::Value("b", 9)];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_secs(3600), script);
        assert_eq!(rx.recv().await, Some(("a", 5)));
        while sent.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        shared.status.lose_leader();
        assert_eq!(rx.recv().await, Some(("b", 9)));
        assert_eq!(indexes(&sent)[..3], [0, 5, 5], "the same blocking read, sent again");
        assert_eq!(shared.status.errors(), 0);
        assert_eq!(shared.status.failing(), 0);
        task.abort();
    }

    /// A first read forwarded to a vanished leader is given up after
    /// FIRST_READ_LIMIT, not after twice a long wait (virtual time).
    #[tokio::test(start_paused = true)]
    async fn a_hung_read_from_index_0_is_abandoned_after_the_first_read_limit() {
        let shared = Shared::new();
        let started = tokio::time::Instant::now();
        let (mut rx, sent, task) =
            start(shared.clone(), Duration::from_secs(60), vec![Answer::Hang, Answer::Value("x", 3)]);
        assert_eq!(rx.recv().await, Some(("x", 3)));
        let took = started.elapsed();
        assert!(took >= FIRST_READ_LIMIT && took < FIRST_READ_LIMIT + Duration::from_secs(1), "took {took:?}");
        assert_eq!(indexes(&sent)[..2], [0, 0]);
        assert_eq!(shared.status.errors(), 1);
        task.abort();
    }

    #[test]
    fn a_blocking_read_gets_twice_its_wait_with_room_for_a_short_one() {
        let s = Duration::from_secs;
        assert_eq!(read_limit(0, s(60)), FIRST_READ_LIMIT);
        assert_eq!(read_limit(0, Duration::from_millis(500)), s(1));
        assert_eq!(read_limit(7, s(60)), s(120));
        assert_eq!(read_limit(7, s(1)), s(1) + FIRST_READ_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_read_is_abandoned_and_retried() {
        let shared = Shared::new();
        let (mut rx, _sent, task) =
            start(shared.clone(), Duration::from_millis(10), vec![Answer::Hang, Answer::Value("x", 3)]);
        assert_eq!(rx.recv().await, Some(("x", 3)));
        assert_eq!(shared.status.errors(), 1);
        assert!(shared.status.last_error().is_some_and(|e| e.contains("no answer within")));
        task.abort();
    }

    #[tokio::test]
    async fn a_silent_agent_found_by_the_probe_ends_the_read_at_once() {
        let shared = Shared::new();
        // A wait of an hour: only the probe's verdict can end the first read.
        let (mut rx, sent, task) =
            start(shared.clone(), Duration::from_secs(3600), vec![Answer::Hang, Answer::Value("x", 3)]);
        while sent.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        shared.status.set_reachable(false);
        assert_eq!(rx.recv().await, Some(("x", 3)));
        assert!(shared.status.last_error().is_some_and(|e| e.contains("liveness probe")));
        task.abort();
    }

    #[tokio::test]
    async fn a_failing_watch_is_marked_until_cancelled() {
        let shared = Shared::new();
        let (_rx, sent, task) =
            start(shared.clone(), Duration::from_millis(10), (0..1000).map(|_| Answer::Error).collect());
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

    /// During an election a read from index 0 fails with the server's "no
    /// leader" errors: counted, retried, but the watch is not failing (the
    /// leader-seen age judges that), so /health/consul stays up on this node.
    #[tokio::test]
    async fn errors_that_only_mean_no_leader_do_not_mark_the_watch_failing() {
        let shared = Shared::new();
        let script = vec![
            Answer::NoLeaderError("No cluster leader"),
            Answer::NoLeaderError(
                "rpc error getting client: failed to get conn: dial tcp 10.0.0.1:0->10.0.0.2:8300: connect: connection refused",
            ),
            Answer::NoLeaderError("rpc error making call: EOF"),
            Answer::Value("a", 5),
            Answer::Error,
        ];
        let (mut rx, sent, task) = start(shared.clone(), Duration::from_millis(10), script);
        let mut failing_seen = 0;
        while sent.lock().unwrap().len() < 4 {
            failing_seen = failing_seen.max(shared.status.failing());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(rx.recv().await, Some(("a", 5)));
        assert_eq!(failing_seen, 0, "no-leader errors never marked the watch failing");
        assert!(shared.status.errors() >= 3, "but they are counted");
        assert_eq!(indexes(&sent)[..4], [0, 0, 0, 0], "each re-read goes to the leader");
        while shared.status.failing() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            shared.status.last_error().is_some_and(|e| e.contains("Permission denied")),
            "any other error still does"
        );
        task.abort();
    }

    #[test]
    fn only_the_servers_no_leader_answers_count_as_no_leader() {
        let status =
            |status, body: &str| consul::Error::Status { endpoint: "GET /v1/x".into(), status, body: body.into() };
        assert!(leader_unavailable(&status(500, "No cluster leader")));
        assert!(leader_unavailable(&status(500, "rpc error making call: EOF")));
        assert!(!leader_unavailable(&status(500, "internal error")));
        assert!(!leader_unavailable(&status(403, "ACL not found")));
        assert!(!leader_unavailable(&status(503, "No cluster leader")));
    }

    /// A read from index 0 that times out at the client (a server holding
    /// it for a leader) is an election; a timed-out blocking read, or a
    /// refused connection, is not.
    #[tokio::test]
    async fn a_first_read_held_past_the_clients_limit_is_an_election() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let config = consul::Config {
            request_timeout: Duration::from_millis(200),
            ..consul::Config::new(format!("http://{addr}"))
        };
        let client = consul::Client::with_config(config).expect("client");
        let held = client.catalog_nodes(&QueryOptions::default()).await.expect_err("no answer");
        assert!(held.is_timeout(), "{held}");
        assert!(election(&held, 0));
        assert!(!election(&held, 7), "a blocking read's timeout is not one");
        drop(silent);
        let refused = client.catalog_nodes(&QueryOptions::default()).await.expect_err("refused");
        assert!(!refused.is_timeout() && !election(&refused, 0), "{refused}");
        let status =
            consul::Error::Status { endpoint: "GET /v1/x".into(), status: 500, body: "No cluster leader".into() };
        assert!(election(&status, 7));
    }

    #[test]
    fn freshness_needs_a_leader_in_recent_contact() {
        let max = Duration::from_secs(5);
        assert!(fresh(true, 0, max));
        assert!(fresh(true, 5000, max));
        assert!(!fresh(true, 5001, max));
        assert!(!fresh(false, 0, max));
    }
}
