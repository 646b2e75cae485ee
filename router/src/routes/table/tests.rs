//! Table tests: assembly from tags and overrides, weights, and lookup order.

use super::*;
use crate::routes::HostHeader;

fn inst(service: &str, id: &str, port: u16, tags: &[&str]) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        address: "10.0.0.1".into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn build(instances: &[Instance], overrides: &str) -> (Table, Vec<Problem>) {
    Table::build(instances, overrides, "urlprefix-")
}

fn clean(instances: &[Instance], overrides: &str) -> Table {
    let (t, problems) = build(instances, overrides);
    assert!(problems.is_empty(), "{problems:?}");
    t
}

/// `service@host/path` of the route a request lands on, or "none".
fn hit(t: &Table, host: &str, path: &str) -> String {
    t.lookup(host, path, false).map_or("none".into(), |r| format!("{}@{}{}", r.service, r.host, r.path))
}

fn weights(t: &Table, host: &str, path: &str) -> Vec<(String, f64)> {
    let r = t.lookup(host, path, false).expect("route");
    r.targets.iter().map(|t| (t.instance_id.clone(), (t.weight * 1e6).round() / 1e6)).collect()
}

fn w(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(id, w)| (id.to_string(), (w * 1e6).round() / 1e6)).collect()
}

#[test]
fn one_tag_one_route() {
    let t = clean(&[inst("web", "web-1", 8080, &["urlprefix-example.com/", "production"])], "");
    assert_eq!(t.len(), 1);
    assert!(!t.is_empty());
    let r = t.lookup("example.com", "/x", false).expect("route");
    assert_eq!((r.host.as_str(), r.path.as_str(), r.service.as_str()), ("example.com", "/", "web"));
    assert_eq!(r.targets.len(), 1);
    let target = &r.targets[0];
    assert_eq!(target.url, "http://10.0.0.1:8080/");
    assert_eq!(target.instance_id, "web-1");
    assert_eq!(target.weight, 1.0);
    assert_eq!(target.tags, vec!["urlprefix-example.com/", "production"]);
    assert_eq!(r.pick(Strategy::Rr, &[]).map(|(i, _)| i), Some(0));
    assert_eq!(r.pick(Strategy::Rnd, &[]).map(|(i, _)| i), Some(0));
    assert!(r.pick(Strategy::Rr, &[0]).is_none());
}

#[test]
fn empty_table() {
    let t = Table::empty();
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert!(t.lookup("example.com", "/", false).is_none());
    assert!(clean(&[], "").is_empty());
    assert!(clean(&[inst("db", "db-1", 5432, &["primary"])], "").is_empty(), "no urlprefix tag, no route");
}

#[test]
fn host_header_case_trailing_dot_and_default_port_are_normalised() {
    let t = clean(&[inst("web", "w", 1, &["urlprefix-Example.com/"]), inst("v6", "v", 2, &["urlprefix-[::1]/"])], "");
    for host in ["example.com", "EXAMPLE.com", "Example.Com:80", "example.com.", "example.com.:80"] {
        assert_eq!(hit(&t, host, "/"), "web@example.com/", "{host}");
    }
    for host in ["[::1]", "[::1]:80"] {
        assert_eq!(hit(&t, host, "/"), "v6@[::1]/", "{host}");
    }
    assert_eq!(hit(&t, "example.org", "/"), "none");
    assert_eq!(hit(&t, "", "/"), "none");
    assert_eq!(hit(&t, "::1", "/"), "none", "an unbracketed IPv6 host is not split at a colon");
}

#[test]
fn any_other_port_is_part_of_the_host() {
    let t = clean(
        &[
            inst("plain", "p", 1, &["urlprefix-foo.com/"]),
            inst("p81", "q", 2, &["urlprefix-foo.com:81/"]),
            inst("any", "a", 3, &["urlprefix-/"]),
        ],
        "",
    );
    assert_eq!(hit(&t, "foo.com:81", "/"), "p81@foo.com:81/");
    assert_eq!(hit(&t, "foo.com:82", "/"), "any@/", "falls to the host-less routes");
    assert_eq!(hit(&t, "foo.com:8080", "/"), "any@/");
    assert_eq!(hit(&t, "foo.com:443", "/"), "any@/", ":443 is kept on plain HTTP");
    assert_eq!(t.lookup("foo.com:443", "/", true).map(|r| r.service.as_str()), Some("plain"), "dropped over TLS");
    assert_eq!(t.lookup("foo.com:80", "/", true).map(|r| r.service.as_str()), Some("any"), ":80 kept over TLS");
}

#[test]
fn route_hosts_with_the_default_port_match_the_bare_host() {
    let t =
        clean(&[inst("web", "w", 1, &["urlprefix-xyz.com:80/"]), inst("tls", "t", 2, &["urlprefix-xyz.com:443/"])], "");
    assert_eq!(hit(&t, "xyz.com", "/"), "web@xyz.com:80/");
    assert_eq!(hit(&t, "xyz.com:80", "/"), "web@xyz.com:80/");
    assert_eq!(hit(&t, "xyz.com:443", "/"), "tls@xyz.com:443/", "on plain HTTP :443 is just a port");
    assert_eq!(t.lookup("xyz.com", "/", true).map(|r| r.service.as_str()), Some("tls"));
    assert_eq!(t.lookup("xyz.com:443", "/", true).map(|r| r.service.as_str()), Some("tls"));
}

#[test]
fn globs_match_any_run_including_dots_and_nothing() {
    let t = clean(
        &[
            inst("abc", "a", 1, &["urlprefix-*.abc.com/"]),
            inst("mid", "m", 2, &["urlprefix-api.*.example.org/"]),
            inst("any80", "p", 3, &["urlprefix-*:80/"]),
        ],
        "",
    );
    assert_eq!(hit(&t, "x.y.abc.com", "/"), "abc@*.abc.com/");
    assert_eq!(hit(&t, ".abc.com", "/"), "abc@*.abc.com/", "* matches the empty string");
    assert_eq!(hit(&t, "api.eu.example.org", "/"), "mid@api.*.example.org/");
    assert_eq!(hit(&t, "api..example.org", "/"), "mid@api.*.example.org/");
    assert_eq!(hit(&t, "abc.com", "/"), "any80@*:80/", "*:80 is any host on plain HTTP");
    assert_eq!(hit(&t, "other.net:80", "/"), "any80@*:80/");
    assert_eq!(hit(&t, "other.net:8080", "/"), "any80@*:80/", "on plain HTTP the pattern is `*`, which spans a port");
    assert_eq!(t.lookup("other.net", "/", true).map(|r| r.service.as_str()), None, "not over TLS");
}

