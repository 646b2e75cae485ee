//! Healing a partition (docs/vipd.md field note): while the master is cut off, the
//! backup takes the VIP and clients learn its MAC. When the link returns, the
//! higher-priority master must win and the client must reach it at once,
//! not after its ARP entry for the VIP expires (30-45 s): the master answers
//! the loser's advert with gratuitous ARP, whichever advert crossed first.
//! Repeated, so both orders of the first adverts after the heal occur.

use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::Topology;
use integration_tests::vrrp::{self, HttpServer, spawn_vipd, wait_sole_holder};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

#[test]
fn after_a_partition_heals_clients_reach_the_master_at_once() {
    let topo = Topology::new(2).expect("topology");
    let _http: Vec<HttpServer> = (0..2).map(|i| HttpServer::spawn(&topo, i).expect("http")).collect();
    let _a = spawn_vipd(&topo, 0, VIP, 3, 200, "100ms", &[]).expect("vipd");
    let _b = spawn_vipd(&topo, 1, VIP, 3, 100, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, Duration::from_secs(5)).expect("n0 holds the VIP");
    vrrp::assert_answers(&topo, VIP, "n0", Duration::from_secs(3));

    for round in 0..3 {
        // Cut n0 off the segment (its own link stays up).
        topo.bridge.ip(&["link", "set", "v0", "nomaster"]).expect("partition");
        let took = integration_tests::wait::poll(Duration::from_secs(3), || topo.nodes[1].has_addr(VIP).then_some(()));
        assert!(took.is_some(), "round {round}: n1 takes the VIP during the partition");
        vrrp::assert_answers(&topo, VIP, "n1", Duration::from_secs(3));

        topo.bridge.ip(&["link", "set", "v0", "master", "br0"]).expect("heal");
        wait_sole_holder(&topo, VIP, &[0, 1], 0, Duration::from_secs(3))
            .unwrap_or_else(|h| panic!("round {round}: after the heal only n0 holds the VIP, not {h:?}"));
        // Well under the ARP entry's lifetime: only gratuitous ARP gets it there.
        vrrp::assert_answers(&topo, VIP, "n0", Duration::from_secs(2));
    }
}
