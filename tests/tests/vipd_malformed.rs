//! Malformed VRRP packets injected on the segment (wrong TTL, bad checksum,
//! another version, truncated, another VRID) change nothing: each would make
//! the master step down if it were accepted (priority 254), and vipd logs
//! each drop by reason. A well-formed packet sent the same way is obeyed,
//! which shows the injection path reaches vipd.

use std::net::Ipv4Addr;
use std::time::Duration;

use integration_tests::netns::Topology;
use integration_tests::vrrp::{Craft, inject, sole_holder_for, spawn_vipd, wait_sole_holder};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const VRID: u8 = 9;

#[test]
fn malformed_adverts_change_nothing_and_are_counted() {
    let topo = Topology::new(2).expect("topology");
    let master = spawn_vipd(&topo, 0, VIP, VRID, 100, "100ms", &[]).expect("vipd");
    let _backup = spawn_vipd(&topo, 1, VIP, VRID, 50, "100ms", &[]).expect("vipd");
    wait_sole_holder(&topo, VIP, &[0, 1], 0, Duration::from_secs(5)).expect("priority 100 holds the VIP");

    let bad = Craft { vrid: VRID, priority: 254, vip: VIP, ..Craft::default() };
    let cases: Vec<(&str, Craft)> = vec![
        ("ttl", Craft { ttl: 1, ..bad.clone() }),
        ("checksum", Craft { corrupt_checksum: true, ..bad.clone() }),
        ("version", Craft { version: 2, ..bad.clone() }),
        ("length", Craft { truncate_vrrp: Some(10), ..bad.clone() }),
        ("vrid", Craft { vrid: VRID + 1, ..bad.clone() }),
    ];
    for (reason, craft) in &cases {
        inject(&topo.client, vec![craft.datagram(); 3]).expect("inject");
        let needle = format!("reason=\"{reason}\"");
        let logged =
            integration_tests::wait::poll(Duration::from_secs(3), || master.logs().contains(&needle).then_some(()));
        assert!(logged.is_some(), "vipd logs a drop for {reason}:\n{}", master.logs());
        sole_holder_for(&topo, VIP, &[0, 1], 0, Duration::from_millis(300))
            .unwrap_or_else(|h| panic!("a {reason} packet changed the holder: {h:?}"));
    }
    assert!(!master.logs().contains("from=Master to=Backup"), "the master never stepped down");

    // The same path with a valid packet: the master obeys a higher priority.
    inject(&topo.client, vec![bad.datagram()]).expect("inject");
    let stepped = integration_tests::wait::poll(Duration::from_secs(3), || {
        master.logs().contains("from=Master to=Backup").then_some(())
    });
    assert!(stepped.is_some(), "a valid priority-254 advert makes the master step down:\n{}", master.logs());
    // With no real priority-254 master, the group heals by itself.
    wait_sole_holder(&topo, VIP, &[0, 1], 0, Duration::from_secs(5)).expect("priority 100 takes the VIP back");
}
