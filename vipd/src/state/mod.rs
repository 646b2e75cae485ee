//! The RFC 5798 state machine (Initialize, Backup, Master) with no I/O: the
//! daemon feeds it events and the current time, and carries out the actions
//! it returns. Time is a `Duration` since an arbitrary origin so the tests
//! drive it with virtual time and every rule is checked without sleeping.

use std::net::IpAddr;
use std::time::Duration;

/// The priority that marks the owner of the address (RFC 5798 §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;

/// What the machine is told once, at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Configured priority, 1-255.
    pub priority: u8,
    /// Our own Advertisement_Interval.
    pub advert_interval: Duration,
    /// Take the VIP from a lower-priority master.
    pub preempt: bool,
    /// Our primary address: breaks ties between equal priorities.
    pub primary: IpAddr,
    /// Weight of each tracked URL (`--track-url`/`--track-weight`, in
    /// order): while one fails, the advertised priority is lower by its
    /// weight (keepalived's weighted `track_script`).
    pub track_weights: Vec<u8>,
}

/// RFC 5798 §6.4 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

/// Inputs to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The daemon is up (RFC "Startup").
    Startup,
    /// A valid advert for our VRID arrived.
    Advert { from: IpAddr, priority: u8, interval: Duration },
    /// The armed timer expired (Adver_Timer as Master, Master_Down_Timer as
    /// Backup); ignored when it is early or none is armed.
    Timer,
    /// The health check changed its verdict.
    Health(bool),
    /// Tracked URL number `index` (in `Config::track_weights`) changed its
    /// verdict.
    Track { index: usize, ok: bool },
    /// The daemon is stopping (RFC "Shutdown").
    Shutdown,
}

/// Outputs the daemon carries out, in order. The timer is not among them:
/// the daemon reads [`Machine::deadline`] after every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert carrying this priority.
    SendAdvert {
        priority: u8,
    },
    AddVip,
    RemoveVip,
    SendGratuitousArp,
}

/// Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256.
pub fn skew_time(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * 3 + skew_time(priority, master_adver_interval)
}

/// keepalived's weighted tracking: the configured priority minus the weights
/// of the failing tracks, at least 1; at most 254 once anything is
/// subtracted.
pub fn effective_priority(configured: u8, weights: &[u8], failing: &[bool]) -> u8 {
    let lowered: u32 = weights.iter().zip(failing).filter(|(_, f)| **f).map(|(w, _)| u32::from(*w)).sum();
    if lowered == 0 {
        return configured;
    }
    let p = u32::from(configured).saturating_sub(lowered).clamp(1, u32::from(OWNER_PRIORITY - 1));
    p as u8
}

/// One virtual router instance.
#[derive(Debug, Clone)]
pub struct Machine {
    config: Config,
    state: State,
    healthy: bool,
    /// Learned from the master's adverts while Backup (RFC §6.4.2).
    master_adver_interval: Duration,
    deadline: Option<Duration>,
    /// Which tracked URLs fail right now; all pass at start-up (a track
    /// lowers a priority, it never keeps a node from starting).
    tracks_failing: Vec<bool>,
}

impl Machine {
    /// A machine in Initialize; `healthy` is the health verdict to start with
    /// (false while a configured check has not passed yet).
    pub fn new(config: Config, healthy: bool) -> Self {
        let master_adver_interval = config.advert_interval;
        let tracks_failing = vec![false; config.track_weights.len()];
        Machine { config, state: State::Initialize, healthy, master_adver_interval, deadline: None, tracks_failing }
    }

    /// The priority in effect: the configured one lowered by the weight of
    /// every failing tracked URL, kept within 1-254 (a lowered owner is no
    /// longer the owner; 0 means "leaving" on the wire and is never reached
    /// this way).
    pub fn priority(&self) -> u8 {
        effective_priority(self.config.priority, &self.config.track_weights, &self.tracks_failing)
    }

