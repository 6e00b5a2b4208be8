//! `df.ctx[...]` on a Kubernetes node: a process's pod, namespace, container and services, from the
//! container ID in its `/proc/<pid>/cgroup` and the pods of this node the metadata service lists.
//! Pid, command line and host name are [`ProcMetadata`]'s answers.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use pixie_engine::{ClientError, ClientTls, ProcMetadata};
use pixie_pxl::{MetadataField, MetadataResolver};
use pixie_store::Upid;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::index::{PodIndex, PodInfo};
use crate::proto::ListPodsRequest;
use crate::proto::metadata_client::MetadataClient;

/// How often this node's pods are fetched again; a new pod's processes resolve within this.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Container IDs of processes kept; cleared when full, like [`ProcMetadata`]'s command lines.
const CONTAINER_CACHE_ENTRIES: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("metadata address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("node name: must not be empty (set --node-name or NODE_NAME)")]
    NoNodeName,
}

pub struct K8sMetadata {
    proc: ProcMetadata,
    proc_root: PathBuf,
    node_name: String,
    pods: Arc<RwLock<PodIndex>>,
    containers: Mutex<HashMap<Upid, Option<String>>>,
    refresher: JoinHandle<()>,
}

impl K8sMetadata {
    /// Resolves this host's processes (real `/proc`) on node `node_name`, refreshing the node's pods
    /// from the metadata service at `addr` (`host:port`) in the background on the current Tokio
    /// runtime, over mutual TLS with `tls`. The service need not be up yet: until it answers, pods
    /// resolve to nothing.
    pub fn connect(
        addr: &str,
        node_name: &str,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ResolverError> {
        Self::connect_with_proc_root(addr, node_name, "/proc", REFRESH_INTERVAL, tls)
    }

    /// As [`K8sMetadata::connect`], reading a `/proc`-shaped tree at `proc_root` (tests).
    pub fn connect_with_proc_root(
        addr: &str,
        node_name: &str,
        proc_root: impl Into<PathBuf>,
        refresh: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ResolverError> {
        if node_name.is_empty() {
            return Err(ResolverError::NoNodeName);
        }
        let endpoint = pixie_engine::client::endpoint(addr, tls).map_err(|e| {
            let reason = match e {
                // It names the address already.
                ClientError::Unreachable { reason, .. } => reason,
                other => other.to_string(),
            };
            ResolverError::BadAddress {
                addr: addr.to_owned(),
                reason,
            }
        })?;
        let client = MetadataClient::new(endpoint.connect_lazy());
        let proc_root = proc_root.into();
        let pods = Arc::new(RwLock::new(PodIndex::default()));
        let refresher = tokio::spawn(refresh_pods(
            client,
            node_name.to_owned(),
            pods.clone(),
            refresh,
        ));
        Ok(K8sMetadata {
            proc: ProcMetadata::with_proc_root(&proc_root),
            proc_root,
            node_name: node_name.to_owned(),
            pods,
            containers: Mutex::new(HashMap::new()),
            refresher,
        })
    }

    fn container_id(&self, upid: Upid) -> Option<String> {
        if let Some(hit) = self.containers.lock().get(&upid) {
            return hit.clone();
        }
        let found = self.read_container_id(upid);
        let mut cache = self.containers.lock();
        if cache.len() >= CONTAINER_CACHE_ENTRIES {
            cache.clear();
        }
        // A process never changes container, and a gone one stays gone: misses are cached too.
        cache.insert(upid, found.clone());
        found
    }

    fn read_container_id(&self, upid: Upid) -> Option<String> {
        let dir = self.proc_root.join(upid.pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // A reused pid is another process, maybe in another container.
        if pixie_engine::metadata::start_time_ticks(&stat)? != upid.start_time_ticks {
            return None;
        }
        crate::cgroup::container_id(&std::fs::read_to_string(dir.join("cgroup")).ok()?)
    }

    fn pod_field(&self, upid: Upid, field: MetadataField) -> Option<String> {
        let id = self.container_id(upid)?;
        let pods = self.pods.read();
        let (pod, container) = pods.by_container_id(&id)?;
        match field {
            MetadataField::Pod => Some(pod.qualified_name()),
            MetadataField::Namespace => Some(pod.namespace.clone()),
            MetadataField::Service => pod.service_text(),
            MetadataField::Container => Some(container.name.clone()),
            _ => None,
        }
    }
}

impl Drop for K8sMetadata {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl fmt::Debug for K8sMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("K8sMetadata")
            .field("node_name", &self.node_name)
            .field("proc", &self.proc)
            .field("pods", &self.pods.read().pods().len())
            .field("cached_containers", &self.containers.lock().len())
            .finish()
    }
}

impl MetadataResolver for K8sMetadata {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        match field {
            MetadataField::Pod
            | MetadataField::Service
            | MetadataField::Namespace
            | MetadataField::Container => self.pod_field(upid.parse().ok()?, field),
            // Every process this PEM sees runs on its node.
            MetadataField::Node => Some(self.node_name.clone()),
            MetadataField::Pid | MetadataField::Cmdline | MetadataField::Hostname => {
                self.proc.resolve(upid, field)
            }
        }
    }
}

/// Replaces `pods` with this node's pods every `interval`; on failure keeps the last known pods
/// (stale names beat none) and logs once per outage.
async fn refresh_pods(
    mut client: MetadataClient<Channel>,
    node_name: String,
    pods: Arc<RwLock<PodIndex>>,
    interval: Duration,
) {
    let mut seen_generation = None;
    let mut failing = false;
    loop {
        let request = ListPodsRequest {
            node_name: node_name.clone(),
        };
        match client.list_pods(request).await {
            Ok(response) => {
                let response = response.into_inner();
                if seen_generation != Some(response.generation) {
                    let index = PodIndex::from_pods(response.pods.into_iter().map(PodInfo::from));
                    tracing::debug!(
                        pods = index.pods().len(),
                        generation = response.generation,
                        "node pods refreshed"
                    );
                    *pods.write() = index;
                    seen_generation = Some(response.generation);
                }
                if failing {
                    tracing::info!("metadata service answers again");
                    failing = false;
                }
            }
            Err(status) => {
                if !failing {
                    tracing::warn!(node_name, "listing this node's pods: {}", status.message());
                    failing = true;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_node_name_or_a_bad_address_is_refused() {
        assert!(matches!(
            K8sMetadata::connect("127.0.0.1:50400", "", None),
            Err(ResolverError::NoNodeName)
        ));
        let err = K8sMetadata::connect("not an address", "node-a", None).unwrap_err();
        assert!(err.to_string().contains("not an address"), "{err}");
    }
}
