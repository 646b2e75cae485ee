//! The PROXY protocol (HAProxy's, versions 1 and 2): a header a proxy puts in
//! front of a TCP stream saying who the client really is.
//!
//! Pure: encoding, and a decoder that is told bytes and says either "a header
//! of N bytes", "not a header", or "I need at least N more bytes". The caller
//! reads exactly that many, so nothing after the header is ever consumed and
//! the stream can be handed on untouched. Hostile input is normal here (a
//! header is only read from peers named in `--proxy-protocol-from`, but they
//! may be misconfigured): anything not exactly as the specification says is
//! an error, never a guess.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that open a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What opens a version 1 header.
pub const V1_SIGNATURE: &[u8] = b"PROXY ";
/// Longest version 1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// Largest version 2 address-and-TLV block accepted. The format allows
/// 65535; real senders put at most a few hundred bytes of TLVs, and a bound
/// keeps a confused peer from making the router buffer 64 KB per connection.
pub const V2_MAX_BLOCK: usize = 4096;

/// Which header the router sends upstream (`pxyproto=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The client's address; None for v1 `UNKNOWN` and v2 `LOCAL`/`UNSPEC`,
    /// where the connection's own peer address stands.
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
}

/// Why bytes are not (yet) a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// At least this many more bytes are needed to decide.
    #[error("need {0} more bytes")]
    Incomplete(usize),
    #[error("the stream does not start with a PROXY header")]
    NotProxy,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Encodes a header for a TCP connection from `source` to `destination`.
/// Mixed families (an IPv4 client on a dual-stack socket) are written as the
/// IPv4 pair when both can be, else both as IPv6.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(source, destination);
    match version {
        Version::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!("PROXY {fam} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
        IpAddr::V4(_) => a,
    }
}

fn same_family(s: SocketAddr, d: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (s4, d4) = (unmapped(s), unmapped(d));
    if s4.is_ipv4() && d4.is_ipv4() {
        return (s4, d4);
    }
    (SocketAddr::new(v6(s.ip()).into(), s.port()), SocketAddr::new(v6(d.ip()).into(), d.port()))
}

/// Decodes a header at the start of `buf`: the header and its length in
/// bytes (what follows is the client's stream).
pub fn decode(buf: &[u8]) -> Result<(Header, usize), Error> {
    match starts_with_signature(buf) {
        None => Err(Error::Incomplete(1)),
        Some(false) => Err(Error::NotProxy),
        Some(true) if buf[0] == b'P' => decode_v1(buf),
        Some(true) => decode_v2(buf),
    }
}

/// Whether `buf` opens with a PROXY signature (v1 or v2): None while `buf`
/// is a proper prefix of one (more bytes decide).
pub fn starts_with_signature(buf: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for sig in [V1_SIGNATURE, &V2_SIGNATURE[..]] {
        let n = buf.len().min(sig.len());
        if buf[..n] == sig[..n] {
            if n == sig.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

fn decode_v1(buf: &[u8]) -> Result<(Header, usize), Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Error::Malformed("v1 line longer than 107 bytes"))
        } else {
            Err(Error::Incomplete(1))
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::Malformed("v1 line does not end with CRLF"));
    }
    let line =
        std::str::from_utf8(&window[V1_SIGNATURE.len()..lf - 1]).map_err(|_| Error::Malformed("v1 not ASCII"))?;
    let len = lf + 1;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok((Header { source: None, destination: None }, len)),
        [fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let want_v4 = *fam == "TCP4";
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip =
                    if want_v4 { s.parse::<Ipv4Addr>().map(IpAddr::V4) } else { s.parse::<Ipv6Addr>().map(IpAddr::V6) };
                ip.map_err(|_| Error::Malformed("v1 address does not match its family"))
            };
            Ok((
                Header {
                    source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                    destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
                },
                len,
            ))
        }
        _ => Err(Error::Malformed("v1 needs TCP4|TCP6 SRC DST SPORT DPORT or UNKNOWN")),
    }
}

