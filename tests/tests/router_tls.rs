//! https targets (`proto=https`): a real TLS backend (`openssl s_server` with
//! a throw-away self-signed certificate) is reached with
//! `tlsskipverify=true`, and refused (502) without it, since its certificate
//! is not trusted.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use integration_tests::certs::self_signed;
use integration_tests::router::{Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};

const T: Duration = Duration::from_secs(10);

/// `openssl s_server`, killed on drop.
struct TlsBackend(Child);

impl Drop for TlsBackend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn https_targets_with_and_without_certificate_checks() {
    let dir = tempfile::Builder::new().prefix("edge-tls-").tempdir().expect("tempdir");
    self_signed(dir.path(), "127.0.0.1", &[]);
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert", "c.pem", "-key", "k.pem", "-www"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: one async-signal-safe syscall between fork and exec; the server
    // dies with the test process even if the test is killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("openssl s_server starts");
    let _backend = TlsBackend(child);
    let listening =
        wait_until(T, || async { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop) }).await;
    assert!(listening.is_some(), "s_server listening on {port}");

    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    register(&c, "tls1", "tls", port, &["urlprefix-tls.example.com/ proto=https tlsskipverify=true"]).await;
    register(&c, "strict1", "strict", port, &["urlprefix-strict.example.com/ proto=https"]).await;
    let router = Router::start(&consul, &[]).await;
    let routes = router.admin_json("/api/routes").await;
    let tls = routes.as_array().and_then(|a| a.iter().find(|r| r["service"] == "tls").cloned()).expect("tls route");
    assert_eq!(tls["target"], format!("https://127.0.0.1:{port}/"));

    let r = router.get("tls.example.com", "/").await.expect("answer");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.expect("body");
    assert!(body.contains("s_server"), "{body}");

    assert_eq!(router.fetch("strict.example.com", "/").await.0, 502, "an untrusted certificate is refused");
}
