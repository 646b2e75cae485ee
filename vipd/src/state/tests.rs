//! Rules of the state machine, one test each, driven in virtual time.

use super::*;
use std::net::Ipv4Addr;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn config(priority: u8) -> Config {
    Config { priority, advert_interval: SEC, preempt: true, primary: ip(2), track_weights: vec![] }
}

fn started(config: Config) -> Machine {
    let mut m = Machine::new(config, true);
    m.handle(Duration::ZERO, Event::Startup);
    m
}

fn advert(from: u8, priority: u8) -> Event {
    Event::Advert { from: ip(from), priority, interval: SEC }
}

/// Runs the timer until the machine is Master and returns when.
fn become_master(m: &mut Machine) -> Duration {
    let at = m.deadline().expect("a timer is armed");
    m.handle(at, Event::Timer);
    assert_eq!(m.state(), State::Master);
    at
}

#[test]
fn intervals_follow_the_rfc_formulas() {
    assert_eq!(skew_time(100, SEC), SEC * 156 / 256);
    assert_eq!(skew_time(255, SEC), SEC / 256);
    assert_eq!(master_down_interval(100, SEC), SEC * 3 + SEC * 156 / 256);
    assert_eq!(master_down_interval(200, 100 * MS), 300 * MS + 100 * MS * 56 / 256);
}

#[test]
fn startup_goes_to_backup_removes_a_leftover_vip_and_arms_master_down() {
    let mut m = Machine::new(config(100), true);
    let out = m.handle(5 * SEC, Event::Startup);
    assert_eq!(m.state(), State::Backup);
    let at = 5 * SEC + master_down_interval(100, SEC);
    assert_eq!(out, vec![Action::RemoveVip]);
    assert_eq!(m.deadline(), Some(at));
}

#[test]
fn the_address_owner_starts_as_master() {
    let mut m = Machine::new(config(255), true);
    let out = m.handle(Duration::ZERO, Event::Startup);
    assert_eq!(m.state(), State::Master);
    assert_eq!(out, vec![Action::AddVip, Action::SendAdvert { priority: 255 }, Action::SendGratuitousArp,]);
    assert_eq!(m.deadline(), Some(SEC));
}

#[test]
fn an_unhealthy_owner_starts_as_backup_without_a_timer() {
    let mut m = Machine::new(config(255), false);
    let out = m.handle(Duration::ZERO, Event::Startup);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(out, vec![Action::RemoveVip]);
    assert_eq!(m.deadline(), None);
}

#[test]
fn events_before_startup_do_nothing() {
    let mut m = Machine::new(config(100), true);
    assert!(m.handle(SEC, Event::Timer).is_empty());
    assert!(m.handle(SEC, advert(3, 200)).is_empty());
    assert!(m.handle(SEC, Event::Health(false)).is_empty());
    assert_eq!(m.state(), State::Initialize);
}

#[test]
fn a_second_startup_is_ignored() {
    let mut m = started(config(100));
    assert!(m.handle(SEC, Event::Startup).is_empty());
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn backup_without_adverts_becomes_master_when_master_down_expires() {
    let mut m = started(config(100));
    let at = master_down_interval(100, SEC);
    assert!(m.handle(at - MS, Event::Timer).is_empty(), "an early timer is ignored");
    let out = m.handle(at, Event::Timer);
    assert_eq!(m.state(), State::Master);
    assert_eq!(out, vec![Action::AddVip, Action::SendAdvert { priority: 100 }, Action::SendGratuitousArp,]);
    assert_eq!(m.deadline(), Some(at + SEC));
}

#[test]
fn master_advertises_every_interval() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + SEC, Event::Timer);
    assert_eq!(out, vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(m.deadline(), Some(t + 2 * SEC));
    assert!(m.handle(t + SEC + MS, Event::Timer).is_empty(), "not due yet");
}

#[test]
fn backup_resets_master_down_on_a_higher_priority_advert() {
    let mut m = started(config(100));
    let out = m.handle(2 * SEC, advert(3, 200));
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(2 * SEC + master_down_interval(100, SEC)));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn backup_resets_master_down_on_an_equal_priority_advert() {
    let mut m = started(config(100));
    let out = m.handle(2 * SEC, advert(3, 100));
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(2 * SEC + master_down_interval(100, SEC)));
}

#[test]
fn backup_learns_the_masters_advert_interval() {
    let mut m = started(config(100));
    let out = m.handle(SEC, Event::Advert { from: ip(3), priority: 200, interval: 100 * MS });
    assert_eq!(m.master_adver_interval(), 100 * MS);
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(SEC + master_down_interval(100, 100 * MS)));
}

