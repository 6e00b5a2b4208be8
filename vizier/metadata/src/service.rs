//! The metadata service: reflectors keep every Pod and Service of the cluster in memory, and the
//! gRPC API (`px.vizier.metadata.v1.Metadata`) hands each node's PEM the pods scheduled to it.
//!
//! Pods deleted from the cluster stay listed, marked terminated, for a retention window
//! ([`MetadataConfig::retain_terminated`]): the rows their processes left in the PEMs (a crashed
//! pod's last requests) still resolve. A deletion is seen as the watch's `Delete` event, or as a pod
//! missing from a re-list (the watch was down when it went). With a file store the history and the
//! pods running are written (at most once per [`SAVE_DEBOUNCE`], and at
//! [`MetadataService::save_history`] or drop) and read back at start, so the history survives a
//! restart of the service, and pods deleted while it was down join it at the first list.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use pixie_engine::ServiceTls;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::history::TerminatedPods;
use crate::index::{PodIndex, PodInfo};
use crate::proto::metadata_server::{Metadata, MetadataServer};
use crate::proto::{self};
use crate::store::HistoryStore;

/// The metadata service's port in Pixie (`vizier-metadata`), and ours.
pub const DEFAULT_PORT: u16 = 50400;

/// How long a deleted pod stays listed by default.
pub const DEFAULT_RETAIN_TERMINATED: Duration = Duration::from_secs(24 * 3600);

/// A changed history is written this long after the change, so that a burst of deletions (a
/// rollout) is one write.
pub const SAVE_DEBOUNCE: Duration = Duration::from_secs(1);

/// After a failed write, the next try waits this long.
const SAVE_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// How long a deleted pod stays listed after it stopped.
    pub retain_terminated: Duration,
    /// Where the deleted pods are kept across restarts.
    pub store: HistoryStore,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            retain_terminated: DEFAULT_RETAIN_TERMINATED,
            store: HistoryStore::Memory,
        }
    }
}

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
    /// Pods deleted from the cluster, within their retention window.
    terminated: Mutex<TerminatedPods>,
    store: HistoryStore,
    /// The history or the running pods changed since the file was last written.
    unsaved: AtomicBool,
    /// Wakes the writer; outside `Shared` so that waiting does not keep the service alive.
    save_wanted: Arc<Notify>,
    /// One write at a time, each of the latest history.
    save_lock: Mutex<()>,
    /// The pods known when the current list began (at start, those running when the stored
    /// history was written): those it does not return were deleted meanwhile.
    before_list: Mutex<Option<Vec<PodInfo>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
        // The last changes, if the writer had not got to them (no await here: a small file).
        if let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
    }
}