#[test]
fn a_glob_that_ranks_before_an_exact_host_is_tried_first() {
    // `*abc.com` reversed is `moc.cba*`, after `moc.cba` (abc.com) in
    // fabio's descending order: the pattern comes first.
    let t =
        clean(&[inst("exact", "e", 1, &["urlprefix-abc.com/"]), inst("glob", "g", 2, &["urlprefix-*abc.com/"])], "");
    assert_eq!(hit(&t, "abc.com", "/"), "glob@*abc.com/");
    assert_eq!(hit(&t, "xabc.com", "/"), "glob@*abc.com/");
    let t =
        clean(&[inst("exact", "e", 1, &["urlprefix-a.abc.com/"]), inst("glob", "g", 2, &["urlprefix-*.abc.com/"])], "");
    assert_eq!(hit(&t, "a.abc.com", "/"), "exact@a.abc.com/", "the exact host first, without the globs");
}

#[test]
fn the_more_specific_host_wins_even_with_a_shorter_path() {
    let t = clean(
        &[
            inst("deep", "d", 1, &["urlprefix-*.a.foo.com/"]),
            inst("broad", "b", 2, &["urlprefix-*.foo.com/api/v1"]),
            inst("exact", "e", 3, &["urlprefix-x.a.foo.com/"]),
        ],
        "",
    );
    assert_eq!(hit(&t, "y.a.foo.com", "/api/v1/x"), "deep@*.a.foo.com/");
    assert_eq!(hit(&t, "x.a.foo.com", "/api/v1/x"), "exact@x.a.foo.com/", "an exact host before any pattern");
    assert_eq!(hit(&t, "y.b.foo.com", "/api/v1/x"), "broad@*.foo.com/api/v1");
}

#[test]
fn specificity_is_fabios_reversed_host_order() {
    let mut hosts = vec!["*.foo.com", "a.foo.com", "*.a.foo.com", "foo.com", "foo.com:80", "*", "*:80", "[::1]:80"];
    hosts.sort_by_key(|h| Reverse(specificity_key(h)));
    // Only hosts that match the same request are ever compared; among
    // those an exact host comes before a pattern and a deeper pattern before
    // a broader one.
    assert_eq!(hosts, vec!["foo.com:80", "*.a.foo.com", "a.foo.com", "*.foo.com", "foo.com", "[::1]:80", "*:80", "*"]);
    assert_eq!(specificity_key("[::1]:80"), "[1::]:80");
    assert_eq!(specificity_key("a.com:8080"), "moc.a:8080");
}

#[test]
fn very_long_mixed_case_host_still_matches() {
    let long = format!("{}.example.com", "a".repeat(300));
    let t = clean(&[inst("web", "w", 1, &[&format!("urlprefix-{long}/")])], "");
    assert_eq!(hit(&t, &long.to_uppercase(), "/"), format!("web@{long}/"));
}

#[test]
fn exact_beats_wildcard_and_specific_wildcard_beats_broad() {
    let t = clean(
        &[
            inst("exact", "e", 1, &["urlprefix-a.example.com/"]),
            inst("wild", "w", 2, &["urlprefix-*.example.com/"]),
            inst("deeper", "d", 3, &["urlprefix-*.a.example.com/"]),
            inst("tld", "t", 4, &["urlprefix-*.com/"]),
        ],
        "",
    );
    assert_eq!(hit(&t, "a.example.com", "/"), "exact@a.example.com/");
    assert_eq!(hit(&t, "b.example.com", "/"), "wild@*.example.com/");
    assert_eq!(hit(&t, "x.y.example.com", "/"), "wild@*.example.com/", "a wildcard spans several labels");
    assert_eq!(hit(&t, "x.a.example.com", "/"), "deeper@*.a.example.com/");
    assert_eq!(hit(&t, "X.A.Example.com:80", "/"), "deeper@*.a.example.com/");
    assert_eq!(hit(&t, "example.com", "/"), "tld@*.com/", "*.example.com does not match example.com itself");
    assert_eq!(hit(&t, "other.org", "/"), "none");
}

#[test]
fn longest_path_prefix_wins_and_prefix_is_plain_string_prefix() {
    let t = clean(
        &[
            inst("root", "r", 1, &["urlprefix-/"]),
            inst("api", "a", 2, &["urlprefix-/api"]),
            inst("v1", "v", 3, &["urlprefix-/api/v1/"]),
            inst("case", "c", 4, &["urlprefix-/API"]),
        ],
        "",
    );
    assert_eq!(hit(&t, "any", "/"), "root@/");
    assert_eq!(hit(&t, "any", "/index.html"), "root@/");
    assert_eq!(hit(&t, "any", "/api"), "api@/api");
    assert_eq!(hit(&t, "any", "/api/v1/users"), "v1@/api/v1/");
    assert_eq!(hit(&t, "any", "/api/v1"), "api@/api", "/api/v1/ is not a prefix of /api/v1");
    assert_eq!(hit(&t, "any", "/apis"), "api@/api", "fabio's prefix match is on the string");
    assert_eq!(hit(&t, "any", "/API/x"), "case@/API", "paths are case-sensitive");
    assert_eq!(hit(&t, "any", "relative"), "none");
}

#[test]
fn host_routes_beat_hostless_and_fall_back_in_fabio_order() {
    let t = clean(
        &[
            inst("any-root", "1", 1, &["urlprefix-/"]),
            inst("any-static", "2", 2, &["urlprefix-/static"]),
            inst("exact-api", "3", 3, &["urlprefix-app.example.com/api"]),
            inst("wild-root", "4", 4, &["urlprefix-*.example.com/admin"]),
        ],
        "",
    );
    // The host's own route wins even over a longer host-less prefix.
    assert_eq!(hit(&t, "app.example.com", "/api/static"), "exact-api@app.example.com/api");
    // The exact host has no route for /admin: the wildcard has.
    assert_eq!(hit(&t, "app.example.com", "/admin"), "wild-root@*.example.com/admin");
    // Neither exact nor wildcard covers /static: the host-less routes do.
    assert_eq!(hit(&t, "app.example.com", "/static/x.css"), "any-static@/static");
    assert_eq!(hit(&t, "app.example.com", "/"), "any-root@/");
    assert_eq!(hit(&t, "unknown.org", "/static"), "any-static@/static");
}

#[test]
fn no_hostless_routes_means_no_fallback() {
    let t = clean(&[inst("web", "w", 1, &["urlprefix-example.com/app"])], "");
    assert_eq!(hit(&t, "example.com", "/other"), "none");
    assert_eq!(hit(&t, "other.com", "/app"), "none");
}

#[test]
fn routes_are_sorted_by_host_then_path_descending() {
    let t = clean(
        &[
            inst("a", "1", 1, &["urlprefix-b.com/", "urlprefix-b.com/x", "urlprefix-/", "urlprefix-/z"]),
            inst("a", "2", 1, &["urlprefix-*.b.com/", "urlprefix-a.com/"]),
        ],
        "",
    );
    let order: Vec<String> = t.routes().iter().map(|r| format!("{}{}", r.host, r.path)).collect();
    assert_eq!(order, vec!["/z", "/", "*.b.com/", "a.com/", "b.com/x", "b.com/"]);
}

