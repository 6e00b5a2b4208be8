//! The artifact tracker service: `GetArtifactList` over the current [`Catalog`], the versions file
//! it follows (reloaded on SIGHUP or when its content changes), and the gRPC server, with TLS
//! when given a certificate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::catalog::{self, Catalog, CatalogError, Query, QueryError};
use crate::proto::artifact_tracker_server::{ArtifactTracker, ArtifactTrackerServer};
use crate::proto::{ArtifactSet, GetArtifactListRequest};
use crate::registry::RegistryService;

/// The catalog being served. Cheap to clone; every clone sees a reload.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    current: Arc<RwLock<Arc<Catalog>>>,
}

impl Versions {
    pub fn new(catalog: Catalog) -> Self {
        Versions {
            current: Arc::new(RwLock::new(Arc::new(catalog))),
        }
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.current.read().expect("not poisoned").clone()
    }

    pub fn replace(&self, catalog: Catalog) {
        *self.current.write().expect("not poisoned") = Arc::new(catalog);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // `error`, not `source`: the message already carries it, and anyhow would print it twice.
    #[error("reading the versions file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the versions file {path}: {error}")]
    Invalid { path: PathBuf, error: CatalogError },
}

/// Reads and checks a versions file; the text is returned too, to notice later changes.
pub fn load(path: &Path) -> Result<(Catalog, String), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_owned(),
        error,
    })?;
    let catalog = catalog::parse(&text).map_err(|error| LoadError::Invalid {
        path: path.to_owned(),
        error,
    })?;
    Ok((catalog, text))
}

/// Keeps `versions` in step with the file at `path` until `shutdown`: it is re-read on SIGHUP and
/// every `poll`, and swapped in when its text changed. A file that no longer parses is logged and
/// the last good catalog stays in service. `loaded` is the text `versions` was built from.
pub async fn follow(
    path: PathBuf,
    versions: Versions,
    mut loaded: String,
    poll: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler; the versions file is still polled");
            None
        }
    };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let forced = tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => true,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the versions file; still serving the last one");
                continue;
            }
        };
        if text == loaded && !forced {
            continue;
        }
        match catalog::parse(&text) {
            Ok(catalog) => {
                tracing::info!(path = %path.display(), releases = %catalog, sighup = forced, "versions reloaded");
                versions.replace(catalog);
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "the versions file is invalid; still serving the last good one");
            }
        }
        // Remembered even when invalid, so one bad edit is logged once, not every poll.
        loaded = text;
    }
}

/// The gRPC service.
#[derive(Clone, Debug)]
pub struct TrackerService {
    versions: Versions,
}

impl TrackerService {
    pub fn new(versions: Versions) -> Self {
        TrackerService { versions }
    }

    pub fn into_server(self) -> ArtifactTrackerServer<TrackerService> {
        ArtifactTrackerServer::new(self)
    }
}

#[tonic::async_trait]
impl ArtifactTracker for TrackerService {
    async fn get_artifact_list(
        &self,
        request: Request<GetArtifactListRequest>,
    ) -> Result<Response<ArtifactSet>, Status> {
        let query = Query::from_request(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let catalog = self.versions.current();
        let releases = catalog.list(&query).map_err(|e| match e {
            QueryError::UnknownArtifact { .. } => Status::not_found(e.to_string()),
            other => Status::invalid_argument(other.to_string()),
        })?;
        tracing::debug!(name = %query.name, ?query.artifact_type, limit = ?query.limit, found = releases.len(), "GetArtifactList");
        Ok(Response::new(ArtifactSet {
            name: query.name,
            artifact: releases.iter().map(|r| r.to_proto()).collect(),
        }))
    }
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct ServerCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Serves the tracker on `listener` until `shutdown`: TLS with `cert`, plaintext without.
pub async fn serve(
    listener: TcpListener,
    versions: Versions,
    cert: Option<ServerCert>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_cloud(listener, versions, None, cert, shutdown).await
}

/// Serves the tracker and, when given, the Vizier registry on one `listener` until `shutdown`:
/// TLS with `cert`, plaintext without.
pub async fn serve_cloud(
    listener: TcpListener,
    versions: Versions,
    registry: Option<RegistryService>,
    cert: Option<ServerCert>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(cert) = cert {
        builder = builder.tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(cert.cert_pem, cert.key_pem)),
        )?;
    }
    builder
        .add_service(TrackerService::new(versions).into_server())
        .add_optional_service(registry.map(RegistryService::into_server))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ArtifactType;

    const TWO: &str = "- version: 0.14.15\n  timestamp: 2025-01-10T12:00:00Z\n- version: 0.14.2\n  timestamp: 2024-01-10T12:00:00Z\n";

    fn request(limit: i64) -> Request<GetArtifactListRequest> {
        Request::new(GetArtifactListRequest {
            artifact_name: "vizier".into(),
            artifact_type: ArtifactType::AtContainerSetYamls as i32,
            limit,
            include_prereleases: false,
        })
    }

    #[tokio::test]
    async fn the_service_answers_from_the_current_catalog() {
        let versions = Versions::new(catalog::parse(TWO).unwrap());
        let service = TrackerService::new(versions.clone());
        let set = service
            .get_artifact_list(request(1))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(set.name, "vizier");
        assert_eq!(
            set.artifact
                .iter()
                .map(|a| a.version_str.as_str())
                .collect::<Vec<_>>(),
            ["0.14.15"]
        );

        versions.replace(Catalog::default());
        let status = service.get_artifact_list(request(1)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = service.get_artifact_list(request(-3)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("limit"), "{}", status.message());
    }

    #[tokio::test]
    async fn the_file_is_followed_and_a_bad_edit_keeps_the_last_good_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("versions.yaml");
        std::fs::write(&path, TWO).unwrap();
        let (catalog, text) = load(&path).unwrap();
        let versions = Versions::new(catalog);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follow(
            path.clone(),
            versions.clone(),
            text,
            Duration::from_millis(20),
            async {
                let _ = stopped.await;
            },
        ));
        let newest = |v: &Versions| {
            let catalog = v.current();
            let query = Query {
                name: "vizier".into(),
                artifact_type: None,
                limit: Some(1),
                include_prereleases: false,
            };
            catalog
                .list(&query)
                .ok()
                .and_then(|r| r.first().map(|r| r.version.to_string()))
        };
        let wait_for = |want: &'static str| {
            let versions = versions.clone();
            async move {
                for _ in 0..250 {
                    if newest(&versions).as_deref() == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("never saw {want}; saw {:?}", newest(&versions));
            }
        };
        std::fs::write(
            &path,
            format!("{TWO}- version: 0.15.0\n  timestamp: 2025-06-01T00:00:00Z\n"),
        )
        .unwrap();
        wait_for("0.15.0").await;
        std::fs::write(&path, "- version: nonsense\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(newest(&versions).as_deref(), Some("0.15.0"));
        std::fs::write(&path, TWO).unwrap();
        wait_for("0.14.15").await;
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn load_names_the_file() {
        let err = load(Path::new("/nonexistent/versions.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/versions.yaml"),
            "{err}"
        );
    }
}
