//! `vizier metadata`: the metadata service. Watches every Pod and Service of the cluster (with the
//! in-cluster ServiceAccount, or the kubeconfig outside a cluster) and serves each node's pods to
//! its PEM (`vizier pem --metadata-addr`). Its state is rebuilt from the cluster at start.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use pixie_metadata::{DEFAULT_PORT, MetadataService};

use crate::collect;

#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Where the metadata API listens (gRPC). Port 0 picks a free port; the chosen address is
    /// printed.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    listen: SocketAddr,
}

pub fn run(args: MetadataArgs) -> anyhow::Result<()> {
    collect::runtime()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes API: neither in a cluster nor a usable kubeconfig")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let service = MetadataService::watch(client);
        // On stdout, for scripts and tests that start us on port 0.
        println!("vizier metadata listening on {addr}");
        tracing::info!(%addr, "metadata API up; ready once Pods and Services are listed");
        pixie_metadata::serve(listener, service, collect::shutdown_signal(None))
            .await
            .context("serving the metadata API")
    })
}