#[test]
fn instances_of_several_services_share_a_route() {
    let t = clean(
        &[
            inst("web", "web-1", 1, &["urlprefix-/"]),
            inst("web", "web-2", 2, &["urlprefix-/"]),
            inst("legacy", "legacy-1", 3, &["urlprefix-/"]),
        ],
        "",
    );
    let r = t.lookup("x", "/", false).expect("route");
    assert_eq!(r.service, "legacy,web");
    assert_eq!(weights(&t, "x", "/"), w(&[("legacy-1", 1.0 / 3.0), ("web-1", 1.0 / 3.0), ("web-2", 1.0 / 3.0)]));
}

#[test]
fn instance_order_does_not_matter() {
    let mut list = vec![
        inst("b", "b-2", 2, &["urlprefix-/ weight=0.3", "urlprefix-x.com/"]),
        inst("a", "a-1", 1, &["urlprefix-/"]),
        inst("b", "b-1", 1, &["urlprefix-/ weight=0.3"]),
        inst("c", "c-1", 1, &["urlprefix-*.x.com/"]),
    ];
    let json = |l: &[Instance]| serde_json::to_string(clean(l, "").routes()).expect("json");
    let forward = json(&list);
    list.reverse();
    assert_eq!(forward, json(&list));
}

#[test]
fn target_urls_follow_proto_and_bracket_ipv6() {
    let mut v6 = inst("v6", "v6-1", 8443, &["urlprefix-v6.com/ proto=https"]);
    v6.address = "fd00::7".into();
    let mut named = inst("named", "n-1", 80, &["urlprefix-named.com/"]);
    named.address = "backend-1.internal".into();
    let t = clean(&[v6, named], "");
    assert_eq!(t.lookup("v6.com", "/", false).expect("v6").targets[0].url, "https://[fd00::7]:8443/");
    assert_eq!(t.lookup("named.com", "/", false).expect("named").targets[0].url, "http://backend-1.internal:80/");
}

#[test]
fn malformed_tags_are_skipped_with_a_problem_naming_service_and_tag() {
    let (t, problems) = build(
        &[
            inst("web", "web-1", 1, &["urlprefix-/ok", "urlprefix-:3000", "urlprefix-/w weight=7", "other"]),
            inst("api", "api-1", 2, &["urlprefix-/api redirect=200,http://x", "urlprefix-/api2 allow=ip:300.0.0.0/8"]),
        ],
        "",
    );
    let routes: Vec<&str> = t.routes().iter().map(|r| r.path.as_str()).collect();
    assert_eq!(routes, vec!["/ok", "/api"], "a bad redirect code is ignored, the route proxies");
    assert!(t.lookup("x", "/api", false).expect("route").opts.redirect.is_none());
    let sources: Vec<&str> = problems.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(
        sources,
        vec![
            "service api tag 'urlprefix-/api redirect=200,http://x'",
            "service api tag 'urlprefix-/api2 allow=ip:300.0.0.0/8'",
            "service web tag 'urlprefix-:3000'",
            "service web tag 'urlprefix-/w weight=7'",
        ]
    );
    assert!(problems[0].message.contains("redirect code"));
    assert!(problems[1].message.contains("not an IP"));
    assert!(problems[2].message.contains("TCP"));
    assert!(problems[3].message.contains("weight"));
}

#[test]
fn bad_instance_address_is_a_problem() {
    let mut bad = inst("web", "web-1", 1, &["urlprefix-/"]);
    bad.address = "".into();
    let mut worse = inst("web", "web-2", 1, &["urlprefix-/"]);
    worse.address = "a b".into();
    let (t, problems) = build(&[bad, worse, inst("web", "web-3", 3, &["urlprefix-/"])], "");
    assert_eq!(weights(&t, "x", "/"), w(&[("web-3", 1.0)]));
    assert_eq!(problems.len(), 2);
    assert!(problems.iter().all(|p| p.source == "service web tag 'urlprefix-/'" && p.message.contains("address")));
}

#[test]
fn the_same_instance_twice_on_a_route_is_a_problem() {
    let (t, problems) = build(&[inst("web", "web-1", 1, &["urlprefix-/", "urlprefix-/ strip=/x"])], "");
    assert_eq!(t.lookup("x", "/", false).expect("route").targets.len(), 1);
    assert_eq!(t.lookup("x", "/", false).expect("route").opts.strip, None);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].source, "service web tag 'urlprefix-/ strip=/x'");
    assert!(problems[0].message.contains("already a target"));
}

#[test]
fn conflicting_route_options_keep_the_first_and_are_reported() {
    let (t, problems) = build(
        &[
            inst("web", "web-1", 1, &["urlprefix-/api allow=ip:10.0.0.0/8"]),
            inst("web", "web-2", 2, &["urlprefix-/api deny=ip:10.0.0.0/8"]),
        ],
        "",
    );
    let r = t.lookup("x", "/api", false).expect("route");
    assert_eq!(r.opts.allow.len(), 1);
    assert!(r.opts.deny.is_empty());
    assert_eq!(r.targets.len(), 2, "the target is kept");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].source, "service web tag 'urlprefix-/api deny=ip:10.0.0.0/8'");
    assert!(problems[0].message.contains("service web tag 'urlprefix-/api allow=ip:10.0.0.0/8'"));
}

#[test]
fn options_are_per_target() {
    let (t, problems) = build(
        &[
            inst("web", "web-1", 1, &["urlprefix-/api host=foo.com strip=/api proto=https tlsskipverify=true"]),
            inst("web", "web-2", 2, &["urlprefix-/api host=bar.com prepend=/v2"]),
            inst("web", "web-3", 3, &["urlprefix-/api host=bar.com prepend=/v2"]),
        ],
        "",
    );
    assert!(problems.is_empty(), "per-target options do not conflict: {problems:?}");
    let r = t.lookup("x", "/api", false).expect("route");
    let of = |id: &str| r.targets.iter().find(|t| t.instance_id == id).expect("target");
    assert_eq!(of("web-1").opts.host, HostHeader::Name("foo.com".into()));
    assert_eq!(of("web-1").opts.strip.as_deref(), Some("/api"));
    assert!(of("web-1").opts.tls_skip_verify);
    assert_eq!(of("web-1").url.scheme_str(), Some("https"));
    assert_eq!(of("web-2").opts.host, HostHeader::Name("bar.com".into()));
    assert_eq!(of("web-2").opts.prepend.as_deref(), Some("/v2"));
    assert_eq!(of("web-2").opts.strip, None);
    assert!(!of("web-2").opts.tls_skip_verify);
    assert_eq!(of("web-2").url.scheme_str(), Some("http"));
    assert!(Arc::ptr_eq(&of("web-2").opts, &of("web-3").opts), "equal options are shared");
    // The picker alternates, and each pick carries its own target's options.
    let hosts: Vec<HostHeader> = (0..3).map(|_| r.pick(Strategy::Rr, &[]).expect("pick").1.opts.host.clone()).collect();
    assert!(hosts.contains(&HostHeader::Name("foo.com".into())) && hosts.contains(&HostHeader::Name("bar.com".into())));
    assert!(!r.fast.untouched);
}

