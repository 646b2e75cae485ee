//! The registrar's Kubernetes source end to end: the real registrar binary
//! (`--source kubernetes`) with a kubeconfig pointing at the test API server
//! (integration_tests::kube_api, a stand-in: no API server can be installed
//! here) and a real Consul agent.

use std::collections::BTreeMap;
use std::time::Duration;

use consul::{AgentService, CheckStatus, QueryOptions};
use integration_tests::docker::{Container, TestImage, unique};
use integration_tests::{ConsulAgent, Daemon, KubeApiServer, wait_until};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(20);

/// A running pod of a one-port Deployment, shaped as the API server returns
/// it; `ip: None` is a pod not yet given an address.
fn pod(name: &str, node: &str, ip: Option<&str>, ready: bool) -> Pod {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": { "SERVICE_NAME": "web", "SERVICE_TAGS": format!("urlprefix-{name}.example.com/") },
            "labels": { "app": "web" },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-uid",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "nodeName": node,
            "containers": [{ "name": "web", "image": "web:1", "ports": [{ "containerPort": 8080, "protocol": "TCP" }] }]
        },
        "status": {
            "phase": if ip.is_some() { "Running" } else { "Pending" },
            "hostIP": "192.0.2.10",
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": if ready { "True" } else { "False" } }
            ]
        }
    });
    if let Some(ip) = ip {
        v["status"]["podIP"] = json!(ip);
        v["status"]["podIPs"] = json!([{ "ip": ip }]);
    }
    serde_json::from_value(v).expect("a valid pod")
}

fn set_ready(p: &mut Pod, ready: bool) {
    let conditions = p.status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions");
    for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        c.status = if ready { "True" } else { "False" }.into();
    }
}

fn id(pod: &str) -> String {
    format!("{NODE}:default:{pod}:8080")
}

/// Consul, the test API server and a kubeconfig pointing at it.
struct Cluster {
    consul: ConsulAgent,
    api: KubeApiServer,
    kubeconfig: tempfile::NamedTempFile,
}

impl Cluster {
    async fn start() -> Self {
        let consul = ConsulAgent::start().await.expect("consul starts");
        let api = KubeApiServer::start().await.expect("test api server starts");
        let kubeconfig = tempfile::Builder::new().prefix("edge-kubeconfig-").tempfile().expect("tempfile");
        std::fs::write(kubeconfig.path(), api.kubeconfig()).expect("write kubeconfig");
        Cluster { consul, api, kubeconfig }
    }

    fn registrar(&self) -> Daemon {
        self.spawn_registrar(&["--source", "kubernetes", "--node-name", NODE])
    }

    fn spawn_registrar(&self, args: &[&str]) -> Daemon {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--consul-addr".to_string(), self.consul.http_addr()]);
        let kubeconfig = self.kubeconfig.path().to_string_lossy().into_owned();
        Daemon::spawn(
            "registrar",
            &args,
            // A HOME without ~/.kube, so nothing but KUBECONFIG is read.
            &[("KUBECONFIG", kubeconfig.as_str()), ("HOME", "/nonexistent")],
        )
        .expect("registrar starts")
    }

    /// This node's registrar entries in the agent.
    async fn services(&self) -> BTreeMap<String, AgentService> {
        let all = self.consul.client().agent_services().await.unwrap_or_default();
        all.into_iter().filter(|(id, _)| id.starts_with(&format!("{NODE}:"))).collect()
    }

    /// Waits until the registered IDs are exactly `ids`.
    async fn wait_for_ids(&self, ids: &[String]) -> BTreeMap<String, AgentService> {
        let mut want: Vec<String> = ids.to_vec();
        want.sort();
        let got = wait_until(WAIT, || async {
            let s = self.services().await;
            (s.keys().cloned().collect::<Vec<_>>() == want).then_some(s)
        })
        .await;
        match got {
            Some(s) => s,
            None => panic!("registered IDs never became {want:?}; now {:?}", self.services().await.keys()),
        }
    }

    /// The status of the registrar's health check for `service_id`.
    async fn health(&self, service_id: &str) -> Option<CheckStatus> {
        let checks = self.consul.client().health_node(self.consul.node_name(), &QueryOptions::default()).await.ok()?;
        checks.value.into_iter().find(|c| c.service_id == service_id).map(|c| c.status)
    }

