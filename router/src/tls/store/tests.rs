use std::sync::Arc;

use super::*;
use crate::tls::cert::{Bundle, load, tests::make};

fn cert(name: &str, source: &str, sans: &[&str]) -> Loaded {
    let (c, k) = make(sans, 2040);
    let b = Bundle { name: name.into(), origin: format!("{name}.pem"), chain_pem: c, key_pem: k };
    load(&b, source, &rustls::crypto::ring::default_provider(), 0).expect("loads")
}

fn store(default: Option<&str>) -> Store {
    Store::build(
        [
            cert("first", "dir:/a", &["a.example.com", "shared.example.com"]),
            cert("wild", "dir:/a", &["*.example.com"]),
            cert("second", "consul:certs/", &["shared.example.com", "b.example.com"]),
        ],
        default,
        Vec::new(),
    )
}

fn chosen(s: &Store, sni: Option<&str>, strict: bool) -> Option<(String, Match)> {
    s.choose(sni, strict).map(|(c, m)| (c.info.name.clone(), m))
}

#[test]
fn exact_then_wildcard_then_default() {
    let s = store(None);
    let c = |sni| chosen(&s, Some(sni), false);
    assert_eq!(c("a.example.com"), Some(("first".into(), Match::Exact)));
    assert_eq!(c("A.Example.COM."), Some(("first".into(), Match::Exact)), "case and a trailing dot");
    assert_eq!(c("b.example.com"), Some(("second".into(), Match::Exact)));
    assert_eq!(c("x.example.com"), Some(("wild".into(), Match::Wildcard)));
    assert_eq!(c("x.y.example.com"), Some(("first".into(), Match::Default)), "a wildcard covers one label");
    assert_eq!(c("example.com"), Some(("first".into(), Match::Default)));
    assert_eq!(chosen(&s, None, false), Some(("first".into(), Match::Default)), "no SNI");
}

#[test]
fn the_first_source_wins_a_name() {
    assert_eq!(chosen(&store(None), Some("shared.example.com"), false), Some(("first".into(), Match::Exact)));
}

#[test]
fn strict_mode_refuses_uncovered_names_but_not_clients_without_sni() {
    let s = store(None);
    assert_eq!(chosen(&s, Some("other.org"), true), None);
    assert_eq!(chosen(&s, Some("x.y.example.com"), true), None);
    assert_eq!(chosen(&s, Some("x.example.com"), true), Some(("wild".into(), Match::Wildcard)));
    assert_eq!(chosen(&s, None, true), Some(("first".into(), Match::Default)));
}

#[test]
fn the_default_is_named_or_the_first() {
    let s = store(Some("second"));
    assert_eq!(chosen(&s, Some("other.org"), false), Some(("second".into(), Match::Default)));
    assert!(s.problems.is_empty());
    let s = store(Some("missing"));
    assert_eq!(chosen(&s, Some("other.org"), false), Some(("first".into(), Match::Default)));
    assert!(s.problems[0].message.contains("missing"), "{:?}", s.problems);
    let defaults: Vec<bool> = s.certs().map(|(_, d)| d).collect();
    assert_eq!(defaults, [true, false, false]);
}

#[test]
fn an_empty_store_serves_nothing() {
    let s = Store::build([], None, Vec::new());
    assert!(s.choose(Some("a.example.com"), false).is_none());
    assert!(s.choose(None, false).is_none());
}

#[test]
fn covers_is_what_the_redirect_asks() {
    let s = store(None);
    assert!(s.covers("a.example.com:8080"));
    assert!(s.covers("x.example.com"));
    assert!(!s.covers("x.y.example.com"), "the default does not count");
    assert!(!s.covers("127.0.0.1:80"));
}

#[test]
fn the_resolver_sees_a_new_set_at_once() {
    let r = Resolver { store: ArcSwap::from_pointee(store(None)), strict: false };
    assert!(format!("{r:?}").contains("certs: 3"));
    r.store.store(Arc::new(Store::build([cert("n", "s", &["n.example.com"])], None, Vec::new())));
    assert_eq!(chosen(&r.store.load(), Some("a.example.com"), false), Some(("n".into(), Match::Default)));
}

/// Whatever a client puts in SNI (and whatever a Host header holds), the
/// choice answers without panicking, and never with a non-default match
/// for a name no certificate lists.
#[test]
fn arbitrary_names_are_answered() {
    use rand::{Rng, SeedableRng};
    let s = store(None);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let alphabet = b"abxy.-*:[]AZ09\xff";
    for _ in 0..5000 {
        let len = rng.random_range(0..300);
        let name: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect();
        let chosen = s.choose(Some(&name), false).map(|(c, m)| (c.info.name.as_str(), m));
        if !name.to_ascii_lowercase().contains("example") {
            assert_eq!(chosen, Some(("first", Match::Default)), "{name:?}");
        }
        let _ = s.covers(&name);
    }
}
