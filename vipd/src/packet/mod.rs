//! VRRPv3 advertisements (RFC 5798 §5) on the wire, as pure functions: encode
//! an advert inside an IPv4 header, and decode what a raw socket hands us with
//! every check that makes us drop a packet named, so that drops can be counted
//! by reason.
//!
//! The checksum is sent in the form that covers the IPv4 pseudo-header
//! (keepalived rejects the other form); both forms are accepted on receive.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// The multicast group VRRP adverts go to over IPv4.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a valid advert can have: it never crosses a router.
pub const TTL: u8 = 255;
const VERSION: u8 = 3;
const TYPE_ADVERT: u8 = 1;
const HEADER_LEN: usize = 8;
const IPV4_HEADER_LEN: usize = 20;
/// Max_Adver_Int is 12 bits of centiseconds.
const MAX_INTERVAL_CS: u16 = 0x0fff;

/// One advertisement, independent of the address family it travels in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max_Adver_Int, whole centiseconds.
    pub interval: Duration,
    pub addresses: Vec<IpAddr>,
}

/// A decoded advert with what the IP header said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub source: IpAddr,
    pub advert: Advert,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    // The discriminants index `DropCounts`.
    #[error("not an IPv4 VRRP datagram")]
    NotVrrp,
    #[error("TTL is not 255")]
    Ttl,
    #[error("length does not fit")]
    Length,
    #[error("bad checksum")]
    Checksum,
    #[error("not VRRP version 3")]
    Version,
    #[error("not an advertisement")]
    Type,
    #[error("another VRID")]
    Vrid,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::NotVrrp,
        DropReason::Ttl,
        DropReason::Length,
        DropReason::Checksum,
        DropReason::Version,
        DropReason::Type,
        DropReason::Vrid,
    ];

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotVrrp => "not_vrrp",
            DropReason::Ttl => "ttl",
            DropReason::Length => "length",
            DropReason::Checksum => "checksum",
            DropReason::Version => "version",
            DropReason::Type => "type",
            DropReason::Vrid => "vrid",
        }
    }
}

/// Dropped packets so far, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn count(&mut self, reason: DropReason) -> u64 {
        self.0[reason as usize] += 1;
        self.0[reason as usize]
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// The interval in whole centiseconds, clamped to what 12 bits hold.
pub fn interval_cs(interval: Duration) -> u16 {
    let cs = interval.as_millis() / 10;
    u16::try_from(cs).unwrap_or(MAX_INTERVAL_CS).min(MAX_INTERVAL_CS)
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO_VRRP;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// The VRRP message alone (no IP header), checksum over the IPv4
/// pseudo-header of `src` -> `dst`. IPv6 addresses in the advert are skipped:
/// an IPv4 advert carries IPv4 addresses only.
pub fn encode_vrrp_v4(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let addrs: Vec<Ipv4Addr> = advert
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut msg = Vec::with_capacity(HEADER_LEN + 4 * addrs.len());
    msg.push((VERSION << 4) | TYPE_ADVERT);
    msg.push(advert.vrid);
    msg.push(advert.priority);
    msg.push(addrs.len().min(255) as u8);
    msg.extend_from_slice(&interval_cs(advert.interval).to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    for a in addrs.iter().take(255) {
        msg.extend_from_slice(&a.octets());
    }
    let sum = checksum(&[&pseudo_header_v4(src, dst, msg.len()), &msg]);
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// A whole IPv4 datagram (for a socket with IP_HDRINCL): TTL 255, DSCP CS6
/// like other VRRP speakers, protocol 112. The kernel fills in the IP
/// checksum and identification.
pub fn encode_ipv4(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let vrrp = encode_vrrp_v4(advert, src, dst);
    let total = (IPV4_HEADER_LEN + vrrp.len()) as u16;
    let mut pkt = Vec::with_capacity(total as usize);
    pkt.extend_from_slice(&[0x45, 0xc0]);
    pkt.extend_from_slice(&total.to_be_bytes());
    pkt.extend_from_slice(&[0, 0, 0, 0]);
    pkt.extend_from_slice(&[TTL, PROTO_VRRP, 0, 0]);
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&dst.octets());
    pkt.extend_from_slice(&vrrp);
    pkt
}

/// Decodes an IPv4 datagram as a raw socket returns it (IP header included)
/// and checks it in the order RFC 5798 §7.1 lists, for `vrid`.
pub fn decode_ipv4(datagram: &[u8], vrid: u8) -> Result<Received, DropReason> {
    if datagram.len() < IPV4_HEADER_LEN || datagram[0] >> 4 != 4 || datagram[9] != PROTO_VRRP {
        return Err(DropReason::NotVrrp);
    }
    let ihl = usize::from(datagram[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if ihl < IPV4_HEADER_LEN || total > datagram.len() || total < ihl {
        return Err(DropReason::Length);
    }
    if datagram[8] != TTL {
        return Err(DropReason::Ttl);
    }
    let src = Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    let dst = Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
    let msg = &datagram[ihl..total];
    if msg.len() < HEADER_LEN {
        return Err(DropReason::Length);
    }
    let count = usize::from(msg[3]);
    if msg.len() != HEADER_LEN + 4 * count {
        return Err(DropReason::Length);
    }
    let with_pseudo = checksum(&[&pseudo_header_v4(src, dst, msg.len()), msg]) == 0;
    if !with_pseudo && checksum(&[msg]) != 0 {
        return Err(DropReason::Checksum);
    }
    if msg[0] >> 4 != VERSION {
        return Err(DropReason::Version);
    }
    if msg[0] & 0x0f != TYPE_ADVERT {
        return Err(DropReason::Type);
    }
    if msg[1] != vrid {
        return Err(DropReason::Vrid);
    }
    let cs = u16::from_be_bytes([msg[4], msg[5]]) & MAX_INTERVAL_CS;
    let addresses =
        msg[HEADER_LEN..].chunks_exact(4).map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))).collect();
    Ok(Received {
        source: IpAddr::V4(src),
        advert: Advert {
            vrid: msg[1],
            priority: msg[2],
            interval: Duration::from_millis(u64::from(cs) * 10),
            addresses,
        },
    })
}

#[cfg(test)]
mod tests;
