//! The controllers of the script kinds, run beside the Vizier controller under the same leader
//! election, shutdown and metrics:
//!
//! - [`pxl_script`]: compiles each PxlScript and reports `Compiled` with its output tables.
//! - [`cron_script`]: checks what the query broker will need to run a CronScript (its Vizier,
//!   script, DataExports, schedule and export mappings) and reports `Ready`. The broker runs it and
//!   owns `lastRun`, `nextRunTime`, `consecutiveFailures` and `Degraded`.
//! - [`data_export`]: checks a DataExport's Secrets, endpoint and mapping and reports `Ready`; the
//!   broker owns delivery results and `Degraded`.
//! - [`plugin`]: materialises an enabled Plugin as a DataExport and CronScripts it owns.
//!
//! Each controller writes only the status fields it owns, with server-side apply under
//! [`crate::FIELD_MANAGER`], and only when they change.

pub mod check;
pub mod cron_script;
pub mod data_export;
pub mod ownership;
pub mod plugin;
pub mod pxl_script;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};
use tracing::{Instrument, field, info_span, warn};

use crate::controller::{backoff, scoped};
use crate::metrics::{KindLabels, KindReasonLabels, Metrics};
use check::ScriptChecker;

/// How often an object is checked again when nothing it depends on changed: a safety net for
/// missed watch events; a check that finds nothing new writes nothing.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What a reconcile of a script kind can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),

    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },

    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },

    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },

    #[error("the cache of {0} stopped")]
    StoreStopped(&'static str),

    #[error("checking a script: {0}")]
    Check(#[from] tokio::task::JoinError),

    #[error("serializing {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A short, bounded label for the `reason` of the failure metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Status(_) => "status".into(),
            Error::Read { .. } => "read".into(),
            Error::Apply { kind, source, .. } => {
                format!("apply_{}_{}", kind.to_lowercase(), api_code(source))
            }
            Error::Delete { .. } => "delete".into(),
            Error::StoreStopped(_) => "store_stopped".into(),
            Error::Check(_) => "check".into(),
            Error::Serialize(_) => "serialize".into(),
        }
    }

    /// True when retrying cannot help until the object changes: the apiserver refused what it
    /// renders to (400 BadRequest, 422 Invalid). Its condition already says so.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Apply { source: kube::Error::Api(status), .. } if matches!(status.code, 400 | 422))
    }
}

fn api_code(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.code.to_string(),
        _ => "transport".into(),
    }
}

/// What every reconcile of the script kinds shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub checker: Arc<ScriptChecker>,
    pub viziers: Store<Vizier>,
    pub pxl_scripts: Store<PxlScript>,
    pub cron_scripts: Store<CronScript>,
    pub data_exports: Store<DataExport>,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

impl Context {
    /// Runs one reconcile with its span, metrics and failure bookkeeping.
    async fn instrumented<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        work: impl Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        let kind = K::kind(&()).to_string();
        let span = info_span!("reconcile", object = %key(object), generation = object.meta().generation, outcome = field::Empty);
        self.metrics
            .script_reconciles
            .get_or_create(&KindLabels { kind })
            .inc();
        let started = Instant::now();
        let result = work.instrument(span.clone()).await;
        span.record("outcome", if result.is_ok() { "ok" } else { "error" });
        tracing::trace!(parent: &span, elapsed = ?started.elapsed(), "reconciled");
        if result.is_ok() {
            self.failures
                .lock()
                .expect("not poisoned")
                .remove(&key(object));
        }
        result
    }

    /// Waits until `store` has listed its objects once, so that "not found" means not found.
    async fn ready<K>(store: &Store<K>, what: &'static str) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        store
            .wait_until_ready()
            .await
            .map_err(|_| Error::StoreStopped(what))
    }

    fn vizier_exists(&self, namespace: &str, name: &str) -> bool {
        self.viziers
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }
}

/// Permanent errors wait for a change; anything else is retried with exponential backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let labels = KindReasonLabels {
        kind: K::kind(&()).to_string(),
        reason: error.metric_label(),
    };
    ctx.metrics.script_failures.get_or_create(&labels).inc();
    if error.is_permanent() {
        warn!(object = %key(&*object), %error, "not retrying until the object changes");
        return Action::await_change();
    }
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let attempt = failures.entry(key(&*object)).or_insert(0);
    *attempt += 1;
    let delay = backoff(*attempt);
    warn!(object = %key(&*object), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The objects in `store` (in `namespace`) that `refers` says point at `name`.
fn referrers<K>(store: &Store<K>, namespace: &str, refers: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|object| object.namespace().as_deref() == Some(namespace) && refers(object))
        .map(|object| ObjectRef::from_obj(&**object))
        .collect()
}

