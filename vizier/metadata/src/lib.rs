//! Kubernetes metadata for PxL's `df.ctx['pod'|'service'|'namespace'|'container'|'node']`.
//!
//! The metadata service ([`MetadataService`], `vizier metadata`) watches every Pod and Service of the
//! cluster and serves each node's pods over gRPC; on each node, [`K8sMetadata`] maps a process to
//! its container through `/proc/<pid>/cgroup` and the container to its pod from that list.

pub mod cgroup;
mod index;
mod resolver;
mod service;

pub use index::{ContainerInfo, PodIndex, PodInfo};
pub use resolver::{K8sMetadata, REFRESH_INTERVAL, ResolverError};
pub use service::{DEFAULT_PORT, MetadataService, serve};

/// Generated from `proto/metadata.proto`.
pub mod proto {
    tonic::include_proto!("px.vizier.metadata.v1");
}
