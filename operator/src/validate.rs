//! Checks a Vizier and gathers everything rendering needs into [`Inputs`]: the resolved version,
//! the cluster name, the metadata backend and the parsed patches. Pure: the cluster facts it needs
//! come in through [`BackendFacts`].

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use pixie_crds::{Vizier, VizierSpec};
use serde_json::Value;

use crate::quantity;
use crate::render::patch;
use crate::version::{self, CloudLatest, Resolution};
use pixie_cloud::Trust;

/// Where the metadata service keeps its terminated-pod history (the rest of its state is rebuilt
/// from the API server). Pixie: a PVC-backed StatefulSet, unless `useEtcdOperator` is set or the
/// cluster has no usable default StorageClass, in which case Pixie runs an etcd cluster. Our
/// metadata service has no etcd client, so there it runs as a Deployment keeping the history in
/// memory, lost on a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataBackend {
    /// StatefulSet `vizier-metadata` with the PVC `metadata-pv-claim`.
    Persistent,
    /// Deployment `vizier-metadata`, no volume.
    Memory,
}

/// What the cluster says about the metadata backend; see [`choose_backend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendFacts {
    pub default_storage_classes: usize,
    pub metadata_pvc_exists: bool,
    pub metadata_statefulset_exists: bool,
    pub metadata_deployment_exists: bool,
}

/// Chooses the metadata backend. Pixie decides on the first deploy and then writes
/// `useEtcdOperator` into the spec; this operator never writes the spec, so the choice is kept by
/// looking at what already runs: an existing PVC or StatefulSet stays persistent, an existing
/// metadata Deployment stays in memory. `useEtcdOperator: true` (Pixie's "no PVC") always selects
/// memory.
pub fn choose_backend(use_etcd_operator: Option<bool>, facts: BackendFacts) -> (MetadataBackend, &'static str) {
    if use_etcd_operator == Some(true) {
        return (MetadataBackend::Memory, "spec.useEtcdOperator is true: no metadata volume");
    }
    if facts.metadata_pvc_exists || facts.metadata_statefulset_exists {
        return (MetadataBackend::Persistent, "the metadata volume already exists");
    }
    if facts.metadata_deployment_exists {
        return (MetadataBackend::Memory, "metadata already runs as a Deployment without a volume");
    }
    if facts.default_storage_classes == 1 {
        (MetadataBackend::Persistent, "the cluster has a default StorageClass")
    } else {
        (MetadataBackend::Memory, "the cluster has no single default StorageClass for the metadata volume")
    }
}

/// Everything rendering needs, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub version: String,
    pub cluster_name: String,
    pub backend: MetadataBackend,
    pub default_registry: String,
    pub spec: VizierSpec,
    /// `spec.patches`, parsed.
    pub patches: BTreeMap<String, Value>,
    /// How the cloud connector trusts the cloud: as the operator does (`--cloud-ca-file`,
    /// `--cloud-insecure`).
    pub cloud_trust: Trust,
    /// When the service certificates in use expire; a renewal changes it, which rolls the pods
    /// onto the new certificates. None before they exist.
    pub tls_not_after: Option<Timestamp>,
}

impl Inputs {
    /// The Secret and key holding the deploy key: the user's Secret, or the one the operator
    /// writes from `spec.deployKey`.
    pub fn deploy_key_secret(&self) -> (String, &'static str) {
        match self.spec.custom_deploy_key_secret.as_deref().filter(|s| !s.is_empty()) {
            Some(name) => (name.to_owned(), "deploy-key"),
            None => (crate::render::DEPLOY_SECRET.to_owned(), "deploy-key"),
        }
    }

