//! What becomes of one received datagram, apart from the event loop: decode
//! it, drop our own looped-back adverts, count every drop by reason (warning
//! at counts 1, 2, 4, 8... so a flood cannot flood the log), warn once per
//! peer whose advert for our VRID lists other addresses, and hand the state
//! machine an event for the rest.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::packet::{self, DropCounts, DropReason};
use crate::state::Event;

pub struct Inbox {
    vrid: u8,
    vip: IpAddr,
    own: IpAddr,
    drops: DropCounts,
    received: u64,
    /// Peers already warned about for a VIP list that differs from ours.
    mismatched: HashSet<IpAddr>,
}

impl Inbox {
    /// Adverts for `vrid` are accepted; those from `own` (our primary
    /// address) are ignored.
    pub fn new(vrid: u8, vip: IpAddr, own: IpAddr) -> Self {
        Inbox { vrid, vip, own, drops: DropCounts::default(), received: 0, mismatched: HashSet::new() }
    }

    /// The event one datagram (IP header included) means, if any.
    pub fn accept(&mut self, datagram: &[u8]) -> Option<Event> {
        match packet::decode_ipv4(datagram, self.vrid) {
            Ok(rx) if rx.source == self.own => None,
            Ok(rx) => {
                self.received += 1;
                if !rx.advert.addresses.contains(&self.vip) && self.mismatched.insert(rx.source) {
                    tracing::warn!(
                        source = %rx.source, addresses = ?rx.advert.addresses, vip = %self.vip,
                        "advert for our VRID does not list our VIP: check the peer's configuration"
                    );
                }
                tracing::trace!(source = %rx.source, priority = rx.advert.priority, "advert received");
                Some(Event::Advert { from: rx.source, priority: rx.advert.priority, interval: rx.advert.interval })
            }
            Err(reason) => {
                let count = self.drops.count(reason);
                // Other groups on the segment are normal; anything else is a
                // misconfigured or hostile sender.
                if reason != DropReason::Vrid && count.is_power_of_two() {
                    tracing::warn!(reason = reason.name(), count, total = self.drops.total(), "packet dropped");
                } else {
                    tracing::debug!(reason = reason.name(), count, total = self.drops.total(), "packet dropped");
                }
                None
            }
        }
    }

    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// Valid adverts from peers so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::packet::{Advert, encode_ipv4};

    fn datagram(src: Ipv4Addr, vrid: u8, vip: Ipv4Addr) -> Vec<u8> {
        let advert =
            Advert { vrid, priority: 100, interval: Duration::from_millis(100), addresses: vec![IpAddr::V4(vip)] };
        encode_ipv4(&advert, src, packet::MULTICAST_V4)
    }

    #[test]
    fn adverts_become_events_own_ones_are_ignored_and_drops_are_counted() {
        let vip = Ipv4Addr::new(10, 0, 0, 50);
        let me = Ipv4Addr::new(10, 0, 0, 1);
        let peer = Ipv4Addr::new(10, 0, 0, 2);
        let mut inbox = Inbox::new(7, IpAddr::V4(vip), IpAddr::V4(me));
        let ev = inbox.accept(&datagram(peer, 7, vip));
        assert_eq!(
            ev,
            Some(Event::Advert { from: IpAddr::V4(peer), priority: 100, interval: Duration::from_millis(100) })
        );
        assert_eq!(inbox.accept(&datagram(me, 7, vip)), None, "our own advert looped back");
        assert_eq!(inbox.accept(&datagram(peer, 8, vip)), None);
        assert_eq!(inbox.accept(&[0u8; 3]), None);
        assert_eq!(inbox.received(), 1);
        assert_eq!(inbox.drops().get(DropReason::Vrid), 1);
        assert_eq!(inbox.drops().total(), 2);
        // A peer listing another VIP is still an advert for our group.
        assert!(inbox.accept(&datagram(peer, 7, Ipv4Addr::new(10, 0, 0, 51))).is_some());
    }
}