#[test]
fn backup_with_preempt_ignores_a_lower_priority_master_and_takes_over() {
    let mut m = started(config(100));
    let first = m.deadline().expect("armed");
    assert!(m.handle(SEC, advert(3, 50)).is_empty());
    assert_eq!(m.deadline(), Some(first), "the lower master does not hold us back");
    become_master(&mut m);
}

#[test]
fn backup_without_preempt_defers_to_a_lower_priority_master() {
    let mut m = started(Config { preempt: false, ..config(100) });
    let out = m.handle(SEC, advert(3, 50));
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(SEC + master_down_interval(100, SEC)));
}

#[test]
fn priority_zero_makes_a_backup_take_over_after_skew_time() {
    let mut m = started(config(100));
    m.handle(SEC, advert(3, 200));
    let out = m.handle(2 * SEC, advert(3, 0));
    let at = 2 * SEC + skew_time(100, SEC);
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(at));
    m.handle(at, Event::Timer);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn skew_time_uses_the_learned_interval() {
    let mut m = started(config(100));
    m.handle(SEC, Event::Advert { from: ip(3), priority: 200, interval: 100 * MS });
    let out = m.handle(2 * SEC, Event::Advert { from: ip(3), priority: 0, interval: 100 * MS });
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(2 * SEC + skew_time(100, 100 * MS)));
}

#[test]
fn higher_priority_backup_wins_the_race_after_priority_zero() {
    let mut low = started(config(50));
    let mut high = started(config(150));
    low.handle(SEC, advert(9, 0));
    high.handle(SEC, advert(9, 0));
    assert!(high.deadline() < low.deadline());
}

#[test]
fn master_steps_down_for_a_higher_priority() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, Event::Advert { from: ip(1), priority: 101, interval: 200 * MS });
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_adver_interval(), 200 * MS);
    assert_eq!(out, vec![Action::SendAdvert { priority: 100 }, Action::RemoveVip,]);
    assert_eq!(m.deadline(), Some(t + MS + master_down_interval(100, 200 * MS)));
}

#[test]
fn after_a_partition_both_masters_end_with_the_winner_sending_gratuitous_arp() {
    // Two masters meet; whichever hears the other first, the loser's last
    // advert makes the winner refresh neighbours.
    let mut winner = started(Config { primary: ip(1), ..config(200) });
    let mut loser = started(Config { primary: ip(2), ..config(100) });
    let t = become_master(&mut winner).max(become_master(&mut loser));
    let out = loser.handle(t + MS, advert(1, 200));
    assert_eq!(loser.state(), State::Backup);
    let last = out
        .iter()
        .find_map(|a| match a {
            Action::SendAdvert { priority } => Some(*priority),
            _ => None,
        })
        .expect("the loser sends a last advert");
    let reply = winner.handle(t + 2 * MS, advert(2, last));
    assert_eq!(winner.state(), State::Master);
    assert!(reply.contains(&Action::SendGratuitousArp));
}

#[test]
fn master_steps_down_for_an_equal_priority_from_a_higher_address() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    m.handle(t + MS, advert(3, 100));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn master_keeps_the_vip_against_an_equal_priority_from_a_lower_address() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, advert(1, 100));
    assert_eq!(m.state(), State::Master);
    assert!(out.contains(&Action::SendAdvert { priority: 100 }));
}

#[test]
fn master_answers_a_lower_priority_advert_with_advert_and_gratuitous_arp() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, advert(3, 99));
    assert_eq!(m.state(), State::Master);
    assert_eq!(out, vec![Action::SendAdvert { priority: 100 }, Action::SendGratuitousArp]);
    assert_eq!(m.deadline(), Some(t + MS + SEC));
}

#[test]
fn master_answers_priority_zero_with_an_advert() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, advert(3, 0));
    assert_eq!(m.state(), State::Master);
    assert_eq!(out, vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(m.deadline(), Some(t + MS + SEC));
}

#[test]
fn the_owner_never_steps_down() {
    let mut m = started(config(255));
    m.handle(MS, advert(9, 254));
    assert_eq!(m.state(), State::Master);
}

#[test]
fn shutdown_as_master_sends_priority_zero_and_removes_the_vip() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, Event::Shutdown);
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(out, vec![Action::SendAdvert { priority: 0 }, Action::RemoveVip]);
    assert_eq!(m.deadline(), None);
    assert!(m.handle(t + 2 * SEC, Event::Timer).is_empty());
}

#[test]
fn shutdown_as_backup_only_stops_the_timer() {
    let mut m = started(config(100));
    assert!(m.handle(SEC, Event::Shutdown).is_empty());
    assert_eq!(m.deadline(), None);
    assert_eq!(m.state(), State::Initialize);
}