    /// Whether the last health verdict lets this node claim the VIP.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Which tracked URLs fail right now, in `Config::track_weights` order.
    pub fn tracks_failing(&self) -> &[bool] {
        &self.tracks_failing
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The armed timer, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    #[cfg(test)]
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Feeds one event at time `now` and returns what to do.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (State::Initialize, Event::Startup) => {
                if self.priority() == OWNER_PRIORITY && self.healthy {
                    self.become_master(now, &mut out);
                } else {
                    // A crash may have left the VIP on the interface.
                    out.push(Action::RemoveVip);
                    self.become_backup(now, self.config.advert_interval);
                }
            }
            (_, Event::Track { index, ok }) => self.track(now, index, ok, &mut out),
            (State::Initialize, _) => {}
            (_, Event::Startup) => {}
            (State::Backup, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) && self.healthy {
                    self.become_master(now, &mut out);
                }
            }
            (State::Master, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) {
                    out.push(Action::SendAdvert { priority: self.priority() });
                    self.arm(now + self.config.advert_interval);
                }
            }
            (State::Backup, Event::Advert { priority, interval, .. }) => self.backup_advert(now, priority, interval),
            (State::Master, Event::Advert { from, priority, interval }) => {
                self.master_advert(now, from, priority, interval, &mut out)
            }
            (State::Backup, Event::Health(healthy)) => {
                let was = std::mem::replace(&mut self.healthy, healthy);
                if healthy && !was {
                    // Compete again: wait for a master to show itself.
                    self.arm(now + self.master_down());
                } else if !healthy && was {
                    self.disarm();
                }
            }
            (State::Master, Event::Health(healthy)) => {
                self.healthy = healthy;
                if !healthy {
                    // Priority 0: backups take over after Skew_Time rather than
                    // a full Master_Down_Interval.
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveVip);
                    self.state = State::Backup;
                    self.disarm();
                }
            }
            (State::Backup, Event::Shutdown) => {
                self.state = State::Initialize;
                self.disarm();
            }
            (State::Master, Event::Shutdown) => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVip);
                self.state = State::Initialize;
                self.disarm();
            }
        }
        out
    }

    /// A tracked URL changed: a master advertises its new priority at once
    /// (a backup with a higher one then preempts after Master_Down_Interval,
    /// or at once if ours rose back above it); a backup only compares with
    /// the new priority from now on.
    fn track(&mut self, now: Duration, index: usize, ok: bool, out: &mut Vec<Action>) {
        if self.tracks_failing.get(index).is_none_or(|failing| *failing != ok) {
            return;
        }
        let before = self.priority();
        self.tracks_failing[index] = !ok;
        if self.state == State::Master && self.priority() != before {
            out.push(Action::SendAdvert { priority: self.priority() });
            self.arm(now + self.config.advert_interval);
        }
    }

    fn backup_advert(&mut self, now: Duration, priority: u8, interval: Duration) {
        if priority == 0 {
            // The master is leaving: take over after Skew_Time, unless we may
            // not claim the VIP.
            if self.healthy {
                self.arm(now + skew_time(self.priority(), self.master_adver_interval));
            }
        } else if !self.config.preempt || priority >= self.priority() || !self.healthy {
            self.master_adver_interval = interval;
            if self.healthy {
                self.arm(now + self.master_down());
            }
        }
        // Otherwise a lower-priority master with preemption on: let the
        // Master_Down_Timer run out and take over.
    }

    fn master_advert(&mut self, now: Duration, from: IpAddr, priority: u8, interval: Duration, out: &mut Vec<Action>) {
        let ours = self.priority();
        if priority == 0 {
            out.push(Action::SendAdvert { priority: ours });
            self.arm(now + self.config.advert_interval);
        } else if priority > ours || (priority == ours && from > self.config.primary) {
            // One last advert at our own, losing priority before stepping
            // down: after a partition heals this makes the winner answer with
            // gratuitous ARP even when its advert reached us first, so clients
            // drop our MAC at once (docs/vipd.md field note). Backups ignore it or
            // treat it as a normal advert.
            self.master_adver_interval = interval;
            out.push(Action::SendAdvert { priority: ours });
            out.push(Action::RemoveVip);
            self.state = State::Backup;
            self.arm(now + self.master_down());
        } else {
            // A node that lost the election still claims the VIP (it came back
            // from a partition): answer at once and refresh neighbours' ARP, or
            // clients keep the other node's MAC (docs/vipd.md field note).
            out.push(Action::SendAdvert { priority: ours });
            out.push(Action::SendGratuitousArp);
            self.arm(now + self.config.advert_interval);
        }
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.state = State::Master;
        out.push(Action::AddVip);
        out.push(Action::SendAdvert { priority: self.priority() });
        out.push(Action::SendGratuitousArp);
        self.arm(now + self.config.advert_interval);
    }

    fn become_backup(&mut self, now: Duration, master_adver_interval: Duration) {
        self.state = State::Backup;
        self.master_adver_interval = master_adver_interval;
        if self.healthy {
            self.arm(now + self.master_down());
        } else {
            self.disarm();
        }
    }

    fn master_down(&self) -> Duration {
        master_down_interval(self.priority(), self.master_adver_interval)
    }

    /// The one timer: Adver_Timer as Master, Master_Down_Timer as Backup.
    /// The daemon sleeps until [`Machine::deadline`]; there is no other form.
    fn arm(&mut self, at: Duration) {
        self.deadline = Some(at);
    }

    fn disarm(&mut self) {
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests;
