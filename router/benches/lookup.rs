//! Lookup must cost the same at 1 host and at 10,000 (fabio's falls to 1% of
//! its throughput at 5,000): hash maps keyed by host and by a glob's literal tail,
//! never a scan. This bench shows it: exact hits, wildcard hits and misses at
//! 1, 1,000 and 10,000 hosts, and what a full table rebuild costs.
//!
//! `cargo bench -p router --bench lookup -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use router::routes::Strategy;
use router::routes::{Instance, Table};

/// One instance per host: `hostN.example.com/` with two paths, and a wildcard
/// `*.wN.example.com/`, the shape of a large multi-tenant edge.
fn instances(hosts: usize) -> Vec<Instance> {
    (0..hosts)
        .map(|i| Instance {
            service: format!("svc{i}"),
            id: format!("node{}:svc{i}:8080", i % 16),
            address: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            port: 8080,
            tags: vec![
                format!("urlprefix-host{i}.example.com/"),
                format!("urlprefix-host{i}.example.com/api strip=/api"),
                format!("urlprefix-*.w{i}.example.com/"),
                "production".to_string(),
            ],
        })
        .collect()
}

/// Request hosts spread over the whole table, so the bench does not measure
/// one hot cache line.
fn requests(hosts: usize, make: impl Fn(usize) -> String) -> Vec<String> {
    let step = (hosts / 1024).max(1);
    (0..1024).map(|k| make((k * step + k) % hosts)).collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for hosts in [1, 1_000, 10_000] {
        let (table, problems) = Table::build(&instances(hosts), "", "urlprefix-");
        assert!(problems.is_empty(), "{problems:?}");
        let cases = [
            ("exact", requests(hosts, |i| format!("Host{i}.example.com:80"))),
            ("wildcard", requests(hosts, |i| format!("app.w{i}.example.com"))),
            ("miss", requests(hosts, |i| format!("nohost{i}.example.org"))),
        ];
        for (name, reqs) in cases {
            let expect_hit = name != "miss";
            group.bench_with_input(BenchmarkId::new(name, hosts), &reqs, |b, reqs| {
                let mut k = 0;
                b.iter(|| {
                    k = (k + 1) & 1023;
                    let route = table.lookup(black_box(&reqs[k]), black_box("/api/users/42"), false);
                    debug_assert_eq!(route.is_some(), expect_hit);
                    route
                })
            });
        }
        let route = table.lookup("host0.example.com", "/", false).expect("route");
        group.bench_function(BenchmarkId::new("pick_rr", hosts), |b| b.iter(|| route.pick(Strategy::Rr, &[])));
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        let list = instances(n);
        let overrides = "route weight svc1 host1.example.com/ weight 0.5\nroute add extra /x http://192.0.2.1:80/";
        group.bench_with_input(BenchmarkId::new("instances", n), &list, |b, list| {
            b.iter(|| Table::build(black_box(list), overrides, "urlprefix-"))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
