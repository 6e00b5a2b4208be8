//! What every rendered object shares: labels, owner references, image names, environment
//! helpers, and the pod policy (`spec.pod`) applied to every pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector, SecretVolumeSource,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{CLUSTER_SECRETS, Component, SETTINGS, TLS_SECRET};
use crate::validate::Inputs;

/// Default registry of the operator's own images (`<registry>/vizier-<component>:<version>`).
pub const DEFAULT_REGISTRY: &str = "ghcr.io/pixie-rs";
/// Third-party images, by full reference. With `spec.registry` they are expected in that registry
/// under their flattened path (Pixie's scheme: `/` becomes `-`).
pub const NATS_IMAGE: &str = "docker.io/library/nats:2.10.22-alpine";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Pixie's label that tells control-plane pods from PEMs.
pub const LABEL_PLANE: &str = "plane";
/// On cluster-scoped objects, which owner references cannot tie to a namespaced Vizier.
pub const LABEL_VIZIER_UID: &str = "px.dev/vizier-uid";
/// On cluster-scoped objects: `<namespace>/<name>` of the Vizier, so a change maps back to it.
pub const ANNOTATION_VIZIER: &str = "px.dev/vizier";
/// On pod templates: hash of the settings ConfigMap, so a settings change rolls the pods.
pub const ANNOTATION_SETTINGS_HASH: &str = "px.dev/settings-hash";
pub const MANAGED_BY: &str = "pixie-operator";

pub const CERTS_DIR: &str = "/certs";

/// Labels of every object of this Vizier; `component` adds the component and plane labels.
pub fn labels(inputs: &Inputs, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_NAME.to_owned(), "vizier".to_owned()),
        (LABEL_INSTANCE.to_owned(), inputs.name.clone()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_PART_OF.to_owned(), "pixie".to_owned()),
        (LABEL_VERSION.to_owned(), inputs.version.clone()),
    ]);
    if let Some(component) = component {
        labels.insert(LABEL_COMPONENT.to_owned(), component.label().to_owned());
        labels.insert(LABEL_PLANE.to_owned(), component.plane().to_owned());
    }
    labels
}

/// The label selector for a component's pods: only labels that never change.
pub fn selector_labels(inputs: &Inputs, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "vizier".to_owned()),
        (LABEL_INSTANCE.to_owned(), inputs.name.clone()),
        (LABEL_COMPONENT.to_owned(), component.label().to_owned()),
    ])
}

pub fn selector(inputs: &Inputs, component: Component) -> LabelSelector {
    LabelSelector { match_labels: Some(selector_labels(inputs, component)), ..Default::default() }
}

/// The label selector that finds every namespaced object of the Vizier `name`.
pub fn instance_selector(name: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={name}")
}

/// The label selector that finds the cluster-scoped objects of the Vizier with this uid.
pub fn cluster_selector(uid: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_VIZIER_UID}={uid}")
}

pub fn owner_reference(inputs: &Inputs) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", pixie_crds::GROUP, pixie_crds::VERSION),
        kind: "Vizier".to_owned(),
        name: inputs.name.clone(),
        uid: inputs.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a namespaced object, owned by the Vizier so that deleting it collects the object.
pub fn meta(inputs: &Inputs, name: &str, component: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(inputs.namespace.clone()),
        labels: Some(labels(inputs, component)),
        owner_references: Some(vec![owner_reference(inputs)]),
        ..Default::default()
    }
}

/// Name of a cluster-scoped object: unique per Vizier (namespace and name are both at most 63
/// characters, so this stays far below the 253-character limit).
pub fn cluster_scoped_name(inputs: &Inputs, role: &str) -> String {
    format!("pixie-{}-{}-{role}", inputs.namespace, inputs.name)
}

/// Metadata of a cluster-scoped object: no owner reference (a namespaced owner cannot own it), so
/// it carries the Vizier's uid as a label and is deleted by the finalizer.
pub fn cluster_meta(inputs: &Inputs, role: &str) -> ObjectMeta {
    let mut labels = labels(inputs, None);
    labels.insert(LABEL_VIZIER_UID.to_owned(), inputs.uid.clone());
    ObjectMeta {
        name: Some(cluster_scoped_name(inputs, role)),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_VIZIER.to_owned(),
            format!("{}/{}", inputs.namespace, inputs.name),
        )])),
        ..Default::default()
    }
}

