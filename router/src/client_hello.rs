//! The server name (SNI) of a TLS ClientHello, read from the raw bytes a
//! client sent, before anything is decided about the connection: the TLS
//! listener passes a connection through untouched when the name has a
//! passthrough route, and hands the same bytes to rustls otherwise.
//!
//! Pure and total: any input gives an answer, never a panic, and the
//! answer only asks for more bytes when more bytes can complete a hello.
//! The hello may be split over several TLS records (and they over several
//! TCP segments): the records' fragments are joined before the handshake
//! message is read. Whatever is not a well-formed ClientHello with at most
//! one host name is [`Error::Malformed`]: the listener then lets rustls
//! answer it (a hello this parser refuses is never passed through).

use std::fmt;

/// Largest ClientHello (handshake message body) considered. Real ones are
/// well under 2 KiB (a few KiB with post-quantum key shares); a larger
/// claim is refused rather than buffered.
pub const MAX_HELLO: usize = 16 * 1024;

/// Most bytes of records read for one hello: a hello cut into many tiny
/// records is refused once its records reach this.
pub const MAX_INPUT: usize = 2 * MAX_HELLO;

/// Most records one hello may span. Clients cut a hello only at the 16 KiB
/// record limit (or a negotiated smaller one, 512 bytes at the least); the
/// bound also keeps a listener from parsing the input again and again as a
/// hostile client feeds tiny records.
pub const MAX_RECORDS: usize = 64;

/// Most bytes a listener has to buffer before [`server_name`] answers
/// anything but [`Error::Incomplete`].
pub const MAX_BUFFER: usize = MAX_INPUT + 5 + MAX_RECORD;

/// Largest TLS plaintext record fragment (RFC 8446 §5.1).
const MAX_RECORD: usize = 16 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// Why no server name could be read (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes so far are the start of a possible ClientHello: read more,
    /// up to this many in all (the answer cannot change before; at most
    /// [`MAX_BUFFER`]).
    Incomplete(usize),
    /// Not a ClientHello, or one this parser refuses (the reason, for logs).
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete(_) => f.write_str("ClientHello incomplete"),
            Error::Malformed(why) => write!(f, "malformed ClientHello: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A complete ClientHello's server name: `None` when it sent none. The
/// name is lower-cased, a trailing dot dropped (as routes see hosts).
pub fn server_name(input: &[u8]) -> Result<Option<String>, Error> {
    let hello = handshake_message(input)?;
    parse_hello(hello)
}

/// Joins the fragments of the handshake records at the start of `input`
/// until the first handshake message is whole; returns its body.
fn handshake_message(input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut joined: Vec<u8> = Vec::new();
    let mut at = 0;
    for _ in 0..MAX_RECORDS {
        if at >= MAX_INPUT {
            return Err(Error::Malformed("ClientHello spread over too many records"));
        }
        let rest = &input[at..];
        let Some(header) = rest.get(..5) else {
            // What is there of the header must still look like a handshake
            // record, else no amount of waiting helps.
            return match rest.first() {
                Some(&t) if t != RECORD_HANDSHAKE => Err(Error::Malformed("not a handshake record")),
                _ => match rest.get(1) {
                    Some(&major) if major != 3 => Err(Error::Malformed("record version is not 3.x")),
                    _ => Err(Error::Incomplete(at + 5)),
                },
            };
        };
        if header[0] != RECORD_HANDSHAKE {
            return Err(Error::Malformed("not a handshake record"));
        }
        if header[1] != 3 {
            return Err(Error::Malformed("record version is not 3.x"));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Err(Error::Malformed("empty handshake record"));
        }
        if len > MAX_RECORD {
            return Err(Error::Malformed("record longer than 16 KiB"));
        }
        let Some(fragment) = rest.get(5..5 + len) else { return Err(Error::Incomplete(at + 5 + len)) };
        joined.extend_from_slice(fragment);
        at += 5 + len;
        if let Some(&kind) = joined.first()
            && kind != HANDSHAKE_CLIENT_HELLO
        {
            return Err(Error::Malformed("first handshake message is not a ClientHello"));
        }
        if joined.len() >= 4 {
            let body = usize::from(joined[1]) << 16 | usize::from(joined[2]) << 8 | usize::from(joined[3]);
            if body > MAX_HELLO {
                return Err(Error::Malformed("ClientHello longer than the limit"));
            }
            if joined.len() >= 4 + body {
                // Bytes after the hello in its last record would be another
                // handshake message: a client sends none before the answer.
                if joined.len() > 4 + body {
                    return Err(Error::Malformed("data after the ClientHello in its record"));
                }
                joined.drain(..4);
                return Ok(joined);
            }
        }
    }
    Err(Error::Malformed("ClientHello spread over too many records"))
}

/// Reads big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Malformed("field runs past its end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one- or two-byte length in front.
    fn vec8(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_hello(body: Vec<u8>) -> Result<Option<String>, Error> {
    let mut r = Reader(&body);
    let version = r.u16()?;
    if version >> 8 != 3 {
        return Err(Error::Malformed("client version is not 3.x"));
    }
    r.take(32)?; // random
    if r.vec8()?.len() > 32 {
        return Err(Error::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Error::Malformed("cipher suite list empty or odd"));
    }
    if r.vec8()?.is_empty() {
        return Err(Error::Malformed("no compression method"));
    }
    if r.is_empty() {
        // A hello without extensions (TLS 1.2 and older may send one).
        return Ok(None);
    }
    let mut exts = Reader(r.vec16()?);
    if !r.is_empty() {
        return Err(Error::Malformed("bytes after the extensions"));
    }
    let mut name = None;
    let mut seen = Vec::new();
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        // RFC 8446 §4.2: no extension type twice. A second server_name
        // could be read one way here and another way by the backend.
        if seen.contains(&kind) {
            return Err(Error::Malformed("an extension appears twice"));
        }
        seen.push(kind);
        if kind == EXT_SERVER_NAME {
            name = server_name_ext(data)?;
        }
    }
    Ok(name)
}

/// The server_name extension (RFC 6066 §3): exactly one `host_name`.
fn server_name_ext(data: &[u8]) -> Result<Option<String>, Error> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    if !r.is_empty() {
        return Err(Error::Malformed("bytes after the server name list"));
    }
    if list.is_empty() {
        // Servers send it empty in their answer; a client should not, but
        // an empty list names nothing.
        return Ok(None);
    }
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind != NAME_TYPE_HOST {
            return Err(Error::Malformed("server name of a type other than host_name"));
        }
        if host.is_some() {
            return Err(Error::Malformed("more than one host name"));
        }
        host = Some(host_name(name)?);
    }
    Ok(host)
}

