use rcgen::{CertificateParams, KeyPair, date_time_ymd};

use super::*;

/// A self-signed certificate for `sans` (chain PEM, key PEM), valid until `year`.
pub fn make(sans: &[&str], year: i32) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(year, 1, 1);
    let cert = p.self_signed(&key).expect("sign");
    (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
}

fn bundle(chain: Vec<u8>, key: Vec<u8>) -> Bundle {
    Bundle { name: "app".into(), origin: "/certs/app.pem".into(), chain_pem: chain, key_pem: key }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// 2030-01-01.
const NOW: i64 = 1_893_456_000;

#[test]
fn a_good_certificate_loads_with_names_from_its_sans() {
    let (c, k) = make(&["App.Example.com", "*.example.com"], 2040);
    let l = load(&bundle(c, k), "dir:/certs", &provider(), NOW).expect("loads");
    assert_eq!(l.info.sans, ["app.example.com", "*.example.com"]);
    assert_eq!(l.info.source, "dir:/certs");
    assert_eq!(l.info.origin, "/certs/app.pem");
    assert!(l.info.not_after > NOW && l.info.not_before < NOW);
    assert!(!l.info.serial.is_empty() && l.info.serial.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn chain_and_key_in_one_file() {
    let (mut c, k) = make(&["a.example.com"], 2040);
    c.extend_from_slice(&k);
    assert!(load(&bundle(c.clone(), c), "s", &provider(), NOW).is_ok());
}

#[test]
fn expired_certificates_are_refused() {
    let (c, k) = make(&["a.example.com"], 2025);
    let e = load(&bundle(c, k), "s", &provider(), NOW).expect_err("expired");
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let (c, _) = make(&["a.example.com"], 2040);
    let (_, other) = make(&["a.example.com"], 2040);
    let e = load(&bundle(c, other), "s", &provider(), NOW).expect_err("mismatch");
    assert!(e.contains("does not belong"), "{e}");
}

#[test]
fn garbage_missing_parts_and_no_sans_are_refused() {
    let (c, k) = make(&["a.example.com"], 2040);
    let cases: [(Vec<u8>, Vec<u8>, &str); 5] = [
        (b"not a pem".to_vec(), k.clone(), "no CERTIFICATE"),
        (c.clone(), b"nothing".to_vec(), "private key"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(), k.clone(), "does not parse"),
        (c[..c.len() / 2].to_vec(), k.clone(), ""),
        (make(&["192.0.2.1"], 2040).0, make(&["192.0.2.1"], 2040).1, "no DNS name"),
    ];
    for (chain, key, want) in cases {
        let e = load(&bundle(chain, key), "s", &provider(), NOW).expect_err("refused");
        assert!(e.contains(want), "{e} should mention {want}");
    }
}

#[test]
fn files_are_paired_by_fabios_naming() {
    let e: BTreeMap<String, Vec<u8>> = [
        ("a.pem", "A"),
        ("b-cert.pem", "BC"),
        ("b-key.pem", "BK"),
        ("c-cert.pem", "CC"),
        ("d-key.pem", "DK"),
        ("README", "x"),
        ("e.pem.bak", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    let (b, skipped) = bundles(&e, |n| format!("/d/{n}"));
    let got: Vec<(&str, &str, &[u8], &[u8])> =
        b.iter().map(|b| (b.name.as_str(), b.origin.as_str(), &b.chain_pem[..], &b.key_pem[..])).collect();
    assert_eq!(got, [("a", "/d/a.pem", &b"A"[..], &b"A"[..]), ("b", "/d/b-cert.pem", b"BC", b"BK")]);
    let s: Vec<(&str, &str)> = skipped.iter().map(|s| (s.origin.as_str(), s.message.as_str())).collect();
    assert_eq!(s, [("/d/c-cert.pem", "no c-key.pem next to it"), ("/d/d-key.pem", "no d-cert.pem next to it")]);
}

/// Hostile input: a valid certificate with random bytes of its DER changed
/// (and cut short) is either refused with a reason or still loads; checking
/// never panics. Seeded, so a failure repeats.
#[test]
fn corrupted_certificates_never_panic() {
    use rand::{Rng, SeedableRng};
    let (c, k) = make(&["a.example.com"], 2040);
    let der = CertificateDer::from_pem_slice(&c).expect("der").to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let p = provider();
    for _ in 0..1000 {
        let mut bad = der.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bad.len());
            bad[i] = rng.random();
        }
        if rng.random_bool(0.2) {
            bad.truncate(rng.random_range(0..bad.len()));
        }
        let text = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64_lines(&bad));
        if let Err(e) = load(&bundle(text.into_bytes(), k.clone()), "s", &p, NOW) {
            assert!(!e.is_empty());
        }
    }
}

/// Standard base64 in 64-character lines, as PEM has it.
fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out.as_bytes().chunks(64).map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>().join("\n")
}