/// Image of one of our components: `<registry or default>/vizier-<component>:<version>`.
pub fn image(inputs: &Inputs, component: Component) -> String {
    let registry = registry(inputs).unwrap_or(&inputs.default_registry);
    format!("{}/vizier-{}:{}", registry.trim_end_matches('/'), component.label(), inputs.version)
}

/// A third-party image, moved into `spec.registry` with its path flattened (Pixie's scheme:
/// `docker.io/library/nats:2.10` becomes `<registry>/docker.io-library-nats:2.10`).
pub fn third_party_image(inputs: &Inputs, reference: &str) -> String {
    match registry(inputs) {
        None => reference.to_owned(),
        Some(registry) => format!("{}/{}", registry.trim_end_matches('/'), flatten(reference)),
    }
}

/// Replaces every `/` of the repository path with `-`, keeping the tag or digest.
pub fn flatten(reference: &str) -> String {
    let tag_start = reference.rfind('@').or_else(|| {
        let colon = reference.rfind(':')?;
        (colon > reference.rfind('/').unwrap_or(0)).then_some(colon)
    });
    let (path, tag) = reference.split_at(tag_start.unwrap_or(reference.len()));
    format!("{}{tag}", path.replace('/', "-"))
}

fn registry(inputs: &Inputs) -> Option<&str> {
    inputs.spec.registry.as_deref().filter(|r| !r.is_empty())
}

pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.into()), value_from: None }
}

pub fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.to_owned(), api_version: None }),
            ..Default::default()
        }),
    }
}

pub fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.to_owned(), key: key.to_owned(), optional: None }),
            ..Default::default()
        }),
    }
}

/// Sets `var`, replacing an earlier variable of the same name (a list with two entries of one
/// name is rejected by server-side apply, whose merge key for `env` is the name).
pub fn set_env(vars: &mut Vec<EnvVar>, var: EnvVar) {
    match vars.iter_mut().find(|v| v.name == var.name) {
        Some(existing) => *existing = var,
        None => vars.push(var),
    }
}

/// Environment every Vizier service gets: who and where it is, and the JWT signing key.
pub fn service_env() -> Vec<EnvVar> {
    vec![
        env_field("PL_POD_NAME", "metadata.name"),
        env_field("PL_POD_NAMESPACE", "metadata.namespace"),
        env_secret("PL_JWT_SIGNING_KEY", CLUSTER_SECRETS, "jwt-signing-key"),
    ]
}

pub fn settings_env_from() -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource { name: SETTINGS.to_owned(), optional: None }),
        ..Default::default()
    }]
}

pub fn certs_volume() -> Volume {
    Volume {
        name: "certs".to_owned(),
        secret: Some(SecretVolumeSource { secret_name: Some(TLS_SECRET.to_owned()), ..Default::default() }),
        ..Default::default()
    }
}

pub fn certs_mount() -> VolumeMount {
    VolumeMount { name: "certs".to_owned(), mount_path: CERTS_DIR.to_owned(), read_only: Some(true), ..Default::default() }
}