/// A DNS host name as SNI carries it (RFC 6066: no IP literal, no trailing
/// dot, though one is tolerated and dropped): letters, digits, `-`, `_` and
/// dots between non-empty labels, at most 253 bytes.
fn host_name(raw: &[u8]) -> Result<String, Error> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > 253 {
        return Err(Error::Malformed("host name empty or longer than 253 bytes"));
    }
    let label_ok = |l: &[u8]| {
        !l.is_empty() && l.len() <= 63 && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !raw.split(|&b| b == b'.').all(label_ok) {
        return Err(Error::Malformed("host name with a character or label DNS does not allow"));
    }
    // Checked ASCII above.
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello body with the given extensions (type, data).
    fn hello_body(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]);
        b.push(0); // session id
        b.extend([0, 2, 0x13, 0x01]); // one suite
        b.extend([1, 0]); // null compression
        let mut e = Vec::new();
        for (kind, data) in exts {
            e.extend(kind.to_be_bytes());
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        b.extend((e.len() as u16).to_be_bytes());
        b.extend(e);
        b
    }

    fn sni_ext(names: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for n in names {
            list.push(0);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(*n);
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        (0, d)
    }

    /// The handshake message, cut into records of at most `chunk` bytes.
    fn records(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut msg = vec![1];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        let mut out = Vec::new();
        for c in msg.chunks(chunk) {
            out.extend([22, 3, 1]);
            out.extend((c.len() as u16).to_be_bytes());
            out.extend(c);
        }
        out
    }

    fn with_sni(name: &str) -> Vec<u8> {
        records(&hello_body(&[(10, vec![0, 2, 0, 29]), sni_ext(&[name.as_bytes()])]), 16384)
    }

    #[test]
    fn reads_the_name() {
        assert_eq!(server_name(&with_sni("API.Example.com.")), Ok(Some("api.example.com".into())));
        assert_eq!(server_name(&records(&hello_body(&[]), 100)), Ok(None));
        assert_eq!(server_name(&records(&hello_body(&[(10, vec![0, 2, 0, 29])]), 100)), Ok(None));
        // Without any extensions block at all.
        let mut bare = hello_body(&[]);
        bare.truncate(bare.len() - 2);
        assert_eq!(server_name(&records(&bare, 100)), Ok(None));
    }

    #[test]
    fn fragmented_over_records() {
        let body = hello_body(&[sni_ext(&[b"a.example.com"])]);
        for chunk in [2, 3, 4, 5, 17, 100] {
            assert_eq!(server_name(&records(&body, chunk)), Ok(Some("a.example.com".into())), "{chunk}");
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let full = records(&hello_body(&[sni_ext(&[b"a.example.com"])]), 7);
        for n in 0..full.len() {
            match server_name(&full[..n]) {
                Err(Error::Incomplete(need)) => assert!(need > n && need <= full.len(), "prefix {n}: {need}"),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_what_is_ambiguous_or_not_a_hello() {
        let malformed = |b: &[u8]| matches!(server_name(b), Err(Error::Malformed(_)));
        assert!(malformed(b"GET / HTTP/1.1\r\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4"));
        assert!(malformed(&[22, 2]));
        assert!(malformed(&[22, 3, 1, 0, 0]));
        assert!(malformed(&[22, 3, 1, 0x40, 1]), "record over 16 KiB");
        // Two server_name extensions, two host names, a non-host name type.
        let two_ext = hello_body(&[sni_ext(&[b"a.com"]), sni_ext(&[b"b.com"])]);
        assert!(malformed(&records(&two_ext, 16384)));
        assert!(malformed(&records(&hello_body(&[sni_ext(&[b"a.com", b"b.com"])]), 16384)));
        let mut other_type = sni_ext(&[b"a.com"]);
        other_type.1[2] = 1;
        assert!(malformed(&records(&hello_body(&[other_type]), 16384)));
        // Names DNS does not allow.
        for bad in [&b""[..], b".", b"a..b", b"a b.com", b"a/b", b"\xff.com", b"*.a.com", &[b'a'; 254]] {
            assert!(malformed(&records(&hello_body(&[sni_ext(&[bad])]), 16384)), "{bad:?}");
        }
        // Another handshake message first, and a claimed length over the limit.
        let mut server_hello = records(&hello_body(&[]), 16384);
        server_hello[5] = 2;
        assert!(malformed(&server_hello));
        assert!(malformed(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]));
        // Data after the hello in the same record.
        let mut msg = records(&hello_body(&[sni_ext(&[b"a.com"])]), 16384);
        msg.push(0);
        let len = u16::from_be_bytes([msg[3], msg[4]]) + 1;
        msg[3..5].copy_from_slice(&len.to_be_bytes());
        assert!(malformed(&msg));
    }

    #[test]
    fn tiny_records_are_bounded() {
        let body = hello_body(&[(0xfe00, vec![0; 8000]), sni_ext(&[b"a.com"])]);
        // 1-byte records: refused at the 65th, before the end of the hello.
        let tiny = records(&body, 1);
        assert!(matches!(server_name(&tiny), Err(Error::Malformed(_))));
        assert!(matches!(server_name(&tiny[..MAX_RECORDS * 6]), Err(Error::Malformed(_))));
        assert!(matches!(server_name(&tiny[..MAX_RECORDS * 6 - 1]), Err(Error::Incomplete(_))));
        // The smallest fragment a client may negotiate is fine.
        assert_eq!(server_name(&records(&body, 512)), Ok(Some("a.com".into())));
    }

    #[test]
    fn a_real_hello() {
        // A ClientHello as rustls writes it, SNI and ALPN included.
        let hello = rustls_client_hello("kube.example.com");
        assert_eq!(server_name(&hello), Ok(Some("kube.example.com".into())));
    }

    fn rustls_client_hello(name: &str) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    proptest! {
        #![proptest_config(crate::routes::proptest_config(2000))]

        /// Garbage never panics, and more bytes are asked for only while
        /// the input is under the bound a listener buffers.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Err(Error::Incomplete(need)) = server_name(&bytes) {
                prop_assert!(need > bytes.len() && need <= MAX_BUFFER);
            }
        }

        /// Bytes that start like a handshake record: the parser gets deep.
        #[test]
        fn hello_shaped_garbage(len in 0usize..400, tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = vec![22, 3, 1];
            b.extend((len as u16).to_be_bytes());
            b.extend([1, 0]);
            b.extend(((len.saturating_sub(4)) as u16).to_be_bytes());
            b.extend(tail);
            let _ = server_name(&b);
        }

        /// A valid hello, fragmented any way, gives its name; any byte
        /// changed gives an answer (maybe another), never a panic; cut
        /// short it asks for more.
        #[test]
        fn fragmented_mutated_truncated(
            label in "[a-z0-9][a-z0-9-]{0,20}",
            chunk in 2usize..64,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let name = format!("{label}.example.com");
            let msg = records(&hello_body(&[(10, vec![0, 2, 0, 29]), sni_ext(&[name.as_bytes()])]), chunk);
            prop_assert_eq!(server_name(&msg), Ok(Some(name)));
            let i = at.index(msg.len());
            prop_assert!(matches!(server_name(&msg[..i]), Err(Error::Incomplete(n)) if n > i && n <= msg.len()));
            let mut bent = msg.clone();
            bent[i] = byte;
            let _ = server_name(&bent);
        }

        /// A hello larger than the limit is refused however it is cut.
        #[test]
        fn oversized(extra in 0usize..4096, chunk in 512usize..16384) {
            let body = hello_body(&[(0xfe00, vec![0; MAX_HELLO + extra])]);
            let msg = records(&body, chunk);
            prop_assert!(matches!(server_name(&msg), Err(Error::Malformed(_))));
        }
    }
}
