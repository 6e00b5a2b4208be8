//! The pieces of Pixie Cloud that this repository runs itself: the artifact tracker, the service
//! that says which releases of the Vizier exist, so that an operator with a cloud configured
//! deploys (and upgrades to) the latest one; and the Vizier registry, where cloud connectors
//! register their cluster with a deploy key and send heartbeats. [`catalog`] is the tracker's pure
//! core (versions file and query), [`tracker`] its gRPC service and the server of both,
//! [`registry`] the registry (pure core and service), [`client`] what the operator and the cloud
//! connector call.

pub mod catalog;
pub mod client;
pub mod registry;
pub mod tracker;

/// The generated `px.cloud.v1` messages, server and client.
pub mod proto {
    tonic::include_proto!("px.cloud.v1");
}

pub use catalog::{Catalog, Release};
pub use client::{ClientSettings, Trust, latest_release};
pub use registry::{DeployKeys, RegistryService};
pub use tracker::{ServerCert, Versions, serve, serve_cloud};
