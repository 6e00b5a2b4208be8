//! The gRPC channel to an OTLP receiver: the endpoint parsed, and TLS done by our own rustls
//! connector (aws-lc-rs, like the rest of the workspace) because tonic's TLS settings cannot
//! skip verification, which `insecureSkipVerify` asks for.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::sink::{SinkConfigError, TlsMode};

/// Where to connect, from `host:port` or an `http://` / `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
}

pub(crate) fn parse_endpoint(endpoint: &str, tls: &TlsMode) -> Result<Target, SinkConfigError> {
    let bad = |why: String| SinkConfigError::Endpoint {
        endpoint: endpoint.to_owned(),
        problem: why,
    };
    let trimmed = endpoint.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!(
            "{}://{trimmed}",
            if tls.is_plaintext() { "http" } else { "https" }
        )
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| bad(format!("not host:port or a URL ({e})")))?;
    match (uri.scheme_str(), tls.is_plaintext()) {
        (Some("http"), true) | (Some("https"), false) => {}
        (Some("http"), false) => {
            return Err(bad(
                "http:// sends plaintext; set tls.insecure to use it, or use https://".into(),
            ));
        }
        (Some("https"), true) => {
            return Err(bad("https:// asks for TLS but tls.insecure is set".into()));
        }
        (other, _) => {
            return Err(bad(format!(
                "scheme {} is not supported; use host:port",
                other.unwrap_or("")
            )));
        }
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(bad("a gRPC endpoint has no path; use host:port".into()));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?;
    let port = uri
        .port_u16()
        .ok_or_else(|| bad("no port: write host:port, such as collector:4317".into()))?;
    // IPv6 literals come back bracketed from the URI; the socket wants them bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Target { host, port })
}

/// A channel that connects on first use and reconnects after failures by itself.
pub(crate) fn lazy_channel(
    target: &Target,
    tls: &TlsMode,
    timeout: Duration,
) -> Result<Channel, SinkConfigError> {
    // Always http:// to tonic: with TLS our own connector does the handshake, and tonic (when another
    // crate turns on its TLS features) refuses an https:// URI it has no TLS config for.
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let endpoint = Endpoint::from_shared(format!("http://{host}:{}", target.port))
        .map_err(|e| SinkConfigError::Endpoint {
            endpoint: format!("{host}:{}", target.port),
            problem: e.to_string(),
        })?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    match tls {
        TlsMode::Insecure => Ok(endpoint.connect_lazy()),
        TlsMode::Tls {
            ca_pem,
            server_name,
            insecure_skip_verify,
        } => {
            let config = client_config(ca_pem.as_deref(), *insecure_skip_verify)?;
            let name = server_name.clone().unwrap_or_else(|| target.host.clone());
            let server_name = ServerName::try_from(name.clone()).map_err(|_| {
                SinkConfigError::Tls(format!(
                    "serverName {name:?} is not a DNS name or an IP address"
                ))
            })?;
            let connector = TlsConnector::from(Arc::new(config));
            let address = (target.host.clone(), target.port);
            // tonic hands us the URI; we already know where to go and which name to verify.
            let connect = tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                let server_name = server_name.clone();
                let address = address.clone();
                async move {
                    let tcp = TcpStream::connect(address).await?;
                    tcp.set_nodelay(true)?;
                    let tls = connector.connect(server_name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            });
            Ok(endpoint.connect_with_connector_lazy(connect))
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn client_config(
    ca_pem: Option<&str>,
    insecure_skip_verify: bool,
) -> Result<ClientConfig, SinkConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkConfigError::Tls(e.to_string()))?;
    let mut config = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(root_store(ca_pem)?)
            .with_no_client_auth()
    };
    // gRPC is HTTP/2 only, and receivers such as the Go collector insist on ALPN saying so.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The CA certificates of `ca_pem`, or the system's roots when there is none.
fn root_store(ca_pem: Option<&str>) -> Result<RootCertStore, SinkConfigError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SinkConfigError::Tls(format!("CA PEM: {e}")))?;
            if certs.is_empty() {
                return Err(SinkConfigError::Tls(
                    "CA PEM: no CERTIFICATE block found".into(),
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| SinkConfigError::Tls(format!("CA PEM: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(SinkConfigError::Tls(format!(
                    "no system root certificates found ({} errors); give a CA PEM",
                    found.errors.len()
                )));
            }
        }
    }
    Ok(roots)
}

/// insecureSkipVerify: any certificate is accepted, but the handshake signatures are still
/// checked so that the connection is at least encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsMode {
        TlsMode::Tls {
            ca_pem: None,
            server_name: None,
            insecure_skip_verify: false,
        }
    }

    #[test]
    fn endpoints_are_host_port_or_matching_urls() {
        let t = |host: &str, port| Target {
            host: host.into(),
            port,
        };
        assert_eq!(
            parse_endpoint("otel.observability.svc:4317", &tls()).unwrap(),
            t("otel.observability.svc", 4317)
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4317", &TlsMode::Insecure).unwrap(),
            t("127.0.0.1", 4317)
        );
        assert_eq!(
            parse_endpoint("https://otel:443/", &tls()).unwrap(),
            t("otel", 443)
        );
        assert_eq!(
            parse_endpoint("[::1]:4317", &TlsMode::Insecure).unwrap(),
            t("::1", 4317)
        );
    }

    #[test]
    fn endpoints_that_contradict_tls_or_lack_a_port_are_refused() {
        let err = parse_endpoint("http://otel:4317", &tls())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.insecure"), "{err}");
        let err = parse_endpoint("https://otel:4317", &TlsMode::Insecure)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.insecure"), "{err}");
        let err = parse_endpoint("otel", &tls()).unwrap_err().to_string();
        assert!(err.contains("no port"), "{err}");
        let err = parse_endpoint("otel:4317/v1/metrics", &tls())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no path"), "{err}");
    }

    #[test]
    fn a_ca_pem_without_certificates_is_refused() {
        let err = client_config(Some("not a pem"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
