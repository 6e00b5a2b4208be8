//! `vizier broker`: runs one Vizier's CronScripts (pixie-broker) against its query API and
//! delivers their results to DataExports. Talks to Kubernetes through KUBECONFIG or the in-cluster
//! service account; with several replicas, only the holder of the Vizier's Lease schedules.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_broker::{LeaseSettings, Settings};

use crate::collect::{self, parse_duration};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Namespace of the Vizier, its CronScripts, PxlScripts, DataExports and Secrets.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// Name of the Vizier whose CronScripts to run (their spec.vizierRef).
    #[arg(long)]
    vizier: String,
    /// The Vizier's query API, HOST:PORT (`vizier standalone --listen`).
    #[arg(long, default_value = "127.0.0.1:50300")]
    query_addr: String,
    /// Compete for a Lease so that only one replica schedules.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the Lease; pixie-broker-<vizier> by default.
    #[arg(long)]
    lease_name: Option<String>,
    /// How long the lease lasts without renewal (a dead leader's scripts wait this long at most).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the lease and in Events; the pod name plus a random suffix by default.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Data points and spans each DataExport may queue while its endpoint is down; the oldest are
    /// dropped (and counted in its status) beyond that.
    #[arg(long, default_value_t = pixie_export::SinkConfig::DEFAULT_MAX_QUEUED_RECORDS)]
    max_queued_records: u64,
    /// How long a run waits for its deliveries before reporting them as failing.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    delivery_wait: Duration,
    /// How long after its window ends a run queries, so that rows still being collected are in it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
}

pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    collect::runtime()?.block_on(async {
        let config = kube::Config::infer().await.context("loading the Kubernetes client configuration")?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let identity = unique_identity(args.identity.as_deref());
        let lease_secs = args.lease_duration.as_secs().max(2);
        let settings = Settings {
            lease: args.leader_elect.then(|| LeaseSettings {
                name: args.lease_name.clone().unwrap_or_else(|| LeaseSettings::default_name(&args.vizier)),
                identity: identity.clone(),
                duration_secs: lease_secs,
                // Renew a third of the way before expiry.
                grace_secs: (lease_secs / 3).max(1),
            }),
            instance: identity,
            max_queued_records: args.max_queued_records,
            delivery_wait: args.delivery_wait,
            settle: args.settle,
            ..Settings::new(args.namespace, args.vizier, args.query_addr)
        };
        tracing::info!(namespace = %settings.namespace, vizier = %settings.vizier, query = %settings.query_addr, "broker starting");
        pixie_broker::run(client, settings, collect::shutdown_signal(None)).await.context("the broker stopped")
    })
}

/// The pod name is shared by restarts of the same pod; a suffix tells them apart in the lease.
fn unique_identity(base: Option<&str>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{}-{:x}{:05x}",
        base.unwrap_or("pixie-broker"),
        std::process::id(),
        nanos & 0xfffff
    )
}
