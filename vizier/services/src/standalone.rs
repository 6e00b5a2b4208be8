//! `vizier standalone`: the whole Vizier in one process on this host, with no Kubernetes, NATS or
//! Cloud: the eBPF collector fills the table store, and the broker API (`ExecuteScript`, `Health`)
//! runs PxL over it with the engine. `kubectl pixie run --addr` queries it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_engine::server::{self, VizierApi};
use pixie_engine::{Engine, EngineConfig, ProcMetadata};

use crate::collect::{self, CollectorArgs, parse_duration};

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Where the broker API listens (gRPC). Port 0 picks a free port; the chosen address is printed.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], server::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Rows returned per output table when a query does not ask for a number.
    #[arg(long, default_value_t = EngineConfig::default().default_max_rows)]
    max_rows: usize,
    /// Memory all running queries may hold together, in MiB; a query that needs more fails.
    #[arg(long, default_value_t = EngineConfig::default().memory_limit_bytes >> 20)]
    query_memory_mb: usize,
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
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;

        let engine = Engine::new(
            &store,
            Arc::new(ProcMetadata::new()),
            EngineConfig {
                default_max_rows: args.max_rows,
                memory_limit_bytes: args.query_memory_mb << 20,
                ..Default::default()
            },
        )
        .context("starting the query engine")?;
        let api = VizierApi::new(Arc::new(engine), store.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let broker = tokio::spawn(server::serve(listener, api, async {
            let _ = stop_rx.await;
        }));
        // On stdout, for scripts and tests that start us on port 0.
        println!("vizier standalone listening on {addr}");
        tracing::info!(%addr, "broker API up; try: kubectl-pixie run px/http_data --addr {addr}");

        let summary = collector
            .run(collect::shutdown_signal(args.duration))
            .await
            .context("collector stopped");
        let _ = stop_tx.send(());
        broker
            .await
            .context("the broker task panicked")?
            .context("serving the broker API")?;
        summary
    })?;
    collect::log_summary("standalone", &summary, &store);
    Ok(())
}