#[test]
fn options_reach_the_route() {
    let t = clean(
        &[inst(
            "web",
            "web-1",
            1,
            &["urlprefix-/old redirect=301,https://new.example.com$path", "urlprefix-/in allow=ip:10.0.0.0/8 x=y"],
        )],
        "",
    );
    let r = t.lookup("x", "/old/page", false).expect("redirect route");
    assert_eq!(
        r.opts.redirect.as_ref().map(|r| r.location("x", "/old/page", Some("q=1"))).as_deref(),
        Some("https://new.example.com/old/page?q=1")
    );
    let r = t.lookup("x", "/in", false).expect("internal route");
    assert!(r.opts.allows("10.1.2.3".parse().expect("ip")));
    assert!(!r.opts.allows("192.0.2.1".parse().expect("ip")));
    assert_eq!(r.opts.unknown, vec![("x".to_string(), "y".to_string())]);
}

#[test]
fn tag_weight_is_the_services_share_in_total() {
    let t = clean(
        &[
            inst("stable", "s-1", 1, &["urlprefix-/"]),
            inst("stable", "s-2", 2, &["urlprefix-/"]),
            inst("canary", "c-1", 3, &["urlprefix-/ weight=0.2"]),
            inst("canary", "c-2", 4, &["urlprefix-/ weight=0.2"]),
        ],
        "",
    );
    assert_eq!(weights(&t, "x", "/"), w(&[("c-1", 0.1), ("c-2", 0.1), ("s-1", 0.4), ("s-2", 0.4)]));
}

#[test]
fn rr_pick_follows_the_weights() {
    let t = clean(&[inst("a", "a-1", 1, &["urlprefix-/"]), inst("b", "b-1", 2, &["urlprefix-/ weight=0.25"])], "");
    let r = t.lookup("x", "/", false).expect("route");
    let mut counts = [0usize; 2];
    for _ in 0..400 {
        counts[r.pick(Strategy::Rr, &[]).expect("pick").0] += 1;
    }
    assert_eq!(counts, [300, 100], "a-1 then b-1 in target order");
    assert_eq!(r.pick(Strategy::Rnd, &[0]).map(|(_, t)| t.instance_id.as_str()), Some("b-1"));
}

#[test]
fn explicit_weights_over_one_are_normalized_and_others_get_nothing() {
    let t = clean(
        &[
            inst("a", "a-1", 1, &["urlprefix-/ weight=0.8"]),
            inst("b", "b-1", 2, &["urlprefix-/ weight=0.6"]),
            inst("c", "c-1", 3, &["urlprefix-/"]),
        ],
        "",
    );
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.571429), ("b-1", 0.428571), ("c-1", 0.0)]));
}

#[test]
fn explicit_weights_under_one_with_nobody_else_are_scaled_up() {
    let t = clean(
        &[inst("a", "a-1", 1, &["urlprefix-/ weight=0.1"]), inst("b", "b-1", 2, &["urlprefix-/ weight=0.3"])],
        "",
    );
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.25), ("b-1", 0.75)]));
}

#[test]
fn all_weights_zero_is_reported_and_picks_nothing() {
    let (t, problems) = build(&[inst("a", "a-1", 1, &["urlprefix-/ weight=0"])], "");
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.0)]));
    assert!(t.lookup("x", "/", false).expect("route").pick(Strategy::Rr, &[]).is_none());
    assert_eq!(
        problems,
        vec![Problem {
            source: "route /".into(),
            message: "every target has weight 0; requests for it get 502".into()
        }]
    );
}

#[test]
fn overrides_add_a_route_and_join_an_existing_one() {
    let overrides = "\
# manual routes
route add ext ext.example.com/ http://192.0.2.10:8080/ tags \"manual\" opts \"host=dst\"

route add extra /  http://192.0.2.11:80/
";
    let t = clean(&[inst("web", "web-1", 1, &["urlprefix-/"])], overrides);
    let ext = t.lookup("ext.example.com", "/", false).expect("ext");
    assert_eq!(ext.service, "ext");
    assert_eq!(ext.opts.host, crate::routes::HostHeader::Dst);
    assert_eq!(ext.targets[0].url, "http://192.0.2.10:8080/");
    assert_eq!(ext.targets[0].instance_id, "http://192.0.2.10:8080/");
    assert_eq!(ext.targets[0].tags, vec!["manual"]);
    assert_eq!(weights(&t, "x", "/"), w(&[("web-1", 0.5), ("http://192.0.2.11:80/", 0.5)]));
    assert_eq!(t.lookup("x", "/", false).expect("route").service, "extra,web");
}

#[test]
fn overrides_add_with_weight() {
    let t = clean(
        &[inst("web", "web-1", 1, &["urlprefix-/"]), inst("web", "web-2", 2, &["urlprefix-/"])],
        "route add mirror / http://192.0.2.1:80/ weight 0.1",
    );
    assert_eq!(weights(&t, "x", "/"), w(&[("web-1", 0.45), ("web-2", 0.45), ("http://192.0.2.1:80/", 0.1)]));
}

#[test]
fn overrides_del_forms() {
    let instances = [
        inst("web", "web-1", 1, &["urlprefix-/", "urlprefix-a.com/", "blue"]),
        inst("web", "web-2", 2, &["urlprefix-/", "urlprefix-a.com/", "green"]),
        inst("api", "api-1", 3, &["urlprefix-/", "green"]),
    ];
    let ids = |t: &Table, host: &str| -> Vec<String> {
        t.lookup(host, "/", false).map_or(vec![], |r| r.targets.iter().map(|t| t.instance_id.clone()).collect())
    };

    let t = clean(&instances, "route del web");
    assert_eq!(ids(&t, "x"), vec!["api-1"]);
    assert_eq!(hit(&t, "a.com", "/"), "api@/", "a.com/ lost all targets and is gone");

    let t = clean(&instances, "route del web a.com/");
    assert_eq!(ids(&t, "x"), vec!["api-1", "web-1", "web-2"]);
    assert_eq!(hit(&t, "a.com", "/"), "api,web@/");

    let t = clean(&instances, "route del web / http://10.0.0.1:2");
    assert_eq!(ids(&t, "x"), vec!["api-1", "web-1"], "the URL matches without the trailing slash");
    assert_eq!(ids(&t, "a.com"), vec!["web-1", "web-2"]);

    let t = clean(&instances, "route del web tags \"green\"");
    assert_eq!(ids(&t, "x"), vec!["api-1", "web-1"]);
    assert_eq!(ids(&t, "a.com"), vec!["web-1"]);

    let t = clean(&instances, "route del tags \"green\"");
    assert_eq!(ids(&t, "x"), vec!["web-1"]);

    let t = clean(&instances, "route del tags \"green,blue\"");
    assert_eq!(ids(&t, "x"), vec!["api-1", "web-1", "web-2"], "a target must carry every tag");

    let t = clean(&instances, "route del nobody");
    assert_eq!(ids(&t, "x"), vec!["api-1", "web-1", "web-2"]);
}

