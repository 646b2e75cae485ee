//! HTTPS at the edge: the real router binary terminating TLS with
//! certificates made here by `openssl`, a real Consul, and `curl` /
//! `openssl s_client` as clients that check which certificate was served
//! (its serial number).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::certs::{self_signed, served, served_with};
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(15);
/// What the issue allows a store change to take.
const RELOAD: Duration = Duration::from_secs(2);

/// Writes a file the way a deploy does: elsewhere first, then renamed in.
fn put(dir: &Path, name: &str, data: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// Waits up to `limit` for `sni` to be served the certificate `serial`;
/// returns how long it took.
async fn wait_served(port: u16, sni: Option<&str>, serial: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let got = wait_until(limit, || async { (served(port, sni).await.as_deref() == Some(serial)).then_some(()) }).await;
    assert!(got.is_some(), "{sni:?} not served {serial} within {limit:?}; serving {:?}", served(port, sni).await);
    started.elapsed()
}

/// `curl` over TLS (certificate not checked: it is self-signed) to
/// `https://host:port/path`: status, HTTP version, headers and body.
async fn curl(port: u16, host: &str, path: &str, http2: bool) -> (u16, String, String, serde_json::Value) {
    let (host, path) = (host.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-D",
                "-",
                if http2 { "--http2" } else { "--http1.1" },
                "--resolve",
                &format!("{host}:{port}:127.0.0.1"),
                // Without the port: a Host with a port other than the
                // scheme's is routed by host:port (fabio's rule).
                "-H",
                &format!("host: {host}"),
                "-w",
                "\n%{http_code} %{http_version}",
                &format!("https://{host}:{port}{path}"),
            ])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (rest, tail) = text.rsplit_once('\n').unwrap_or(("", ""));
        let (code, version) = tail.split_once(' ').unwrap_or(("0", ""));
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        (
            code.parse().unwrap_or(0),
            version.to_string(),
            head.to_ascii_lowercase(),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    })
    .await
    .expect("curl task")
}