/// Hash of the settings ConfigMap's data and of the certificates' expiry, put on pod templates so that
/// a settings change or a certificate renewal rolls them.
pub fn settings_hash(settings: &ConfigMap, tls_not_after: Option<Timestamp>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&settings.data).expect("ConfigMap data serializes"));
    // The certificates are read at start too: renewed ones reach the pods by a roll.
    if let Some(not_after) = tls_not_after {
        hasher.update(not_after.to_string());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// How a component's pods run.
pub struct PodShape {
    pub component: Component,
    /// Privileged pods (the PEMs) keep their own security context; the policy's applies to the rest.
    pub privileged: bool,
    pub spec: PodSpec,
}

/// Wraps a pod spec into a template with the Vizier's pod policy applied: labels, annotations,
/// node selector, tolerations, security context and default container resources.
/// A StatefulSet of `replicas` unprivileged pods of `component`, named `name`, whose pods get their
/// DNS names from the headless Service `service`.
pub fn stateful_set(
    inputs: &Inputs,
    settings_hash: &str,
    name: &str,
    service: &str,
    component: Component,
    replicas: i32,
    pod: PodSpec,
) -> StatefulSet {
    StatefulSet {
        metadata: meta(inputs, name, Some(component)),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(service.to_owned()),
            selector: selector(inputs, component),
            template: pod_template(inputs, settings_hash, PodShape { component, privileged: false, spec: pod }),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn pod_template(inputs: &Inputs, settings_hash: &str, shape: PodShape) -> PodTemplateSpec {
    let policy = inputs.spec.pod.clone().unwrap_or_default();
    let mut spec = shape.spec;

    let mut pod_labels = policy.labels.clone().unwrap_or_default();
    pod_labels.extend(labels(inputs, Some(shape.component)));
    let mut annotations = policy.annotations.clone().unwrap_or_default();
    annotations.insert(ANNOTATION_SETTINGS_HASH.to_owned(), settings_hash.to_owned());

    let mut node_selector = BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]);
    node_selector.extend(policy.node_selector.clone().unwrap_or_default());
    spec.node_selector = Some(node_selector);

    let mut tolerations: Vec<Toleration> = spec.tolerations.take().unwrap_or_default();
    for toleration in policy.tolerations.clone().unwrap_or_default() {
        if !tolerations.contains(&toleration) {
            tolerations.push(toleration);
        }
    }
    spec.tolerations = (!tolerations.is_empty()).then_some(tolerations);

    if !shape.privileged
        && let Some(context) = policy.security_context.as_ref().filter(|c| c.enabled == Some(true))
    {
        spec.security_context = Some(PodSecurityContext {
            fs_group: context.fs_group,
            run_as_user: context.run_as_user,
            run_as_group: context.run_as_group,
            ..Default::default()
        });
    }

    if let Some(resources) = policy.resources.as_ref() {
        for container in &mut spec.containers {
            container.resources = Some(merge_resources(resources, container.resources.as_ref()));
        }
    }

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// The policy's resources, overridden by what the component sets itself (the PEM's memory).
fn merge_resources(policy: &ResourceRequirements, own: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut merged = policy.clone();
    if let Some(own) = own {
        for (mine, theirs) in [(&mut merged.limits, &own.limits), (&mut merged.requests, &own.requests)] {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(Default::default).extend(theirs.clone());
            }
        }
    }
    merged
}

/// Where the PEM, Kelvin, the broker and the metadata service answer the kubelet's probes, in plain
/// HTTP (`PL_HEALTH_LISTEN`): their gRPC ports require a client certificate the kubelet lacks.
pub const HEALTH_PORT: i32 = 50900;

/// Readiness from `/readyz` (so a Service, and Kelvin's view of the PEMs, only lists pods that can
/// answer) and liveness from `/healthz`, both on [`HEALTH_PORT`].
pub fn add_health_probes(container: &mut Container) {
    let probe = |path: &str, initial_delay: i32, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(HEALTH_PORT),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };
    container.readiness_probe = Some(probe("/readyz", 0, 5));
    // Generous: a PEM attaches its eBPF programs before it serves.
    container.liveness_probe = Some(probe("/healthz", 30, 10));
}

/// A container running `vizier <role>` from the component's image.
pub fn vizier_container(inputs: &Inputs, component: Component, role: &str) -> Container {
    Container {
        name: component.label().to_owned(),
        image: Some(image(inputs, component)),
        command: Some(vec!["vizier".to_owned(), role.to_owned()]),
        env: Some(service_env()),
        env_from: Some(settings_env_from()),
        volume_mounts: Some(vec![certs_mount()]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_keeps_the_tag_and_digest() {
        assert_eq!(flatten("docker.io/library/nats:2.10"), "docker.io-library-nats:2.10");
        assert_eq!(flatten("localhost:5000/a/b"), "localhost:5000-a-b");
        assert_eq!(flatten("gcr.io/x/y@sha256:abc"), "gcr.io-x-y@sha256:abc");
        assert_eq!(flatten("plain"), "plain");
    }

    #[test]
    fn set_env_replaces_by_name() {
        let mut vars = vec![env("A", "1"), env("B", "2")];
        set_env(&mut vars, env("A", "3"));
        set_env(&mut vars, env("C", "4"));
        assert_eq!(vars, vec![env("A", "3"), env("B", "2"), env("C", "4")]);
    }
}