#[test]
fn overrides_apply_in_order_and_a_deleted_route_starts_afresh() {
    let t = clean(
        &[inst("web", "web-1", 1, &["urlprefix-/app strip=/app"])],
        "route del web\nroute add web /app http://192.0.2.1:80/",
    );
    let r = t.lookup("x", "/app", false).expect("route");
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.targets[0].url, "http://192.0.2.1:80/");
    assert_eq!(r.opts.strip, None, "the deleted route's options went with it");

    let t = clean(&[], "route add web /app http://192.0.2.1:80/\nroute del web");
    assert!(t.is_empty());
}

#[test]
fn route_weight_with_service_and_tags() {
    let instances = [
        inst("svc-b", "b-1", 1, &["urlprefix-www.kjca.dev/auth/", "version-15", "dc-fra"]),
        inst("svc-b", "b-2", 2, &["urlprefix-www.kjca.dev/auth/", "version-15", "dc-fra"]),
        inst("svc-b", "b-3", 3, &["urlprefix-www.kjca.dev/auth/", "version-14", "dc-fra"]),
        inst("svc-a", "a-1", 4, &["urlprefix-www.kjca.dev/auth/", "version-15", "dc-fra"]),
    ];
    let t = clean(&instances, "route weight svc-b www.kjca.dev/auth/ weight 0.05 tags \"version-15,dc-fra\"");
    assert_eq!(
        weights(&t, "www.kjca.dev", "/auth/"),
        w(&[("a-1", 0.475), ("b-1", 0.025), ("b-2", 0.025), ("b-3", 0.475)])
    );
}

#[test]
fn route_weight_without_service_or_without_tags() {
    let instances = [
        inst("a", "a-1", 1, &["urlprefix-/", "canary"]),
        inst("b", "b-1", 2, &["urlprefix-/", "canary"]),
        inst("c", "c-1", 3, &["urlprefix-/"]),
    ];
    let t = clean(&instances, "route weight / weight 0.5 tags \"canary\"");
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.25), ("b-1", 0.25), ("c-1", 0.5)]));

    let t = clean(&instances, "route weight c / weight 0.9");
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.05), ("b-1", 0.05), ("c-1", 0.9)]));

    let t = clean(&instances, "route weight c / weight 0");
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.5), ("b-1", 0.5), ("c-1", 0.0)]), "drain one service");

    let t = clean(&instances, "route weight nobody / weight 0.5\nroute weight a /elsewhere weight 0.5");
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 1.0 / 3.0), ("b-1", 1.0 / 3.0), ("c-1", 1.0 / 3.0)]));
}

#[test]
fn route_weight_replaces_a_tag_weight() {
    let t = clean(
        &[inst("a", "a-1", 1, &["urlprefix-/ weight=0.9"]), inst("b", "b-1", 2, &["urlprefix-/"])],
        "route weight a / weight 0.2",
    );
    assert_eq!(weights(&t, "x", "/"), w(&[("a-1", 0.2), ("b-1", 0.8)]));
}

#[test]
fn bad_override_lines_are_problems_with_line_numbers_and_others_apply() {
    let overrides = "route add a /a http://192.0.2.1:80/\nroute add b /b not-a-url\n\nroute frobnicate\nroute add c /c http://192.0.2.3:80/ weight 3\nroute add d /d http://192.0.2.4:80/\n";
    let (t, problems) = build(&[], overrides);
    let paths: Vec<&str> = t.routes().iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/d", "/a"]);
    let lines: Vec<&str> = problems.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(lines, vec!["overrides line 2", "overrides line 4", "overrides line 5"]);
    assert!(problems[0].message.contains("DST"));
    assert!(problems[1].message.contains("unknown command"));
    assert!(problems[2].message.contains("weight"));
}

#[test]
fn override_adding_a_target_twice_is_a_problem() {
    let (t, problems) =
        build(&[], "route add a / http://192.0.2.1:80/\nroute add a / http://192.0.2.1:80/ opts \"strip=/x\"");
    assert_eq!(t.lookup("x", "/", false).expect("route").targets.len(), 1);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].source, "overrides line 2");
}

#[test]
fn ten_thousand_hosts_each_find_their_own_route() {
    let instances: Vec<Instance> = (0..10_000)
        .map(|i| {
            let mut x = inst(&format!("svc{i}"), &format!("id{i}"), 1000 + (i % 50_000) as u16, &[]);
            x.tags = vec![format!("urlprefix-host{i}.example.com/"), format!("urlprefix-*.w{i}.example.com/")];
            x
        })
        .collect();
    let t = clean(&instances, "");
    assert_eq!(t.len(), 20_000);
    for i in (0..10_000).step_by(97) {
        assert_eq!(hit(&t, &format!("host{i}.example.com"), "/p"), format!("svc{i}@host{i}.example.com/"));
        assert_eq!(hit(&t, &format!("a.w{i}.example.com"), "/p"), format!("svc{i}@*.w{i}.example.com/"));
    }
    assert_eq!(hit(&t, "host10000.example.com", "/"), "none");
}

#[test]
fn serializes_for_the_api() {
    let t = clean(&[inst("web", "web-1", 8080, &["urlprefix-example.com/api strip=/api"])], "");
    let v = serde_json::to_value(t.routes()).expect("json");
    assert_eq!(v[0]["host"], "example.com");
    assert_eq!(v[0]["path"], "/api");
    assert_eq!(v[0]["service"], "web");
    assert_eq!(v[0]["targets"][0]["url"], "http://10.0.0.1:8080/");
    assert_eq!(v[0]["targets"][0]["weight"], 1.0);
    assert_eq!(v[0]["opts"]["strip"], "/api");
    assert!(v[0].get("picker").is_none());
    let p = serde_json::to_value(Problem { source: "overrides line 1".into(), message: "m".into() }).expect("json");
    assert_eq!(p, serde_json::json!({"source": "overrides line 1", "message": "m"}));
}

/// `*` matches any run, written recursively (the obvious way).
fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| naive_glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && naive_glob(rest, &s[1..]),
    }
}