#[test]
fn failing_health_makes_the_master_send_priority_zero_and_stay_backup() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, Event::Health(false));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(out, vec![Action::SendAdvert { priority: 0 }, Action::RemoveVip]);
    // Nothing brings it back while unhealthy: no timer, adverts do not arm one.
    assert!(m.handle(t + 10 * SEC, Event::Timer).is_empty());
    assert!(m.handle(t + 10 * SEC, advert(3, 50)).is_empty());
    assert!(m.handle(t + 10 * SEC, advert(3, 0)).is_empty());
    assert_eq!(m.deadline(), None);
}

#[test]
fn unhealthy_backup_still_learns_the_interval() {
    let mut m = started(config(100));
    m.handle(SEC, Event::Health(false));
    m.handle(2 * SEC, Event::Advert { from: ip(3), priority: 50, interval: 300 * MS });
    assert_eq!(m.master_adver_interval(), 300 * MS);
}

#[test]
fn recovery_competes_again_and_preempts_a_lower_master() {
    let mut m = started(config(100));
    let t = become_master(&mut m);
    m.handle(t + MS, Event::Health(false));
    assert!(m.handle(t + 2 * MS, Event::Health(false)).is_empty(), "no change, no action");
    let back = t + 5 * SEC;
    let out = m.handle(back, Event::Health(true));
    assert!(out.is_empty());
    assert_eq!(m.deadline(), Some(back + master_down_interval(100, SEC)));
    assert!(m.handle(back + SEC, advert(3, 50)).is_empty(), "lower master ignored");
    become_master(&mut m);
}

