//! gRPC through the real router with real gRPC peers: grpcio servers and
//! clients (tests/grpc/peer.py, Debian's python3-grpcio) and routes from real
//! Consul tags. Inbound over h2c (the proxy listener) and over TLS (h2 by
//! ALPN on `--tls-addr`), to `proto=grpc` (h2c) and `proto=grpcs` (TLS,
//! self-signed, `tlsskipverify=true`) instances: all four call kinds without
//! buffering, status, message and trailers passing, grpc-timeout reaching
//! the instance and ending the call with DEADLINE_EXCEEDED, no route ->
//! UNIMPLEMENTED, 100 concurrent calls, a killed instance -> UNAVAILABLE then
//! recovery, and an instance leaving Consul: no new calls, its open stream
//! runs to its end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use integration_tests::certs::self_signed;
use integration_tests::router::{Router, register};
use integration_tests::{ConsulAgent, Daemon, free_port, wait_until};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const T: Duration = Duration::from_secs(20);

/// The interpreter that sees Debian's python3-grpcio (scripts/install.sh);
/// `GRPC_PYTHON` overrides it.
fn python() -> String {
    std::env::var("GRPC_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc/peer.py")
}

/// A grpcio server process on a fixed loopback port (restartable in place).
struct Server {
    port: u16,
    daemon: Daemon,
}

impl Server {
    async fn start(name: &str, port: u16, tls: Option<&Path>) -> Server {
        let mut cmd = std::process::Command::new(python());
        cmd.arg(peer_script()).args(["server", "--name", name, "--port", &port.to_string()]);
        if let Some(dir) = tls {
            cmd.arg("--tls-cert").arg(dir.join("c.pem")).arg("--tls-key").arg(dir.join("k.pem"));
        }
        let daemon = Daemon::spawn_command(&format!("grpc-{name}"), cmd).expect("grpcio server starts");
        let up = wait_until(T, || async { daemon.logs().contains("listening").then_some(()) }).await;
        assert!(up.is_some(), "grpcio server {name} listens: {}", daemon.logs());
        Server { port, daemon }
    }
}

/// Where a client connects: the router's h2c proxy listener, or its TLS
/// listener (trusting `ca`).
#[derive(Clone)]
struct Via {
    addr: SocketAddr,
    ca: Option<PathBuf>,
}

impl Via {
    fn command(&self, authority: &str, scenario: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(peer_script()).args(["client", "--target", &self.addr.to_string(), "--authority", authority]);
        if let Some(ca) = &self.ca {
            cmd.arg("--tls-ca").arg(ca);
        }
        cmd.args(args).arg(scenario).kill_on_drop(true).stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd
    }

    /// Runs one client scenario to its end; its JSON result.
    async fn run(&self, authority: &str, scenario: &str, args: &[&str]) -> Value {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(authority, scenario, args).output())
            .await
            .expect("grpcio client ends in time")
            .expect("grpcio client runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "client {scenario}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client {scenario} JSON ({e}): {stdout}"))
    }
}

