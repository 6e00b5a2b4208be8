//! Runs compiled PxL over the table store with DataFusion and streams Arrow record batches; also
//! the broker's gRPC API (ExecuteScript, Health).
//!
//! [`table::StoreTable`] is the store as a DataFusion table (`time_` filters prune whole batches),
//! [`catalog::StoreCatalog`] hands those tables to the PxL compiler, [`metadata::ProcMetadata`]
//! answers `df.ctx[...]` from `/proc` on a host without Kubernetes, [`execute::Engine`] compiles a
//! query and runs its outputs as a bounded stream of batches, and [`server`] / [`client`] carry that
//! stream over gRPC as Arrow IPC ([`ipc`]). [`remote`] makes the same engine Kelvin's: its tables
//! are every PEM's, read over that API; [`proxy`] forwards the API to another server (the broker
//! in front of Kelvin).

pub mod agents;
pub mod catalog;
pub mod client;
pub mod execute;
pub mod ipc;
pub mod metadata;
pub mod proxy;
pub mod remote;
pub mod server;
pub mod table;
pub mod tls;

/// Generated from `proto/vizier.proto`.
pub mod proto {
    tonic::include_proto!("px.vizier.v1");
}

pub use agents::{AgentDirectory, AgentHeartbeat, HEARTBEAT_SUBJECT};
pub use catalog::StoreCatalog;
pub use client::{ClientError, ClientEvent, VizierClient};
pub use execute::{Engine, EngineConfig, EngineError, Event, ExecStats, Language, Query};
pub use metadata::ProcMetadata;
pub use proxy::ForwardingApi;
pub use remote::{PemAddrs, RemoteError, RemoteTables};
pub use server::{DEFAULT_PORT, VizierApi};
pub use table::{ScanStats, StoreTable};
pub use tls::{ClientTls, ServiceTls, TlsError};
