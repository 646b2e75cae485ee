//! The test Kubernetes API server (integration_tests::kube_api) read over
//! HTTP the way a client does: lists, watch streams, 410 Expired, paging.

use std::time::Duration;

use integration_tests::KubeApiServer;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

fn pod(ns: &str, name: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
        status: None,
    }
}

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("json body"))
}

fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Reads watch events (one JSON object a line) until `n` arrived.
async fn read_events(resp: &mut reqwest::Response, buf: &mut Vec<u8>, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < n {
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            events.push(serde_json::from_slice(&line).expect("event json"));
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("an event within 10 s")
            .expect("read chunk")
            .expect("stream still open");
        buf.extend_from_slice(&chunk);
    }
    events
}

fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn list_is_a_podlist_filtered_by_node_and_namespace() {
    let server = KubeApiServer::start().await.expect("server");
    server.add_pod(pod("default", "a", "n1"));
    server.add_pod(pod("default", "b", "n2"));
    server.add_pod(pod("other", "c", "n1"));

    let (code, list) = get(&format!("{}/api/v1/pods?fieldSelector=spec.nodeName%3Dn1", server.url())).await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["metadata"]["resourceVersion"], server.resource_version());
    assert_eq!(item_names(&list), ["a", "c"]);
    let a = &list["items"][0];
    assert_eq!(a["kind"], "Pod");
    assert_eq!(a["spec"]["nodeName"], "n1");
    assert!(a["metadata"]["uid"].is_string() && a["metadata"]["creationTimestamp"].is_string(), "{a}");

    let (_, list) = get(&format!("{}/api/v1/namespaces/default/pods", server.url())).await;
    assert_eq!(item_names(&list), ["a", "b"]);

    let (code, status) = get(&format!("{}/api/v1/pods?fieldSelector=spec.bogus%3Dx", server.url())).await;
    assert_eq!((code, status["kind"].as_str()), (400, Some("Status")));
}

#[tokio::test]
async fn paged_list_reads_one_snapshot_and_expires_with_the_history() {
    let server = KubeApiServer::start().await.expect("server");
    for name in ["a", "b", "c"] {
        server.add_pod(pod("default", name, "n1"));
    }
    let (_, page1) = get(&format!("{}/api/v1/pods?limit=2", server.url())).await;
    assert_eq!(item_names(&page1), ["a", "b"]);
    let token = page1["metadata"]["continue"].as_str().expect("continue token").to_string();
    server.delete_pod("default", "c");
    let (_, page2) = get(&format!("{}/api/v1/pods?limit=2&continue={token}", server.url())).await;
    assert_eq!(item_names(&page2), ["c"], "the snapshot of the first page");
    assert!(page2["metadata"]["continue"].is_null());

    server.expire_history();
    let (code, status) = get(&format!("{}/api/v1/pods?limit=2&continue={token}", server.url())).await;
    assert_eq!(code, 410);
    assert_eq!((status["reason"].as_str(), status["code"].as_u64()), (Some("Expired"), Some(410)));
}

#[tokio::test]
async fn watch_streams_changes_after_the_resource_version_and_bookmarks() {
    let server = KubeApiServer::start().await.expect("server");
    server.add_pod(pod("default", "before", "n1"));
    let rv = server.resource_version();
    server.add_pod(pod("default", "missed-by-list", "n1"));
    server.add_pod(pod("default", "elsewhere", "n2"));

    let url = format!(
        "{}/api/v1/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dn1",
        server.url()
    );
    let mut resp = reqwest::get(&url).await.expect("watch");
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = Vec::new();
    let replay = read_events(&mut resp, &mut buf, 1).await;
    assert_eq!(kinds(&replay), [("ADDED".to_string(), "missed-by-list".to_string())]);

    server.modify_pod("default", "before", |p| p.metadata.labels = Some([("x".into(), "y".into())].into()));
    server.modify_pod("default", "missed-by-list", |p| {
        p.spec.as_mut().unwrap().node_name = Some("n3".into());
    });
    server.delete_pod("default", "before");
    assert_eq!(server.bookmark(), 1);
    let live = read_events(&mut resp, &mut buf, 4).await;
    assert_eq!(
        kinds(&live),
        [
            ("MODIFIED".into(), "before".into()),
            ("DELETED".into(), "missed-by-list".into()),
            ("DELETED".into(), "before".into()),
            ("BOOKMARK".into(), String::new()),
        ]
    );
    assert_eq!(live[3]["object"]["metadata"]["resourceVersion"], server.resource_version());
    assert_eq!(live[2]["object"]["metadata"]["resourceVersion"], server.resource_version());

    assert_eq!(server.drop_watches(), 1);
    let end = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("closed promptly");
    assert!(matches!(end, Ok(None)), "stream ended cleanly: {end:?}");
}

#[tokio::test]
async fn watch_from_an_expired_version_gets_410_and_timeout_closes_the_stream() {
    let server = KubeApiServer::start().await.expect("server");
    server.add_pod(pod("default", "a", "n1"));
    let old = server.resource_version();
    server.change_while_disconnected(|e| {
        e.delete_pod("default", "a");
    });
    let mut resp =
        reqwest::get(format!("{}/api/v1/pods?watch=1&resourceVersion={old}", server.url())).await.expect("watch");
    let mut buf = Vec::new();
    let ev = read_events(&mut resp, &mut buf, 1).await;
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["kind"], "Status");
    assert_eq!(ev[0]["object"]["reason"], "Expired");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert!(matches!(resp.chunk().await, Ok(None)), "then the stream ends");

    let now = server.resource_version();
    let mut resp =
        reqwest::get(format!("{}/api/v1/pods?watch=true&resourceVersion={now}&timeoutSeconds=1", server.url()))
            .await
            .expect("watch");
    let end = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("closed by timeoutSeconds");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn streaming_list_sends_the_current_pods_then_an_initial_events_end_bookmark() {
    let server = KubeApiServer::start().await.expect("server");
    server.add_pod(pod("default", "a", "n1"));
    server.add_pod(pod("default", "b", "n2"));
    let base =
        format!("{}/api/v1/pods?watch=true&sendInitialEvents=true&fieldSelector=spec.nodeName%3Dn1", server.url());
    let (code, _) = get(&base).await;
    assert_eq!(code, 400, "needs bookmarks and NotOlderThan, as the real server insists");

    let url = format!("{base}&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=0");
    let mut resp = reqwest::get(&url).await.expect("watch");
    let mut buf = Vec::new();
    let events = read_events(&mut resp, &mut buf, 2).await;
    assert_eq!(kinds(&events), [("ADDED".into(), "a".into()), ("BOOKMARK".into(), String::new())]);
    let meta = &events[1]["object"]["metadata"];
    assert_eq!(meta["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(meta["resourceVersion"], server.resource_version());
    server.add_pod(pod("default", "c", "n1"));
    assert_eq!(kinds(&read_events(&mut resp, &mut buf, 1).await), [("ADDED".to_string(), "c".to_string())]);
}
