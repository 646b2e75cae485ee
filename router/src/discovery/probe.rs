//! The liveness probe: a cheap `GET /v1/status/leader` every
//! [`INTERVAL`]. Blocking reads are silent for up to `--consul-wait` by
//! design, so only a separate short request tells within about a second that
//! the agent stopped answering (a hung or stopped process keeps its
//! connections open; nothing else would notice before twice the wait). After
//! [`MISSES`] misses in a row the agent counts as unreachable and every watch
//! abandons its read; a non-empty leader counts as a leader seen. When the
//! leader it names is replaced or gone ([`leader_lost`]), every watch sends
//! its blocking read again (watch.rs).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::status::Shared;

/// Time between probes, and the time each may take.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Misses in a row before the agent counts as unreachable.
pub const MISSES: u32 = 2;

/// Counts misses in a row; pure.
#[derive(Debug, Default)]
struct Misses(u32);

impl Misses {
    /// Records one probe; returns the reachability verdict.
    fn record(&mut self, answered: bool) -> bool {
        self.0 = if answered { 0 } else { self.0.saturating_add(1) };
        self.0 < MISSES
    }
}

/// Whether the agent's answer `now` means the leader it named before
/// (`before`, "" for none) is no longer the leader; pure.
fn leader_lost(before: &str, now: &str) -> bool {
    !before.is_empty() && before != now
}

/// Runs until the process ends.
pub async fn run(client: consul::Client, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut misses = Misses::default();
    let mut leader = String::new();
    loop {
        tick.tick().await;
        let answer = tokio::time::timeout(INTERVAL, client.leader()).await;
        let answered = match &answer {
            Ok(Ok(now)) => {
                if !now.is_empty() {
                    shared.status.saw_leader();
                }
                if leader_lost(&leader, now) {
                    tracing::info!(was = %leader, now = %now, "the Consul leader changed; blocking reads sent again");
                    shared.status.lose_leader();
                }
                leader.clone_from(now);
                true
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "Consul liveness probe failed");
                false
            }
            Err(_) => {
                tracing::debug!(timeout = ?INTERVAL, "Consul liveness probe timed out");
                false
            }
        };
        let reachable = misses.record(answered);
        if reachable != shared.status.reachable() {
            if reachable {
                tracing::info!("the Consul agent answers again");
            } else {
                tracing::warn!(misses = MISSES, "the Consul agent stopped answering; abandoning blocking reads");
            }
            shared.status.set_reachable(reachable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_replaced_or_gone_is_lost_a_first_or_same_one_is_not() {
        assert!(leader_lost("10.0.0.1:8300", ""), "an election began");
        assert!(leader_lost("10.0.0.1:8300", "10.0.0.2:8300"), "missed the election: replaced");
        assert!(!leader_lost("", "10.0.0.2:8300"), "a new leader after none: nothing parked at it");
        assert!(!leader_lost("10.0.0.1:8300", "10.0.0.1:8300"));
        assert!(!leader_lost("", ""));
    }

    #[test]
    fn unreachable_after_misses_in_a_row_and_back_on_the_first_answer() {
        let mut m = Misses::default();
        assert!(m.record(false), "one miss is a blip");
        assert!(!m.record(false));
        assert!(!m.record(false));
        assert!(m.record(true));
        assert!(m.record(false), "the count starts over");
    }
}
