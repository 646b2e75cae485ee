//! The daemon kit: what router, registrar and vipd would otherwise each
//! write their own way (and did, three slightly different ways).
//!
//! - [`log`]: one log format and one stream (stdout) for all three;
//! - [`shutdown`]: SIGTERM/SIGINT turned into one [`shutdown::StopWatch`]
//!   every task can wait on (pingora's `ShutdownWatch`, linkerd's drain);
//! - [`duration`]: the one parser behind every duration flag, with bounds,
//!   so an absurd value is refused at start instead of overflowing `Instant`
//!   arithmetic or being sent on the wire;
//! - [`backoff`]: retry pacing, doubling to a cap with jitter inside the cap;
//! - [`supervise`]: every long-lived task's end is logged with its reason and
//!   either restarts it (with backoff) or stops the process non-zero.

pub mod backoff;
pub mod duration;
pub mod log;
pub mod shutdown;
pub mod supervise;

pub use backoff::Backoff;
pub use shutdown::{Stop, StopWatch};
pub use supervise::{Health, OnEnd, Supervisor};
