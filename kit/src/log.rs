//! One log format and one stream for every daemon: tracing's plain text
//! format on stdout (colours only on a terminal), level from `RUST_LOG`
//! (default `info`). Before this, the registrar logged to stderr and the
//! others to stdout, so a unit file had to know which daemon it ran.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
}
