//! The edge as one system (issue 10's table), measured from the client side:
//! a client polls `app.example.com` through the VIP every 10 ms while parts
//! of a three-node edge fail (tests/src/edge.rs builds it). One cluster
//! serves every event, in an order that leaves it whole after each:
//!
//! 1. the Consul raft leader is killed on a node that does not hold the VIP
//!    (repeated until node 0, the VIP holder, is the leader): no failed
//!    request; a service registered while the leader is being elected is
//!    routed within 2 s of the new leader;
//! 2. the Consul raft leader is killed on node 0, the VIP holder (its router
//!    and vipd keep running, reading from the other servers through
//!    `--consul-fallback-addr`): no failed request, the VIP stays, and the
//!    service registered meanwhile is routed within 2 s; then step 1 again
//!    until node 0 leads;
//! 3. node 0 dies while it holds the VIP and is the raft leader: the client
//!    is served again within 400 ms, and a service registered during the
//!    election is routed within 2 s of the new leader; node 0 returns and
//!    takes the VIP back (gap < 150 ms);
//! 4. node 0 dies while it holds the VIP (not the leader): <= 400 ms; it
//!    returns (< 150 ms);
//! 5. the router on node 0 is killed, vipd left running: < 300 ms; it
//!    returns (< 150 ms).
//!
//! Each figure is printed (`--nocapture`) for the README.

use std::time::{Duration, Instant};

use integration_tests::edge::{EDGE, EdgeCluster, PRIORITIES, Poller};

/// How long after an event the window stays open, so what follows it is seen.
const SETTLE: Duration = Duration::from_millis(1500);
const CONVERGE: Duration = Duration::from_secs(20);

/// The requests of one event: from shortly before it (so the gap includes
/// the last answer before it) to now.
fn window(poller: &Poller, t0: Instant) -> integration_tests::edge::Window {
    poller.window(t0 - Duration::from_millis(100), Instant::now())
}

fn report(name: &str, w: &integration_tests::edge::Window, t0: Instant, bound: Duration) {
    println!(
        "edge_cluster: {name}: gap {} ms (bound {} ms), {} of {} requests failed {}",
        w.gap().as_millis(),
        bound.as_millis(),
        w.failed(),
        w.total(),
        w.failures(t0)
    );
}

fn report_routed(name: &str, routed: Duration) {
    println!("edge_cluster: {name}: routed {} ms after the new leader (bound 2000 ms)", routed.as_millis());
}

/// Waits until node `i` is back in full: VIP on node 0 if `i` is 0, its
/// Consul server naming the leader, the router on `i` hearing Consul and
/// vipd on `i` at its configured priority. The server is asked itself: the
/// router hears Consul through the other servers (`--consul-fallback-addr`)
/// before its own has joined, and a server restarted seconds before the
/// next leader death holds reads until Consul's `rpc_hold_timeout` (7 s):
/// routes 8.4-9.1 s late in 3 runs before this wait. Naming the leader is
/// not enough either: the server must have caught up with the leader's log
/// ([`EdgeCluster::caught_up`]), or the next fault leaves it serving an
/// older state to its router.
fn wait_whole(c: &EdgeCluster, i: usize) {
    let ok = integration_tests::wait::poll(CONVERGE, || {
        (c.knows_leader(i) && c.caught_up(i)).then_some(())?;
        let consul = c.router_admin(i, "/health/consul").filter(|(s, _)| *s == 200)?;
        let vipd = c.vipd_status(i).filter(|s| s["priority"] == u64::from(PRIORITIES[i]))?;
        Some((consul, vipd))
    });
    assert!(ok.is_some(), "node {i} is not whole again after {CONVERGE:?}:\n{}", c.logs(i));
    c.wait_holder(0, CONVERGE).unwrap_or_else(|h| panic!("node 0 does not hold the VIP again: {h:?}"));
}