/// A v1 port: plain decimal, no sign, no leading zero, at most 65535.
fn port(s: &str) -> Result<u16, Error> {
    let plain =
        !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u16>() {
        Ok(p) if plain => Ok(p),
        _ => Err(Error::Malformed("v1 port is not a decimal number 0-65535")),
    }
}

fn decode_v2(buf: &[u8]) -> Result<(Header, usize), Error> {
    if buf.len() < 16 {
        return Err(Error::Incomplete(16 - buf.len()));
    }
    let ver_cmd = buf[12];
    let fam = buf[13];
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(Error::Malformed("v2 version is not 2"));
    }
    if block > V2_MAX_BLOCK {
        return Err(Error::Malformed("v2 address block over 4096 bytes"));
    }
    let len = 16 + block;
    if buf.len() < len {
        return Err(Error::Incomplete(len - buf.len()));
    }
    let addrs = &buf[16..len];
    let local = Header { source: None, destination: None };
    match ver_cmd & 0x0f {
        0x0 => return Ok((local, len)), // LOCAL: the sender's own health check
        0x1 => {}
        _ => return Err(Error::Malformed("v2 command is neither LOCAL nor PROXY")),
    }
    let header = match fam {
        0x00 => local,
        0x11 if addrs.len() >= 12 => {
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(addrs[o], addrs[o + 1], addrs[o + 2], addrs[o + 3]));
            let port = |o: usize| u16::from_be_bytes([addrs[o], addrs[o + 1]]);
            Header {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            }
        }
        0x21 if addrs.len() >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&addrs[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([addrs[o], addrs[o + 1]]);
            Header {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            }
        }
        0x11 | 0x21 => return Err(Error::Malformed("v2 address block too short for its family")),
        _ => return Err(Error::Malformed("v2 family is not TCP over IPv4 or IPv6")),
    };
    Ok((header, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_known_lines() {
        let (h, n) = decode(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /").unwrap();
        assert_eq!(n, 45);
        assert_eq!(h.source, Some(sa("192.0.2.1:56324")));
        assert_eq!(h.destination, Some(sa("198.51.100.2:443")));
        let (h, _) = decode(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n").unwrap();
        assert_eq!(h.source, Some(sa("[2001:db8::1]:1")));
        let (h, n) = decode(b"PROXY UNKNOWN whatever\r\n").unwrap();
        assert_eq!((h.source, n), (None, 24));
        assert_eq!(encode(Version::V1, sa("10.0.0.1:5"), sa("10.0.0.2:6")), b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n");
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n"[..],
            b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n",
        ] {
            assert!(matches!(decode(bad), Err(Error::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(decode(&long), Err(Error::Malformed(_))));
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(Error::NotProxy));
        assert_eq!(decode(b"PROX"), Err(Error::Incomplete(1)));
    }

    #[test]
    fn v2_known_bytes() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb]);
        let (d, n) = decode(&h).unwrap();
        assert_eq!(n, 28);
        assert_eq!(d.source, Some(sa("192.0.2.1:56324")));
        assert_eq!(d.destination, Some(sa("198.51.100.2:443")));
        assert_eq!(encode(Version::V2, sa("192.0.2.1:56324"), sa("198.51.100.2:443")), h);
        // LOCAL carries no client.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(decode(&local), Ok((Header { source: None, destination: None }, 16)));
        // TLVs after the addresses are skipped.
        let mut tlv = V2_SIGNATURE.to_vec();
        tlv.extend_from_slice(&[0x21, 0x11, 0, 15, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04, 0, 0]);
        assert_eq!(decode(&tlv).unwrap().1, 31);
    }

    #[test]
    fn v2_refusals() {
        let with = |tail: &[u8]| [V2_SIGNATURE.as_slice(), tail].concat();
        assert!(matches!(decode(&with(&[0x11, 0x11, 0, 12])), Err(Error::Malformed(_))), "version 1 in a v2 header");
        assert!(matches!(decode(&with(&[0x22, 0x11, 0, 0])), Err(Error::Malformed(_))), "command 2");
        assert!(matches!(decode(&with(&[0x21, 0x11, 0, 4, 1, 2, 3, 4])), Err(Error::Malformed(_))), "short block");
        assert!(
            matches!(
                decode(&with(&[0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])),
                Err(Error::Malformed(_))
            ),
            "UDP"
        );
        assert!(matches!(decode(&with(&[0x21, 0x31, 0, 0])), Err(Error::Malformed(_))), "unix");
        assert!(matches!(decode(&with(&[0x21, 0x11, 0xff, 0xff])), Err(Error::Malformed(_))), "64 KB block");
        assert_eq!(decode(&with(&[0x21, 0x11, 0, 12, 1])), Err(Error::Incomplete(11)));
    }

    #[test]
    fn signature_prefixes_are_undecided() {
        assert_eq!(starts_with_signature(b""), None);
        assert_eq!(starts_with_signature(b"PRO"), None);
        assert_eq!(starts_with_signature(b"\r\n\r\n"), None);
        assert_eq!(starts_with_signature(b"\r\n\r\nX"), Some(false));
        assert_eq!(starts_with_signature(b"PROXY "), Some(true));
        assert_eq!(starts_with_signature(b"PROXI"), Some(false));
        assert_eq!(starts_with_signature(b"GET"), Some(false));
        assert_eq!(starts_with_signature(&V2_SIGNATURE), Some(true));
    }

    fn addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::new(Ipv4Addr::from(o).into(), p));
        let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::new(Ipv6Addr::from(o).into(), p));
        let any_addr = prop_oneof![v4, v6];
        (any_addr.clone(), any_addr)
    }

    /// Reads the way the router does: exactly the bytes the decoder asks for.
    fn stream_decode(input: &[u8]) -> Result<(Header, usize), Error> {
        let mut have = 0;
        loop {
            match decode(&input[..have]) {
                Err(Error::Incomplete(more)) if have + more <= input.len() => have += more,
                other => return other,
            }
        }
    }

    proptest! {
        #![proptest_config(crate::routes::proptest_config(2000))]

        #[test]
        fn round_trip((src, dst) in addr_pair(), v2 in any::<bool>(), rest in prop::collection::vec(any::<u8>(), 0..32)) {
            let version = if v2 { Version::V2 } else { Version::V1 };
            let header = encode(version, src, dst);
            let (s, d) = same_family(src, dst);
            let mut input = header.clone();
            input.extend_from_slice(&rest);
            let expect = Ok((Header { source: Some(s), destination: Some(d) }, header.len()));
            prop_assert_eq!(decode(&input), expect.clone());
            // Streaming never reads past the header.
            prop_assert_eq!(stream_decode(&input), expect);
            for cut in 0..header.len() {
                prop_assert!(matches!(decode(&header[..cut]), Err(Error::Incomplete(_))), "prefix {cut}");
            }
            if v2 {
                prop_assert!(header.len() <= 52);
            } else {
                prop_assert!(header.len() <= V1_MAX);
            }
        }

        #[test]
        fn any_bytes_decode_or_say_why(bytes in prop::collection::vec(any::<u8>(), 0..200), sig in 0..3u8) {
            let input = match sig {
                0 => bytes,
                1 => [V1_SIGNATURE, &bytes].concat(),
                _ => [V2_SIGNATURE.as_slice(), &bytes].concat(),
            };
            match decode(&input) {
                Ok((_, n)) => prop_assert!(n <= input.len()),
                Err(Error::Incomplete(more)) => prop_assert!(more >= 1),
                Err(_) => {}
            }
            let _ = stream_decode(&input);
        }
    }
}