impl Shared {
    /// Records `pods` as deleted, each with the Services selecting it now.
    fn record_gone<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) {
        self.record_gone_info(self.pod_infos(pods));
    }

    fn pod_infos<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<PodInfo> {
        let services = self.services.state();
        PodIndex::build(pods, services.iter().map(AsRef::as_ref)).into_pods()
    }

    fn record_gone_info(&self, gone: Vec<PodInfo>) {
        if gone.is_empty() {
            return;
        }
        let now = now_unix_ms();
        let mut changed = false;
        {
            let mut history = self.terminated.lock();
            for pod in gone {
                tracing::debug!(
                    pod = pod.qualified_name(),
                    uid = pod.uid,
                    "pod deleted; kept"
                );
                changed |= history.record(pod, now);
            }
        }
        if changed {
            self.history_changed();
        }
    }

    fn history_changed(&self) {
        self.unsaved.store(true, Ordering::Release);
        self.save_wanted.notify_one();
    }

    /// Writes the history if it changed since the last write.
    fn save(&self) -> Result<(), String> {
        let Some(path) = self.store.path() else {
            return Ok(());
        };
        let _one_writer = self.save_lock.lock();
        if !self.unsaved.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // While a list is under way (at start, before the first), the pods known before it are
        // still the last known ones.
        let running = match self.before_list.lock().clone() {
            Some(before) => before,
            None => self.pod_infos(self.pods.state().iter().map(AsRef::as_ref)),
        };
        let json = self.terminated.lock().to_json(running);
        self.store.save(&json).map_err(|e| {
            self.unsaved.store(true, Ordering::Release);
            format!("writing the terminated-pod history {}: {e}", path.display())
        })
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl std::fmt::Debug for MetadataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataService")
            .field("pods", &self.shared.pods.len())
            .field("services", &self.shared.services.len())
            .field("terminated_pods", &self.shared.terminated.lock().len())
            .field("generation", &self.generation())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl MetadataService {
    /// Starts watching Pods and Services in every namespace (on the current Tokio runtime), keeping
    /// deleted pods for a day in memory.
    pub fn watch(client: Client) -> Self {
        Self::watch_with(client, MetadataConfig::default())
    }

    /// As [`MetadataService::watch`], with `config`'s retention and store. The stored history is
    /// read first; an unreadable one is logged and ignored.
    pub fn watch_with(client: Client, config: MetadataConfig) -> Self {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (services, service_writer) = reflector::store::<Service>();
        let stored = config.store.load(config.retain_terminated, now_unix_ms());
        let shared = Arc::new(Shared {
            pods: pods.clone(),
            services: services.clone(),
            generation: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            last_error: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            terminated: Mutex::new(stored.terminated),
            store: config.store.clone(),
            unsaved: AtomicBool::new(false),
            save_wanted: Arc::new(Notify::new()),
            save_lock: Mutex::new(()),
            before_list: Mutex::new(Some(stored.running)),
        });
        let pod_events =
            reflector::reflector(pod_writer, slim_watch(Api::<Pod>::all(client.clone())));
        let service_events =
            reflector::reflector(service_writer, slim_watch(Api::<Service>::all(client)));
        // The tasks hold the state weakly, so that dropping the service ends them.
        let weak = Arc::downgrade(&shared);
        let mut tasks = vec![
            tokio::spawn(drive("pods", pod_events, weak.clone(), on_pod_event)),
            tokio::spawn(drive("services", service_events, weak.clone(), |_, _| {})),
            tokio::spawn(expire_history(
                weak.clone(),
                (config.retain_terminated / 10)
                    .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            )),
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
        if shared.store.path().is_some() {
            tasks.push(tokio::spawn(write_history(
                weak,
                shared.save_wanted.clone(),
            )));
        }
        *shared.tasks.lock() = tasks;
        MetadataService { shared }
    }

    /// Writes the terminated-pod history now if it changed (at shutdown); a no-op in memory.
    pub async fn save_history(&self) -> Result<(), String> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.save())
            .await
            .map_err(|e| format!("writing the terminated-pod history: {e}"))?
    }

    /// How many deleted pods are kept.
    pub fn terminated_pods(&self) -> usize {
        self.shared.terminated.lock().len()
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

    /// The pods on `node_name`, with their Services, and those deleted within the retention window;
    /// `None` until synced.
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
        let live = PodIndex::build(
            pods.iter().map(AsRef::as_ref),
            services.iter().map(AsRef::as_ref),
        )
        .into_pods();
        let live_uids: HashSet<&str> = live.iter().map(|p| p.uid.as_str()).collect();
        let gone: Vec<PodInfo> = self
            .shared
            .terminated
            .lock()
            .on_node(node_name, now_unix_ms())
            .filter(|p| !live_uids.contains(p.uid.as_str()))
            .cloned()
            .collect();
        // Live pods last: they win a (never expected) container ID clash.
        Some((
            PodIndex::from_pods(gone.into_iter().chain(live)),
            generation,
        ))
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

/// Follows `events` (already applied to the store), calling `on_event` with each before counting
/// it as a change.
async fn drive<K>(
    kind: &'static str,
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>>,
    shared: Weak<Shared>,
    on_event: fn(&Shared, &watcher::Event<K>),
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Ok(event) => {
                on_event(&shared, &event);
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

/// Keeps deleted pods: those of `Delete` events, and those a list no longer returns (deleted while
/// the watch was down, or at the first list, while the service was). With a file store, every
/// change of the pods is written (debounced), so the next start knows which pods were running.
fn on_pod_event(shared: &Shared, event: &watcher::Event<Pod>) {
    match event {
        watcher::Event::Delete(pod) => shared.record_gone([pod]),
        // The reflector swaps the store only at `InitDone`: here it still holds the pods before. A
        // list begun again before it finished, or the first one, keeps what was known before.
        watcher::Event::Init => {
            let mut before = shared.before_list.lock();
            if before.is_none() {
                *before = Some(shared.pod_infos(shared.pods.state().iter().map(AsRef::as_ref)));
            }
        }
        watcher::Event::InitDone => {
            let before = shared.before_list.lock().take();
            if let Some(before) = before {
                let gone = gone_after_list(before, &shared.pods.state());
                if !gone.is_empty() {
                    tracing::info!(pods = gone.len(), "pods deleted while unwatched; kept");
                }
                shared.record_gone_info(gone);
            }
        }
        watcher::Event::Apply(_) | watcher::Event::InitApply(_) => {}
    }
    if shared.store.path().is_some() {
        shared.history_changed();
    }
}

/// The pods of `before` (by UID) that `after` does not have.
fn gone_after_list(before: Vec<PodInfo>, after: &[Arc<Pod>]) -> Vec<PodInfo> {
    let after: HashSet<&str> = after
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    before
        .into_iter()
        .filter(|p| !after.contains(p.uid.as_str()))
        .collect()
}

/// Drops deleted pods past their window every `every`, bumping the generation so that PEMs fetch
/// the shorter list.
async fn expire_history(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let expired = shared.terminated.lock().expire(now_unix_ms());
        if expired > 0 {
            tracing::debug!(expired, "deleted pods past the retention window dropped");
            shared.generation.fetch_add(1, Ordering::AcqRel);
            shared.history_changed();
        }
    }
}

/// Writes the history [`SAVE_DEBOUNCE`] after each change; logs a failing disk once per outage
/// and retries.
async fn write_history(shared: Weak<Shared>, wanted: Arc<Notify>) {
    let mut failing = false;
    loop {
        wanted.notified().await;
        tokio::time::sleep(SAVE_DEBOUNCE).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let saved = tokio::task::spawn_blocking(move || strong.save()).await;
        match saved {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("terminated-pod history written again");
                    failing = false;
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!("{e}; retrying every {SAVE_RETRY:?}");
                    failing = true;
                }
                wanted.notify_one();
                tokio::time::sleep(SAVE_RETRY).await;
            }
            // The blocking pool is shutting down with the runtime.
            Err(_) => return,
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
            terminated_pods: self.terminated_pods() as u64,
        }))
    }
}

