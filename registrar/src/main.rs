//! registrar: see cli.rs for flags. The daemon itself is built in its own issue.

use clap::Parser;
use registrar::cli;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    anyhow::bail!("registrar is not implemented yet (flags parsed: {cli:?})")
}
