//! The Pixie operator: turns a `px.dev/v1alpha1` Vizier into a running data plane (NATS, metadata,
//! query broker, Kelvin, PEMs, cloud connector), watches its health the way Pixie's monitor does, and
//! reports it as conditions. One reconciler, shaped as a pipeline:
//! fetch → validate → render (pure) → apply (server-side apply, one field manager) → observe → status.
//! Beside it, [`scripts`] checks PxlScripts, CronScripts and DataExports and materialises Plugins.

pub mod apply;
pub mod controller;
pub mod error;
pub mod fetch;
pub mod http;
pub mod install;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod quantity;
pub mod render;
pub mod resources;
pub mod scripts;
pub mod secrets;
pub mod status;
pub mod validate;
pub mod version;

pub use controller::{Settings, run};
pub use error::Error;
pub use metrics::{ApiWriteLayer, Metrics};

/// The one field manager for every server-side apply the operator makes (objects and status).
pub const FIELD_MANAGER: &str = "pixie-operator";
/// Finalizer that guards the cleanup of cluster-scoped objects, which owner references cannot reach.
pub const FINALIZER: &str = "px.dev/cluster-resources";
/// The operator's own version: the Vizier version it deploys when no cloud is configured.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