/// Serves the API on `listener` until `shutdown` completes.
/// Serves the API on `listener` until `shutdown` completes; with `tls`, only to clients holding a
/// certificate of the Vizier's CA (the PEMs).
pub async fn serve(
    listener: TcpListener,
    service: MetadataService,
    tls: Option<&ServiceTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    builder
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

    fn pod(uid: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": { "namespace": "ns", "name": format!("p-{uid}"), "uid": uid },
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pods_missing_from_a_relist_were_deleted() {
        let before = [pod("a"), pod("b"), pod("c")];
        let before = || PodIndex::build(before.iter().map(AsRef::as_ref), []).into_pods();
        // b was deleted while the watch was down; d is new; c was deleted and re-created under its
        // name (a new UID).
        let mut recreated = (*pod("c2")).clone();
        recreated.metadata.name = Some("p-c".into());
        let after = [pod("a"), pod("d"), Arc::new(recreated)];
        let mut gone: Vec<_> = gone_after_list(before(), &after)
            .into_iter()
            .map(|p| p.uid)
            .collect();
        gone.sort();
        assert_eq!(gone, ["b", "c"]);
        assert!(gone_after_list(Vec::new(), &after).is_empty());
        assert_eq!(gone_after_list(before(), &[]).len(), 3);
    }

    #[test]
    fn error_chain_names_the_root_cause_once() {
        let e = Outer(Inner(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        )));
        assert_eq!(error_chain(&e), "outer: inner detail: Connection refused");
    }
}
