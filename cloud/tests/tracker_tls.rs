//! The artifact tracker over real sockets: TLS with a private CA, what a client that does not
//! trust it sees, and plaintext.

use std::time::Duration;

use pixie_cloud::catalog;
use pixie_cloud::client::ClientError;
use pixie_cloud::{ClientSettings, ServerCert, Trust, Versions, latest_release, serve};
use tokio::sync::oneshot;

const RELEASES: &str = "
- version: 0.14.2
  timestamp: 2024-06-01T00:00:00Z
- version: 0.14.15
  timestamp: 2025-01-10T12:00:00Z
  changelog: the newest
- version: 0.15.0-rc1
  timestamp: 2025-02-01T00:00:00Z
";

/// The cloud's TLS: (CA PEM, server certificate for localhost).
fn private_ca() -> (String, ServerCert) {
    let pki = pixie_tests::private_ca(&["localhost"]);
    (pki.ca_pem, ServerCert { cert_pem: pki.cert_pem.into_bytes(), key_pem: pki.key_pem.into_bytes() })
}

struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(cert: Option<ServerCert>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
    let versions = Versions::new(catalog::parse(RELEASES).unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, versions, cert, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_client_trusting_the_private_ca_gets_the_latest_stable_release() {
    let (ca, cert) = private_ca();
    let tracker = start(Some(cert)).await;
    let latest = latest_release(
        &tracker.addr,
        "vizier",
        &ClientSettings::new(Trust::Ca(ca.into_bytes())),
    )
    .await
    .unwrap();
    assert_eq!(latest.version_str, "0.14.15");
    assert_eq!(latest.changelog, "the newest");

    // The system roots do not know the private CA.
    let err = latest_release(
        &tracker.addr,
        "vizier",
        &ClientSettings::new(Trust::SystemRoots),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Connect(m) if m.to_lowercase().contains("certificate")),
        "{err}"
    );
    // Plaintext against TLS fails too.
    assert!(
        latest_release(
            &tracker.addr,
            "vizier",
            &ClientSettings::new(Trust::Plaintext)
        )
        .await
        .is_err()
    );
    tracker.stop().await;
}

#[tokio::test]
async fn plaintext_serves_plaintext_clients_and_unknown_artifacts_are_not_found() {
    let tracker = start(None).await;
    let settings = ClientSettings::new(Trust::Plaintext);
    assert_eq!(
        latest_release(&tracker.addr, "vizier", &settings)
            .await
            .unwrap()
            .version_str,
        "0.14.15"
    );
    let err = latest_release(&tracker.addr, "operator", &settings)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Rpc { code: tonic::Code::NotFound, message, .. } if message.contains("operator")),
        "{err}"
    );
    tracker.stop().await;
}
