//! Test certificates made with the real `openssl` command line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `openssl ARGS` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A self-signed P-256 certificate for `/CN=cn` and the DNS names `sans`
/// (none: no subjectAltName), written to `c.pem` and `k.pem` in `dir`:
/// returns (chain PEM, key PEM, serial as `openssl x509 -serial` prints it).
pub fn self_signed(dir: &Path, cn: &str, sans: &[&str]) -> (Vec<u8>, Vec<u8>, String) {
    let subj = format!("/CN={cn}");
    let san = format!("subjectAltName={}", sans.iter().map(|s| format!("DNS:{s}")).collect::<Vec<_>>().join(","));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "2",
        "-subj",
        &subj,
    ];
    if !sans.is_empty() {
        args.extend(["-addext", &san]);
    }
    openssl(dir, &args);
    let serial = String::from_utf8_lossy(&openssl(dir, &["x509", "-in", "c.pem", "-noout", "-serial"]).stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string();
    let read = |f: &str| std::fs::read(dir.join(f)).expect("read");
    (read("c.pem"), read("k.pem"), serial)
}

/// `openssl s_server -www` on a free loopback port, serving a fresh
/// self-signed certificate (see [`self_signed`]); stopped on drop.
pub struct SServer {
    pub port: u16,
    /// The serial of its certificate, to tell which server a client reached.
    pub serial: String,
    _daemon: crate::process::Daemon,
    _dir: tempfile::TempDir,
}

impl SServer {
    /// Starts one and waits until it accepts connections.
    pub async fn start(name: &str, cn: &str, sans: &[&str]) -> SServer {
        let dir = tempfile::Builder::new().prefix("edge-s_server-").tempdir().expect("tempdir");
        let (_, _, serial) = self_signed(dir.path(), cn, sans);
        let port = crate::free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert", "c.pem", "-key", "k.pem", "-www"])
            .current_dir(dir.path());
        let daemon = crate::process::Daemon::spawn_command(name, cmd).expect("openssl s_server starts");
        let listening = crate::wait_until(std::time::Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        assert!(listening.is_some(), "s_server {name} listening on {port}");
        SServer { port, serial, _daemon: daemon, _dir: dir }
    }
}

/// The serial of the certificate a TLS listener on 127.0.0.1:`port` serves for `sni` (`None`:
/// no SNI), or `None` when the handshake fails.
pub async fn served(port: u16, sni: Option<&str>) -> Option<String> {
    served_with(port, sni, &[]).await
}

/// [`served`] with more `s_client` options.
pub async fn served_with(port: u16, sni: Option<&str>, extra: &[&str]) -> Option<String> {
    let sni = sni.map(str::to_string);
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]).args(&extra);
        match &sni {
            Some(s) => cmd.args(["-servername", s]),
            None => cmd.arg("-noservername"),
        };
        let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find("-----BEGIN CERTIFICATE-----")?;
        let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-serial"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        x509.stdin.take()?.write_all(text[start..end].as_bytes()).ok()?;
        let out = x509.wait_with_output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").to_string())
    })
    .await
    .ok()
    .flatten()
}