    async fn wait_for_health(&self, service_id: &str, want: CheckStatus) {
        let ok = wait_until(WAIT, || async { (self.health(service_id).await == Some(want)).then_some(()) }).await;
        assert!(ok.is_some(), "{service_id}: health never became {want:?}; is {:?}", self.health(service_id).await);
    }

    /// Instances of service `web` the router would route to (all checks passing).
    async fn routable(&self) -> Vec<String> {
        let entries = self.consul.client().health_service("web", true, &QueryOptions::default()).await;
        entries.map(|r| r.value.into_iter().map(|e| e.service.id).collect()).unwrap_or_default()
    }
}

#[tokio::test]
async fn ready_pod_is_routed_and_a_not_ready_one_is_not() {
    let c = Cluster::start().await;
    let _registrar = c.registrar();

    c.api.add_pod(pod("web-1", NODE, Some("10.244.0.11"), false));
    let services = c.wait_for_ids(&[id("web-1")]).await;
    let s = &services[&id("web-1")];
    assert_eq!((s.service.as_str(), s.address.as_str(), s.port), ("web", "10.244.0.11", 8080));
    assert_eq!(s.tags, ["urlprefix-web-1.example.com/"]);
    assert_eq!(s.meta.get("pod-namespace").map(String::as_str), Some("default"));
    assert_eq!(s.meta.get("pod-name").map(String::as_str), Some("web-1"));
    assert_eq!(s.meta.get("pod-owner").map(String::as_str), Some("ReplicaSet/web-5d8f"));
    c.wait_for_health(&id("web-1"), CheckStatus::Critical).await;
    assert!(c.routable().await.is_empty(), "not ready: not routed");

    c.api.modify_pod("default", "web-1", |p| set_ready(p, true));
    c.wait_for_health(&id("web-1"), CheckStatus::Passing).await;
    assert_eq!(c.routable().await, [id("web-1")]);

    c.api.modify_pod("default", "web-1", |p| set_ready(p, false));
    c.wait_for_health(&id("web-1"), CheckStatus::Critical).await;
    assert!(c.routable().await.is_empty());
}

#[tokio::test]
async fn nothing_is_registered_before_the_pod_has_an_ip_and_deleted_or_terminating_pods_go() {
    let c = Cluster::start().await;
    let _registrar = c.registrar();

    c.api.add_pod(pod("web-1", NODE, None, false));
    // Events are handled in order: once web-2 is in, web-1 (no IP) was seen.
    c.api.add_pod(pod("web-2", NODE, Some("10.244.0.12"), true));
    c.wait_for_ids(&[id("web-2")]).await;

    c.api.modify_pod("default", "web-1", |p| {
        let status = p.status.as_mut().expect("status");
        status.pod_ip = Some("10.244.0.11".into());
        status.phase = Some("Running".into());
        set_ready(p, true);
    });
    c.wait_for_ids(&[id("web-1"), id("web-2")]).await;
    c.wait_for_health(&id("web-1"), CheckStatus::Passing).await;

    c.api.delete_pod("default", "web-2");
    c.wait_for_ids(&[id("web-1")]).await;

    // Graceful deletion: the pod still exists, with a deletionTimestamp.
    c.api.modify_pod("default", "web-1", |p| {
        let v = json!("2025-03-01T11:00:00Z");
        p.metadata.deletion_timestamp = Some(serde_json::from_value(v).expect("time"));
        p.metadata.deletion_grace_period_seconds = Some(30);
    });
    c.wait_for_ids(&[]).await;
}

