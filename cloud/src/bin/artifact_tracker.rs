//! `artifact-tracker`: serves Pixie Cloud's `ArtifactTracker.GetArtifactList` from a YAML versions
//! file (see `pixie_cloud::catalog` for its format), reloaded on SIGHUP or when it changes; with
//! `--deploy-keys`, also the Vizier registry (`px.cloud.v1.VizierRegistry`) on the same port, for
//! cloud connectors to register and heartbeat (in memory: a restart forgets the clusters).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use pixie_cloud::registry::{self, RegistryService};
use pixie_cloud::tracker::{self, ServerCert, Versions};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "artifact-tracker",
    version,
    about = "Tells operators which Vizier releases exist"
)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "0.0.0.0:50700")]
    listen: SocketAddr,
    /// The YAML list of releases.
    #[arg(long)]
    versions: PathBuf,
    /// How often the versions file is checked for changes (SIGHUP reloads at once).
    #[arg(long, default_value = "2s", value_parser = parse_seconds)]
    poll: Duration,
    /// YAML (or JSON) list of the deploy keys Viziers may register with (`- key: px-dep-...`,
    /// optional `org:`); enables the Vizier registry. Read once at start.
    #[arg(long)]
    deploy_keys: Option<PathBuf>,
    /// PEM certificate chain to serve TLS with (with --tls-key); plaintext without both.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{text:?} is not a positive number of seconds like 2s or 0.5"
        )),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let (catalog, text) = tracker::load(&args.versions)?;
    tracing::info!(path = %args.versions.display(), releases = %catalog, "versions loaded");
    let cert = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerCert {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("reading --tls-cert {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("reading --tls-key {}", key.display()))?,
        }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let registry = match &args.deploy_keys {
        Some(path) => {
            let keys = registry::load_keys(path)?;
            tracing::info!(path = %path.display(), keys = keys.len(), "deploy keys loaded; serving the Vizier registry");
            Some(RegistryService::new(keys))
        }
        None => None,
    };
    let versions = Versions::new(catalog);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, tls = cert.is_some(), "serving px.cloud.v1.ArtifactTracker");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(tracker::follow(
        args.versions.clone(),
        versions.clone(),
        text,
        args.poll,
        {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        },
    ));
    let served = tracker::serve_cloud(listener, versions, registry, cert, shutdown_signal()).await;
    let _ = stop.send(true);
    let _ = follower.await;
    served.context("serving gRPC")
}
