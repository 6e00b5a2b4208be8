//! `vizier metadata`: the metadata service. Watches every Pod and Service of the cluster (with the
//! in-cluster ServiceAccount, or the kubeconfig outside a cluster) and serves each node's pods to
//! its PEM (`vizier pem --metadata-addr`). Its live state is rebuilt from the cluster at start;
//! deleted pods stay listed for `--retain-terminated`, and with `--store file:<dir>`
//! (`PL_METADATA_STORE`, the StatefulSet's volume) that history is written to the directory and
//! read back at start, so a restart keeps it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_metadata::{DEFAULT_PORT, HistoryStore, MetadataConfig, MetadataService};

use crate::collect::{self, parse_duration};
use crate::health::HealthArgs;
use crate::query_api::TlsArgs;

#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Where the metadata API listens (gRPC). Port 0 picks a free port; the chosen address is
    /// printed.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// How long a deleted pod stays listed after it stopped (its last container finished, or it was
    /// deleted), so that what its processes did still resolves to its pod: `30m`, `24h`...
    #[arg(
        long,
        env = "PL_METADATA_RETAIN_TERMINATED",
        default_value = "24h",
        value_parser = parse_duration
    )]
    retain_terminated: Duration,
    /// Where deleted pods are kept across restarts: `memory` (lost on restart) or `file:<dir>`
    /// (`<dir>/terminated-pods.json`).
    #[arg(long, env = "PL_METADATA_STORE", default_value = "memory")]
    store: HistoryStore,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    health: HealthArgs,
}

pub fn run(args: MetadataArgs) -> anyhow::Result<()> {
    let tls = args.tls.load()?;
    collect::runtime()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes API: neither in a cluster nor a usable kubeconfig")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let store = args.store.clone();
        let service = MetadataService::watch_with(
            client,
            MetadataConfig {
                retain_terminated: args.retain_terminated,
                store: args.store,
            },
        );
        // On stdout, for scripts and tests that start us on port 0.
        println!("vizier metadata listening on {addr}");
        tracing::info!(
            %addr,
            %store,
            retain_terminated = ?args.retain_terminated,
            "metadata API up; ready once Pods and Services are listed"
        );
        // Ready once the initial lists are in: before that, PEMs would get no pods.
        let readiness = {
            let service = service.clone();
            std::sync::Arc::new(move || service.not_ready_reason())
        };
        let health = args.health.start(readiness).await?;
        let served = pixie_metadata::serve(
            listener,
            service.clone(),
            tls.as_ref(),
            collect::shutdown_signal(None),
        )
        .await
        .context("serving the metadata API");
        if let Some(health) = health {
            health.stop().await?;
        }
        // The last deletions, before the pod goes (also when serving failed).
        let saved = service.save_history().await;
        served?;
        saved.map_err(anyhow::Error::msg)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: MetadataArgs,
    }

    #[test]
    fn defaults_keep_deleted_pods_a_day_in_memory() {
        let cli = Cli::try_parse_from(["metadata"]).unwrap();
        assert_eq!(
            cli.args.retain_terminated,
            pixie_metadata::DEFAULT_RETAIN_TERMINATED
        );
        assert_eq!(cli.args.store, HistoryStore::Memory);
        let cli = Cli::try_parse_from([
            "metadata",
            "--store",
            "file:/metadata",
            "--retain-terminated",
            "30m",
        ])
        .unwrap();
        assert_eq!(cli.args.store, HistoryStore::File("/metadata".into()));
        assert_eq!(cli.args.retain_terminated, Duration::from_secs(1800));
    }

    #[test]
    fn an_unknown_store_is_refused_naming_the_variable() {
        let err = Cli::try_parse_from(["metadata", "--store", "etcd"]).unwrap_err();
        assert!(err.to_string().contains("PL_METADATA_STORE"), "{err}");
    }
}
