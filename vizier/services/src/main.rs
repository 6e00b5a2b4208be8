//! `vizier`: the data-plane binary. One subcommand per role; `pem` collects on this host (eBPF
//! socket tracer, process stats) into the in-memory table store; `standalone` adds the query engine
//! and the broker API on top, in one process; `broker` runs a Vizier's CronScripts against that API
//! and delivers their results to DataExports. `kelvin` joins them as its crate lands.

mod broker;
mod collect;
mod pem;
mod print;
mod standalone;

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
    /// Collector, table store, PxL engine and broker API in one process on this host (needs root).
    Standalone(standalone::StandaloneArgs),
    /// Run a Vizier's CronScripts on schedule and deliver their results to DataExports.
    Broker(broker::BrokerArgs),
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
        Command::Standalone(args) => standalone::run(args),
        Command::Broker(args) => broker::run(args),
    }
}
