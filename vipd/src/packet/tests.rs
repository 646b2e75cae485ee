//! The codec against packets written out by hand from the RFC layout,
//! and every reason to drop one.

use super::*;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

/// Written out from the RFC 5798 §5.1 layout: VRID 51, priority 100, one
/// address, 100 ms = 10 cs, from 10.0.0.1 to 224.0.0.18.
fn hand_made() -> Vec<u8> {
    let mut d = vec![
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, // ver/ihl, tos, len 32, id, frag
        0xff, 0x70, 0x00, 0x00, // TTL 255, proto 112, IP checksum (kernel's job)
        10, 0, 0, 1, // source
        224, 0, 0, 18, // destination
        0x31, 51, 100, 1, // v3 type 1, VRID, priority, count
        0x00, 0x0a, 0x00, 0x00, // rsvd + max adver int 10 cs, checksum
        10, 0, 0, 50, // the VIP
    ];
    // Pseudo-header sum worked by hand: 0x0a00 + 0x0001 + 0xe000 + 0x0012
    // + 0x0070 (proto) + 0x000c (length), then the message words.
    let words: [u32; 12] =
        [0x0a00, 0x0001, 0xe000, 0x0012, 0x0070, 0x000c, 0x3133, 0x6401, 0x000a, 0x0000, 0x0a00, 0x0032];
    let mut sum: u32 = words.iter().sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    d[26..28].copy_from_slice(&c.to_be_bytes());
    d
}

fn advert() -> Advert {
    Advert { vrid: 51, priority: 100, interval: Duration::from_millis(100), addresses: vec![IpAddr::V4(VIP)] }
}

#[test]
fn encode_matches_the_hand_made_packet() {
    assert_eq!(encode_ipv4(&advert(), SRC, MULTICAST_V4), hand_made());
}

#[test]
fn decode_reads_the_hand_made_packet() {
    let r = decode_ipv4(&hand_made(), 51).expect("valid");
    assert_eq!(r, Received { source: IpAddr::V4(SRC), advert: advert() });
}

#[test]
fn decode_accepts_the_checksum_without_pseudo_header() {
    let mut d = hand_made();
    d[26..28].copy_from_slice(&[0, 0]);
    let c = checksum(&[&d[20..]]);
    d[26..28].copy_from_slice(&c.to_be_bytes());
    assert!(decode_ipv4(&d, 51).is_ok());
}

#[test]
fn round_trip_keeps_every_field() {
    let a = Advert {
        vrid: 7,
        priority: 255,
        interval: Duration::from_millis(40_950),
        addresses: vec![IpAddr::V4(VIP), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))],
    };
    let d = encode_ipv4(&a, SRC, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(decode_ipv4(&d, 7).expect("valid").advert, a);
}

#[test]
fn interval_is_twelve_bits_of_centiseconds() {
    assert_eq!(interval_cs(Duration::from_millis(100)), 10);
    assert_eq!(interval_cs(Duration::from_millis(1015)), 101);
    assert_eq!(interval_cs(Duration::from_secs(60)), 0x0fff);
    let d = encode_vrrp_v4(&Advert { interval: Duration::from_secs(3600), ..advert() }, SRC, MULTICAST_V4);
    assert_eq!(&d[4..6], &[0x0f, 0xff], "the reserved bits stay zero");
}

#[test]
fn ipv6_addresses_are_left_out_of_an_ipv4_advert() {
    let a = Advert { addresses: vec![IpAddr::V4(VIP), "2001:db8::1".parse().expect("v6")], ..advert() };
    let d = encode_vrrp_v4(&a, SRC, MULTICAST_V4);
    assert_eq!(d[3], 1);
    assert_eq!(d.len(), 12);
}

#[test]
fn wrong_ttl_is_dropped() {
    let mut d = hand_made();
    d[8] = 254;
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::Ttl));
}

#[test]
fn bad_checksum_is_dropped() {
    let mut d = hand_made();
    d[27] ^= 0x01;
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::Checksum));
    let mut d = hand_made();
    d[22] = 101; // priority changed after the checksum was computed
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::Checksum));
}

fn rechecksum(d: &mut [u8]) {
    d[26..28].copy_from_slice(&[0, 0]);
    let c = checksum(&[&pseudo_header_v4(SRC, MULTICAST_V4, d.len() - 20), &d[20..]]);
    d[26..28].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn other_version_is_dropped() {
    let mut d = hand_made();
    d[20] = 0x21;
    rechecksum(&mut d);
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::Version));
}

#[test]
fn other_type_is_dropped() {
    let mut d = hand_made();
    d[20] = 0x32;
    rechecksum(&mut d);
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::Type));
}

#[test]
fn other_vrid_is_dropped() {
    assert_eq!(decode_ipv4(&hand_made(), 52), Err(DropReason::Vrid));
}

#[test]
fn truncated_packets_are_dropped() {
    let d = hand_made();
    // IP total length says 32 but only 30 bytes arrived.
    assert_eq!(decode_ipv4(&d[..30], 51), Err(DropReason::Length));
    // Count says two addresses but only one is there.
    let mut d2 = d.clone();
    d2[23] = 2;
    assert_eq!(decode_ipv4(&d2, 51), Err(DropReason::Length));
    // A VRRP header cut short, with the IP length agreeing.
    let mut d3 = d[..26].to_vec();
    d3[3] = 26;
    assert_eq!(decode_ipv4(&d3, 51), Err(DropReason::Length));
    assert_eq!(decode_ipv4(&d[..10], 51), Err(DropReason::NotVrrp));
}

#[test]
fn other_protocols_are_not_vrrp() {
    let mut d = hand_made();
    d[9] = 17;
    assert_eq!(decode_ipv4(&d, 51), Err(DropReason::NotVrrp));
}

#[test]
fn ip_options_are_skipped() {
    let d = hand_made();
    let mut with_opts = d[..20].to_vec();
    with_opts[0] = 0x46;
    with_opts[3] = 36;
    with_opts.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    with_opts.extend_from_slice(&d[20..]);
    assert_eq!(decode_ipv4(&with_opts, 51).expect("valid").advert, advert());
}

#[test]
fn drop_counts_are_kept_by_reason() {
    let mut c = DropCounts::default();
    assert_eq!(c.count(DropReason::Ttl), 1);
    assert_eq!(c.count(DropReason::Ttl), 2);
    c.count(DropReason::Checksum);
    assert_eq!(c.get(DropReason::Ttl), 2);
    assert_eq!(c.get(DropReason::Version), 0);
    assert_eq!(c.total(), 3);
}

#[test]
fn every_reason_has_its_own_counter_slot() {
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*reason as usize, i, "{reason:?}");
    }
}