/// fabio's matching rules written the slow, obvious way: every route host
/// is tried as a glob against the request host (both with the scheme's
/// default port dropped), the matching ones sorted by their reversed host
/// strings descending, then the host-less routes; the first with a path
/// prefix wins.
fn reference<'t>(t: &'t Table, host: &str, path: &str, tls: bool) -> Option<&'t Route> {
    let default = if tls { ":443" } else { ":80" };
    let norm = |h: &str| h.strip_suffix(default).unwrap_or(h).to_string();
    let host = norm(&host.to_ascii_lowercase());
    let mut hosts: Vec<&str> = t.routes().iter().map(|r| r.host.as_str()).filter(|h| !h.is_empty()).collect();
    hosts.dedup();
    hosts.retain(|h| naive_glob(norm(h).as_bytes(), host.as_bytes()));
    hosts.sort_by_key(|h| Reverse(specificity_key(h)));
    hosts.push("");
    hosts.iter().find_map(|c| {
        t.routes().iter().filter(|r| r.host == *c && path.starts_with(r.path.as_str())).max_by_key(|r| r.path.len())
    })
}

#[test]
fn lookup_agrees_with_a_full_scan_on_random_tables() {
    let mut next = crate::routes::xorshift(0x9e37_79b9_7f4a_7c15_u64);
    let labels = ["a", "b", "example", "com", "x-y", "*", "*b", "a*"];
    let ports = ["", "", ":80", ":443", ":8080"];
    let paths = ["/", "/a", "/a/", "/a/b", "/ab", "/b", "/A"];
    for round in 0..80 {
        let mut instances = Vec::new();
        for i in 0..next(30) + 1 {
            let host = match next(4) {
                0 => String::new(),
                _ => {
                    let name = (0..next(3) + 1).map(|_| labels[next(labels.len())]).collect::<Vec<_>>().join(".");
                    format!("{name}{}", ports[next(ports.len())])
                }
            };
            let tag = format!("urlprefix-{host}{}", paths[next(paths.len())]);
            instances.push(inst(&format!("s{round}-{i}"), &format!("id{i}"), 1, &[&tag]));
        }
        let (t, problems) = build(&instances, "");
        assert!(problems.is_empty(), "{problems:?}");
        for _ in 0..200 {
            let mut host: String = (0..next(4)).map(|_| labels[next(6)]).collect::<Vec<_>>().join(".");
            if next(3) == 0 {
                host = host.to_uppercase();
            }
            host.push_str(ports[next(ports.len())]);
            let tls = next(2) == 0;
            let path = format!("{}{}", paths[next(paths.len())], ["", "x", "/c"][next(3)]);
            let got = t.lookup(&host, &path, tls).map(|r| (&r.host, &r.path));
            let want = reference(&t, &host, &path, tls).map(|r| (&r.host, &r.path));
            assert_eq!(got, want, "round {round}: {host} {path} tls={tls}");
        }
    }
}

#[test]
fn rebuild_keeps_passive_health_only_while_the_instance_stays() {
    use crate::routes::outlier::EJECT_AFTER;
    let w1 = inst("web", "w1", 1, &["urlprefix-a.com/"]);
    let w2 = inst("web", "w2", 2, &["urlprefix-a.com/"]);
    let eject = |t: &Table, id: &str| {
        let r = t.lookup("a.com", "/", false).expect("route");
        let i = r.targets.iter().position(|t| t.instance_id == id).expect("target");
        for _ in 0..EJECT_AFTER {
            r.health[i].failure(std::time::Instant::now());
        }
    };
    let ejected = |t: &Table, id: &str| {
        let r = t.lookup("a.com", "/", false).expect("route");
        let i = r.targets.iter().position(|t| t.instance_id == id).expect("target");
        r.health[i].view(std::time::Instant::now()).ejected
    };
    let old = clean(&[w1.clone(), w2.clone()], "");
    eject(&old, "w2");
    // An unrelated change (a third instance): w2 stays ejected.
    let w3 = inst("web", "w3", 3, &["urlprefix-a.com/"]);
    let mut new = clean(&[w1.clone(), w2.clone(), w3], "");
    new.keep_stats(&old);
    assert!(ejected(&new, "w2") && !ejected(&new, "w1"));
    // Consul dropped w2 (deregistered, critical) and then listed it again:
    // Consul's view rules, it starts afresh.
    let mut gone = clean(std::slice::from_ref(&w1), "");
    gone.keep_stats(&new);
    let mut back = clean(&[w1, w2], "");
    back.keep_stats(&gone);
    assert!(!ejected(&back, "w2"));
}

#[test]
fn rebuild_keeps_counters_of_unchanged_routes_only() {
    let web = inst("web", "w1", 1, &["urlprefix-a.com/", "urlprefix-*.b.com/x", "urlprefix-/any"]);
    let old = clean(std::slice::from_ref(&web), "");
    for r in old.routes() {
        r.stats.observe(200, std::time::Duration::from_millis(1));
    }
    // Same routes plus one new; a.com/ now also has a second service.
    let api = inst("api", "a1", 2, &["urlprefix-a.com/", "urlprefix-c.com/"]);
    let mut new = clean(&[web.clone(), api], "");
    new.keep_stats(&old);
    let count = |t: &Table, host: &str, path: &str| {
        let r = t.routes().iter().find(|r| r.host == host && r.path == path).expect("route");
        r.stats.series().iter().map(|s| s.count()).sum::<u64>()
    };
    assert_eq!(count(&new, "*.b.com", "/x"), 1);
    assert_eq!(count(&new, "", "/any"), 1);
    assert_eq!(count(&new, "a.com", "/"), 0, "services changed: a new series");
    assert_eq!(count(&new, "c.com", "/"), 0);
    // Shared, not copied: later requests count for both tables' route.
    let route = new.lookup("q.b.com", "/x", false).expect("wildcard route");
    route.stats.observe(200, std::time::Duration::from_millis(1));
    assert_eq!(count(&old, "*.b.com", "/x"), 2);
}

#[test]
fn plain_http_targets_carry_their_socket_address() {
    let addr = |u: &str| plain_http_addr(&u.parse().expect("uri"));
    assert_eq!(addr("http://10.0.0.1:8080/"), Some("10.0.0.1:8080".parse().expect("addr")));
    assert_eq!(addr("http://10.0.0.1/"), Some("10.0.0.1:80".parse().expect("addr")));
    assert_eq!(addr("http://[fd00::1]:81/"), Some("[fd00::1]:81".parse().expect("addr")));
    assert_eq!(addr("https://10.0.0.1:8443/"), None, "TLS goes through hyper");
    assert_eq!(addr("http://node-a.consul:8080/"), None, "names need a resolver");
}