/// Brings node 0 (or a part of it) back with `start` and checks that taking
/// the VIP back costs the client less than 150 ms.
fn returns(
    c: &mut EdgeCluster,
    poller: &Poller,
    name: &str,
    start: impl FnOnce(&mut EdgeCluster) -> Result<(), integration_tests::HarnessError>,
) {
    let t0 = Instant::now();
    start(c).unwrap_or_else(|e| panic!("{name}: {e}"));
    wait_whole(c, 0);
    std::thread::sleep(SETTLE);
    let w = window(poller, t0);
    report(name, &w, t0, Duration::from_millis(150));
    assert!(w.gap() < Duration::from_millis(150), "{name}: the return cost {:?}:\n{}", w.gap(), c.events());
}

/// Registers `id` in the catalog through a surviving server once no
/// survivor names the dead leader (node `killed`) any more, so the write is
/// held until a new leader commits it (or, if the election is already over,
/// committed at once); returns when the new leader was seen and when the
/// client first got the service through the VIP. Waiting for both
/// survivors to report no leader at all missed the moment in 4 of 14
/// elections: with two survivors it can last a few milliseconds (a
/// candidate wins as soon as the other follower's heartbeat times out).
/// Sent before that, the write would be forwarded to the dead leader, which
/// after a node death (link down) hangs instead of failing.
fn register_during_election(c: &EdgeCluster, via: usize, killed: usize, id: &str) -> (Instant, Instant) {
    let forgot = integration_tests::wait::poll(Duration::from_secs(10), || c.forgot_leader(killed).then_some(()));
    assert!(forgot.is_some(), "the survivors still name node {killed} as the leader: {:?}", c.leaders_seen());
    let host = format!("{id}.example.com");
    let tag = format!("urlprefix-{host}/");
    std::thread::scope(|s| {
        let writer = s.spawn(|| c.register_in_catalog(via, id, &[&tag]));
        let elected = integration_tests::wait::poll(Duration::from_secs(30), || {
            c.leader().filter(|l| *l != killed).map(|_| Instant::now())
        })
        .unwrap_or_else(|| panic!("no new leader after node {killed}'s: {:?}", c.leaders_seen()));
        writer.join().expect("register thread").expect("the registration is committed by the new leader");
        let routed = integration_tests::wait::poll(Duration::from_secs(30), || {
            c.client_get(&host, "/name").map(|_| Instant::now())
        });
        let routed = routed.unwrap_or_else(|| {
            panic!(
                "{host} never routed; leaders seen {:?}; holders {:?}\n{}",
                c.leaders_seen(),
                c.holders(),
                c.router_lines(&[id, "WARN", "leader", "answers"])
            )
        });
        (elected, routed)
    })
}

/// Kills the raft leader's Consul where it is not node 0 (the VIP holder)
/// until node 0 is the leader, checking each time that no request fails and
/// that a service registered during the election is routed within 2 s.
fn kill_leaders_until_node_0_leads(c: &mut EdgeCluster, poller: &Poller, round: &mut usize) {
    loop {
        let (leader, _) = c.wait_for_leader(CONVERGE).expect("a leader");
        if leader == 0 {
            return;
        }
        *round += 1;
        assert!(*round <= 10, "node 0 never became the leader");
        kill_leaders_consul(c, poller, leader, &format!("late{round}"), "consul leader killed (not the VIP holder)");
        wait_whole(c, leader);
    }
}

/// Kills the Consul server of node `leader` (the raft leader; its router and
/// vipd keep running), registers `id` during the election, and checks that
/// no request failed and that `id` was routed within 2 s of the new leader;
/// then starts that Consul again.
fn kill_leaders_consul(c: &mut EdgeCluster, poller: &Poller, leader: usize, id: &str, name: &str) {
    let t0 = Instant::now();
    c.kill_consul(leader);
    let via = (0..EDGE).find(|i| *i != leader).unwrap_or(0);
    let (elected, routed) = register_during_election(c, via, leader, id);
    std::thread::sleep(SETTLE);
    let w = window(poller, t0);
    report(name, &w, t0, Duration::ZERO);
    report_routed("registered during that election", routed - elected);
    assert_eq!(w.failed(), 0, "{name}: requests failed (gap {:?}):\n{}", w.gap(), c.events());
    assert!(
        routed - elected <= Duration::from_secs(2),
        "routed {:?} after the new leader:\n{}",
        routed - elected,
        c.events()
    );
    c.start_consul(leader).expect("consul restarts");
}

