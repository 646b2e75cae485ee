//! https targets (`proto=https`): a real TLS backend (`openssl s_server` with
//! a throw-away self-signed certificate) is reached with
//! `tlsskipverify=true`, and refused (502) without it, since its certificate
//! is not trusted.

use integration_tests::ConsulAgent;
use integration_tests::certs::SServer;
use integration_tests::router::{Router, register};

#[tokio::test]
async fn https_targets_with_and_without_certificate_checks() {
    let backend = SServer::start("s_server", "127.0.0.1", &[]).await;
    let port = backend.port;

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
