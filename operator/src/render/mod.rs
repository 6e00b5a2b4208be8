//! Rendering: a checked Vizier ([`Inputs`]) in, the objects that make up its data plane out. Pure
//! functions returning typed k8s-openapi objects, one module per component, golden-tested against
//! the small YAML files under `operator/tests/golden/`. `spec.patches` are applied last, by object
//! name, as strategic merge patches.
//!
//! Object names follow Pixie's manifests (`vizier-pem`, `kelvin`, `pl-nats`, `vizier-metadata`...)
//! so that patches written for Pixie's operator find their targets.

pub mod common;
pub mod config;
pub mod metadata;
pub mod nats;
pub mod patch;
pub mod rbac;
pub mod workloads;

use crate::resources::Object;
use crate::validate::{Inputs, MetadataBackend};

pub const SETTINGS: &str = "pl-vizier-settings";
pub const NATS: &str = "pl-nats";
pub const NATS_CONFIG: &str = "nats-config";
pub const DEPLOY_SECRET: &str = "pl-deploy-secrets";
pub const CLOUD_CA: &str = "pl-cloud-ca";
/// The key of `pl-cloud-ca`, and its file name in the connector.
pub const CLOUD_CA_KEY: &str = "ca.crt";
pub const CLUSTER_SECRETS: &str = "pl-cluster-secrets";
pub const TLS_SECRET: &str = "service-tls-certs";
pub const METADATA: &str = "vizier-metadata";
pub const METADATA_SERVICE: &str = "vizier-metadata-svc";
pub const METADATA_PVC: &str = "metadata-pv-claim";
pub const QUERY_BROKER: &str = "vizier-query-broker";
pub const QUERY_BROKER_SERVICE: &str = "vizier-query-broker-svc";
pub const KELVIN: &str = "kelvin";
pub const KELVIN_SERVICE: &str = "kelvin-service";
pub const PEM: &str = "vizier-pem";
/// Headless: its DNS name resolves to every PEM pod, which Kelvin queries.
pub const PEM_SERVICE: &str = "vizier-pem-svc";
pub const CLOUD_CONNECTOR: &str = "vizier-cloud-connector";

/// Pixie's components. Each has its own image, labels and pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Nats,
    Metadata,
    QueryBroker,
    Kelvin,
    Pem,
    CloudConnector,
}

impl Component {
    /// The `app.kubernetes.io/component` label value, also the image suffix (`vizier-<label>`).
    pub fn label(self) -> &'static str {
        match self {
            Component::Nats => "nats",
            Component::Metadata => "metadata",
            Component::QueryBroker => "query-broker",
            Component::Kelvin => "kelvin",
            Component::Pem => "pem",
            Component::CloudConnector => "cloud-connector",
        }
    }

    /// Pixie's `plane` label: PEMs are the data plane, everything else the control plane.
    pub fn plane(self) -> &'static str {
        if self == Component::Pem { "data" } else { "control" }
    }

    pub fn from_label(label: &str) -> Option<Component> {
        [
            Component::Nats,
            Component::Metadata,
            Component::QueryBroker,
            Component::Kelvin,
            Component::Pem,
            Component::CloudConnector,
        ]
        .into_iter()
        .find(|c| c.label() == label)
    }
}

/// The rendered data plane.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Object>,
    /// Names in `spec.patches` that match no rendered object (ignored, and reported).
    pub unknown_patch_targets: Vec<String>,
}

/// Renders every object of the Vizier, patches applied, in apply order.
pub fn render(inputs: &Inputs) -> Result<Rendered, String> {
    let settings = config::settings(inputs);
    let settings_hash = common::settings_hash(&settings, inputs.tls_not_after);
    let mut objects = vec![Object::from_typed(settings), Object::from_typed(nats::config(inputs))];
    if let Some(secret) = config::deploy_secret(inputs) {
        objects.push(Object::from_typed(secret));
    }
    if let Some(ca) = config::cloud_ca(inputs) {
        objects.push(Object::from_typed(ca));
    }
    objects.extend(rbac::render(inputs));
    objects.push(Object::from_typed(nats::service(inputs)));
    objects.push(Object::from_typed(nats::statefulset(inputs, &settings_hash)));
    objects.push(Object::from_typed(metadata::service(inputs)));
    match inputs.backend {
        MetadataBackend::Persistent => {
            objects.push(Object::from_typed(metadata::pvc(inputs)));
            objects.push(Object::from_typed(metadata::statefulset(inputs, &settings_hash)));
        }
        MetadataBackend::Memory => {
            objects.push(Object::from_typed(metadata::deployment(inputs, &settings_hash)));
        }
    }
    objects.push(Object::from_typed(workloads::query_broker_service(inputs)));
    objects.push(Object::from_typed(workloads::query_broker(inputs, &settings_hash)));
    objects.push(Object::from_typed(workloads::kelvin_service(inputs)));
    objects.push(Object::from_typed(workloads::kelvin(inputs, &settings_hash)));
    objects.push(Object::from_typed(workloads::pem_service(inputs)));
    objects.push(Object::from_typed(workloads::pem(inputs, &settings_hash)));
    if inputs.cloud_enabled() {
        objects.push(Object::from_typed(workloads::cloud_connector(inputs, &settings_hash)));
    }
    objects.sort_by_key(|o| o.kind);

    let mut unknown_patch_targets = Vec::new();
    for (target, patch) in &inputs.patches {
        let mut found = false;
        for object in objects.iter_mut().filter(|o| &o.name == target) {
            found = true;
            apply_patch(object, patch).map_err(|e| format!("spec.patches[{target}] on {}: {e}", object.kind))?;
        }
        if !found {
            unknown_patch_targets.push(target.clone());
        }
    }
    Ok(Rendered { objects, unknown_patch_targets })
}

fn apply_patch(object: &mut Object, patch: &serde_json::Value) -> Result<(), String> {
    let before = object.body.clone();
    patch::strategic_merge(&mut object.body, patch).map_err(|e| e.to_string())?;
    for identity in ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"] {
        if before.pointer(identity) != object.body.pointer(identity) {
            return Err(format!("a patch must not change {identity}"));
        }
    }
    object.kind.check(&object.body).map_err(|e| format!("the patched object is not a valid {}: {e}", object.kind))
}

#[cfg(test)]
mod tests;
