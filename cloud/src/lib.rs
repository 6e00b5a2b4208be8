//! The pieces of Pixie Cloud that this repository runs itself. For now the artifact tracker: the
//! service that says which releases of the Vizier exist, so that an operator with a cloud
//! configured deploys (and upgrades to) the latest one. [`catalog`] is the pure core (versions
//! file and query), [`tracker`] the gRPC service and server, [`client`] what the operator calls.

pub mod catalog;
pub mod client;
pub mod tracker;

/// The generated `px.cloud.v1` messages, server and client.
pub mod proto {
    tonic::include_proto!("px.cloud.v1");
}

pub use catalog::{Catalog, Release};
pub use client::{ClientSettings, Trust, latest_release};
pub use tracker::{ServerCert, Versions, serve};
