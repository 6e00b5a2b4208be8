//! Kubernetes metadata for PxL's `df.ctx['pod'|'service'|'namespace'|'container'|'node']`.
//!
//! The metadata service ([`MetadataService`], `vizier metadata`) watches every Pod and Service of the
//! cluster and serves each node's pods over gRPC; on each node, [`K8sMetadata`] maps a process to
//! its container through `/proc/<pid>/cgroup` and the container to its pod from that list. Deleted
//! pods stay listed for a retention window ([`TerminatedPods`]), kept across restarts by a
//! [`HistoryStore`], so that what their processes did still resolves.

pub mod cgroup;
mod history;
mod index;
mod resolver;
mod service;
mod store;

pub use history::{HistoryError, MAX_TERMINATED_PODS, StoredState, TerminatedPods};
pub use index::{ContainerInfo, PodIndex, PodInfo};
pub use resolver::{K8sMetadata, REFRESH_INTERVAL, ResolverError};
pub use service::{
    DEFAULT_PORT, DEFAULT_RETAIN_TERMINATED, MetadataConfig, MetadataService, SAVE_DEBOUNCE, serve,
};
pub use store::{HISTORY_FILE, HistoryStore, StoreSpecError};

/// Generated from `proto/metadata.proto`.
pub mod proto {
    tonic::include_proto!("px.vizier.metadata.v1");
}
