//! `pixie-operator`: reconciles px.dev Viziers. Flags mirror the settings in `controller::Settings`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use pixie_operator::leader::LeaderSettings;
use pixie_operator::version::CloudSettings;
use pixie_operator::{ApiWriteLayer, Metrics, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "pixie-operator", version, about = "Deploys and watches Pixie Viziers")]
struct Args {
    /// Only watch Viziers in this namespace (all namespaces by default, or when empty: OLM sets
    /// WATCH_NAMESPACE to "" for AllNamespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Registry of the Vizier images when a Vizier does not set spec.registry.
    #[arg(long, default_value = pixie_operator::render::common::DEFAULT_REGISTRY)]
    default_registry: String,
    /// Seconds between periodic re-checks of every Vizier.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Compete for a Lease so that only one replica reconciles.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "px-operator")]
    lease_namespace: String,
    #[arg(long, default_value = "pixie-operator")]
    lease_name: String,
    /// This replica's name, used in the lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Trust this CA (a PEM file) instead of the system roots when dialing a cloud's artifact
    /// tracker: for self-hosted clouds with a private CA.
    #[arg(long, env = "PL_CLOUD_CA_FILE")]
    cloud_ca_file: Option<PathBuf>,
    /// Dial clouds' artifact trackers without TLS: development clouds only.
    #[arg(long, conflicts_with = "cloud_ca_file")]
    cloud_insecure: bool,
    /// Seconds a cloud's latest Vizier version is reused before the artifact tracker is asked again.
    #[arg(long, default_value_t = 600)]
    cloud_version_ttl_seconds: u64,
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing running reconciles");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    if args.log_json {
        tracing_subscriber::fmt().json().with_current_span(true).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let metrics = Metrics::new();
    let config = kube::Config::infer().await.context("loading the Kubernetes client configuration")?;
    let client = kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&ApiWriteLayer::new(metrics.clone()))
        .build();

    let identity = format!(
        "{}-{:08x}",
        args.pod_name.clone().unwrap_or_else(|| "pixie-operator".to_owned()),
        rand::random::<u32>()
    );
    let settings = Settings {
        namespace: args.namespace.filter(|ns| !ns.is_empty()),
        default_registry: args.default_registry,
        resync: Duration::from_secs(args.resync_seconds),
        metrics_addr: Some(args.metrics_addr),
        leader: args.leader_elect.then_some(LeaderSettings {
            namespace: args.lease_namespace,
            lease_name: args.lease_name,
            identity,
            duration_secs: 15,
            grace_secs: 5,
        }),
        instance: args.pod_name,
        cloud: CloudSettings {
            ca_file: args.cloud_ca_file,
            insecure: args.cloud_insecure,
            version_ttl: Duration::from_secs(args.cloud_version_ttl_seconds),
        },
        ..Settings::default()
    };
    pixie_operator::run(client, settings, metrics, shutdown_signal()).await.context("running the operator")
}
