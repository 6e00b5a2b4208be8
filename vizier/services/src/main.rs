//! `vizier`: the data-plane binary. One subcommand per role; `pem` collects on this host (eBPF
//! socket tracer, process stats) into the in-memory table store and, with `--listen`, serves the
//! query API over it; `kelvin` runs PxL over every PEM's store (each scan asks all PEMs, the rest of
//! the plan runs in Kelvin); `broker` runs a Vizier's CronScripts and, with `--kelvin-addr`, is the
//! clients' query API, forwarding to Kelvin; `metadata` serves each node's pods and their Services
//! (what `pem --metadata-addr` names processes' pods from); `connector` registers the cluster with
//! Pixie Cloud and sends it heartbeats; `standalone` is collector, store, engine and API in one
//! process, with no cluster.

mod agents;
mod background;
mod broker;
mod collect;
mod connector;
mod health;
mod kelvin;
mod metadata;
mod pem;
mod print;
mod query_api;
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
    /// Run the PEM's data collection on this host, optionally serving its store (needs root: loads
    /// eBPF programs).
    Pem(pem::PemArgs),
    /// Run PxL over every PEM's store (the query engine of a multi-node Vizier).
    Kelvin(kelvin::KelvinArgs),
    /// Watch the cluster's Pods and Services and serve each node's pods to its PEM.
    Metadata(metadata::MetadataArgs),
    /// Collector, table store, PxL engine and broker API in one process on this host (needs root).
    Standalone(standalone::StandaloneArgs),
    /// Run a Vizier's CronScripts on schedule and deliver their results to DataExports; forward
    /// clients' queries to Kelvin.
    Broker(broker::BrokerArgs),
    /// Register the cluster with the cloud (deploy key in PL_DEPLOY_KEY), record its cluster id in
    /// pl-cluster-secrets and send heartbeats.
    Connector(connector::ConnectorArgs),
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr so that `pem --print` rows on stdout stay clean.
    tracing_subscriber::fmt()
        .with_env_filter(
            // async-nats logs every reconnect attempt at info; `agents` reports each outage once.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Pem(args) => pem::run(args),
        Command::Kelvin(args) => kelvin::run(args),
        Command::Metadata(args) => metadata::run(args),
        Command::Standalone(args) => standalone::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Connector(args) => connector::run(args),
    }
}
