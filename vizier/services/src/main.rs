//! `vizier`: the data-plane binary. One subcommand per role; `pem` collects on this host (eBPF
//! socket tracer, process stats) into the in-memory table store. `standalone`, `kelvin` and
//! `broker` join it as their crates land.

mod pem;
mod print;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "vizier", version, about = "Pixie's data plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the PEM's data collection on this host (needs root: loads eBPF programs).
    Pem(pem::PemArgs),
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr so that `pem --print` rows on stdout stay clean.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Pem(args) => pem::run(args),
    }
}
