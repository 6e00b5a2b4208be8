//! `vizier pem`: the collector and the table store on this host, optionally printing every row as
//! it is pushed, and with `--listen` the query API over this host's store (what Kelvin queries).

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pixie_engine::{AgentHeartbeat, ServiceTls};
use pixie_store::tables::{self, conn_stats, http_events, process_stats};

use crate::agents::NatsArgs;
use crate::collect::{self, CollectorArgs, parse_duration};
use crate::health::{self, HealthArgs};
use crate::print;
use crate::query_api::{self, EngineArgs, MetadataArgs, TlsArgs};

#[derive(Debug, Args)]
pub struct PemArgs {
    /// Print every captured row on stdout as it reaches the store, one line per row.
    #[arg(long)]
    print: bool,
    /// Tables to print (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    tables: Vec<String>,
    /// Stop after this long (e.g. 30s, 500ms, 2m); runs until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Also serve the query API (gRPC) over this host's store here, for Kelvin. Port 0 picks a free
    /// port; the chosen address is printed.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The address Kelvin reaches the query API at, announced on NATS with --nats-url; the bound
    /// --listen address when that names a host.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "PL_ADVERTISE_ADDR",
        requires = "listen"
    )]
    advertise_addr: Option<String>,
    /// Announce the query API on NATS, for Kelvin (needs --listen).
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    metadata: MetadataArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    collector: CollectorArgs,
}

pub fn run(mut args: PemArgs) -> anyhow::Result<()> {
    let known: Vec<&str> = tables::all().into_iter().map(|(name, _)| name).collect();
    let printed: HashSet<String> = if args.tables.is_empty() {
        known.iter().map(|t| t.to_string()).collect()
    } else {
        for t in &args.tables {
            if !known.contains(&t.as_str()) {
                bail!("unknown table {t:?}; known tables: {}", known.join(", "));
            }
        }
        args.tables.iter().cloned().collect()
    };

    let node = query_api::node_name(args.collector.node_name());
    if args.listen.is_some() {
        // Kelvin takes each upid's metadata from the PEM that reports it: hosts must not share asids.
        args.collector.default_asid(asid_of(&node));
    }
    let tls = args.tls.load()?;
    let store = args.collector.store();
    let summary = collect::runtime()?.block_on(async {
        let mut collector = collect::start_collector(&args.collector, &store)?;
        let serving = match args.listen {
            Some(listen) => {
                let api = query_api::store_api(
                    &store,
                    &args.engine,
                    &args.metadata,
                    &node,
                    tls.as_ref().map(ServiceTls::client),
                )?;
                let serving = query_api::serve(listen, api, tls.as_ref()).await?;
                // On stdout, for scripts and tests that start us on port 0.
                println!("vizier pem listening on {}", serving.addr());
                tracing::info!(addr = %serving.addr(), node, "query API up");
                Some(serving)
            }
            None => None,
        };
        let heartbeats = match (&serving, args.nats.connect("pem", args.tls.dir()).await?) {
            (Some(serving), Some(nats)) => {
                let addr = advertised(args.advertise_addr.as_deref(), serving.addr())?;
                tracing::info!(addr, "announcing the query API on NATS");
                let heartbeat = AgentHeartbeat {
                    node_name: node.clone(),
                    addr,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                Some(args.nats.spawn_heartbeats(nats, heartbeat))
            }
            (None, Some(_)) => bail!("--nats-url announces the query API: it needs --listen"),
            (_, None) => None,
        };
        // Ready once the eBPF programs are attached and the API (if any) serves.
        let health = args.health.start(health::always_ready()).await?;
        if args.print {
            collector = collector.with_sink(Box::new(move |table, batch| {
                if printed.contains(table) {
                    print_batch(table, batch);
                }
            }));
        }
        let summary = collector
            .run(collect::shutdown_signal(args.duration))
            .await
            .context("collector stopped");
        if let Some(heartbeats) = heartbeats {
            heartbeats.abort();
        }
        if let Some(serving) = serving {
            serving.stop().await?;
        }
        if let Some(health) = health {
            health.stop().await?;
        }
        summary
    })?;
    collect::log_summary("pem", &summary, &store);
    Ok(())
}

/// What to announce: `given`, else the bound address, which must then name a host.
fn advertised(given: Option<&str>, bound: SocketAddr) -> anyhow::Result<String> {
    match given {
        Some(addr) => Ok(addr.to_owned()),
        None if bound.ip().is_unspecified() => bail!(
            "--listen {bound} binds every address: say which one Kelvin reaches with --advertise-addr \
             (PL_ADVERTISE_ADDR)"
        ),
        None => Ok(bound.to_string()),
    }
}

/// A stable, non-zero asid from the node name (FNV-1a): the same after a restart, and different
/// hosts collide with a chance of one in four billion.
fn asid_of(node: &str) -> u32 {
    let hash = node.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash.max(1)
}

fn print_batch(table: &str, batch: &arrow::array::RecordBatch) {
    let lines: Vec<String> = match table {
        http_events::NAME => rows(http_events::from_batch(batch), print::http_event),
        conn_stats::NAME => rows(conn_stats::from_batch(batch), print::conn_stat),
        process_stats::NAME => rows(process_stats::from_batch(batch), print::process_stat),
        other => vec![format!("{other}: {} rows", batch.num_rows())],
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A closed stdout (e.g. `| head`) must not stop collection.
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

fn rows<R>(
    decoded: Result<Vec<R>, pixie_store::StoreError>,
    format: fn(&R) -> String,
) -> Vec<String> {
    match decoded {
        Ok(rows) => rows.iter().map(format).collect(),
        Err(e) => vec![format!("(undecodable batch: {e})")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asids_from_node_names_are_stable_distinct_and_never_zero() {
        assert_eq!(asid_of("kwok-node-0"), asid_of("kwok-node-0"));
        assert_ne!(asid_of("kwok-node-0"), asid_of("kwok-node-1"));
        // FNV-1a of "a".
        assert_eq!(asid_of("a"), 0xe40c_292c);
        assert_ne!(asid_of(""), 0);
    }
}
