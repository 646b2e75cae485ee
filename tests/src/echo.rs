//! A raw TCP backend for TCP and TLS passthrough routes: it answers with
//! what it received, after parsing a PROXY protocol header itself
//! (independently of the router's decoder) when asked to.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::wait_until;

const T: Duration = Duration::from_secs(15);

/// A TCP server that reads what a client sends until the client's EOF
/// (half-close), then answers `NAME:` + those bytes and closes. With
/// `proxy`, it first parses a PROXY header (v1 or v2) itself and answers
/// `NAME:vN SRC:` + the rest instead.
pub struct Echo {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Echo {
    pub async fn start(name: &str, proxy: bool) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let name = name.to_string();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                let name = name.clone();
                conns.spawn(async move {
                    let head = if proxy { parse_proxy_header(&mut s).await } else { String::new() };
                    let mut data = Vec::new();
                    if s.read_to_end(&mut data).await.is_err() {
                        return;
                    }
                    let mut out = format!("{name}:{head}").into_bytes();
                    out.extend_from_slice(&data);
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Echo { addr, tasks }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening and drops its connections, like a crash; returns once
    /// its port refuses connections (an abort takes effect at the task's
    /// next poll).
    pub async fn kill(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let refused = wait_until(T, || async { TcpStream::connect(self.addr).await.is_err().then_some(()) }).await;
        assert!(refused.is_some(), "killed echo server stopped listening");
    }
}

/// The test's own reading of a PROXY header (independent of the router's
/// decoder): `v1 IP:PORT ` or `v2 IP:PORT `, or `bad ` when there is none.
pub async fn parse_proxy_header(s: &mut TcpStream) -> String {
    let mut sig = [0u8; 12];
    if s.read_exact(&mut sig).await.is_err() {
        return "bad ".into();
    }
    if &sig == b"\r\n\r\n\0\r\nQUIT\n" {
        let mut fixed = [0u8; 4];
        if s.read_exact(&mut fixed).await.is_err() || fixed[0] != 0x21 {
            return "bad ".into();
        }
        let mut block = vec![0u8; usize::from(u16::from_be_bytes([fixed[2], fixed[3]]))];
        if s.read_exact(&mut block).await.is_err() {
            return "bad ".into();
        }
        return match fixed[1] {
            0x11 if block.len() >= 12 => {
                let ip = std::net::Ipv4Addr::new(block[0], block[1], block[2], block[3]);
                format!("v2 {ip}:{} ", u16::from_be_bytes([block[8], block[9]]))
            }
            _ => "bad ".into(),
        };
    }
    if !sig.starts_with(b"PROXY ") {
        return "bad ".into();
    }
    let mut line = sig.to_vec();
    while !line.ends_with(b"\r\n") && line.len() < 107 {
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).await.is_err() {
            return "bad ".into();
        }
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    let f: Vec<&str> = line.trim_end().split(' ').collect();
    match f.as_slice() {
        ["PROXY", "TCP4", src, _dst, sport, _dport] => format!("v1 {src}:{sport} "),
        _ => "bad ".into(),
    }
}
