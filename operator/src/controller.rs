//! The Vizier controller: a [`Context`], a free [`reconcile`] that goes through `finalizer()` to
//! [`apply`] or [`cleanup`], and an [`error_policy`] that waits for a change after an invalid spec
//! and backs off after anything else. [`run`] wires it to the watches, the probes and metrics
//! server, leader election and shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use pixie_crds::Vizier;
use serde::de::DeserializeOwned;
use tracing::{Instrument, field, info_span, warn};

use crate::error::Error;
use crate::http::Health;
use crate::leader::{self, LeaderSettings};
use crate::metrics::{Metrics, ReasonLabels};
use crate::observe::{self, Facts};
use crate::render::common::{ANNOTATION_VIZIER, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY, cluster_selector};
use crate::status::{self, Assessment};
use crate::validate::{self, Outcome};
use crate::version::{self, CloudSettings, LatestVersions};
use pixie_cloud::Trust;
use crate::{FINALIZER, apply, fetch, render, secrets};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch Viziers in this namespace only; all namespaces when None.
    pub namespace: Option<String>,
    /// Registry of the Vizier images when `spec.registry` is not set.
    pub default_registry: String,
    /// Re-check every Vizier this often even when nothing changed (Pixie's monitor polls too).
    pub resync: Duration,
    /// The version deployed when `spec.version` is empty and no cloud is configured.
    pub operator_version: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen; no server when None.
    pub metrics_addr: Option<SocketAddr>,
    /// Compete for a Lease before reconciling; reconcile right away when None.
    pub leader: Option<LeaderSettings>,
    /// Name of this replica in Events (the pod name).
    pub instance: Option<String>,
    /// How clouds' artifact trackers are reached for the latest version, and how long it is cached.
    pub cloud: CloudSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            default_registry: render::common::DEFAULT_REGISTRY.to_owned(),
            resync: Duration::from_secs(60),
            operator_version: crate::OPERATOR_VERSION.to_owned(),
            metrics_addr: None,
            leader: None,
            instance: None,
            cloud: CloudSettings::default(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Consecutive failures per Vizier, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The artifact trackers' latest versions, cached per address.
    latest_versions: LatestVersions,
}

fn key(vizier: &Vizier) -> String {
    format!("{}/{}", vizier.namespace().unwrap_or_default(), vizier.name_any())
}

/// Reconciles one Vizier: adds the finalizer first, then applies, or cleans up once deleted.
pub async fn reconcile(vizier: Arc<Vizier>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", vizier = %key(&vizier), generation = vizier.metadata.generation, outcome = field::Empty);
    async move {
        ctx.metrics.reconciles.inc();
        let started = Instant::now();
        let api: Api<Vizier> = Api::namespaced(ctx.client.clone(), &vizier.namespace().unwrap_or_default());
        let result = finalizer(&api, FINALIZER, vizier.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(vizier) => apply(&vizier, &ctx).await,
                FinalizerEvent::Cleanup(vizier) => cleanup(&vizier, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            // Keep the invalid-spec error visible to the error policy as it is.
            kube::runtime::finalizer::Error::ApplyFailed(inner @ Error::InvalidSpec(_)) => inner,
            other => Error::Finalizer(Box::new(other)),
        });
        ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
        tracing::Span::current().record("outcome", if result.is_ok() { "ok" } else { "error" });
        if result.is_ok() {
            ctx.failures.lock().expect("not poisoned").remove(&key(&vizier));
        }
        result
    }
    .instrument(span)
    .await
}

