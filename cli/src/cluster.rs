//! Reaching the cluster the way kubectl does (`--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`; `--context`; `-n`, else the context's namespace), and saying in one line what
//! went wrong when it cannot: no kubeconfig, no API server at the address, no px.dev CRDs, or the
//! server's own refusal in kubectl's words.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Pixie's namespace, used when neither `-n` nor the kubeconfig context names one.
pub const DEFAULT_NAMESPACE: &str = "pl";

/// The flags every cluster verb shares.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A client and where it points.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    /// The API server URL, for messages.
    pub server: String,
    /// The namespace verbs act in when not told otherwise.
    pub namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot load the kubeconfig{from}: {reason}; pass --kubeconfig FILE or set KUBECONFIG")]
    Kubeconfig { from: String, reason: String },
    #[error(
        "cannot reach the Kubernetes API server at {server}: {reason}; check --kubeconfig and --context"
    )]
    Unreachable { server: String, reason: String },
    #[error(
        "the px.dev CRDs are not installed in this cluster; run `kubectl pixie deploy` (or `kubectl apply -k config/default`)"
    )]
    CrdsMissing,
    /// The server's refusal, worded as kubectl words it.
    #[error("Error from server{}: {message}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Api {
        code: u16,
        reason: Option<String>,
        message: String,
    },
    #[error("talking to the Kubernetes API server at {server}: {reason}")]
    Other { server: String, reason: String },
}

impl ClusterError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::Api { code: 404, .. })
    }
}

/// The namespace to act in: `-n`, else the namespace of the kubeconfig context in use, else `pl`.
pub fn namespace_for(flag: Option<&str>, kubeconfig: &Kubeconfig, context: Option<&str>) -> String {
    if let Some(ns) = flag.filter(|ns| !ns.is_empty()) {
        return ns.to_owned();
    }
    let context = context.or(kubeconfig.current_context.as_deref());
    kubeconfig
        .contexts
        .iter()
        .find(|c| Some(c.name.as_str()) == context)
        .and_then(|c| c.context.as_ref()?.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// Loads the kubeconfig kubectl would load and builds a client. Nothing is sent to the server yet.
pub async fn connect(options: &ClusterOptions) -> Result<Connection, ClusterError> {
    let (kubeconfig, from) = match &options.kubeconfig {
        Some(path) => (Kubeconfig::read_from(path), format!(" {}", path.display())),
        None => (Kubeconfig::read(), String::new()),
    };
    let kubeconfig_error = |e: &dyn std::error::Error| ClusterError::Kubeconfig {
        from: from.clone(),
        reason: e.to_string(),
    };
    let kubeconfig = kubeconfig.map_err(|e| kubeconfig_error(&e))?;
    let namespace = namespace_for(
        options.namespace.as_deref(),
        &kubeconfig,
        options.context.as_deref(),
    );
    let kube_options = KubeConfigOptions {
        context: options.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube_options)
        .await
        .map_err(|e| kubeconfig_error(&e))?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Other {
        server: server.clone(),
        reason: e.to_string(),
    })?;
    Ok(Connection {
        client,
        server,
        namespace,
    })
}

/// What went wrong, for a user: `px_dev` says whether the request was for a px.dev resource, where
/// a bare 404 (no object named in it) means the CRDs are not installed.
pub fn explain(error: kube::Error, server: &str, px_dev: bool) -> ClusterError {
    match error {
        kube::Error::Api(status) => {
            let names_an_object = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
            if status.code == 404 && px_dev && !names_an_object {
                return ClusterError::CrdsMissing;
            }
            // kube-rs reconstructs a Status from a body that was not one, with this reason.
            let reason = (!status.reason.is_empty()
                && !status.reason.starts_with("Failed to parse"))
            .then(|| status.reason.clone());
            ClusterError::Api {
                code: status.code,
                reason,
                message: status.message,
            }
        }
        kube::Error::HyperError(e) => ClusterError::Unreachable {
            server: server.to_owned(),
            reason: root_cause(&e),
        },
        kube::Error::Service(e) => ClusterError::Unreachable {
            server: server.to_owned(),
            reason: root_cause(e.as_ref()),
        },
        other => ClusterError::Other {
            server: server.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// The innermost cause of a connection failure, in words (`connection refused`).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>() {
        let text = match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => io.to_string(),
        };
        return text;
    }
    let text = current.to_string();
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::core::response::StatusDetails;

    use super::*;

    const SERVER: &str = "https://127.0.0.1:6443";

    fn not_found(details: Option<StatusDetails>, reason: &str, message: &str) -> kube::Error {
        let mut status = Status::failure(message, reason).with_code(404);
        status.details = details;
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn a_bare_404_on_px_dev_means_the_crds_are_missing() {
        // The API group is unknown: the apiserver answers in plain text.
        let group_missing = not_found(None, "Failed to parse error data", "404 page not found");
        assert!(matches!(
            explain(group_missing, SERVER, true),
            ClusterError::CrdsMissing
        ));
        // The group exists but not this resource.
        let resource_missing = not_found(
            None,
            "NotFound",
            "the server could not find the requested resource",
        );
        let error = explain(resource_missing, SERVER, true);
        assert_eq!(
            error.to_string(),
            "the px.dev CRDs are not installed in this cluster; run `kubectl pixie deploy` (or `kubectl apply -k config/default`)"
        );
    }

    #[test]
    fn a_missing_object_is_worded_like_kubectl() {
        let details = StatusDetails {
            name: "pixie".into(),
            group: "px.dev".into(),
            kind: "viziers".into(),
            uid: String::new(),
            causes: vec![],
            retry_after_seconds: 0,
        };
        let error = explain(
            not_found(
                Some(details),
                "NotFound",
                "viziers.px.dev \"pixie\" not found",
            ),
            SERVER,
            true,
        );
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "Error from server (NotFound): viziers.px.dev \"pixie\" not found"
        );
        // Outside px.dev a bare 404 is only a 404.
        let plain = explain(
            not_found(None, "Failed to parse error data", "404 page not found"),
            SERVER,
            false,
        );
        assert_eq!(plain.to_string(), "Error from server: 404 page not found");
    }

    #[test]
    fn a_refused_connection_names_the_server_and_the_flags_to_check() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "os error 111");
        let error = explain(kube::Error::Service(Box::new(io)), SERVER, true);
        assert_eq!(
            error.to_string(),
            "cannot reach the Kubernetes API server at https://127.0.0.1:6443: connection refused; \
             check --kubeconfig and --context"
        );
    }

    fn kubeconfig(yaml: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(yaml).unwrap()
    }

    const TWO_CONTEXTS: &str = "
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: team-a}
- name: prod
  context: {cluster: c, user: u}
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]
users: [{name: u, user: {}}]
";

    #[test]
    fn the_namespace_is_the_flag_then_the_context_then_pixies_default() {
        let config = kubeconfig(TWO_CONTEXTS);
        assert_eq!(namespace_for(Some("mine"), &config, None), "mine");
        assert_eq!(namespace_for(None, &config, None), "team-a");
        assert_eq!(namespace_for(None, &config, Some("prod")), "pl");
        assert_eq!(namespace_for(None, &Kubeconfig::default(), None), "pl");
    }
}
