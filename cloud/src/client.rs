//! Dialing the cloud (TLS with the system's roots by default, a private CA when given one,
//! plaintext only when asked), and asking its artifact tracker for the latest release, as Pixie's
//! operator does (`GetArtifactList` with limit 1 and the container-set YAMLs type). The cloud
//! connector dials the Vizier registry through [`connect`].

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::artifact_tracker_client::ArtifactTrackerClient;
use crate::proto::{Artifact, ArtifactType, GetArtifactListRequest};

/// Whom to trust when dialing the cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// TLS, verified against the system's root certificates.
    SystemRoots,
    /// TLS, verified against this CA only (PEM): for clouds with a private CA.
    Ca(Vec<u8>),
    /// No TLS: development clouds only.
    Plaintext,
}

#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub trust: Trust,
    pub connect_timeout: Duration,
    /// For the whole call, connection included.
    pub timeout: Duration,
}

impl ClientSettings {
    pub fn new(trust: Trust) -> Self {
        ClientSettings {
            trust,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a host:port address")]
    Address(String),
    #[error("connecting: {0}")]
    Connect(String),
    #[error("{call} failed: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("no {0} release is published")]
    NoRelease(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// `error` and its sources, "a: b: c": tonic's transport errors say little at the top.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

/// The host part of `host:port` (brackets kept off IPv6 literals), for TLS server names.
fn host_of(addr: &str) -> Option<&str> {
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    Some(
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    )
}

fn endpoint(addr: &str, settings: &ClientSettings) -> Result<Endpoint, ClientError> {
    let host = host_of(addr).ok_or_else(|| ClientError::Address(addr.to_owned()))?;
    let scheme = if settings.trust == Trust::Plaintext {
        "http"
    } else {
        "https"
    };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|_| ClientError::Address(addr.to_owned()))?
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout);
    let tls = match &settings.trust {
        Trust::Plaintext => return Ok(endpoint),
        Trust::SystemRoots => ClientTlsConfig::new().with_native_roots(),
        Trust::Ca(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
    };
    endpoint
        .tls_config(tls.domain_name(host))
        .map_err(|e| ClientError::Connect(chain(&e)))
}

/// A channel to the cloud at `addr` (`host:port`), trusted as `settings` say; every call on it
/// times out after `settings.timeout`.
pub async fn connect(addr: &str, settings: &ClientSettings) -> Result<Channel, ClientError> {
    let endpoint = endpoint(addr, settings)?;
    tokio::time::timeout(settings.connect_timeout, endpoint.connect())
        .await
        .map_err(|_| ClientError::Timeout(settings.connect_timeout))?
        .map_err(|e| ClientError::Connect(chain(&e)))
}

/// The newest non-pre-release of `artifact` that ships its container-set YAMLs.
pub async fn latest_release(
    addr: &str,
    artifact: &str,
    settings: &ClientSettings,
) -> Result<Artifact, ClientError> {
    let call = async {
        let channel = connect(addr, settings).await?;
        let request = GetArtifactListRequest {
            artifact_name: artifact.to_owned(),
            artifact_type: ArtifactType::AtContainerSetYamls as i32,
            limit: 1,
            include_prereleases: false,
        };
        let set = ArtifactTrackerClient::new(channel)
            .get_artifact_list(request)
            .await
            .map_err(|status| ClientError::Rpc {
                call: "GetArtifactList",
                code: status.code(),
                message: status.message().to_owned(),
            })?
            .into_inner();
        set.artifact
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NoRelease(artifact.to_owned()))
    };
    tokio::time::timeout(settings.timeout, call)
        .await
        .map_err(|_| ClientError::Timeout(settings.timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_port_and_give_a_server_name() {
        assert_eq!(host_of("withpixie.ai:443"), Some("withpixie.ai"));
        assert_eq!(host_of("[fd00::1]:443"), Some("fd00::1"));
        assert_eq!(host_of("withpixie.ai"), None);
        assert_eq!(host_of(":443"), None);
        assert_eq!(host_of("a:b"), None);
        let settings = ClientSettings::new(Trust::Plaintext);
        assert!(matches!(
            endpoint("nope", &settings),
            Err(ClientError::Address(_))
        ));
        assert!(endpoint("localhost:1", &settings).is_ok());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_that_says_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = latest_release(&addr, "vizier", &ClientSettings::new(Trust::Plaintext))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Connect(m) if m.to_lowercase().contains("refused")),
            "{err}"
        );
    }
}
