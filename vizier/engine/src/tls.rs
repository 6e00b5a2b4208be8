//! Mutual TLS between Vizier components. The operator generates one CA per Vizier and a server and
//! a client certificate signed by it (the `service-tls-certs` Secret), and mounts the Secret as a
//! directory in every pod. Servers require a client certificate from that CA, and clients only trust
//! servers whose certificate that CA signed: a pod of another namespace, or anything else in the
//! cluster network, can neither query the PEMs nor pose as Kelvin.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The files of the mounted Secret.
pub const CA_FILE: &str = "ca.crt";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const CLIENT_CERT_FILE: &str = "client.crt";
pub const CLIENT_KEY_FILE: &str = "client.key";

/// The name clients verify a server by when they reach it by IP address (PEMs found through their
/// headless Service, tests on 127.0.0.1): every Vizier server certificate carries it.
pub const NAME_FOR_IP_ADDRESSES: &str = "localhost";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// What a client of the Vizier's components needs: the CA to trust and the client certificate.
#[derive(Clone)]
pub struct ClientTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Reads `ca.crt`, `client.crt` and `client.key` from `dir` (what `kubectl pixie run` needs).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(ClientTls {
            ca: Certificate::from_pem(certificate(dir, CA_FILE)?),
            identity: Identity::from_pem(
                certificate(dir, CLIENT_CERT_FILE)?,
                key(dir, CLIENT_KEY_FILE)?,
            ),
        })
    }

    /// Connects to `host` with the client certificate, trusting only servers of the CA and checking
    /// the server's name (`host`, or [`NAME_FOR_IP_ADDRESSES`] for an IP address).
    pub fn config(&self, host: &str) -> ClientTlsConfig {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = if bare.parse::<std::net::IpAddr>().is_ok() {
            NAME_FOR_IP_ADDRESSES
        } else {
            bare
        };
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(name)
    }
}

/// What a component needs: the client side, and the server certificate for the API it serves.
#[derive(Clone)]
pub struct ServiceTls {
    client: ClientTls,
    server: Identity,
}

impl std::fmt::Debug for ServiceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceTls")
    }
}

impl ServiceTls {
    /// Reads `ca.crt`, `server.crt`/`server.key` and `client.crt`/`client.key` from `dir`, checking
    /// that each holds what its name says, so that a wrong mount fails at start and names the file.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        Ok(ServiceTls {
            client: ClientTls::load(dir)?,
            server: Identity::from_pem(
                certificate(dir, SERVER_CERT_FILE)?,
                key(dir, SERVER_KEY_FILE)?,
            ),
        })
    }

    /// Serves with the server certificate and admits only clients with a certificate of the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.server.clone())
            .client_ca_root(self.client.ca.clone())
    }

    pub fn client(&self) -> &ClientTls {
        &self.client
    }
}

fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), TlsError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(source) => Err(TlsError::Read { path, source }),
    }
}

fn certificate(dir: &Path, name: &str) -> Result<Vec<u8>, TlsError> {
    let (path, pem) = read(dir, name)?;
    let problem = match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(_)) => return Ok(pem),
        Some(Err(e)) => format!("not a PEM certificate: {e}"),
        None => "no CERTIFICATE block".into(),
    };
    Err(TlsError::Invalid { path, problem })
}

fn key(dir: &Path, name: &str) -> Result<Vec<u8>, TlsError> {
    let (path, pem) = read(dir, name)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(e) => Err(TlsError::Invalid {
            path,
            problem: format!("no PEM private key: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = ServiceTls::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.crt"), "{err}");

        std::fs::write(dir.path().join(CA_FILE), "not a certificate").unwrap();
        let err = ServiceTls::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("ca.crt") && err.contains("no CERTIFICATE"),
            "{err}"
        );
    }
}
