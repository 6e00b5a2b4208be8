//! The metadata service: reflectors keep every Pod and Service of the cluster in memory, and the
//! gRPC API (`px.vizier.metadata.v1.Metadata`) hands each node's PEM the pods scheduled to it.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::index::PodIndex;
use crate::proto::metadata_server::{Metadata, MetadataServer};
use crate::proto::{self};

/// The metadata service's port in Pixie (`vizier-metadata`), and ours.
pub const DEFAULT_PORT: u16 = 50400;

/// A running watch of the cluster's Pods and Services. Clones share it; the watches stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct MetadataService {
    shared: Arc<Shared>,
}

struct Shared {
    pods: Store<Pod>,
    services: Store<Service>,
    /// Bumped on every Pod or Service event, so that a caller can tell whether anything changed.
    generation: AtomicU64,
    synced: AtomicBool,
    /// The last watch failure, for `Health` to explain why the service is not ready.
    last_error: Mutex<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for MetadataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataService")
            .field("pods", &self.shared.pods.len())
            .field("services", &self.shared.services.len())
            .field("generation", &self.generation())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl MetadataService {
    /// Starts watching Pods and Services in every namespace (on the current Tokio runtime).
    pub fn watch(client: Client) -> Self {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (services, service_writer) = reflector::store::<Service>();
        let shared = Arc::new(Shared {
            pods: pods.clone(),
            services: services.clone(),
            generation: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            last_error: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let pod_events =
            reflector::reflector(pod_writer, slim_watch(Api::<Pod>::all(client.clone())));
        let service_events =
            reflector::reflector(service_writer, slim_watch(Api::<Service>::all(client)));
        // The tasks hold the state weakly, so that dropping the service ends them.
        let tasks = vec![
            tokio::spawn(drive("pods", pod_events, Arc::downgrade(&shared))),
            tokio::spawn(drive("services", service_events, Arc::downgrade(&shared))),
            tokio::spawn({
                let weak = Arc::downgrade(&shared);
                async move {
                    // Errors only when a writer is dropped, i.e. the service is going away.
                    if pods.wait_until_ready().await.is_ok()
                        && services.wait_until_ready().await.is_ok()
                        && let Some(shared) = weak.upgrade()
                    {
                        shared.synced.store(true, Ordering::Release);
                        tracing::info!(
                            pods = pods.len(),
                            services = services.len(),
                            "metadata synced"
                        );
                    }
                }
            }),
        ];
        *shared.tasks.lock() = tasks;
        MetadataService { shared }
    }

    /// True once the initial lists of Pods and Services are in.
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Why the service is not ready: `None` once synced.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_synced() {
            return None;
        }
        Some(match self.shared.last_error.lock().as_deref() {
            Some(error) => format!("the initial list of Pods and Services is not in: {error}"),
            None => "the initial list of Pods and Services is not in yet".to_owned(),
        })
    }

    /// The pods on `node_name`, with their Services; `None` until synced.
    pub fn pods_on_node(&self, node_name: &str) -> Option<(PodIndex, u64)> {
        if !self.is_synced() {
            return None;
        }
        // Read the generation first: a change racing the read then shows as a newer generation
        // next time rather than being missed.
        let generation = self.generation();
        let pods = self.shared.pods.state_filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name)
        });
        let services = self.shared.services.state();
        let index = PodIndex::build(
            pods.iter().map(AsRef::as_ref),
            services.iter().map(AsRef::as_ref),
        );
        Some((index, generation))
    }

    pub fn into_server(self) -> MetadataServer<Self> {
        MetadataServer::new(self)
    }
}

/// Watches `api` with backoff, dropping managed fields, which are about half of each object and
/// never read here.
fn slim_watch<K>(api: Api<K>) -> impl Stream<Item = watcher::Result<watcher::Event<K>>>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
}

async fn drive<K>(
    kind: &'static str,
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>>,
    shared: std::sync::Weak<Shared>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Ok(_) => {
                shared.generation.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                let error = format!("watching {kind}: {}", error_chain(&e));
                tracing::warn!("{error}");
                *shared.last_error.lock() = Some(error);
            }
        }
    }
}

/// `e` and its sources: kube's own message ("failed to perform initial object list: ServiceError:
/// client error (Connect)") hides the cause ("Connection refused") in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[tonic::async_trait]
impl Metadata for MetadataService {
    async fn list_pods(
        &self,
        request: Request<proto::ListPodsRequest>,
    ) -> Result<Response<proto::ListPodsResponse>, Status> {
        let node_name = request.into_inner().node_name;
        if node_name.is_empty() {
            return Err(Status::invalid_argument("node_name: must name a node"));
        }
        let Some((index, generation)) = self.pods_on_node(&node_name) else {
            return Err(Status::unavailable(
                self.not_ready_reason().unwrap_or_default(),
            ));
        };
        let pods = index.pods().iter().cloned().map(proto::Pod::from).collect();
        Ok(Response::new(proto::ListPodsResponse { pods, generation }))
    }

    async fn health(
        &self,
        _: Request<proto::HealthRequest>,
    ) -> Result<Response<proto::HealthResponse>, Status> {
        if let Some(reason) = self.not_ready_reason() {
            return Err(Status::unavailable(reason));
        }
        Ok(Response::new(proto::HealthResponse {
            pods: self.shared.pods.len() as u64,
            services: self.shared.services.len() as u64,
            generation: self.generation(),
        }))
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    service: MetadataService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner detail")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner detail")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn error_chain_names_the_root_cause_once() {
        let e = Outer(Inner(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        )));
        assert_eq!(error_chain(&e), "outer: inner detail: Connection refused");
    }
}