#[test]
fn host_keys_inline_or_not_behave_as_their_str() {
    use std::borrow::Borrow;
    let long = "a-rather-long-host-name-beyond-the-inline-room.example.com";
    for h in ["", "a", "app.example.com", &"x".repeat(INLINE_HOST), &"y".repeat(INLINE_HOST + 1), long] {
        let k = HostKey::from(h);
        assert_eq!(k.as_str(), h);
        let b: &str = k.borrow();
        assert_eq!(b, h);
        assert_eq!(matches!(k, HostKey::Inline { .. }), h.len() <= INLINE_HOST, "{h}");
    }
    let mut m: HostMap = HostMap::default();
    let run = |start| Run { start, end: start + 1, rank: start, outranked: [false; 2] };
    m.insert(HostKey::from("short.example.com"), run(0));
    m.insert(HostKey::from(long), run(1));
    assert_eq!(m.get("short.example.com"), Some(&run(0)));
    assert_eq!(m.get(long), Some(&run(1)));
    assert_eq!(m.get("other.example.com"), None);
}

#[test]
fn fast_facts_say_when_options_and_targets_can_be_skipped() {
    let facts = |tags: &[&str], n: u16| {
        let instances: Vec<Instance> = (0..n).map(|i| inst("web", &format!("w{i}"), 8080 + i, tags)).collect();
        let t = clean(&instances, "");
        t.lookup("a.com", "/x", false).expect("route").fast
    };
    let plain = facts(&["urlprefix-a.com/"], 1);
    assert_eq!(
        plain,
        FastFacts {
            plain: true,
            untouched: true,
            single: Some(("10.0.0.1:8080".parse().expect("addr"), true)),
            redirect: false
        }
    );
    assert_eq!(facts(&["urlprefix-a.com/"], 2).single, None, "two targets: picked per request");
    for opt in
        ["strip=/x", "prepend=/v2", "host=dst", "host=other.example", "allow=ip:10.0.0.0/8", "deny=ip:10.0.0.0/8"]
    {
        let f = facts(&[&format!("urlprefix-a.com/ {opt}")], 1);
        assert!(f.plain && !f.untouched, "{opt}");
    }
    assert!(!facts(&["urlprefix-a.com/ proto=https"], 1).plain);
    let redirect = facts(&["urlprefix-a.com/ redirect=301,https://b.com$path"], 1);
    assert!(!redirect.plain && redirect.redirect);
    // One target with strip= makes the route touched, though the other has none.
    let mixed =
        clean(&[inst("web", "w1", 1, &["urlprefix-a.com/ strip=/x"]), inst("web", "w2", 2, &["urlprefix-a.com/"])], "");
    assert!(!mixed.lookup("a.com", "/", false).expect("route").fast.untouched);
}

#[test]
fn tcp_routes_are_split_off() {
    let (mut t, problems) = build(
        &[
            inst("db", "db-1", 5432, &["urlprefix-:5432 proto=tcp pxyproto=true"]),
            inst("db", "db-2", 5433, &["urlprefix-:5432 proto=tcp pxyproto=true"]),
            inst("web", "web-1", 80, &["urlprefix-/", "urlprefix-:6000 proto=tcp weight=0.2"]),
            // Wrong pairings are problems, not routes.
            inst("bad", "bad-1", 1, &["urlprefix-:7000", "urlprefix-a.com/x proto=tcp"]),
        ],
        "route add db :5432 tcp://10.0.0.9:5432 opts \"pxyproto=v1\"\nroute add kube :6443 tcp://10.0.0.7:6443 weight 0.5\n\
         route add x :6444 http://10.0.0.7:1/\nroute del web :6000",
    );
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(messages[0].contains("needs proto=tcp"), "{messages:?}");
    assert!(messages[1].contains("has no path"), "{messages:?}");
    assert!(messages[2].contains("needs proto=tcp"), "{messages:?}");
    assert_eq!(t.len(), 1, "only the HTTP route is an HTTP route");
    assert_eq!(hit(&t, "x", "/"), "web@/");
    let ports: Vec<u16> = t.tcp_routes().iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![5432, 6443], "sorted by port; :6000 deleted");
    let db = t.tcp_route(5432).expect("db route");
    assert_eq!(db.targets.len(), 3);
    assert_eq!(db.targets[0].opts.pxyproto, Some(crate::proxy_protocol::Version::V1));
    assert_eq!(db.targets[0].addr, Some("10.0.0.1:5432".parse().unwrap()));
    assert_eq!(db.targets[2].url, "tcp://10.0.0.9:5432");
    let mut seen: Vec<usize> = (0..6).filter_map(|_| db.pick(Strategy::Rr, &[]).map(|(i, _)| i)).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, vec![0, 1, 2], "round robin over every target");
    assert!(t.tcp_route(6000).is_none() && t.tcp_route(1).is_none());

    // Stats survive a rebuild; --tcp-ports keeps only what it allows.
    crate::routes::tcp::TcpStats::add(&db.stats.connections, 7);
    let (mut again, _) = build(&[inst("db", "db-1", 5432, &["urlprefix-:5432 proto=tcp pxyproto=true"])], "");
    again.keep_stats(&t);
    assert_eq!(crate::routes::tcp::TcpStats::get(&again.tcp_route(5432).unwrap().stats.connections), 7);
    let out = t.restrict_tcp(&"5000-6000".parse().unwrap());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].source, "route :6443");
    assert!(out[0].message.contains("outside --tcp-ports (5000-6000)"), "{out:?}");
    assert_eq!(t.tcp_routes().len(), 1);
}

/// `service@source` of the passthrough route for an SNI name, or "terminate".
fn pass(t: &Table, sni: &str) -> String {
    t.passthrough(sni).map_or("terminate".into(), |r| format!("{}@{}", r.service, r.source))
}