    pub fn cloud_enabled(&self) -> bool {
        self.spec.cloud_addr.as_deref().is_some_and(|addr| !addr.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Deploy {
        inputs: Box<Inputs>,
        backend_reason: &'static str,
        version_source: &'static str,
        /// Something about the version the user should know (see [`Resolution::Version`]).
        version_note: Option<String>,
    },
    /// Valid, but no version can be chosen (see [`version::resolve`]).
    VersionUnavailable(String),
}

/// Longest Vizier name: it becomes a label value, which is at most 63 characters.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a Vizier whose version does not need the cloud (or may stay unresolved without it).
pub fn validate(
    vizier: &Vizier,
    facts: BackendFacts,
    default_registry: &str,
    operator_version: &str,
) -> Result<Outcome, String> {
    validate_with_cloud(vizier, facts, default_registry, operator_version, None, Trust::SystemRoots)
}

/// `cloud` is the artifact tracker's answer, when [`version::tracker_to_ask`] named one;
/// `cloud_trust` is handed to the cloud connector.
pub fn validate_with_cloud(
    vizier: &Vizier,
    facts: BackendFacts,
    default_registry: &str,
    operator_version: &str,
    cloud: Option<&CloudLatest>,
    cloud_trust: Trust,
) -> Result<Outcome, String> {
    let name = vizier.name_any();
    if name.len() > MAX_NAME_LEN {
        return Err(format!("metadata.name must be at most {MAX_NAME_LEN} characters (it is used as a label value)"));
    }
    let spec = &vizier.spec;
    let limit = spec.pem_memory_limit.as_deref();
    let request = spec.pem_memory_request.as_deref();
    for (field, value) in [("pemMemoryLimit", limit), ("pemMemoryRequest", request)] {
        if let Some(value) = value
            && quantity::parse(value).is_none_or(|v| v <= 0.0)
        {
            return Err(format!("spec.{field} {value:?} is not a positive quantity"));
        }
    }
    if let (Some(limit), Some(request)) = (limit.and_then(quantity::parse), request.and_then(quantity::parse))
        && request > limit
    {
        return Err("spec.pemMemoryRequest must not be larger than spec.pemMemoryLimit".to_owned());
    }
    let flags = spec.data_collector_params.as_ref().and_then(|p| p.custom_pem_flags.as_ref());
    for key in flags.into_iter().flat_map(|f| f.keys()) {
        if !is_env_name(key) {
            return Err(format!(
                "spec.dataCollectorParams.customPEMFlags: {key:?} is not a valid environment variable name"
            ));
        }
    }
    let mut patches = BTreeMap::new();
    for (target, text) in spec.patches.iter().flatten() {
        let value = patch::parse(text).map_err(|e| format!("spec.patches[{target}]: {e}"))?;
        patches.insert(target.clone(), value);
    }

    let (version, version_source, version_note) =
        match version::resolve(spec, vizier.status.as_ref(), operator_version, cloud) {
            Resolution::Version { version, source, note } => (version, source, note),
            Resolution::Unavailable(message) => return Ok(Outcome::VersionUnavailable(message)),
        };
    let uid = vizier.uid().ok_or("the Vizier has no uid (not read from the apiserver)")?;
    let cluster_name = match spec.cluster_name.as_deref().filter(|c| !c.is_empty()) {
        Some(cluster) => cluster.to_owned(),
        // Pixie picks a random name; one derived from the uid is as unique and stays the same.
        None => format!("{name}-{}", &uid[..8.min(uid.len())]),
    };
    let (backend, backend_reason) = choose_backend(spec.use_etcd_operator, facts);
    Ok(Outcome::Deploy {
        inputs: Box::new(Inputs {
            name,
            namespace: vizier.namespace().unwrap_or_default(),
            uid,
            version,
            cluster_name,
            backend,
            default_registry: default_registry.to_owned(),
            spec: spec.clone(),
            patches,
            cloud_trust,
            tls_not_after: None,
        }),
        backend_reason,
        version_source,
        version_note,
    })
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixie_crds::DataCollectorParams;

    fn vizier() -> Vizier {
        let mut vz = Vizier::test().with_version("0.14.7");
        vz.metadata.uid = Some("0a1b2c3d-0000-0000-0000-000000000000".into());
        vz
    }

    fn deploy(vz: &Vizier) -> Inputs {
        match validate(vz, BackendFacts::default(), "reg", "0.1.0").unwrap() {
            Outcome::Deploy { inputs, .. } => *inputs,
            other => panic!("expected a deploy, got {other:?}"),
        }
    }

    #[test]
    fn backend_choice_is_sticky_and_follows_pixie() {
        let none = BackendFacts::default();
        assert_eq!(choose_backend(None, none).0, MetadataBackend::Memory);
        let one_class = BackendFacts { default_storage_classes: 1, ..none };
        assert_eq!(choose_backend(None, one_class).0, MetadataBackend::Persistent);
        assert_eq!(choose_backend(Some(false), one_class).0, MetadataBackend::Persistent);
        assert_eq!(choose_backend(Some(true), one_class).0, MetadataBackend::Memory);
        let two_classes = BackendFacts { default_storage_classes: 2, ..none };
        assert_eq!(choose_backend(None, two_classes).0, MetadataBackend::Memory);
        // Once chosen, the cluster's storage classes no longer matter.
        let in_memory = BackendFacts { metadata_deployment_exists: true, ..one_class };
        assert_eq!(choose_backend(None, in_memory).0, MetadataBackend::Memory);
        let on_pvc = BackendFacts { metadata_pvc_exists: true, ..none };
        assert_eq!(choose_backend(None, on_pvc).0, MetadataBackend::Persistent);
    }

    #[test]
    fn cluster_name_defaults_to_one_derived_from_the_uid() {
        let mut vz = vizier();
        vz.spec.cluster_name = None;
        assert_eq!(deploy(&vz).cluster_name, "pixie-0a1b2c3d");
        assert_eq!(deploy(&vizier()).cluster_name, "test-cluster");
    }

    #[test]
    fn bad_patches_flags_and_quantities_are_invalid() {
        let mut vz = vizier();
        vz.spec.patches = Some([("vizier-pem".to_owned(), "[1, 2]".to_owned())].into());
        assert!(validate(&vz, BackendFacts::default(), "r", "0").unwrap_err().contains("spec.patches[vizier-pem]"));

        let mut vz = vizier();
        vz.spec.data_collector_params = Some(DataCollectorParams {
            custom_pem_flags: Some([("BAD-NAME".to_owned(), "1".to_owned())].into()),
            ..Default::default()
        });
        assert!(validate(&vz, BackendFacts::default(), "r", "0").unwrap_err().contains("BAD-NAME"));

        let vz = vizier().with_pem_memory("1Gi", "2Gi");
        assert!(validate(&vz, BackendFacts::default(), "r", "0").unwrap_err().contains("pemMemoryRequest"));

        let mut vz = vizier();
        vz.metadata.name = Some("x".repeat(64));
        assert!(validate(&vz, BackendFacts::default(), "r", "0").is_err());
    }

    #[test]
    fn patches_are_parsed_from_json_or_yaml() {
        let mut vz = vizier();
        vz.spec.patches = Some(
            [("kelvin".to_owned(), "spec:\n  replicas: 2\n".to_owned()),
             ("vizier-pem".to_owned(), r#"{"spec":{"minReadySeconds":5}}"#.to_owned())].into(),
        );
        let inputs = deploy(&vz);
        assert_eq!(inputs.patches["kelvin"]["spec"]["replicas"], 2);
        assert_eq!(inputs.patches["vizier-pem"]["spec"]["minReadySeconds"], 5);
    }

    #[test]
    fn a_cloud_without_version_deploys_the_trackers_latest_or_nothing() {
        let mut vz = vizier();
        vz.spec.version = None;
        vz.spec.cloud_addr = Some("withpixie.ai:443".into());
        let down = CloudLatest::Unavailable { addr: "withpixie.ai:443".into(), error: "refused".into(), last_known: None };
        let outcome = validate_with_cloud(&vz, BackendFacts::default(), "r", "0", Some(&down), Trust::SystemRoots).unwrap();
        assert!(matches!(outcome, Outcome::VersionUnavailable(m) if m.contains("withpixie.ai:443")));
        let latest = CloudLatest::Version("0.14.15".into());
        match validate_with_cloud(&vz, BackendFacts::default(), "r", "0", Some(&latest), Trust::SystemRoots).unwrap() {
            Outcome::Deploy { inputs, version_note: None, .. } => assert_eq!(inputs.version, "0.14.15"),
            other => panic!("expected a deploy, got {other:?}"),
        }
    }
}
