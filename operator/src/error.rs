//! The operator's error type: one enum, each variant countable by cause through `metric_label`.

use crate::resources::Kind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be deployed as written; the reconciler waits for the user to change it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// No version can be chosen yet (the artifact tracker is unavailable); retried with backoff.
    #[error("no version to deploy: {0}")]
    VersionUnavailable(String),

    #[error("reading {what}: {source}")]
    Fetch { what: String, source: kube::Error },

    #[error("applying {kind} {name}: {source}")]
    Apply { kind: Kind, name: String, source: kube::Error },

    #[error("deleting {kind} {name}: {source}")]
    Prune { kind: Kind, name: String, source: kube::Error },

    #[error("writing secret {name}: {source}")]
    SecretWrite { name: String, source: kube::Error },

    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),

    #[error("writing status: {0}")]
    Status(kube::Error),

    #[error("cleaning up cluster-scoped objects: {0}")]
    Cleanup(kube::Error),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("the cloud's CA for the connector: {0}")]
    CloudTrust(String),

    #[error("serializing {0}")]
    Serialize(#[from] serde_json::Error),

    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),

    #[error("lost the leader lease")]
    LostLeadership,

    #[error("metrics server: {0}")]
    Server(#[from] std::io::Error),
}

impl Error {
    /// A short, bounded label for the `reason` of the error metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::InvalidSpec(_) => "invalid_spec".into(),
            Error::VersionUnavailable(_) => "version_unavailable".into(),
            Error::Fetch { .. } => "fetch".into(),
            Error::Apply { kind, source, .. } => format!("apply_{}_{}", kind.as_str().to_lowercase(), api_code(source)),
            Error::Prune { .. } => "prune".into(),
            Error::SecretWrite { .. } => "secret_write".into(),
            Error::Certificates(_) => "certificates".into(),
            Error::Status(_) => "status".into(),
            Error::Cleanup(_) => "cleanup".into(),
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer".into(),
            },
            Error::CloudTrust(_) => "cloud_trust".into(),
            Error::Serialize(_) => "serialize".into(),
            Error::LeaderElection(_) | Error::LostLeadership => "leader_election".into(),
            Error::Server(_) => "server".into(),
        }
    }

    /// True when retrying cannot help until the Vizier changes: the spec is invalid, or the
    /// apiserver rejected what the spec renders to (422 Invalid, 400 BadRequest).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::InvalidSpec(_) => true,
            Error::Apply { source, .. } => matches!(api_status(source), Some(400 | 422)),
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e) => e.is_permanent(),
                _ => false,
            },
            _ => false,
        }
    }
}

fn api_status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn api_code(error: &kube::Error) -> String {
    api_status(error).map_or_else(|| "transport".to_owned(), |code| code.to_string())
}