/// Every call kind and gRPC behaviour one listener must pass on.
async fn call_kinds(via: &Via, label: &str) {
    // Unary over both instances, the instance's trailers passed.
    let v = via.run("grpc.test", "unary", &["--count", "6"]).await;
    assert!(v["codes"].as_array().is_some_and(|c| c.iter().all(|c| c == "OK")), "{label} unary: {v}");
    let servers: std::collections::BTreeSet<&str> =
        v["servers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(servers.len(), 2, "{label}: both instances served: {v}");
    assert_eq!(v["trailers"], v["servers"], "{label}: each answer's x-served-by trailer is its server's");

    // Server streaming, unbuffered: the first message is at the client
    // while the server still waits to send the last.
    let v = via.run("grpc.test", "server-stream", &[]).await;
    assert_eq!(v["code"], "OK", "{label} server stream: {v}");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(2), "{label}: {v}");

    // Client streaming, a 1 MB message among small ones (past the HTTP/2
    // flow-control windows).
    let v = via.run("grpc.test", "client-stream", &["--sizes", "2,1000000,3"]).await;
    assert_eq!((&v["code"], &v["count"], &v["bytes"]), (&"OK".into(), &3.into(), &1_000_005.into()), "{label}: {v}");

    // Bidirectional ping-pong: each message sent only after the previous
    // one came back.
    let v = via.run("grpc.test", "bidi", &["--count", "50"]).await;
    assert_eq!((&v["code"], &v["echoes"]), (&"OK".into(), &50.into()), "{label} bidi: {v}");

    // An instance's status, message (percent-encoded non-ASCII) and
    // trailing metadata pass unchanged.
    let v = via.run("grpc.test", "fail", &[]).await;
    assert_eq!(v["code"], "NOT_FOUND", "{label}: {v}");
    assert_eq!(v["details"], "no such thing: \u{fc} 100%", "{label}: {v}");
    assert_eq!(v["trailers"]["x-detail"], "d1", "{label}: {v}");

    // The deadline reaches the instance (grpc-timeout passed on), and the
    // call ends with DEADLINE_EXCEEDED at it, the instance's handler cancelled.
    let v = via.run("solo.test", "deadline", &["--timeout-ms", "500", "--sleep-ms", "5000"]).await;
    assert_eq!(v["code"], "DEADLINE_EXCEEDED", "{label}: {v}");
    assert!(v["elapsed_ms"].as_u64().is_some_and(|ms| ms < 2000), "{label}: deadline honoured: {v}");
    let remaining = v["server"]["remaining_ms"].as_u64();
    assert!(remaining.is_some_and(|ms| ms <= 500 && ms > 0), "{label}: the instance saw the deadline: {v}");
    assert_eq!(v["server"]["cancelled"], true, "{label}: the instance's call was cancelled: {v}");
    assert!(v["server"]["ran_ms"].as_u64().is_some_and(|ms| ms < 2000), "{label}: {v}");

    // 100 calls open at once on one client connection, all at one instance.
    let v = via.run("solo.test", "concurrent", &["--count", "100"]).await;
    assert_eq!(v["codes"], serde_json::json!({"OK": 100}), "{label}: 100 concurrent calls: {v}");

    // No route for the authority: UNIMPLEMENTED from the router itself.
    let v = via.run("nothing.test", "unary", &[]).await;
    assert_eq!(v["codes"][0], "UNIMPLEMENTED", "{label}: {v}");

    // To a TLS instance (proto=grpcs), every kind of call.
    let v = via.run("secure.test", "unary", &["--count", "2"]).await;
    assert_eq!(v["servers"], serde_json::json!(["s", "s"]), "{label} grpcs unary: {v}");
    let v = via.run("secure.test", "bidi", &["--count", "5"]).await;
    assert_eq!((&v["code"], &v["echoes"]), (&"OK".into(), &5.into()), "{label} grpcs bidi: {v}");
    let v = via.run("secure.test", "client-stream", &["--sizes", "7,70000"]).await;
    assert_eq!(v["bytes"], 70_007, "{label} grpcs client stream: {v}");
    let v = via.run("secure.test", "fail", &[]).await;
    assert_eq!((&v["code"], &v["trailers"]["x-detail"]), (&"NOT_FOUND".into(), &"d1".into()), "{label}: {v}");
}

#[tokio::test]
async fn grpcio_call_kinds_over_h2c_and_tls() {
    let work = tempfile::Builder::new().prefix("edge-grpcio-").tempdir().expect("tempdir");
    // The router's certificate (its client trusts it as the root) ...
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let (cert, key, _) =
        self_signed(work.path(), "grpc.test", &["grpc.test", "solo.test", "secure.test", "nothing.test"]);
    std::fs::write(certs.join("edge-cert.pem"), &cert).expect("write");
    std::fs::write(certs.join("edge-key.pem"), &key).expect("write");
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write");
    // ... and the grpcs instance's own, which nothing trusts.
    let backend_tls = work.path().join("backend");
    std::fs::create_dir(&backend_tls).expect("mkdir");
    self_signed(&backend_tls, "127.0.0.1", &["backend.internal"]);

    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let a = Server::start("a", free_port(), None).await;
    let b = Server::start("b", free_port(), None).await;
    let solo = Server::start("solo", free_port(), None).await;
    let s = Server::start("s", free_port(), Some(&backend_tls)).await;
    register(&c, "g-a", "greeter", a.port, &["urlprefix-grpc.test/ proto=grpc"]).await;
    register(&c, "g-b", "greeter", b.port, &["urlprefix-grpc.test/ proto=grpc"]).await;
    register(&c, "solo", "solo", solo.port, &["urlprefix-solo.test/t.T/ proto=grpc"]).await;
    register(&c, "s", "secure", s.port, &["urlprefix-secure.test/ proto=grpcs tlsskipverify=true"]).await;
    let tls_port = free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let source = format!("dir:{}", certs.display());
    let router = Router::start(&consul, &["--tls-addr", &tls_addr, "--cert-source", &source]).await;
    let h2c = Via { addr: router.proxy, ca: None };
    let tls = Via { addr: tls_addr.parse().expect("addr"), ca: Some(ca) };
    let ready = wait_until(T, || async {
        let v = h2c.run("secure.test", "unary", &[]).await;
        (v["codes"][0] == "OK" && h2c.run("solo.test", "unary", &[]).await["codes"][0] == "OK").then_some(())
    })
    .await;
    assert!(ready.is_some(), "routes serve: {}", router.admin_json("/api/routes").await);

    call_kinds(&h2c, "h2c").await;
    call_kinds(&tls, "tls").await;
}