#[test]
fn recovery_without_preempt_stays_behind_the_current_master() {
    let mut m = started(Config { preempt: false, ..config(100) });
    m.handle(SEC, Event::Health(false));
    m.handle(2 * SEC, Event::Health(true));
    m.handle(3 * SEC, advert(3, 50));
    assert_eq!(m.deadline(), Some(3 * SEC + master_down_interval(100, SEC)));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn health_while_healthy_changes_nothing() {
    let mut m = started(config(100));
    let before = m.deadline();
    assert!(m.handle(SEC, Event::Health(true)).is_empty());
    assert_eq!(m.deadline(), before);
    let t = become_master(&mut m);
    assert!(m.handle(t + MS, Event::Health(true)).is_empty());
    assert_eq!(m.state(), State::Master);
}

#[test]
fn an_unhealthy_backup_cannot_win_by_timer() {
    let mut m = started(config(100));
    let at = m.deadline().expect("armed");
    m.handle(SEC, Event::Health(false));
    assert!(m.handle(at, Event::Timer).is_empty());
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn three_nodes_in_virtual_time_elect_the_highest_priority() {
    // Deliver every advert to the other machines at the instant it is sent
    // and step time from deadline to deadline.
    let prios = [100u8, 200, 150];
    let mut nodes: Vec<Machine> =
        prios.iter().enumerate().map(|(i, p)| started(Config { primary: ip(i as u8 + 1), ..config(*p) })).collect();
    for _ in 0..50 {
        let (i, at) = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.deadline().map(|d| (i, d)))
            .min_by_key(|(_, d)| *d)
            .expect("someone has a timer");
        let out = nodes[i].handle(at, Event::Timer);
        for a in out {
            if let Action::SendAdvert { priority } = a {
                for (j, other) in nodes.iter_mut().enumerate() {
                    if j != i {
                        other.handle(at, Event::Advert { from: ip(i as u8 + 1), priority, interval: SEC });
                    }
                }
            }
        }
    }
    let states: Vec<State> = nodes.iter().map(Machine::state).collect();
    assert_eq!(states, vec![State::Backup, State::Master, State::Backup]);
}

fn tracked(priority: u8, weights: &[u8]) -> Config {
    Config { track_weights: weights.to_vec(), ..config(priority) }
}

#[test]
fn weighted_tracking_lowers_the_priority_by_each_failing_weight() {
    assert_eq!(effective_priority(150, &[20, 30], &[false, false]), 150);
    assert_eq!(effective_priority(150, &[20, 30], &[true, false]), 130);
    assert_eq!(effective_priority(150, &[20, 30], &[true, true]), 100);
    assert_eq!(effective_priority(10, &[20], &[true]), 1, "never 0: that means leaving");
    assert_eq!(effective_priority(255, &[0], &[true]), 255, "a zero weight lowers nothing");
    assert_eq!(effective_priority(255, &[1], &[true]), 254, "a lowered owner is no longer the owner");
    assert_eq!(effective_priority(255, &[200, 200], &[true, true]), 1);
}

#[test]
fn a_master_whose_track_fails_advertises_the_lower_priority_at_once() {
    let mut m = started(tracked(150, &[20]));
    let t = become_master(&mut m);
    let out = m.handle(t + MS, Event::Track { index: 0, ok: false });
    assert_eq!(out, vec![Action::SendAdvert { priority: 130 }]);
    assert_eq!(m.priority(), 130);
    assert_eq!(m.deadline(), Some(t + MS + SEC));
    assert_eq!(m.state(), State::Master, "a track lowers the priority, it does not give the VIP up");
    assert!(m.handle(t + 2 * MS, Event::Track { index: 0, ok: false }).is_empty(), "no change, no advert");
    assert!(m.handle(t + 2 * MS, Event::Track { index: 7, ok: false }).is_empty(), "unknown track ignored");
    let out = m.handle(t + 3 * MS, Event::Track { index: 0, ok: true });
    assert_eq!(out, vec![Action::SendAdvert { priority: 150 }]);
    // Its periodic adverts carry the priority in effect.
    m.handle(t + 4 * MS, Event::Track { index: 0, ok: false });
    let out = m.handle(t + 4 * MS + SEC, Event::Timer);
    assert_eq!(out, vec![Action::SendAdvert { priority: 130 }]);
}

#[test]
fn a_backup_compares_with_its_priority_in_effect() {
    // Configured 150, above a master at 140: it would preempt...
    let mut m = started(tracked(150, &[20]));
    let first = m.deadline().expect("armed");
    assert!(m.handle(SEC, advert(3, 140)).is_empty());
    assert_eq!(m.deadline(), Some(first), "it lets Master_Down run out to preempt");
    // ...but with its track failing (130) it defers to the master.
    m.handle(SEC, Event::Track { index: 0, ok: false });
    m.handle(2 * SEC, advert(3, 140));
    assert_eq!(m.deadline(), Some(2 * SEC + master_down_interval(130, SEC)));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn a_lowered_owner_does_not_start_as_master() {
    let mut m = Machine::new(tracked(255, &[20]), true);
    m.handle(Duration::ZERO, Event::Track { index: 0, ok: false });
    m.handle(Duration::ZERO, Event::Startup);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.priority(), 235);
}

/// Three tracked nodes in virtual time: adverts reach the others at once,
/// time moves from deadline to deadline, track verdicts arrive at set times.
struct Group {
    nodes: Vec<Machine>,
    now: Duration,
}

impl Group {
    fn new(prios: &[u8], weight: u8) -> Group {
        let nodes = prios
            .iter()
            .enumerate()
            .map(|(i, p)| started(Config { primary: ip(i as u8 + 1), ..tracked(*p, &[weight]) }))
            .collect();
        Group { nodes, now: Duration::ZERO }
    }

    fn deliver(&mut self, from: usize, out: Vec<Action>) {
        for a in out {
            if let Action::SendAdvert { priority } = a {
                for j in 0..self.nodes.len() {
                    if j != from {
                        let ev = Event::Advert { from: ip(from as u8 + 1), priority, interval: SEC };
                        let reply = self.nodes[j].handle(self.now, ev);
                        self.deliver(j, reply);
                    }
                }
            }
        }
    }

    /// Runs timers until `until`.
    fn run(&mut self, until: Duration) {
        loop {
            let next =
                self.nodes.iter().enumerate().filter_map(|(i, n)| n.deadline().map(|d| (i, d))).min_by_key(|(_, d)| *d);
            let Some((i, at)) = next.filter(|(_, at)| *at <= until) else { break };
            self.now = at;
            let out = self.nodes[i].handle(at, Event::Timer);
            self.deliver(i, out);
        }
        self.now = until;
    }

    fn track(&mut self, i: usize, ok: bool) {
        let out = self.nodes[i].handle(self.now, Event::Track { index: 0, ok });
        self.deliver(i, out);
    }

    fn master(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].state() == State::Master).collect()
    }
}

#[test]
fn the_vip_leaves_only_the_node_whose_track_fails_alone() {
    let mut g = Group::new(&[150, 140, 130], 20);
    g.run(10 * SEC);
    assert_eq!(g.master(), [0]);
    // Every node's track fails (a Consul election seen by all): nothing moves.
    for i in 0..3 {
        g.track(i, false);
    }
    g.run(20 * SEC);
    assert_eq!(g.master(), [0], "the same shift on every node keeps the order");
    for i in 0..3 {
        g.track(i, true);
    }
    g.run(30 * SEC);
    assert_eq!(g.master(), [0]);
    // Only node 0 cannot hear Consul: 130 < 140, node 1 preempts within
    // Master_Down_Interval.
    g.track(0, false);
    let failed_at = g.now;
    g.run(failed_at + master_down_interval(140, SEC));
    assert_eq!(g.master(), [1]);
    // Node 0 hears Consul again and preempts back when the Master_Down
    // timer it armed at its lowered priority runs out.
    g.track(0, true);
    let back = g.now;
    g.run(back + master_down_interval(130, SEC));
    assert_eq!(g.master(), [0]);
}