#[test]
fn passthrough_routes_by_sni() {
    let (t, problems) = build(
        &[
            inst("kube", "k1", 6443, &["urlprefix-api.example.com/ tls=passthrough pxyproto=v2"]),
            inst("kube", "k2", 6444, &["urlprefix-api.example.com proto=tcp pxyproto=v2"]),
            inst("any", "a1", 1, &["urlprefix-*.example.com/ proto=tcp"]),
            inst("deep", "d1", 2, &["urlprefix-*.b.example.com/ proto=tcp"]),
            // An HTTP route more specific than a passthrough glob takes its name.
            inst("www", "w1", 3, &["urlprefix-www.example.com/", "urlprefix-*.example.org/"]),
            inst("org", "o1", 4, &["urlprefix-x.example.org/ proto=tcp"]),
        ],
        "route add ovr db.example.net/ tcp://10.0.0.8:5432",
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(t.len(), 2, "passthrough routes are not HTTP routes");
    assert!(t.lookup("api.example.com", "/", true).is_none());
    assert_eq!(pass(&t, "api.example.com"), "kube@api.example.com");
    let kube = t.passthrough("api.example.com").unwrap();
    assert_eq!(kube.targets.len(), 2);
    assert_eq!(kube.targets[0].url, "tcp://10.0.0.1:6443/");
    assert_eq!(kube.targets[0].addr, Some("10.0.0.1:6443".parse().unwrap()));
    assert_eq!(kube.targets[1].opts.pxyproto, Some(crate::proxy_protocol::Version::V2));
    assert_eq!(pass(&t, "x.example.com"), "any@*.example.com");
    assert_eq!(pass(&t, "a.b.example.com"), "deep@*.b.example.com", "the more specific glob");
    assert_eq!(pass(&t, "b.example.com"), "any@*.example.com");
    assert_eq!(pass(&t, "www.example.com"), "terminate", "the exact HTTP host comes first");
    assert_eq!(pass(&t, "x.example.org"), "org@x.example.org", "an exact passthrough host before an HTTP glob");
    assert_eq!(pass(&t, "y.example.org"), "terminate");
    assert_eq!(pass(&t, "db.example.net"), "ovr@db.example.net");
    assert_eq!(pass(&t, "example.com"), "terminate");
    assert_eq!(pass(&t, ""), "terminate");
    let order: Vec<&str> = t.passthrough_routes().iter().map(|r| r.source.as_str()).collect();
    // fabio's order: reversed hosts, descending (`ten.` > `moc.` > `gro.`).
    assert_eq!(order, ["db.example.net", "api.example.com", "*.b.example.com", "*.example.com", "x.example.org"]);

    // Counters survive a rebuild that keeps the host and the services.
    crate::routes::tcp::TcpStats::add(&kube.stats.bytes_in, 5);
    let (mut again, _) = build(&[inst("kube", "k1", 6443, &["urlprefix-api.example.com/ tls=passthrough"])], "");
    again.keep_stats(&t);
    let kept = again.passthrough("api.example.com").unwrap();
    assert_eq!(crate::routes::tcp::TcpStats::get(&kept.stats.bytes_in), 5);
}

#[test]
fn passthrough_problems() {
    let (t, problems) = build(
        &[
            inst("a", "a1", 1, &["urlprefix-/ proto=tcp"]),
            inst("b", "b1", 2, &["urlprefix-b.com/api proto=tcp"]),
            inst("c", "c1", 3, &["urlprefix-c.com:8443/ proto=tcp"]),
            inst("d", "d1", 4, &["urlprefix-[::1]/ proto=tcp"]),
            inst("e", "e1", 5, &["urlprefix-e.com/ tls=terminate"]),
            // One host, HTTP and passthrough targets: the first kind stays.
            inst("f", "f1", 6, &["urlprefix-f.com/"]),
            inst("g", "g1", 7, &["urlprefix-f.com/ proto=tcp", "urlprefix-g.com/ proto=tcp weight=0"]),
            inst("h", "h1", 8, &["urlprefix-g.com/"]),
        ],
        "",
    );
    let messages: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.source, p.message)).collect();
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    assert!(has("service a tag 'urlprefix-/ proto=tcp': a TLS passthrough route (proto=tcp on a host) needs a host"));
    assert!(has("service b tag 'urlprefix-b.com/api proto=tcp': a TLS passthrough route has no path"));
    assert!(has("without a port (SNI carries no port or address), not 'c.com:8443'"), "{messages:?}");
    assert!(has("not '[::1]'"), "{messages:?}");
    assert!(has("tls must be passthrough"));
    assert!(has("service g tag 'urlprefix-f.com/ proto=tcp': the route's other targets are HTTP"), "{messages:?}");
    assert!(has("service h tag 'urlprefix-g.com/': the route's other targets are TLS passthrough"), "{messages:?}");
    assert!(has("route g.com/: every target has weight 0; connections to it are closed"), "{messages:?}");
    assert_eq!(messages.len(), 8, "{messages:?}");
    assert_eq!(hit(&t, "f.com", "/"), "f@f.com/");
    assert_eq!(pass(&t, "f.com"), "terminate");
    assert_eq!(pass(&t, "g.com").as_str(), "g@g.com");
    assert_eq!(t.passthrough_routes().len(), 1);
}

/// The passthrough decision the slow, obvious way: every HTTP route host
/// (`:443` dropped) and every passthrough host tried as a glob against the
/// name, the matching ones in fabio's order, a passthrough host before an
/// HTTP host equal to it; the name passes through when the first is a
/// passthrough host.
fn reference_passthrough<'t>(t: &'t Table, sni: &str) -> Option<&'t str> {
    let norm = |h: &str| h.strip_suffix(":443").unwrap_or(h).to_string();
    let mut hosts: Vec<(&str, bool)> = t.routes().iter().map(|r| (r.host.as_str(), false)).collect();
    hosts.extend(t.passthrough_routes().iter().map(|r| (r.source.as_str(), true)));
    hosts.retain(|(h, _)| !h.is_empty() && naive_glob(norm(h).as_bytes(), sni.as_bytes()));
    hosts.sort_by_key(|&(h, pass)| (Reverse(specificity_key(h)), !pass));
    hosts.first().filter(|(_, pass)| *pass).map(|(h, _)| *h)
}

#[test]
fn passthrough_agrees_with_a_full_scan_on_random_tables() {
    let mut next = crate::routes::xorshift(0x2545_f491_4f6c_dd1d_u64);
    let labels = ["a", "b", "example", "com", "x-y", "*", "*b", "a*"];
    let ports = ["", "", ":443", ":8080"];
    // Both outcomes are exercised: passed through, and a matching
    // passthrough host outranked by an HTTP host.
    let (mut passed, mut outranked) = (0, 0);
    for round in 0..80 {
        let mut instances = Vec::new();
        for i in 0..next(30) + 1 {
            let name = (0..next(3) + 1).map(|_| labels[next(labels.len())]).collect::<Vec<_>>().join(".");
            let tag = match next(3) {
                0 => format!("urlprefix-{name}/ proto=tcp"),
                1 => format!("urlprefix-{name}{}/", ports[next(ports.len())]),
                _ => format!("urlprefix-{name}/{}", ["a", "b"][next(2)]),
            };
            instances.push(inst(&format!("s{round}-{i}"), &format!("id{i}"), 1, &[&tag]));
        }
        // Mixed kinds on one host are problems; the table is what it is.
        let (t, _) = build(&instances, "");
        for _ in 0..200 {
            let sni: String = (0..next(4) + 1).map(|_| labels[next(5)]).collect::<Vec<_>>().join(".");
            let got = t.passthrough(&sni).map(|r| r.source.as_str());
            assert_eq!(got, reference_passthrough(&t, &sni), "round {round}: {sni}");
            let candidate = t.passthrough_routes().iter().any(|r| naive_glob(r.source.as_bytes(), sni.as_bytes()));
            passed += usize::from(got.is_some());
            outranked += usize::from(got.is_none() && candidate);
        }
    }
    assert!(passed > 500 && outranked > 100, "passed {passed}, outranked {outranked}");
}
