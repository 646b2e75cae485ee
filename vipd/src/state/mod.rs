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
    /// The daemon is stopping (RFC "Shutdown").
    Shutdown,
}

/// Outputs the daemon carries out, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert carrying this priority.
    SendAdvert {
        priority: u8,
    },
    AddVip,
    RemoveVip,
    SendGratuitousArp,
    /// Fire `Event::Timer` at this time; replaces any armed timer.
    ArmTimer {
        at: Duration,
    },
    /// No timer is armed any more.
    DisarmTimer,
}

/// Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256.
pub fn skew_time(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * 3 + skew_time(priority, master_adver_interval)
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
}

impl Machine {
    /// A machine in Initialize; `healthy` is the health verdict to start with
    /// (false while a configured check has not passed yet).
    pub fn new(config: Config, healthy: bool) -> Self {
        let master_adver_interval = config.advert_interval;
        Machine { config, state: State::Initialize, healthy, master_adver_interval, deadline: None }
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
                if self.config.priority == OWNER_PRIORITY && self.healthy {
                    self.become_master(now, &mut out);
                } else {
                    // A crash may have left the VIP on the interface.
                    out.push(Action::RemoveVip);
                    self.become_backup(now, self.config.advert_interval, &mut out);
                }
            }
            (State::Initialize, _) => {}
            (_, Event::Startup) => {}
            (State::Backup, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) && self.healthy {
                    self.become_master(now, &mut out);
                }
            }
            (State::Master, Event::Timer) => {
                if self.deadline.is_some_and(|d| now >= d) {
                    out.push(Action::SendAdvert { priority: self.config.priority });
                    self.arm(now + self.config.advert_interval, &mut out);
                }
            }
            (State::Backup, Event::Advert { priority, interval, .. }) => {
                self.backup_advert(now, priority, interval, &mut out)
            }
            (State::Master, Event::Advert { from, priority, interval }) => {
                self.master_advert(now, from, priority, interval, &mut out)
            }
            (State::Backup, Event::Health(healthy)) => {
                let was = std::mem::replace(&mut self.healthy, healthy);
                if healthy && !was {
                    // Compete again: wait for a master to show itself.
                    self.arm(now + self.master_down(), &mut out);
                } else if !healthy && was {
                    self.disarm(&mut out);
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
                    self.disarm(&mut out);
                }
            }
            (State::Backup, Event::Shutdown) => {
                self.state = State::Initialize;
                self.disarm(&mut out);
            }
            (State::Master, Event::Shutdown) => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVip);
                self.state = State::Initialize;
                self.disarm(&mut out);
            }
        }
        out
    }

    fn backup_advert(&mut self, now: Duration, priority: u8, interval: Duration, out: &mut Vec<Action>) {
        if priority == 0 {
            // The master is leaving: take over after Skew_Time, unless we may
            // not claim the VIP.
            if self.healthy {
                self.arm(now + skew_time(self.config.priority, self.master_adver_interval), out);
            }
        } else if !self.config.preempt || priority >= self.config.priority || !self.healthy {
            self.master_adver_interval = interval;
            if self.healthy {
                self.arm(now + self.master_down(), out);
            }
        }
        // Otherwise a lower-priority master with preemption on: let the
        // Master_Down_Timer run out and take over.
    }

    fn master_advert(&mut self, now: Duration, from: IpAddr, priority: u8, interval: Duration, out: &mut Vec<Action>) {
        let ours = self.config.priority;
        if priority == 0 {
            out.push(Action::SendAdvert { priority: ours });
            self.arm(now + self.config.advert_interval, out);
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
            self.arm(now + self.master_down(), out);
        } else {
            // A node that lost the election still claims the VIP (it came back
            // from a partition): answer at once and refresh neighbours' ARP, or
            // clients keep the other node's MAC (docs/vipd.md field note).
            out.push(Action::SendAdvert { priority: ours });
            out.push(Action::SendGratuitousArp);
            self.arm(now + self.config.advert_interval, out);
        }
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.state = State::Master;
        out.push(Action::AddVip);
        out.push(Action::SendAdvert { priority: self.config.priority });
        out.push(Action::SendGratuitousArp);
        self.arm(now + self.config.advert_interval, out);
    }

    fn become_backup(&mut self, now: Duration, master_adver_interval: Duration, out: &mut Vec<Action>) {
        self.state = State::Backup;
        self.master_adver_interval = master_adver_interval;
        if self.healthy {
            self.arm(now + self.master_down(), out);
        } else {
            self.disarm(out);
        }
    }

    fn master_down(&self) -> Duration {
        master_down_interval(self.config.priority, self.master_adver_interval)
    }

    fn arm(&mut self, at: Duration, out: &mut Vec<Action>) {
        self.deadline = Some(at);
        out.push(Action::ArmTimer { at });
    }

    fn disarm(&mut self, out: &mut Vec<Action>) {
        if self.deadline.take().is_some() {
            out.push(Action::DisarmTimer);
        }
    }
}

#[cfg(test)]
mod tests;
