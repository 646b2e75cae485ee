//! vipd failover in real network namespaces: three nodes on a bridge, 100 ms
//! adverts. The highest priority wins; SIGKILL of the master hands the VIP
//! to the next within Master_Down_Interval; SIGTERM within about one advert
//! interval (priority 0 + Skew_Time); a returning master preempts, or not
//! with `--no-preempt`. After every step exactly one live node holds the VIP,
//! and the client reaches that node through the VIP (gratuitous ARP worked).

use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::Topology;
use integration_tests::vrrp::{self, HttpServer, master_down_interval, sole_holder_for, spawn_vipd, wait_sole_holder};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const VRID: u8 = 51;
const ADVERT: Duration = Duration::from_millis(100);
/// Scheduling slack on a loaded two-core machine, on top of protocol timers.
const SLACK: Duration = Duration::from_millis(400);
const CONVERGE: Duration = Duration::from_secs(5);
/// How long the client may take to reach a new holder through the VIP.
const ANSWER: Duration = Duration::from_secs(3);

#[test]
fn highest_priority_wins_and_sigkill_fails_over_within_master_down_interval() {
    let topo = Topology::new(3).expect("topology");
    let _http: Vec<HttpServer> = (0..3).map(|i| HttpServer::spawn(&topo, i).expect("http")).collect();
    let prios = [100, 200, 150];
    let mut vipd: Vec<_> =
        (0..3).map(|i| spawn_vipd(&topo, i, VIP, VRID, prios[i], "100ms", &[]).expect("vipd")).collect();

    wait_sole_holder(&topo, VIP, &[0, 1, 2], 1, CONVERGE).expect("priority 200 holds the VIP alone");
    sole_holder_for(&topo, VIP, &[0, 1, 2], 1, ADVERT * 8).expect("and keeps it");
    vrrp::assert_answers(&topo, VIP, "n1", ANSWER);

    vipd[1].kill();
    let took = wait_sole_holder(&topo, VIP, &[0, 2], 2, CONVERGE).expect("priority 150 takes over");
    let bound = master_down_interval(150, ADVERT) + SLACK;
    assert!(took <= bound, "takeover after SIGKILL took {took:?}, more than {bound:?}");
    vrrp::assert_answers(&topo, VIP, "n2", ANSWER);

    // The crashed node comes back: it finds its stale VIP, removes it, and
    // preempts the lower-priority master.
    assert!(topo.nodes[1].has_addr(VIP), "SIGKILL leaves the VIP configured");
    vipd[1] = spawn_vipd(&topo, 1, VIP, VRID, 200, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1, 2], 1, CONVERGE).expect("the returning master preempts");
    sole_holder_for(&topo, VIP, &[0, 1, 2], 1, ADVERT * 5).expect("and keeps it");
    vrrp::assert_answers(&topo, VIP, "n1", ANSWER);
}

#[test]
fn sigterm_hands_over_within_an_advert_interval_and_no_preempt_keeps_the_new_master() {
    let topo = Topology::new(2).expect("topology");
    let _http: Vec<HttpServer> = (0..2).map(|i| HttpServer::spawn(&topo, i).expect("http")).collect();
    let mut a = spawn_vipd(&topo, 0, VIP, VRID, 200, "100ms", &[]).expect("vipd");
    let mut b = spawn_vipd(&topo, 1, VIP, VRID, 100, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("priority 200 holds the VIP");

    a.signal(libc::SIGTERM);
    let took = wait_sole_holder(&topo, VIP, &[0, 1], 1, CONVERGE).expect("the backup takes over");
    let bound = ADVERT + SLACK;
    assert!(took <= bound, "takeover after SIGTERM took {took:?}, more than {bound:?}");
    let status = a.wait_exit(Duration::from_secs(3)).expect("vipd exits on SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!topo.nodes[0].has_addr(VIP), "the stopped node removed the VIP");
    vrrp::assert_answers(&topo, VIP, "n1", ANSWER);

    // Back with --no-preempt: it defers to the lower-priority master.
    a = spawn_vipd(&topo, 0, VIP, VRID, 200, "100ms", &["--no-preempt"]).expect("vipd");
    sole_holder_for(&topo, VIP, &[0, 1], 1, master_down_interval(200, ADVERT) * 3)
        .expect("the new master keeps the VIP");

    // It is still a working backup: it takes over when the master leaves.
    b.signal(libc::SIGTERM);
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("the no-preempt node takes over");
    b.wait_exit(Duration::from_secs(3)).expect("vipd exits on SIGTERM");
    vrrp::assert_answers(&topo, VIP, "n0", ANSWER);
    drop(a);
}

#[test]
fn unicast_peers_elect_and_hand_over_like_multicast() {
    let topo = Topology::new(2).expect("topology");
    let peer = |i: usize| Topology::node_ip(i).to_string();
    let a = spawn_vipd(&topo, 0, VIP, VRID, 200, "100ms", &["--peer", &peer(1)]).expect("vipd");
    let _b = spawn_vipd(&topo, 1, VIP, VRID, 100, "100ms", &["--peer", &peer(0)]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("priority 200 holds the VIP");
    sole_holder_for(&topo, VIP, &[0, 1], 0, master_down_interval(100, ADVERT) * 2).expect("the backup hears it");
    a.signal(libc::SIGTERM);
    let took = wait_sole_holder(&topo, VIP, &[0, 1], 1, CONVERGE).expect("the backup takes over");
    assert!(took <= ADVERT + SLACK, "takeover after SIGTERM took {took:?}");
}

#[test]
fn a_restarted_node_removes_the_vip_its_crash_left_behind() {
    let topo = Topology::new(2).expect("topology");
    let mut a = spawn_vipd(&topo, 0, VIP, VRID, 200, "100ms", &[]).expect("vipd");
    let _b = spawn_vipd(&topo, 1, VIP, VRID, 100, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, CONVERGE).expect("priority 200 holds the VIP");
    a.kill();
    wait_sole_holder(&topo, VIP, &[1], 1, CONVERGE).expect("the backup takes over");
    assert!(topo.nodes[0].has_addr(VIP), "SIGKILL leaves the VIP configured: two nodes claim it");
    // Back without preemption, so only the start-up clean-up can remove it.
    let _a = spawn_vipd(&topo, 0, VIP, VRID, 200, "100ms", &["--no-preempt"]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 1, CONVERGE).expect("the stale VIP is removed at start-up");
    sole_holder_for(&topo, VIP, &[0, 1], 1, master_down_interval(200, ADVERT) * 2).expect("and stays away");
}