#[test]
fn the_edge_keeps_serving_through_consul_leader_loss_node_and_router_death() {
    let mut c = EdgeCluster::start().expect("the edge cluster starts");
    c.wait_holder(0, CONVERGE).expect("node 0 (priority 150) holds the VIP");
    let st = c.vipd_status(0).expect("vipd /status");
    assert_eq!(st["state"], "master");
    let api = c.router_admin(0, "/api/status").expect("router /api/status").1;
    assert!(api.contains("\"state\":\"master\""), "the router shows the VIP state: {api}");
    let poller = Poller::start(&c.topo.client, "app.example.com", "/name").expect("poller");
    std::thread::sleep(Duration::from_millis(300));

    // 1. The raft leader's Consul is killed where it is not the VIP holder.
    let mut round = 0;
    kill_leaders_until_node_0_leads(&mut c, &poller, &mut round);

    // 2. The raft leader's Consul is killed on the VIP holder; its router
    //    reads from the other servers, so the VIP does not move.
    kill_leaders_consul(&mut c, &poller, 0, "late-holder", "consul leader killed on the VIP holder");
    assert_eq!(c.holders(), vec![0], "the VIP stayed on node 0");
    wait_whole(&c, 0);
    kill_leaders_until_node_0_leads(&mut c, &poller, &mut round);

    // 3. Node 0 dies holding the VIP while it is the raft leader.
    let t0 = Instant::now();
    c.kill_node(0).expect("node 0 dies");
    let (elected, routed) = register_during_election(&c, 1, 0, "late-node");
    std::thread::sleep(SETTLE);
    let w = window(&poller, t0);
    report("VIP holder and raft leader dies", &w, t0, Duration::from_millis(400));
    report_routed("registered during that election", routed - elected);
    assert!(
        w.gap() <= Duration::from_millis(400),
        "outage {:?}; holders {:?}\n{}{}",
        w.gap(),
        c.holders(),
        c.events(),
        c.router_lines(&["WARN", "published", "answers"])
    );
    assert!(
        routed - elected <= Duration::from_secs(2),
        "routed {:?} after the new leader:\n{}",
        routed - elected,
        c.events()
    );
    assert!(c.holders().contains(&1), "node 1 (priority 140) took the VIP: {:?}", c.holders());

    returns(&mut c, &poller, "node returns", |c| c.start_node(0));

    // 4. Node 0 dies holding the VIP, not the leader (the cluster elected
    //    another while it was away).
    assert_ne!(c.leader(), Some(0));
    let t0 = Instant::now();
    c.kill_node(0).expect("node 0 dies");
    c.wait_holder(1, CONVERGE).expect("node 1 takes the VIP");
    std::thread::sleep(SETTLE);
    let w = window(&poller, t0);
    report("VIP holder dies (not the leader)", &w, t0, Duration::from_millis(400));
    assert!(w.gap() <= Duration::from_millis(400), "outage {:?}:\n{}", w.gap(), c.events());
    returns(&mut c, &poller, "node returns", |c| c.start_node(0));

    // 5. The router on node 0 dies; its vipd keeps running.
    let t0 = Instant::now();
    c.kill_router(0);
    c.wait_holder(1, CONVERGE).expect("node 1 takes the VIP");
    std::thread::sleep(SETTLE);
    let w = window(&poller, t0);
    report("router on the VIP holder killed", &w, t0, Duration::from_millis(300));
    assert!(w.gap() < Duration::from_millis(300), "outage {:?}", w.gap());
    returns(&mut c, &poller, "router returns", |c| c.start_router(0));
    drop(poller);
}
