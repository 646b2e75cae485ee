//! The access log (`--access-log`, `--access-log-format`): one line per
//! request, written by a thread of its own so the request path takes no lock
//! and makes no system call for it. A request hands its [`Record`] to a
//! lock-free queue (std's mpsc list channel: an atomic push; the receiver
//! never blocks in `recv`, so no wake-up either); the writer thread drains
//! the queue every [`DRAIN_EVERY`], formats the lines and writes them
//! through one buffer, one write per batch. A queue longer than
//! [`MAX_BACKLOG`] (the writer cannot keep up, e.g. a stalled disk) drops
//! records and counts them, rather than growing without bound.
//! docs/router.md ("Access log") is the contract.

pub mod format;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Duration;

pub use format::{Arrival, Clock, Format, Record, Upstream};

/// How often the writer thread drains the queue.
pub const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Records waiting beyond this are dropped (and counted): about 23 MB of
/// records (a record is under 500 bytes when its text fits inline), a
/// second of 50,000 requests/s, twenty times what one drain takes away.
pub const MAX_BACKLOG: usize = 50_000;

/// Where `--access-log` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "off" | "" => Target::Off,
            "stdout" => Target::Stdout,
            "stderr" => Target::Stderr,
            path => Target::File(path.into()),
        })
    }
}

/// The request side: cheap to clone, shared by every connection.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Sender<Record>,
    backlog: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    /// The request headers the format needs, lower-cased.
    pub headers: Arc<[String]>,
}

impl AccessLog {
    /// Opens the target and starts the writer thread; None for `off`.
    pub fn start(target: &Target, format: Format) -> std::io::Result<Option<AccessLog>> {
        let out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(None),
            Target::Stdout => Box::new(std::io::stdout()),
            Target::Stderr => Box::new(std::io::stderr()),
            Target::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        };
        let (tx, rx) = channel();
        let log = AccessLog {
            tx,
            backlog: Arc::default(),
            dropped: Arc::default(),
            headers: format.headers().to_vec().into(),
        };
        let (backlog, dropped) = (log.backlog.clone(), log.dropped.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, out, format, &backlog, &dropped))?;
        Ok(Some(log))
    }

    /// Queues one record (no lock, no system call).
    pub fn log(&self, r: Record) {
        if self.backlog.fetch_add(1, Ordering::Relaxed) >= MAX_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Fails only when the writer thread is gone (its output failed
        // for good, already reported).
        let _ = self.tx.send(r);
    }
}

/// The writer thread: drain, format, write, sleep; until every sender is
/// gone (the process is ending), then a last flush.
fn writer(
    rx: Receiver<Record>,
    out: Box<dyn Write + Send>,
    format: Format,
    backlog: &AtomicUsize,
    dropped: &AtomicU64,
) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let mut line = String::with_capacity(512);
    let mut clock = Clock::default();
    let mut reported = 0;
    loop {
        let mut n = 0;
        let done = loop {
            match rx.try_recv() {
                Ok(r) => {
                    line.clear();
                    format.line_with(&r, &mut clock, &mut line);
                    if let Err(e) = out.write_all(line.as_bytes()) {
                        tracing::error!(error = %e, "access log write failed");
                    }
                    n += 1;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        backlog.fetch_sub(n, Ordering::Relaxed);
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "access log write failed");
        }
        let lost = dropped.load(Ordering::Relaxed);
        if lost != reported {
            tracing::warn!(dropped = lost, "access log records dropped: the writer could not keep up");
            reported = lost;
        }
        if done {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

/// A request ID made here: a random (version 4) UUID, kept on the stack.
#[derive(Clone, Copy)]
pub struct RequestId([u8; 36]);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A fresh request ID.
pub fn request_id() -> RequestId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = rand::random::<[u8; 16]>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = [b'-'; 36];
    let mut at = 0;
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        s[at] = HEX[usize::from(x >> 4)];
        s[at + 1] = HEX[usize::from(x & 15)];
        at += 2;
    }
    RequestId(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v4_uuids() {
        let a = request_id().as_str().to_string();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, request_id().as_str());
        assert!(a.bytes().enumerate().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) {
            c == b'-'
        } else {
            c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
        }));
    }

    #[test]
    fn targets() {
        assert_eq!("off".parse::<Target>(), Ok(Target::Off));
        assert_eq!("stdout".parse::<Target>(), Ok(Target::Stdout));
        assert_eq!("/var/log/x".parse::<Target>(), Ok(Target::File("/var/log/x".into())));
    }

    #[test]
    fn records_reach_the_file_in_order_off_the_request_path() {
        let path = std::env::temp_dir().join(format!("router-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log =
            AccessLog::start(&Target::File(path.clone()), Format::parse("$request_uri $response_status").unwrap())
                .expect("open")
                .expect("on");
        for i in 0..1000 {
            let uri = format!("/{i}");
            let mut r = Record::arrived(
                Arrival {
                    time: std::time::SystemTime::now(),
                    client: "127.0.0.1".parse().unwrap(),
                    proto: "HTTP/1.1",
                    method: b"GET",
                    path: uri.as_bytes(),
                    query: None,
                    host: b"",
                    request_id: None,
                },
                [],
            );
            r.routed(None, Upstream::None);
            r.status = 200;
            log.log(r);
        }
        let mut text = String::new();
        for _ in 0..100 {
            std::thread::sleep(DRAIN_EVERY);
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 1000 {
                break;
            }
        }
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!((lines[0], lines[999]), ("/0 200", "/999 200"));
    }
}
