//! `vizier standalone`: the whole Vizier in one process on this host, with no Kubernetes, NATS or
//! Cloud: the eBPF collector fills the table store, and the broker API (`ExecuteScript`, `Health`)
//! runs PxL over it with the engine. `kubectl pixie run --addr` queries it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_engine::server;

use crate::collect::{self, CollectorArgs, parse_duration};
use crate::query_api::{self, EngineArgs, MetadataArgs};

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Where the broker API listens (gRPC). Port 0 picks a free port; the chosen address is printed.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], server::DEFAULT_PORT)))]
    listen: SocketAddr,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    metadata: MetadataArgs,
    /// Stop after this long (e.g. 30s, 2m); runs until Ctrl-C or SIGTERM otherwise.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    collector: CollectorArgs,
}

pub fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let store = args.collector.store();
    let summary = collect::runtime()?.block_on(async {
        // Attach first: a Vizier that cannot collect must not look healthy.
        let collector = collect::start_collector(&args.collector, &store)?;
        let node = query_api::node_name(args.collector.node_name());
        let api = query_api::store_api(&store, &args.engine, &args.metadata, &node, None)?;
        let serving = query_api::serve(args.listen, api, None).await?;
        let addr = serving.addr();
        // On stdout, for scripts and tests that start us on port 0.
        println!("vizier standalone listening on {addr}");
        tracing::info!(%addr, "broker API up; try: kubectl-pixie run px/http_data --addr {addr}");

        let summary = collector
            .run(collect::shutdown_signal(args.duration))
            .await
            .context("collector stopped");
        serving.stop().await?;
        summary
    })?;
    collect::log_summary("standalone", &summary, &store);
    Ok(())
}