/// fetch → validate → render → apply → observe → status.
pub async fn apply(vizier: &Vizier, ctx: &Context) -> Result<Action, Error> {
    let namespace = vizier.namespace().unwrap_or_default();
    let viziers: Api<Vizier> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = fetch::fetch(&ctx.client, vizier).await?;

    let settings = &ctx.settings;
    let cloud = match version::tracker_to_ask(&vizier.spec, vizier.status.as_ref()) {
        Some(addr) => Some(ctx.latest_versions.lookup(&addr, &settings.cloud).await),
        None => None,
    };
    // Only a connector needs it; a CA file that cannot be read stops the Vizier until it can.
    let cloud_trust = match vizier.spec.cloud_addr.as_deref().filter(|a| !a.is_empty()) {
        Some(_) => match settings.cloud.trust() {
            Ok(trust) => trust,
            Err(message) => {
                status::write(&viziers, &ctx.recorder, vizier, &Assessment::failed("CloudTrustUnavailable", &message))
                    .await?;
                return Err(Error::CloudTrust(message));
            }
        },
        None => Trust::SystemRoots,
    };
    let outcome = validate::validate_with_cloud(
        vizier,
        live.facts,
        &settings.default_registry,
        &settings.operator_version,
        cloud.as_ref(),
        cloud_trust,
    );
    let (mut inputs, version_note) = match outcome {
        Err(message) => {
            status::write(&viziers, &ctx.recorder, vizier, &Assessment::failed("InvalidSpec", &message)).await?;
            return Err(Error::InvalidSpec(message));
        }
        Ok(Outcome::VersionUnavailable(message)) => {
            let assessment = Assessment::failed("ArtifactTrackerUnavailable", &message);
            status::write(&viziers, &ctx.recorder, vizier, &assessment).await?;
            // Transient: the error policy retries with backoff.
            return Err(Error::VersionUnavailable(message));
        }
        Ok(Outcome::Deploy { inputs, backend_reason, version_source, version_note }) => {
            tracing::debug!(version = %inputs.version, version_source, backend = ?inputs.backend, backend_reason, "validated");
            (inputs, version_note)
        }
    };
    let secrets = secrets::ensure(&Api::namespaced(ctx.client.clone(), &namespace), &inputs, Timestamp::now()).await?;
    if secrets.renewed {
        status::announce(&ctx.recorder, vizier, "CertificatesRenewed", &format!(
            "the service certificates were renewed; they now expire at {}; the pods roll onto them",
            secrets.tls_not_after.map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
        ))
        .await;
    }
    inputs.tls_not_after = secrets.tls_not_after;
    let rendered = match render::render(&inputs) {
        Ok(rendered) => rendered,
        Err(message) => {
            status::write(&viziers, &ctx.recorder, vizier, &Assessment::failed("InvalidSpec", &message)).await?;
            return Err(Error::InvalidSpec(message));
        }
    };

    let applied = match apply::apply_all(&ctx.client, &namespace, &rendered.objects, &live).await {
        Ok(applied) => applied,
        Err(error) if error.is_permanent() => {
            let assessment = Assessment::failed("ApplyFailed", &error.to_string());
            status::write(&viziers, &ctx.recorder, vizier, &assessment).await?;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    apply::prune(&ctx.client, &namespace, &inputs.uid, &rendered.objects, &live).await?;

    let observation = observe::observe(&Facts {
        inputs: &inputs,
        objects: &applied.objects,
        pods: &live.pods,
        nodes: &live.nodes,
        tls_not_after: secrets.tls_not_after,
        deploy_key_secret_ok: live.deploy_key_secret_ok,
        cluster_registered: secrets.cluster_registered,
        now: Timestamp::now(),
    });
    let notes: Vec<String> = rendered
        .unknown_patch_targets
        .iter()
        .map(|t| format!("spec.patches[{t}] matches no object and is ignored"))
        .chain(version_note)
        .collect();
    let assessment =
        Assessment::deployed(&inputs.version, &status::spec_checksum(vizier), vizier.status.as_ref(), &observation, &notes);
    status::write(&viziers, &ctx.recorder, vizier, &assessment).await?;
    Ok(Action::requeue(settings.resync))
}

/// Deletes what owner references cannot: the Vizier's ClusterRoles and ClusterRoleBindings.
/// Everything namespaced is owned by the Vizier and garbage-collected after it.
pub async fn cleanup(vizier: &Vizier, ctx: &Context) -> Result<Action, Error> {
    let selector = cluster_selector(&vizier.uid().unwrap_or_default());
    let params = ListParams::default().labels(&selector);
    Api::<ClusterRoleBinding>::all(ctx.client.clone())
        .delete_collection(&DeleteParams::default(), &params)
        .await
        .map_err(Error::Cleanup)?;
    Api::<ClusterRole>::all(ctx.client.clone())
        .delete_collection(&DeleteParams::default(), &params)
        .await
        .map_err(Error::Cleanup)?;
    tracing::info!("deleted cluster-scoped objects");
    Ok(Action::await_change())
}

/// Longest wait between retries of a failing Vizier.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// An invalid spec waits for the user (its condition already says what is wrong); anything else
/// is retried with exponential backoff: 1 s, 2 s, 4 s ... up to five minutes.
pub fn error_policy(vizier: Arc<Vizier>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.get_or_create(&ReasonLabels { reason: error.metric_label() }).inc();
    if error.is_permanent() {
        warn!(vizier = %key(&vizier), %error, "not retrying until the Vizier changes");
        return Action::await_change();
    }
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let attempt = failures.entry(key(&vizier)).or_insert(0);
    *attempt += 1;
    let delay = backoff(*attempt);
    warn!(vizier = %key(&vizier), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(9)).min(MAX_BACKOFF)
}

pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Maps a cluster-scoped object back to its Vizier through its `px.dev/vizier` annotation.
fn vizier_of_cluster_object<K: Resource>(object: K) -> Option<ObjectRef<Vizier>> {
    let (namespace, name) = object.meta().annotations.as_ref()?.get(ANNOTATION_VIZIER)?.split_once('/')?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Runs the controller until `shutdown` resolves or (with leader election) the lease is lost.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.shared();
    let health = Arc::new(Health::default());
    let server = match settings.metrics_addr {
        Some(addr) => {
            let (bound, bound_rx) = tokio::sync::oneshot::channel();
            let server = tokio::spawn(crate::http::serve(addr, metrics.clone(), health.clone(), bound, shutdown.clone()));
            if let Ok(addr) = bound_rx.await {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            }
            Some(server)
        }
        None => None,
    };

    let mut lease = match &settings.leader {
        Some(leader_settings) => {
            let mut receiver = leader::campaign(client.clone(), leader_settings).await?;
            health.ready.store(true, Ordering::Relaxed);
            tracing::info!(lease = %leader_settings.lease_name, identity = %leader_settings.identity, "waiting for the lease");
            tokio::select! {
                _ = leader::wait_for(&mut receiver, true) => {}
                _ = shutdown.clone() => return Ok(()),
            }
            tracing::info!("leading");
            metrics.leader.set(1);
            Some(receiver)
        }
        None => None,
    };
    let lost = {
        let mut lease = lease.clone();
        async move {
            match lease.as_mut() {
                Some(receiver) => leader::wait_for(receiver, false).await,
                None => std::future::pending().await,
            }
        }
        .shared()
    };

    let result = run_controller(client, settings, metrics.clone(), health, futures::future::select(shutdown.clone(), lost.clone()).map(|_| ())).await;
    metrics.leader.set(0);
    let lost_lease = lost.peek().is_some();
    // Dropping the receiver releases the lease for the next replica.
    lease.take();
    if let Some(server) = server {
        server.abort();
    }
    result?;
    if lost_lease { Err(Error::LostLeadership) } else { Ok(()) }
}

async fn run_controller(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let ns = settings.namespace.clone();
    let ns = ns.as_deref();
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let controller = Controller::new(scoped::<Vizier>(&client, ns), watcher::Config::default());
    let store = controller.store();
    // PxlScripts, CronScripts, DataExports and Plugins run beside the Viziers, stopping with them.
    let shutdown = shutdown.shared();
    let scripts = crate::scripts::run(
        client.clone(),
        settings.namespace.clone(),
        store.clone(),
        metrics.clone(),
        settings.instance.clone(),
        shutdown.clone(),
    );
    let reporter = Reporter { controller: "pixie-operator".into(), instance: settings.instance.clone() };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        settings,
        failures: Mutex::default(),
        latest_versions: LatestVersions::default(),
    });

    let ready_store = store.clone();
    let ready_health = health.clone();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready_health.ready.store(true, Ordering::Relaxed);
        }
    });
    let all_viziers = store.clone();
    let viziers = controller
        .owns(scoped::<Deployment>(&client, ns), owned.clone())
        .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
        .owns(scoped::<DaemonSet>(&client, ns), owned.clone())
        .owns(scoped::<Service>(&client, ns), owned.clone())
        .owns(scoped::<ConfigMap>(&client, ns), owned.clone())
        .owns(scoped::<Secret>(&client, ns), owned.clone())
        .owns(scoped::<ServiceAccount>(&client, ns), owned.clone())
        .owns(scoped::<Role>(&client, ns), owned.clone())
        .owns(scoped::<RoleBinding>(&client, ns), owned.clone())
        .owns(scoped::<PersistentVolumeClaim>(&client, ns), owned.clone())
        .watches(Api::<ClusterRole>::all(client.clone()), owned.clone(), vizier_of_cluster_object)
        .watches(Api::<ClusterRoleBinding>::all(client.clone()), owned.clone(), vizier_of_cluster_object)
        // Pod health is what the monitor reads: a crashing PEM must update the status promptly.
        .watches(scoped::<Pod>(&client, ns), owned, |pod: Pod| {
            let namespace = pod.namespace()?;
            let name = pod.labels().get(LABEL_INSTANCE)?.clone();
            Some(ObjectRef::new(&name).within(&namespace))
        })
        // Nodes come and go, and their kernels decide KernelVersionsIncompatible: re-check every Vizier.
        .watches(Api::<Node>::all(client.clone()), watcher::Config::default(), move |_node: Node| {
            all_viziers.state().iter().map(|v| ObjectRef::from_obj(&**v)).collect::<Vec<_>>()
        })
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(300)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(vizier = %object, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(error, object)) => {
                    tracing::debug!(vizier = %object, %error, "reconcile failed")
                }
                Err(error) => tracing::warn!(%error, "controller"),
            }
        });
    futures::join!(viziers, scripts);
    tracing::info!("controllers stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[test]
    fn invalid_specs_are_permanent_and_transient_errors_are_not() {
        assert!(Error::InvalidSpec("x".into()).is_permanent());
        let conflict = kube::Error::Api(Box::new(kube::core::Status::failure("conflict", "Conflict").with_code(409)));
        assert!(!Error::Status(conflict).is_permanent());
        let invalid = kube::Error::Api(Box::new(kube::core::Status::failure("bad", "Invalid").with_code(422)));
        let apply = Error::Apply { kind: crate::resources::Kind::DaemonSet, name: "vizier-pem".into(), source: invalid };
        assert!(apply.is_permanent());
        assert_eq!(apply.metric_label(), "apply_daemonset_422");
        assert_eq!(Error::InvalidSpec("x".into()).metric_label(), "invalid_spec");
    }
}