/// Runs the four controllers until `shutdown` resolves. `viziers` is the Vizier controller's cache.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    viziers: Store<Vizier>,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let every = watcher::Config::default();
    let pxl_scripts = Controller::new(scoped::<PxlScript>(&client, ns), every.clone());
    let cron_scripts = Controller::new(scoped::<CronScript>(&client, ns), every.clone());
    let data_exports = Controller::new(scoped::<DataExport>(&client, ns), every.clone());
    let plugins = Controller::new(scoped::<Plugin>(&client, ns), every.clone());
    let reporter = Reporter {
        controller: "pixie-operator".into(),
        instance,
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        checker: Arc::default(),
        viziers,
        pxl_scripts: pxl_scripts.store(),
        cron_scripts: cron_scripts.store(),
        data_exports: data_exports.store(),
        failures: Mutex::default(),
    });
    let config = ControllerConfig::default().debounce(Duration::from_millis(200));

    // A CronScript is re-checked when the PxlScript, DataExports or Vizier it names change.
    let store = ctx.cron_scripts.clone();
    let by_script = move |script: PartialObjectMeta<PxlScript>| {
        let name = script.name_any();
        referrers(
            &store,
            &script.namespace().unwrap_or_default(),
            |cron: &CronScript| {
                cron.spec
                    .script_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            },
        )
    };
    let store = ctx.cron_scripts.clone();
    let by_export = move |export: PartialObjectMeta<DataExport>| {
        let name = export.name_any();
        referrers(
            &store,
            &export.namespace().unwrap_or_default(),
            |cron: &CronScript| cron.spec.export_refs.iter().any(|r| r.name == name),
        )
    };
    let store = ctx.cron_scripts.clone();
    let by_vizier = move |vizier: PartialObjectMeta<Vizier>| {
        let name = vizier.name_any();
        referrers(
            &store,
            &vizier.namespace().unwrap_or_default(),
            |cron: &CronScript| cron.spec.vizier_ref.name == name,
        )
    };
    let cron_scripts = cron_scripts
        .watches(
            scoped::<PartialObjectMeta<PxlScript>>(&client, ns),
            every.clone(),
            by_script,
        )
        .watches(
            scoped::<PartialObjectMeta<DataExport>>(&client, ns),
            every.clone(),
            by_export,
        )
        .watches(
            scoped::<PartialObjectMeta<Vizier>>(&client, ns),
            every.clone(),
            by_vizier,
        )
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| async move { c.instrumented(&*o, cron_script::reconcile(&o, &c)).await },
            error_policy,
            ctx.clone(),
        )
        .for_each(log("CronScript"));

    // A DataExport is re-checked when a Secret it reads changes (metadata only: no values cached).
    let store = ctx.data_exports.clone();
    let by_secret = move |secret: PartialObjectMeta<Secret>| {
        let name = secret.name_any();
        referrers(
            &store,
            &secret.namespace().unwrap_or_default(),
            |export: &DataExport| data_export::referenced_secrets(&export.spec).contains(&name),
        )
    };
    let data_exports = data_exports
        .watches(
            scoped::<PartialObjectMeta<Secret>>(&client, ns),
            every.clone(),
            by_secret,
        )
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| async move { c.instrumented(&*o, data_export::reconcile(&o, &c)).await },
            error_policy,
            ctx.clone(),
        )
        .for_each(log("DataExport"));

    let plugin_store = plugins.store();
    let by_vizier = move |vizier: PartialObjectMeta<Vizier>| {
        let name = vizier.name_any();
        referrers(
            &plugin_store,
            &vizier.namespace().unwrap_or_default(),
            |plugin: &Plugin| {
                plugin
                    .spec
                    .vizier_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
            },
        )
    };
    let plugins = plugins
        .owns(scoped::<CronScript>(&client, ns), every.clone())
        .owns(scoped::<DataExport>(&client, ns), every.clone())
        .watches(
            scoped::<PartialObjectMeta<Vizier>>(&client, ns),
            every.clone(),
            by_vizier,
        )
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| async move { c.instrumented(&*o, plugin::reconcile(&o, &c)).await },
            error_policy,
            ctx.clone(),
        )
        .for_each(log("Plugin"));

    let pxl_scripts = pxl_scripts
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(
            |o, c| async move { c.instrumented(&*o, pxl_script::reconcile(&o, &c)).await },
            error_policy,
            ctx.clone(),
        )
        .for_each(log("PxlScript"));

    futures::join!(pxl_scripts, cron_scripts, data_exports, plugins);
    tracing::info!("script controllers stopped");
}

type RunResult<K> = Result<
    (ObjectRef<K>, Action),
    kube::runtime::controller::Error<Error, kube::runtime::watcher::Error>,
>;

fn log<K: Resource<DynamicType = ()>>(
    kind: &'static str,
) -> impl FnMut(RunResult<K>) -> futures::future::Ready<()> {
    move |result| {
        match result {
            Ok((object, _)) => tracing::debug!(kind, %object, "reconciled"),
            Err(kube::runtime::controller::Error::ReconcilerFailed(error, object)) => {
                tracing::debug!(kind, %object, %error, "reconcile failed")
            }
            Err(error) => tracing::warn!(kind, %error, "controller"),
        }
        futures::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_applies_are_permanent_and_conflicts_are_not() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            ))
        };
        let apply = |code| Error::Apply {
            kind: "CronScript",
            name: "p-a".into(),
            source: status(code),
        };
        assert!(apply(422).is_permanent());
        assert!(!apply(409).is_permanent());
        assert_eq!(apply(422).metric_label(), "apply_cronscript_422");
        assert!(!Error::Status(status(500)).is_permanent());
    }
}
