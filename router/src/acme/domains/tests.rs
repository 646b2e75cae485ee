use proptest::prelude::*;

use super::*;

fn p(list: &str) -> DomainPatterns {
    DomainPatterns::parse(list).unwrap()
}

#[test]
fn wildcard_covers_exactly_one_label() {
    let d = p("*.example.com,example.org");
    assert!(d.matches("www.example.com"));
    assert!(d.matches("api.example.com"));
    assert!(!d.matches("example.com"));
    assert!(!d.matches("a.b.example.com"));
    assert!(!d.matches("wwwexample.com"));
    assert!(d.matches("example.org"));
    assert!(!d.matches("www.example.org"));
    assert!(!d.matches("example.net"));
}

#[test]
fn entries_are_trimmed_and_lower_cased() {
    let d = p(" *.Example.COM , Example.org ");
    assert!(d.matches("www.example.com"));
    assert!(d.matches("example.org"));
    assert_eq!(d.to_string(), "*.example.com,example.org");
}

#[test]
fn bad_lists_are_refused_naming_the_entry() {
    for (list, needle) in [
        ("", "empty pattern"),
        ("example.com,", "empty pattern"),
        ("example.com,,example.org", "empty pattern"),
        ("*", "\"*\""),
        ("*.com", "two labels"),
        ("com", "two labels"),
        ("a.*.example.com", "letters, digits and hyphens"),
        ("**.example.com", "letters, digits and hyphens"),
        ("*.*.example.com", "letters, digits and hyphens"),
        ("exa mple.com", "letters, digits and hyphens"),
        ("example.com.", "1 to 63"),
        ("-a.example.com", "hyphen"),
        ("a-.example.com", "hyphen"),
        ("10.0.0.1", "IP address"),
        ("example.com:443", "letters, digits and hyphens"),
        ("ex_ample.com", "letters, digits and hyphens"),
    ] {
        let err = DomainPatterns::parse(list).expect_err(list);
        assert!(err.contains(needle), "{list:?}: {err}");
    }
    let long = format!("{}.com", "a".repeat(64));
    assert!(DomainPatterns::parse(&long).unwrap_err().contains("1 to 63"));
    let too_long = format!("{}com", "abcdefghi.".repeat(26));
    assert!(DomainPatterns::parse(&too_long).unwrap_err().contains("1 to 253"));
}

#[test]
fn wanted_takes_exact_matching_uncovered_hosts_only() {
    let d = p("*.example.com,example.org");
    let hosts = [
        "",                // any-host route
        "www.example.com", // wanted
        "*.example.com",   // wildcard route host: needs DNS-01
        "api.example.com", // covered by a --cert-source certificate
        "example.org",     // wanted
        "www.example.org", // outside the patterns
        "other.net",       // outside the patterns
        "www.example.com", // twice in the table (two paths): once
        "10.0.0.1",        // not a DNS name
        "a.b.example.com", // two labels under the wildcard
    ];
    let got = wanted(hosts, &d, |h| h == "api.example.com");
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["example.org", "www.example.com"]);
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

proptest! {
    #![proptest_config(crate::routes::proptest_config(2000))]

    /// Any input: parsing never panics, and what it accepts round-trips
    /// through its display form.
    #[test]
    fn parse_is_total_and_round_trips(list in "[a-zA-Z0-9*.,_ -]{0,40}") {
        if let Ok(d) = DomainPatterns::parse(&list) {
            prop_assert_eq!(DomainPatterns::parse(&d.to_string()), Ok(d));
        }
    }

    /// A wildcard pattern matches a name exactly when the name is one
    /// label followed by the pattern's parent.
    #[test]
    fn wildcard_match_is_one_label(parent in proptest::collection::vec(label(), 1..3), tld in "[a-z]{2,4}",
                                   name in proptest::collection::vec(label(), 1..5), name_tld in "[a-z]{2,4}") {
        let parent = format!("{}.{tld}", parent.join("."));
        let name = format!("{}.{name_tld}", name.join("."));
        let d = DomainPatterns::parse(&format!("*.{parent}")).unwrap();
        let expected = name.split_once('.').is_some_and(|(_, rest)| rest == parent);
        prop_assert_eq!(d.matches(&name), expected);
        // Every name `wanted` returns matches and is a DNS name.
        for w in wanted([name.as_str()], &d, |_| false) {
            prop_assert!(d.matches(&w) && dns_name(&w).is_ok());
        }
    }
}