/// A counter's value in the router's `/metrics`.
async fn metric(router: &Router, series: &str) -> f64 {
    let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.expect("metrics");
    let text = text.text().await.unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Sends `bytes` to the TLS port and waits for the router to close the
/// connection (EOF or a reset), sending nothing that looks like HTTP.
async fn closed_after(port: u16, bytes: &[u8], shut_write: bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    if shut_write {
        let _ = s.shutdown().await;
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(T, s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "connection still open after {T:?}");
    assert!(!got.starts_with(b"HTTP/"), "no HTTP answer on the TLS port: {:?}", String::from_utf8_lossy(&got));
}

struct Certs {
    dir: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let new = |p| tempfile::Builder::new().prefix(p).tempdir().expect("tempdir");
        Certs { dir: new("edge-certs-"), work: new("edge-certwork-") }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `NAME.pem` holding chain and key; returns the serial.
    fn combined(&self, name: &str, sans: &[&str]) -> String {
        let (mut c, k, serial) = self_signed(self.work.path(), sans[0], sans);
        c.extend_from_slice(&k);
        put(self.dir.path(), &format!("{name}.pem"), &c);
        serial
    }

    /// `NAME-cert.pem` + `NAME-key.pem`; returns the serial.
    fn pair(&self, name: &str, sans: &[&str]) -> String {
        let (c, k, serial) = self_signed(self.work.path(), sans[0], sans);
        put(self.dir.path(), &format!("{name}-key.pem"), &k);
        put(self.dir.path(), &format!("{name}-cert.pem"), &c);
        serial
    }
}

fn tls_args(port: u16, sources: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--tls-addr".to_string(), format!("127.0.0.1:{port}")];
    for s in sources {
        a.push("--cert-source".into());
        a.push(s.clone());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[tokio::test]
async fn sni_choice_protocols_headers_redirect_and_bad_input() {
    let certs = Certs::new();
    let a = certs.pair("a", &["a.test"]);
    let wild = certs.combined("wild", &["*.wild.test"]);
    let dflt = certs.combined("dflt", &["default.test"]);
    certs.combined("hsts", &["hsts.test"]);
    put(certs.dir.path(), "broken.pem", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let (c, _, _) = self_signed(certs.work.path(), "mismatch.test", &["mismatch.test"]);
    let (_, other_key, _) = self_signed(certs.work.path(), "other.test", &["other.test"]);
    put(certs.dir.path(), "mismatch-cert.pem", &c);
    put(certs.dir.path(), "mismatch-key.pem", &other_key);

    let consul = ConsulAgent::start().await.expect("consul starts");
    let backend = Backend::start("b1").await;
    let tags =
        ["urlprefix-a.test/", "urlprefix-x.wild.test/", "urlprefix-hsts.test/ hsts=600", "urlprefix-plain.test/"];
    register(&consul.client(), "b1", "web", backend.port(), &tags).await;
    let port = free_port();
    let source = format!("dir:{}", certs.path().display());
    let args = tls_args(port, std::slice::from_ref(&source), &["--tls-default-cert", "dflt", "--https-redirect"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let router = Router::start(&consul, &args).await;
    router.wait_routed_to("plain.test", "/", "b1", T).await;

    // /api/certs: the four good certificates; the two bad ones are problems.
    let listed = wait_until(T, || async {
        let v = router.admin_json("/api/certs").await;
        (v.as_array().map(Vec::len) == Some(4)).then_some(v)
    })
    .await
    .expect("four certificates listed");
    let a_entry = listed.as_array().and_then(|l| l.iter().find(|c| c["name"] == "a")).expect("a listed");
    assert_eq!(a_entry["sans"], serde_json::json!(["a.test"]));
    assert_eq!(a_entry["serial"], a.as_str());
    assert_eq!(a_entry["source"], source.as_str());
    assert_eq!(a_entry["default"], false);
    assert!(a_entry["not_after"].as_i64().unwrap_or(0) > a_entry["not_before"].as_i64().unwrap_or(0));
    assert!(listed.as_array().into_iter().flatten().any(|c| c["name"] == "dflt" && c["default"] == true));
    let problems = router.admin_json("/api/problems").await.to_string();
    assert!(problems.contains("broken.pem") && problems.contains("mismatch-cert.pem"), "{problems}");
    assert!(problems.contains("does not belong"), "{problems}");

    // SNI: exact, wildcard (one label), default for the rest and for no SNI.
    assert_eq!(served(port, Some("a.test")).await.as_deref(), Some(a.as_str()));
    assert_eq!(served(port, Some("x.wild.test")).await.as_deref(), Some(wild.as_str()));
    assert_eq!(served(port, Some("y.x.wild.test")).await.as_deref(), Some(dflt.as_str()));
    assert_eq!(served(port, Some("unknown.test")).await.as_deref(), Some(dflt.as_str()));
    assert_eq!(served(port, None).await.as_deref(), Some(dflt.as_str()));

    // HTTP/1.1 (fast path) and HTTP/2 (ALPN h2) to the same route, with the
    // forwarding headers saying https and the TLS listener's port.
    for (h2, version) in [(false, "1.1"), (true, "2")] {
        let (code, v, _, body) = curl(port, "a.test", "/hello?q=1", h2).await;
        assert_eq!((code, v.as_str()), (200, version), "{body}");
        assert_eq!(body["name"], "b1");
        assert_eq!(body["path"], "/hello");
        let h = &body["headers"];
        assert_eq!(h["x-forwarded-proto"], "https", "{h}");
        assert_eq!(h["x-forwarded-port"], port.to_string());
        assert!(h["forwarded"].as_str().unwrap_or("").contains("proto=https"), "{h}");
    }
    // Plain requests still say http.
    let (_, plain) = router.fetch("plain.test", "/").await;
    assert_eq!(plain["headers"]["x-forwarded-proto"], "http");

    // hsts= on TLS responses only.
    let (code, _, head, _) = curl(port, "hsts.test", "/", false).await;
    assert_eq!(code, 200);
    assert!(head.contains("strict-transport-security: max-age=600"), "{head}");
    let (_, _, head, _) = curl(port, "a.test", "/", true).await;
    assert!(!head.contains("strict-transport-security"), "{head}");

    // --https-redirect: hosts a certificate covers go to https with the TLS
    // port; ACME challenges and hosts without a certificate stay plain.
    let r = router.get("a.test", "/x/y?z=1").await.expect("answer");
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], format!("https://a.test:{port}/x/y?z=1"));
    let r = router.get("q.wild.test:80", "/").await.expect("answer");
    assert_eq!(r.headers()["location"], format!("https://q.wild.test:{port}/"));
    assert_eq!(router.fetch("a.test", "/.well-known/acme-challenge/tok").await.0, 200);
    assert_eq!(router.fetch("plain.test", "/").await.0, 200);

    websocket_over_tls(port).await;
    resumption(port, certs.work.path()).await;
    assert!(metric(&router, "router_tls_handshakes_total{result=\"resumed\"}").await >= 1.0);
    // `openssl s_time -reuse` keeps a session only from a connection that
    // ended with close_notify: every connection after the first resumes.
    let before = metric(&router, "router_tls_handshakes_total{result=\"resumed\"}").await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(["s_time", "-connect", &format!("127.0.0.1:{port}"), "-reuse", "-time", "1", "-www", "/"])
            .output()
            .expect("s_time runs")
    })
    .await
    .expect("s_time task");
    let text = String::from_utf8_lossy(&out.stdout);
    let conns: f64 = text
        .lines()
        .find_map(|l| {
            l.split_once(" connections in ")
                .and_then(|(n, rest)| rest.contains("real").then(|| n.trim().parse().ok()).flatten())
        })
        .unwrap_or(0.0);
    let resumed = metric(&router, "router_tls_handshakes_total{result=\"resumed\"}").await - before;
    assert!(conns >= 2.0 && resumed >= conns - 1.0, "s_time -reuse: {conns} connections, {resumed} resumed\n{text}");

    // Bad input: each connection is closed, the listener keeps serving.
    let before = metric(&router, "router_tls_handshakes_total{result=\"bad_client_hello\"}").await;
    closed_after(port, b"\x00\x01garbage garbage garbage\r\n\r\n", false).await;
    closed_after(port, b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n", false).await;
    // A ClientHello record header promising 512 bytes, cut after 5 of them.
    closed_after(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03", true).await;
    assert_eq!(served(port, Some("a.test")).await.as_deref(), Some(a.as_str()));
    let after = metric(&router, "router_tls_handshakes_total{result=\"bad_client_hello\"}").await;
    assert!(after - before >= 3.0, "bad hellos counted: {before} -> {after}");
    assert!(metric(&router, "router_tls_handshakes_total{result=\"ok\"}").await >= 5.0);
    assert!(metric(&router, "router_requests_by_protocol_total{protocol=\"h2\",tls=\"true\"}").await >= 1.0);
    assert!(metric(&router, "router_requests_by_protocol_total{protocol=\"http/1.1\",tls=\"true\"}").await >= 1.0);
    let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.expect("metrics");
    let text = text.text().await.unwrap_or_default();
    assert!(
        text.contains(&format!("router_tls_certificate_expiry_seconds{{name=\"a\",source=\"{source}\"}}")),
        "{text}"
    );

    // TLS 1.2 is accepted unless --tls-min-version 1.3.
    assert_eq!(served_with(port, Some("a.test"), &["-tls1_2"]).await.as_deref(), Some(a.as_str()));

    // Strict SNI: a name no certificate covers is refused; clients without
    // SNI still get the default (here the first loaded: `a`). This router
    // also refuses TLS 1.2.
    let strict_port = free_port();
    let strict_args = ["--tls-strict-sni", "--tls-min-version", "1.3"];
    let args = tls_args(strict_port, std::slice::from_ref(&source), &strict_args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let strict = Router::start(&consul, &args).await;
    wait_served(strict_port, Some("x.wild.test"), &wild, T).await;
    assert_eq!(served(strict_port, Some("unknown.test")).await, None, "strict mode refuses");
    assert_eq!(served(strict_port, None).await.as_deref(), Some(a.as_str()));
    assert!(metric(&strict, "router_tls_handshakes_total{result=\"no_certificate\"}").await >= 1.0);
    assert_eq!(served_with(strict_port, Some("a.test"), &["-tls1_2"]).await, None, "TLS 1.2 refused");
    assert!(metric(&strict, "router_tls_handshakes_total{result=\"failed\"}").await >= 1.0);
}

/// A TLS 1.3 session is resumed with the ticket the router sent: `s_client`
/// saves the session after one request, and the next handshake reuses it.
/// The request is HTTP/1.0, which hyper serves: OpenSSL keeps a session
/// only when the connection ended with close_notify, on either path.
async fn resumption(port: u16, work: &Path) {
    let session = work.join("session.pem");
    let run = move |arg: &str, session: &Path| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "a.test", "-ign_eof"])
            .arg(arg)
            .arg(session)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_client");
        let _ = child.stdin.take().expect("stdin").write_all(b"GET / HTTP/1.0\r\nhost: a.test\r\n\r\n");
        String::from_utf8_lossy(&child.wait_with_output().expect("s_client ends").stdout).into_owned()
    };
    let out = tokio::task::spawn_blocking(move || {
        let first = run("-sess_out", &session);
        assert!(first.contains(" 200 OK"), "{first}");
        run("-sess_in", &session)
    })
    .await
    .expect("s_client task");
    assert!(out.contains("Reused, TLSv1.3"), "session not resumed: {out}");
}

/// An upgrade over TLS (`wss://`): the backend echoes what follows the 101.
async fn websocket_over_tls(port: u16) {
    let echoed = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "a.test", "-quiet"])
            .args(["-alpn", "http/1.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_client");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(
            b"GET /ws HTTP/1.1\r\nhost: a.test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        );
        let _ = stdin.flush();
        let mut out = child.stdout.take().expect("stdout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + T;
        let mut sent = false;
        while Instant::now() < deadline {
            let n = out.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if !sent && text.contains("\r\n\r\n") {
                let _ = stdin.write_all(b"ping-over-tls");
                let _ = stdin.flush();
                sent = true;
            }
            if text.contains("ping-over-tls") {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("websocket task");
    assert!(echoed.starts_with("HTTP/1.1 101"), "{echoed}");
    assert!(echoed.contains("ping-over-tls"), "{echoed}");
}

#[tokio::test]
async fn dir_and_consul_stores_follow_changes() {
    let certs = Certs::new();
    let one = certs.combined("one", &["one.test"]);
    let consul = ConsulAgent::start().await.expect("consul starts");
    let kv = consul.client();
    let port = free_port();
    let sources = [format!("dir:{}", certs.path().display()), "consul:certs".to_string()];
    let args = tls_args(port, &sources, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let router = Router::start(&consul, &args).await;
    wait_served(port, Some("one.test"), &one, T).await;

    // dir: added, replaced, removed, each seen by new handshakes within 2 s.
    let two = certs.pair("two", &["two.test"]);
    let took = wait_served(port, Some("two.test"), &two, RELOAD).await;
    eprintln!("dir add seen after {took:?}");
    let two_b = certs.pair("two", &["two.test"]);
    assert_ne!(two, two_b);
    wait_served(port, Some("two.test"), &two_b, RELOAD).await;
    std::fs::remove_file(certs.dir.path().join("two-cert.pem")).expect("rm");
    std::fs::remove_file(certs.dir.path().join("two-key.pem")).expect("rm");
    wait_served(port, Some("two.test"), &one, RELOAD).await;

    // consul: the same naming under the prefix.
    let (c, k, three) = self_signed(certs.work.path(), "three.test", &["three.test"]);
    let mut combined = c.clone();
    combined.extend_from_slice(&k);
    assert!(kv.kv_put("certs/three.pem", combined).await.expect("kv put"));
    wait_served(port, Some("three.test"), &three, RELOAD).await;
    let (c, k, three_b) = self_signed(certs.work.path(), "three.test", &["three.test"]);
    assert!(kv.kv_put("certs/three-key.pem", k).await.expect("kv put"));
    assert!(kv.kv_put("certs/three-cert.pem", c).await.expect("kv put"));
    kv.kv_delete("certs/three.pem").await.expect("kv delete");
    wait_served(port, Some("three.test"), &three_b, RELOAD).await;
    // A clash: the dir store is read first, so its certificate keeps one.test.
    let (c, k, _) = self_signed(certs.work.path(), "one.test", &["one.test"]);
    let mut clash = c;
    clash.extend_from_slice(&k);
    assert!(kv.kv_put("certs/clash.pem", clash).await.expect("kv put"));
    wait_until(T, || async {
        let v = router.admin_json("/api/certs").await;
        v.as_array().into_iter().flatten().any(|c| c["name"] == "clash").then_some(())
    })
    .await
    .expect("clash listed");
    assert_eq!(served(port, Some("one.test")).await.as_deref(), Some(one.as_str()));
    // A broken value is reported and skipped; the others keep serving.
    assert!(kv.kv_put("certs/bad.pem", "garbage").await.expect("kv put"));
    let problems = wait_until(T, || async {
        let p = router.admin_json("/api/problems").await.to_string();
        p.contains("certs/bad.pem").then_some(p)
    })
    .await;
    assert!(problems.is_some(), "bad certificate not reported: {}", router.admin_json("/api/problems").await);
    assert_eq!(served(port, Some("three.test")).await.as_deref(), Some(three_b.as_str()));
    kv.kv_delete("certs/three-cert.pem").await.expect("kv delete");
    kv.kv_delete("certs/three-key.pem").await.expect("kv delete");
    wait_served(port, Some("three.test"), &one, RELOAD).await;
}
