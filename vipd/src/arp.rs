//! Gratuitous ARP frames, pure: an ARP request whose sender and target
//! protocol address are the VIP, sender hardware address the interface's MAC
//! and target hardware address broadcast (the form that updates existing
//! neighbour entries, docs/vipd.md field note).

use std::net::Ipv4Addr;

pub const ETH_P_ARP: u16 = 0x0806;
/// Ethernet minimum frame size without FCS: the ARP payload is padded to it.
const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// The whole Ethernet frame for one gratuitous ARP request.
pub fn gratuitous_request(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&vip.octets());
    f.resize(MIN_FRAME, 0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let f = gratuitous_request(mac, Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &BROADCAST, "Ethernet destination");
        assert_eq!(&f[6..12], &mac, "Ethernet source");
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1], "htype, ptype, hlen, plen, request");
        assert_eq!(&f[22..28], &mac, "sender MAC");
        assert_eq!(&f[28..32], &[10, 0, 0, 50], "sender IP is the VIP");
        assert_eq!(&f[32..38], &BROADCAST, "target MAC");
        assert_eq!(&f[38..42], &[10, 0, 0, 50], "target IP is the VIP");
        assert!(f[42..].iter().all(|b| *b == 0), "padding");
    }
}