#[tokio::test]
async fn pods_of_other_nodes_are_ignored() {
    let c = Cluster::start().await;
    let _registrar = c.registrar();

    c.api.add_pod(pod("elsewhere", "node-b", Some("10.244.1.5"), true));
    c.api.add_pod(pod("here", NODE, Some("10.244.0.5"), true));
    c.wait_for_ids(&[id("here")]).await;
    let all = c.consul.client().agent_services().await.expect("agent services");
    assert!(all.keys().all(|id| !id.contains("elsewhere")), "{all:?}");
    let requests = c.api.requests();
    assert!(
        requests.iter().any(|r| r.contains("watch=true") && r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "the API server filters by node: {requests:#?}"
    );
}

#[tokio::test]
async fn restarted_registrar_removes_entries_of_pods_deleted_meanwhile() {
    let c = Cluster::start().await;
    let mut registrar = c.registrar();
    c.api.add_pod(pod("web-1", NODE, Some("10.244.0.11"), true));
    c.api.add_pod(pod("web-2", NODE, Some("10.244.0.12"), true));
    c.wait_for_ids(&[id("web-1"), id("web-2")]).await;

    registrar.kill();
    c.api.delete_pod("default", "web-1");
    c.api.add_pod(pod("web-3", NODE, Some("10.244.0.13"), true));
    assert_eq!(c.services().await.len(), 2, "nobody touched Consul while the registrar was down");

    let _registrar = c.registrar();
    c.wait_for_ids(&[id("web-2"), id("web-3")]).await;
    c.wait_for_health(&id("web-3"), CheckStatus::Passing).await;
}

#[tokio::test]
async fn expired_watch_relists_without_losing_or_duplicating_anything() {
    let c = Cluster::start().await;
    let _registrar = c.registrar();
    c.api.add_pod(pod("web-1", NODE, Some("10.244.0.11"), true));
    c.api.add_pod(pod("web-2", NODE, Some("10.244.0.12"), true));
    c.wait_for_ids(&[id("web-1"), id("web-2")]).await;
    c.wait_for_health(&id("web-2"), CheckStatus::Passing).await;
    let lists_before = c.api.requests().iter().filter(|r| !r.contains("watch=")).count();

    // Changes the registrar's watch never sees: it reconnects with an old
    // resourceVersion, gets 410 Expired, and must relist to catch up.
    c.api.change_while_disconnected(|e| {
        e.delete_pod("default", "web-1");
        e.modify_pod("default", "web-2", |p| set_ready(p, false));
        e.add_pod(pod("web-3", NODE, Some("10.244.0.13"), true));
    });
    let services = c.wait_for_ids(&[id("web-2"), id("web-3")]).await;
    c.wait_for_health(&id("web-2"), CheckStatus::Critical).await;
    c.wait_for_health(&id("web-3"), CheckStatus::Passing).await;
    assert_eq!(services[&id("web-3")].address, "10.244.0.13");
    assert_eq!(c.routable().await, [id("web-3")], "exactly one routable instance, no duplicates");
    let lists_after = c.api.requests().iter().filter(|r| !r.contains("watch=")).count();
    assert!(lists_after > lists_before, "relisted after 410: {:#?}", c.api.requests());

    // And the new watch is live again.
    c.api.delete_pod("default", "web-3");
    c.wait_for_ids(&[id("web-2")]).await;
}

#[tokio::test]
async fn bookmarks_and_dropped_watches_resume_from_the_last_version_without_relisting() {
    let c = Cluster::start().await;
    let _registrar = c.registrar();
    c.api.add_pod(pod("web-1", NODE, Some("10.244.0.11"), true));
    c.wait_for_ids(&[id("web-1")]).await;
    let lists = || c.api.requests().iter().filter(|r| !r.contains("watch=")).count();
    let lists_before = lists();

    assert!(wait_until(WAIT, || async { (c.api.open_watches() == 1).then_some(()) }).await.is_some());
    assert_eq!(c.api.bookmark(), 1, "kube's watcher asks for bookmarks");
    c.api.add_pod(pod("web-2", NODE, Some("10.244.0.12"), true));
    c.wait_for_ids(&[id("web-1"), id("web-2")]).await;

    // A lost connection with the history still there: the watcher resumes
    // from its last resourceVersion and sees what happened meanwhile.
    c.api.drop_watches();
    c.api.delete_pod("default", "web-1");
    c.wait_for_ids(&[id("web-2")]).await;
    assert_eq!(lists(), lists_before, "no relist was needed: {:#?}", c.api.requests());
    let watches = c.api.requests().into_iter().filter(|r| r.contains("watch=true")).count();
    assert!(watches >= 2, "reconnected: {:#?}", c.api.requests());
}

#[tokio::test]
async fn source_all_runs_docker_and_kubernetes_side_by_side_and_each_reconciles_only_its_own() {
    let c = Cluster::start().await;
    let image = TestImage::build().expect("test image builds");
    // The Docker engine is shared with parallel tests: a unique node, and
    // only this test's container and pods are looked at.
    let node = unique("k8s-all");
    let name = unique("k8s-all-web");
    let _container = Container::run(&name, &["-p", "80", image.tag(), "httpd", "-f", "-p", "80", "-h", "/www"])
        .expect("container runs");
    let _registrar = c.spawn_registrar(&["--source", "all", "--node-name", &node, "--host-ip", "127.0.0.1"]);
    c.api.add_pod(pod("web-1", &node, Some("10.244.0.11"), true));

    let docker_id = format!("{node}:{name}:80");
    let pod_id = format!("{node}:default:web-1:8080");
    let ours = || async {
        let all = c.consul.client().agent_services().await.ok()?;
        let mut ids: Vec<String> = all.into_keys().filter(|id| *id == docker_id || *id == pod_id).collect();
        ids.sort();
        Some(ids)
    };
    let both = wait_until(WAIT, || async { ours().await.filter(|ids| ids.len() == 2) }).await;
    assert!(both.is_some(), "both sources registered; now {:?}", ours().await);
    let sources = c.consul.client().agent_services().await.expect("agent services");
    assert_eq!(sources[&docker_id].meta["registrar-source"], "docker");
    assert_eq!(sources[&pod_id].meta["registrar-source"], "kubernetes");

    // A Kubernetes relist that finds no pods removes the pod's entry and
    // leaves the container's alone.
    c.api.change_while_disconnected(|e| {
        e.delete_pod("default", "web-1");
    });
    let only_docker = wait_until(WAIT, || async { ours().await.filter(|ids| *ids == [docker_id.clone()]) }).await;
    assert!(only_docker.is_some(), "pod entry gone, container entry kept; now {:?}", ours().await);
}

/// Polls Consul every millisecond until `service_id` is routable (`want`) or
/// not; returns how long that took.
async fn time_until_routable(c: &Cluster, service: &str, service_id: &str, want: bool) -> Duration {
    let t = std::time::Instant::now();
    let client = c.consul.client();
    loop {
        let entries = client.health_service(service, true, &QueryOptions::default()).await;
        let routable = entries.is_ok_and(|r| r.value.iter().any(|e| e.service.id == service_id));
        if routable == want {
            return t.elapsed();
        }
        assert!(t.elapsed() < WAIT, "{service_id} never became routable={want}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Measurement, not a pass/fail check (run with `--run-ignored only`): how
/// long a pod's Ready flip takes to reach Consul's routable set through the
/// registrar, against a baseline measured in the same run: the test flipping
/// a TTL check in Consul itself, which is the floor any registrar pays.
#[tokio::test]
#[ignore = "measurement; prints numbers"]
async fn measure_pod_ready_to_routable_against_a_direct_ttl_update() {
    const ROUNDS: usize = 20;
    let c = Cluster::start().await;
    let _registrar = c.registrar();
    c.api.add_pod(pod("web-1", NODE, Some("10.244.0.11"), false));
    c.wait_for_ids(&[id("web-1")]).await;
    c.wait_for_health(&id("web-1"), CheckStatus::Critical).await;

    let client = c.consul.client();
    let baseline = consul::ServiceRegistration {
        id: "baseline".into(),
        name: "baseline".into(),
        tags: vec![],
        address: "127.0.0.1".into(),
        port: Some(1),
        meta: BTreeMap::new(),
        checks: vec![consul::CheckRegistration {
            check_id: "baseline-ttl".into(),
            name: "baseline".into(),
            ttl: "60s".into(),
            ..Default::default()
        }],
    };
    client.register_service(&baseline).await.expect("register baseline");

    let (mut via_registrar, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        c.api.modify_pod("default", "web-1", |p| set_ready(p, true));
        via_registrar.push(time_until_routable(&c, "web", &id("web-1"), true).await);
        c.api.modify_pod("default", "web-1", |p| set_ready(p, false));
        time_until_routable(&c, "web", &id("web-1"), false).await;

        let t = std::time::Instant::now();
        client.ttl_check("baseline-ttl", consul::TtlStatus::Pass, "").await.expect("pass");
        time_until_routable(&c, "baseline", "baseline", true).await;
        direct.push(t.elapsed());
        client.ttl_check("baseline-ttl", consul::TtlStatus::Fail, "").await.expect("fail");
        time_until_routable(&c, "baseline", "baseline", false).await;
    }
    let (r, d) = (median(via_registrar), median(direct));
    println!(
        "pod Ready -> routable in Consul, median of {ROUNDS}: via registrar {r:?}, direct TTL update {d:?}, ratio {:.1}",
        r.as_secs_f64() / d.as_secs_f64().max(1e-6)
    );
}
