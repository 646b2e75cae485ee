//! vipd follows the local router's health: when a node's health endpoint
//! fails `--check-fall` times the master sends priority 0 and a backup takes
//! the VIP; `--check-rise` successes later it competes again and, with
//! preemption, takes the VIP back. Real namespaces, a real HTTP server per
//! node whose health the test switches.

use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::Topology;
use integration_tests::vrrp::{self, HttpServer, master_down_interval, sole_holder_for, spawn_vipd, wait_sole_holder};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const ADVERT: Duration = Duration::from_millis(100);
const CONVERGE: Duration = Duration::from_secs(5);
/// How long the client may take to reach a new holder through the VIP.
const ANSWER: Duration = Duration::from_secs(3);

#[test]
fn failing_health_moves_the_vip_and_recovery_brings_it_back() {
    let topo = Topology::new(2).expect("topology");
    let http: Vec<HttpServer> = (0..2).map(|i| HttpServer::spawn(&topo, i).expect("http")).collect();
    let url = HttpServer::health_url();
    let check = ["--check-url", url.as_str(), "--check-interval", "50ms", "--check-fall", "3", "--check-rise", "2"];
    let _a = spawn_vipd(&topo, 0, VIP, 7, 200, "100ms", &check).expect("vipd");
    let _b = spawn_vipd(&topo, 1, VIP, 7, 100, "100ms", &check).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("the healthy priority-200 node holds the VIP");
    vrrp::assert_answers(&topo, VIP, "n0", ANSWER);

    http[0].set_healthy(false).expect("fail n0's health");
    wait_sole_holder(&topo, VIP, &[0, 1], 1, CONVERGE).expect("the VIP leaves the unhealthy node");
    vrrp::assert_answers(&topo, VIP, "n1", ANSWER);
    // The unhealthy node stays out although it has the higher priority.
    sole_holder_for(&topo, VIP, &[0, 1], 1, master_down_interval(200, ADVERT) * 2).expect("n1 keeps it");

    http[0].set_healthy(true).expect("heal n0");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("recovery brings the VIP back");
    vrrp::assert_answers(&topo, VIP, "n0", ANSWER);

    // A failing backup does not disturb the master.
    http[1].set_healthy(false).expect("fail n1's health");
    sole_holder_for(&topo, VIP, &[0, 1], 0, Duration::from_millis(600)).expect("n0 keeps it");
}

#[test]
fn a_node_whose_router_never_answered_does_not_claim_the_vip() {
    let topo = Topology::new(1).expect("topology");
    // No HTTP server: the check URL refuses connections from the start.
    let url = HttpServer::health_url();
    let mut d =
        spawn_vipd(&topo, 0, VIP, 7, 255, "100ms", &["--check-url", &url, "--check-interval", "50ms"]).expect("vipd");
    std::thread::sleep(master_down_interval(255, ADVERT) * 3);
    assert!(topo.holders(VIP).is_empty(), "even the address owner stays out while unhealthy");
    let http = HttpServer::spawn(&topo, 0).expect("http");
    wait_sole_holder(&topo, VIP, &[0], 0, CONVERGE).expect("it claims the VIP once healthy");
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(3)).expect("exits");
    assert!(topo.holders(VIP).is_empty(), "and removes it on SIGTERM");
    drop(http);
}