#[tokio::test]
async fn grpcio_killed_instance_and_instance_leaving_consul() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let a = Server::start("a", free_port(), None).await;
    let b = Server::start("b", free_port(), None).await;
    let mut dead = Server::start("d", free_port(), None).await;
    register(&c, "g-a", "greeter", a.port, &["urlprefix-grpc.test/ proto=grpc"]).await;
    register(&c, "g-b", "greeter", b.port, &["urlprefix-grpc.test/ proto=grpc"]).await;
    register(&c, "g-d", "dead", dead.port, &["urlprefix-dead.test/ proto=grpc"]).await;
    let router = Router::start(&consul, &[]).await;
    let via = Via { addr: router.proxy, ca: None };
    let ready = wait_until(T, || async {
        let ok = |v: Value| v["codes"].as_array().is_some_and(|c| c.iter().all(|c| c == "OK"));
        (ok(via.run("grpc.test", "unary", &[]).await) && ok(via.run("dead.test", "unary", &[]).await)).then_some(())
    })
    .await;
    assert!(ready.is_some(), "routes serve: {}", router.admin_json("/api/routes").await);

    // A killed instance: UNAVAILABLE (from the router, in gRPC form), then
    // served again once it is back on its port.
    dead.daemon.kill();
    let v = via.run("dead.test", "unary", &[]).await;
    assert_eq!(v["codes"][0], "UNAVAILABLE", "{v}");
    let _revived = Server::start("d", dead.port, None).await;
    let back = wait_until(T, || async { (via.run("dead.test", "unary", &[]).await["codes"][0] == "OK").then_some(()) });
    assert!(back.await.is_some(), "recovered once the instance is back");

    // A stream held open at one instance; the instance leaves Consul.
    let mut held = via.command("grpc.test", "hold", &[]).spawn().expect("client runs");
    let mut lines = BufReader::new(held.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(T, lines.next_line()).await.expect("held in time").expect("read");
    let first: Value = serde_json::from_str(first.as_deref().unwrap_or("")).expect("JSON");
    let (gone, stays) = if first["holding"] == "a" { ("g-a", "b") } else { ("g-b", "a") };
    c.deregister_service(gone).await.expect("deregister");
    // New calls all go to the other instance ...
    let moved = wait_until(T, || async {
        let v = via.run("grpc.test", "unary", &["--count", "6"]).await;
        v["servers"].as_array().is_some_and(|s| s.iter().all(|s| s == stays)).then_some(())
    })
    .await;
    assert!(moved.is_some(), "the instance that left gets no new calls: {}", router.admin_json("/api/routes").await);
    // ... while the open stream runs to its end.
    let mut stdin = held.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").await.expect("release");
    drop(stdin);
    let last = tokio::time::timeout(T, lines.next_line()).await.expect("stream ends in time").expect("read");
    let last: Value = serde_json::from_str(last.as_deref().unwrap_or("")).expect("JSON");
    assert_eq!(last["code"], "OK", "the open stream finished: {last}");
    assert_eq!(last["messages"][1], format!("{}|last", first["holding"].as_str().unwrap_or("")), "{last}");
    let _ = held.wait().await;
}
