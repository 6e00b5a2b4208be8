//! The I/O of each cluster verb: read and write through the API server, hand the data to the
//! library for every decision and every line printed. Part of the binary, not the library.

pub mod delete;
pub mod deploy;
pub mod get;
pub mod run;
pub mod status;

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use pixie_cli::cluster::{self, ClusterOptions, Connection};
use pixie_cli::deploy::{ApplyOutcome, FIELD_MANAGER, apply_outcome};
use pixie_cli::kinds::{PxKind, qualified_kind};
use serde_json::Value;

use crate::RunError;

pub async fn connect(options: &ClusterOptions) -> Result<Connection, RunError> {
    Ok(cluster::connect(options).await?)
}

/// A kube error worded for the user; `px_dev` when the request was for a px.dev resource.
pub fn explain(conn: &Connection, error: kube::Error, px_dev: bool) -> RunError {
    RunError::Cluster(cluster::explain(error, &conn.server, px_dev))
}

/// The API of a px.dev kind in `namespace`, or in every namespace when None.
pub fn px_api(conn: &Connection, kind: PxKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = kind.api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(conn.client.clone(), ns, &resource),
        None => Api::all_with(conn.client.clone(), &resource),
    }
}

pub fn to_value(object: &DynamicObject) -> Value {
    serde_json::to_value(object).expect("objects read from the API serialize")
}

pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `90s`, `10m`, `1h30m` (Go's duration syntax, as kubectl's `--timeout`).
pub fn parse_timeout(flag: &str, text: &str) -> Result<Duration, RunError> {
    let parsed: kube::core::Duration = text.parse().map_err(|e| {
        anyhow::anyhow!("{flag} {text:?} is not a duration such as 90s or 10m: {e}")
    })?;
    if parsed.is_negative() {
        return Err(anyhow::anyhow!("{flag} {text:?} must not be negative").into());
    }
    Ok(parsed.into())
}

/// Applies and deletes objects of any kind given as JSON, finding each kind's resource through
/// discovery (once per kind).
pub struct Objects<'a> {
    conn: &'a Connection,
    resources: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
}

impl<'a> Objects<'a> {
    pub fn new(conn: &'a Connection) -> Self {
        Objects {
            conn,
            resources: HashMap::new(),
        }
    }

    async fn api_for(&mut self, object: &Value) -> Result<(Api<DynamicObject>, String), RunError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if !self.resources.contains_key(&gvk) {
            let found = kube::discovery::pinned_kind(&self.conn.client, &gvk)
                .await
                .map_err(|e| explain(self.conn, e, group == pixie_crds::GROUP))?;
            self.resources.insert(gvk.clone(), found);
        }
        let (resource, capabilities) = &self.resources[&gvk];
        let namespace = object["metadata"]["namespace"].as_str();
        let api = match (&capabilities.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.conn.client.clone(), ns, resource)
            }
            _ => Api::all_with(self.conn.client.clone(), resource),
        };
        Ok((
            api,
            format!("{}/{}", qualified_kind(api_version, kind), name_of(object)),
        ))
    }

    /// Server-side apply with the plugin's field manager, forcing conflicts (like `kubectl apply
    /// --server-side --force-conflicts`); returns `kind.group/name` and what changed.
    pub async fn apply(&mut self, object: &Value) -> Result<(String, ApplyOutcome), RunError> {
        let px_dev = object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(pixie_crds::GROUP));
        let (api, display) = self.api_for(object).await?;
        let name = name_of(object);
        let before = api
            .get_opt(name)
            .await
            .map_err(|e| explain(self.conn, e, px_dev))?
            .map(|o| to_value(&o));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let after = api
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| explain(self.conn, e, px_dev))?;
        Ok((display, apply_outcome(before.as_ref(), &to_value(&after))))
    }

    /// Deletes the object; Ok(None) when it was not there.
    pub async fn delete(
        &mut self,
        object: &Value,
        dry_run: bool,
    ) -> Result<Option<String>, RunError> {
        let (api, _) = self.api_for(object).await?;
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let params = DeleteParams {
            dry_run,
            ..DeleteParams::background()
        };
        match api.delete(name_of(object), &params).await {
            Ok(_) => Ok(Some(format!(
                "{} \"{}\"",
                qualified_kind(api_version, kind),
                name_of(object)
            ))),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(explain(self.conn, e, false)),
        }
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// kubectl's suffix for dry runs.
pub fn dry_run_suffix(dry_run: bool) -> &'static str {
    if dry_run { " (server dry run)" } else { "" }
}
