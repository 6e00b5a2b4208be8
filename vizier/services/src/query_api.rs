//! The query API that `standalone`, `pem --listen` and `kelvin` serve (and `broker --listen`
//! forwards): the engine's flags, and serving an API on an address until told to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use pixie_engine::proto::vizier_service_server::VizierService;
use pixie_engine::server::{self, VizierApi};
use pixie_engine::{ClientTls, Engine, EngineConfig, ProcMetadata, ServiceTls};
use pixie_metadata::K8sMetadata;
use pixie_pxl::MetadataResolver;
use pixie_store::TableStore;

use crate::background::BackgroundServer;

/// Limits of the query engine.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Rows returned per output table when a query does not ask for a number.
    #[arg(long, default_value_t = EngineConfig::default().default_max_rows)]
    max_rows: usize,
    /// Memory all running queries may hold together, in MiB; a query that needs more fails.
    #[arg(long, default_value_t = EngineConfig::default().memory_limit_bytes >> 20)]
    query_memory_mb: usize,
}

impl EngineArgs {
    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            default_max_rows: self.max_rows,
            memory_limit_bytes: self.query_memory_mb << 20,
            ..Default::default()
        }
    }
}

/// Mutual TLS with the other Vizier components.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Directory of this Vizier's service certificates: ca.crt, server.crt, server.key, client.crt
    /// and client.key (the operator mounts the `service-tls-certs` Secret at /certs). Every API
    /// served then admits only clients with a certificate of that CA, and every call to another
    /// component uses the client certificate. Plaintext without it.
    #[arg(long, value_name = "DIR", env = "PL_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

impl TlsArgs {
    pub fn load(&self) -> anyhow::Result<Option<ServiceTls>> {
        self.tls_dir
            .as_deref()
            .map(|dir| ServiceTls::load(dir).context("--tls-dir (PL_TLS_DIR)"))
            .transpose()
    }

    pub fn dir(&self) -> Option<&Path> {
        self.tls_dir.as_deref()
    }
}

/// Where `df.ctx[...]` of this host's processes comes from.
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// The metadata service (`vizier metadata`), HOST:PORT: this node's processes then resolve to
    /// their pods, namespaces, containers and services. Without it only /proc is read.
    #[arg(long, value_name = "HOST:PORT", env = "PL_METADATA_ADDR")]
    metadata_addr: Option<String>,
}

impl MetadataArgs {
    /// The resolver for processes on `node_name`; call inside the runtime (it refreshes the node's
    /// pods in the background).
    fn resolver(
        &self,
        node_name: &str,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Arc<dyn MetadataResolver>> {
        Ok(match &self.metadata_addr {
            Some(addr) => Arc::new(K8sMetadata::connect(addr, node_name, tls)?),
            None => Arc::new(ProcMetadata::new().with_node_name(node_name)),
        })
    }
}

/// The API over this host's `store`: `df.ctx` from `metadata` (reached over mutual TLS with
/// `tls`), and `node_name` as the node of its processes and in `Health`.
pub fn store_api(
    store: &TableStore,
    engine: &EngineArgs,
    metadata: &MetadataArgs,
    node_name: &str,
    tls: Option<&ClientTls>,
) -> anyhow::Result<VizierApi> {
    let engine = Engine::new(store, metadata.resolver(node_name, tls)?, engine.config())
        .context("starting the query engine")?;
    Ok(VizierApi::new(Arc::new(engine), store.clone()).with_node_name(node_name))
}

/// This node's name: `given` (the operator sets `PL_NODE_NAME`), else the host name.
pub fn node_name(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .unwrap_or_else(|| host_name(Path::new("/proc")))
}

fn host_name(proc_root: &Path) -> String {
    std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Binds `listen` and serves `api` on it in the background, over mutual TLS with `tls`.
pub async fn serve(
    listen: SocketAddr,
    api: impl VizierService,
    tls: Option<&ServiceTls>,
) -> anyhow::Result<BackgroundServer> {
    let tls = tls.cloned();
    BackgroundServer::start(
        listen,
        "listening on",
        "the query API",
        |listener, stop| async move { Ok(server::serve(listener, api, tls.as_ref(), stop).await?) },
    )
    .await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        metadata: MetadataArgs,
    }

    #[tokio::test]
    async fn a_metadata_address_selects_the_kubernetes_resolver() {
        let k8s =
            Cli::try_parse_from(["pem", "--metadata-addr", "vizier-metadata-svc.pl.svc:50400"])
                .unwrap();
        let resolver = format!("{:?}", k8s.metadata.resolver("node-a", None).unwrap());
        assert!(resolver.starts_with("K8sMetadata"), "{resolver}");
        assert!(resolver.contains("node-a"), "{resolver}");
        let local = Cli::try_parse_from(["pem"]).unwrap();
        let resolver = format!("{:?}", local.metadata.resolver("node-a", None).unwrap());
        assert!(resolver.starts_with("ProcMetadata"), "{resolver}");
    }
}
