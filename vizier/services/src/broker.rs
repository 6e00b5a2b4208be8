//! `vizier broker`: runs one Vizier's CronScripts (pixie-broker) against its query API and
//! delivers their results to DataExports. Talks to Kubernetes through KUBECONFIG or the in-cluster
//! service account; with several replicas, only the holder of the Vizier's Lease schedules. With
//! `--kelvin-addr` it is also the Vizier's query API for clients (`--listen`), forwarding every
//! query to Kelvin, and its CronScripts query Kelvin too.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_broker::{LeaseSettings, Settings};
use pixie_engine::{ClientTls, ForwardingApi, ServiceTls, server};

use crate::collect::{self, parse_duration};
use crate::health::{self, HealthArgs};
use crate::query_api::{self, TlsArgs};

/// Where CronScripts run when neither --query-addr nor --kelvin-addr says (`vizier standalone`).
const LOCAL_QUERY_ADDR: &str = "127.0.0.1:50300";

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Namespace of the Vizier, its CronScripts, PxlScripts, DataExports and Secrets.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// Name of the Vizier whose CronScripts to run (their spec.vizierRef).
    #[arg(long)]
    vizier: String,
    /// The query API CronScripts run against, HOST:PORT: --kelvin-addr when given, else
    /// 127.0.0.1:50300 (`vizier standalone --listen`).
    #[arg(long)]
    query_addr: Option<String>,
    /// Kelvin's query API, HOST:PORT (e.g. kelvin-service.NS.svc:59300). When given, the broker
    /// serves the query API on --listen by forwarding every request to Kelvin.
    #[arg(long, env = "PL_KELVIN_ADDR")]
    kelvin_addr: Option<String>,
    /// Where the forwarded query API listens (gRPC), with --kelvin-addr.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], server::DEFAULT_PORT)))]
    listen: SocketAddr,
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
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    health: HealthArgs,
}

pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    collect::runtime()?.block_on(async {
        // Serve first: clients can query while the broker waits for its lease.
        let tls = args.tls.load()?;
        let serving = match &args.kelvin_addr {
            Some(kelvin) => {
                let api = ForwardingApi::new(kelvin, tls.as_ref().map(ServiceTls::client))
                    .with_context(|| format!("--kelvin-addr {kelvin}"))?;
                let serving = query_api::serve(args.listen, api, tls.as_ref()).await?;
                tracing::info!(addr = %serving.addr(), kelvin, "query API up, forwarding to Kelvin");
                Some(serving)
            }
            None => None,
        };
        // Ready as soon as it forwards; scheduling waits for the lease, which only one replica holds.
        let health = args.health.start(health::always_ready()).await?;
        let scheduled = schedule(args, tls.as_ref().map(|t| t.client().clone())).await;
        if let Some(serving) = serving {
            serving.stop().await?;
        }
        if let Some(health) = health {
            health.stop().await?;
        }
        scheduled
    })
}

/// Runs the CronScripts until the broker is told to stop.
async fn schedule(args: BrokerArgs, query_tls: Option<ClientTls>) -> anyhow::Result<()> {
    {
        let config = kube::Config::infer()
            .await
            .context("loading the Kubernetes client configuration")?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let identity = unique_identity(args.identity.as_deref());
        let lease_secs = args.lease_duration.as_secs().max(2);
        let settings = Settings {
            lease: args.leader_elect.then(|| LeaseSettings {
                name: args
                    .lease_name
                    .clone()
                    .unwrap_or_else(|| LeaseSettings::default_name(&args.vizier)),
                identity: identity.clone(),
                duration_secs: lease_secs,
                // Renew a third of the way before expiry.
                grace_secs: (lease_secs / 3).max(1),
            }),
            instance: identity,
            max_queued_records: args.max_queued_records,
            delivery_wait: args.delivery_wait,
            settle: args.settle,
            query_tls,
            ..Settings::new(
                args.namespace,
                args.vizier,
                query_addr(args.query_addr, args.kelvin_addr),
            )
        };
        tracing::info!(namespace = %settings.namespace, vizier = %settings.vizier, query = %settings.query_addr, "broker starting");
        pixie_broker::run(client, settings, collect::shutdown_signal(None))
            .await
            .context("the broker stopped")
    }
}

/// --query-addr, else Kelvin, else a standalone Vizier on this host.
fn query_addr(query_addr: Option<String>, kelvin_addr: Option<String>) -> String {
    query_addr
        .or(kelvin_addr)
        .unwrap_or_else(|| LOCAL_QUERY_ADDR.to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_scripts_query_the_given_address_else_kelvin_else_this_host() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(query_addr(some("q:1"), some("k:2")), "q:1");
        assert_eq!(query_addr(None, some("k:2")), "k:2");
        assert_eq!(query_addr(None, None), LOCAL_QUERY_ADDR);
    }
}
