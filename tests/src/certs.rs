//! Test certificates made with the real `openssl` command line.

use std::path::Path;
use std::process::{Command, Output};

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
