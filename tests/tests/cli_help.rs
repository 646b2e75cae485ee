//! Every flag of the contracts in docs/ is documented by `--help`, with its
//! environment variable. Scripts and unit files depend on these names.

use std::process::Command;

use integration_tests::bin_path;

fn help(bin: &str) -> String {
    let out = Command::new(bin_path(bin).expect("binary built")).arg("--help").output().expect("runs");
    assert!(out.status.success(), "{bin} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 help")
}

fn assert_lists(bin: &str, items: &[&str]) {
    let text = help(bin);
    for item in items {
        assert!(text.contains(item), "`{bin} --help` does not mention {item}:\n{text}");
    }
}

#[test]
fn router_help_lists_the_contract() {
    assert_lists(
        "router",
        &[
            "--consul-addr",
            "CONSUL_HTTP_ADDR",
            "http://127.0.0.1:8500",
            "--consul-token",
            "CONSUL_HTTP_TOKEN",
            "--proxy-addr",
            "ROUTER_PROXY_ADDR",
            "0.0.0.0:9999",
            "--admin-addr",
            "ROUTER_ADMIN_ADDR",
            "127.0.0.1:9998",
            "--tag-prefix",
            "ROUTER_TAG_PREFIX",
            "urlprefix-",
            "--strategy",
            "ROUTER_STRATEGY",
            "rr",
            "rnd",
            "--overrides-key",
            "ROUTER_OVERRIDES_KEY",
            "router/config",
            "--path-normalize",
            "ROUTER_PATH_NORMALIZE",
            "--trusted-proxies",
            "ROUTER_TRUSTED_PROXIES",
            "--no-route-status",
            "ROUTER_NO_ROUTE_STATUS",
            "--no-route-html-key",
            "ROUTER_NO_ROUTE_HTML_KEY",
            "router/noroute.html",
            "--access-log",
            "ROUTER_ACCESS_LOG",
            "--access-log-format",
            "ROUTER_ACCESS_LOG_FORMAT",
            "--request-id-header",
            "ROUTER_REQUEST_ID_HEADER",
            "--consul-max-stale",
            "ROUTER_CONSUL_MAX_STALE",
            "10s",
            "--vipd-addr",
            "ROUTER_VIPD_ADDR",
            "--tcp-bind",
            "ROUTER_TCP_BIND",
            "--tcp-ports",
            "ROUTER_TCP_PORTS",
            "--tcp-idle-timeout",
            "ROUTER_TCP_IDLE_TIMEOUT",
            "--proxy-protocol-from",
            "ROUTER_PROXY_PROTOCOL_FROM",
            "--proxy-protocol-timeout",
            "ROUTER_PROXY_PROTOCOL_TIMEOUT",
        ],
    );
}

#[test]
fn registrar_help_lists_the_contract() {
    assert_lists(
        "registrar",
        &[
            "--consul-addr",
            "CONSUL_HTTP_ADDR",
            "--consul-token",
            "--source",
            "REGISTRAR_SOURCE",
            "docker",
            "kubernetes",
            "all",
            "--docker-host",
            "DOCKER_HOST",
            "unix:///var/run/docker.sock",
            "--node-name",
            "NODE_NAME",
            "--internal",
            "--host-ip",
            "--resync",
            "30",
            "--ready-timeout",
            "REGISTRAR_READY_TIMEOUT",
            "10s",
            "--tags",
        ],
    );
}

#[test]
fn vipd_help_lists_the_contract() {
    assert_lists(
        "vipd",
        &[
            "--interface",
            "--vip",
            "--vrid",
            "--priority",
            "--advert-interval",
            "1s",
            "--no-preempt",
            "--peer",
            "--check-url",
            "--check-interval",
            "--check-fall",
            "--check-rise",
            "--track-url",
            "VIPD_TRACK_URLS",
            "--track-weight",
            "VIPD_TRACK_WEIGHTS",
            "--admin-addr",
            "VIPD_ADMIN_ADDR",
            "127.0.0.1:9997",
        ],
    );
}

#[test]
fn a_bad_duration_is_a_clear_error() {
    let out = Command::new(bin_path("vipd").expect("binary built"))
        .args([
            "--interface",
            "lo",
            "--vip",
            "10.0.0.1",
            "--vrid",
            "1",
            "--priority",
            "100",
            "--advert-interval",
            "soon",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--advert-interval") && err.contains("not a duration"), "{err}");
}
