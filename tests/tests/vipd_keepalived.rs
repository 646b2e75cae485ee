//! vipd and keepalived (Debian's, `vrrp_version 3`) in one VRRP group, on
//! real namespaces: priorities are respected in both directions, so each
//! accepts the other's adverts (a peer that dropped them would claim the VIP
//! too and two nodes would hold it), and each hands over on the other's
//! priority-0 advert at shutdown.

use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::Topology;
use integration_tests::vrrp::{Keepalived, master_down_interval, sole_holder_for, spawn_vipd, wait_sole_holder};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const VRID: u8 = 42;
const ADVERT: Duration = Duration::from_millis(100);
const CONVERGE: Duration = Duration::from_secs(8);
const ALL: [usize; 3] = [0, 1, 2];

#[test]
fn keepalived_and_vipd_respect_each_others_priorities() {
    let topo = Topology::new(3).expect("topology");
    let mut keepalived = Keepalived::spawn(&topo, 0, VIP, VRID, 150, "0.1").expect("keepalived");
    let mut v1 = spawn_vipd(&topo, 1, VIP, VRID, 100, "100ms", &[]).expect("vipd");
    let mut v2 = spawn_vipd(&topo, 2, VIP, VRID, 50, "100ms", &[]).expect("vipd");

    // keepalived has the highest priority: both vipd nodes stay backup.
    wait_sole_holder(&topo, VIP, &ALL, 0, CONVERGE).expect("keepalived (150) holds the VIP");
    sole_holder_for(&topo, VIP, &ALL, 0, master_down_interval(50, ADVERT) * 3)
        .expect("vipd accepts keepalived's adverts");

    // keepalived stops: its priority-0 advert hands over to vipd.
    keepalived.daemon.signal(libc::SIGTERM);
    keepalived.daemon.wait_exit(Duration::from_secs(5)).expect("keepalived exits");
    wait_sole_holder(&topo, VIP, &ALL, 1, CONVERGE).expect("vipd (100) takes over from keepalived");

    // keepalived back with a lower priority: it stays backup behind vipd.
    keepalived = Keepalived::spawn(&topo, 0, VIP, VRID, 20, "0.1").expect("keepalived");
    sole_holder_for(&topo, VIP, &ALL, 1, Duration::from_millis(1500)).expect("keepalived accepts vipd's adverts");

    // vipd nodes stop one after the other: the group falls to the next
    // priority each time, finally to keepalived on vipd's priority 0.
    v1.signal(libc::SIGTERM);
    v1.wait_exit(Duration::from_secs(3)).expect("vipd exits");
    wait_sole_holder(&topo, VIP, &ALL, 2, CONVERGE).expect("vipd (50) takes over");
    sole_holder_for(&topo, VIP, &ALL, 2, master_down_interval(20, ADVERT) * 2).expect("keepalived stays backup");
    v2.signal(libc::SIGTERM);
    v2.wait_exit(Duration::from_secs(3)).expect("vipd exits");
    wait_sole_holder(&topo, VIP, &ALL, 0, CONVERGE).expect("keepalived (20) takes over from vipd");

    // vipd with a higher priority returns and preempts keepalived.
    v1 = spawn_vipd(&topo, 1, VIP, VRID, 100, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &ALL, 1, CONVERGE).expect("vipd preempts keepalived");
    sole_holder_for(&topo, VIP, &ALL, 1, Duration::from_millis(500)).expect("and keeps it");
    drop(v1);
    drop(keepalived);
}
