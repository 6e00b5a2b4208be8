//! What `kubectl pixie deploy` applies, decided without touching the cluster: the Vizier built from
//! its flags (on top of the Vizier that is already there, so that an upgrade keeps the settings it is
//! not told to change), the `spec.patches` file, and how each applied object is reported
//! (`created`, `configured`, `unchanged`, like `kubectl apply`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// The one field manager of every server-side apply the plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-pixie";
/// The Vizier's name when `--name` is not given (Pixie's operator uses the same).
pub const DEFAULT_VIZIER_NAME: &str = "pixie";

/// Pixie's `dataAccess` values, spelled as Pixie spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataAccessFlag {
    #[value(name = "Full")]
    Full,
    #[value(name = "Restricted")]
    Restricted,
    #[value(name = "PIIRestricted")]
    PiiRestricted,
}

impl DataAccessFlag {
    fn as_spec(self) -> &'static str {
        match self {
            DataAccessFlag::Full => "Full",
            DataAccessFlag::Restricted => "Restricted",
            DataAccessFlag::PiiRestricted => "PIIRestricted",
        }
    }
}

/// The Vizier fields `deploy` sets from flags. A flag left out keeps the value the Vizier already
/// has; nothing is ever removed by leaving a flag out.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VizierFlags {
    /// Name of the Vizier.
    #[arg(long, default_value = DEFAULT_VIZIER_NAME)]
    pub name: String,
    /// Vizier version to run, such as 0.14.15 (the operator picks one when never set).
    #[arg(long = "version", value_name = "VERSION")]
    pub vizier_version: Option<String>,
    /// Deploy key linking the Vizier to Pixie Cloud (stored in the Vizier; prefer --deploy-key-secret).
    #[arg(long, conflicts_with = "deploy_key_secret")]
    pub deploy_key: Option<String>,
    /// Secret in the Vizier's namespace whose key `deploy-key` holds the deploy key.
    #[arg(long)]
    pub deploy_key_secret: Option<String>,
    /// Pixie Cloud address, host[:port] without a scheme, such as withpixie.ai:443.
    #[arg(long)]
    pub cloud_addr: Option<String>,
    /// Name of this cluster in Pixie Cloud.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Registry to pull the Vizier images from, host[:port][/path].
    #[arg(long)]
    pub registry: Option<String>,
    /// Memory limit of each PEM, such as 2Gi.
    #[arg(long)]
    pub pem_memory_limit: Option<String>,
    /// Memory request of each PEM, such as 1Gi (at most the limit).
    #[arg(long)]
    pub pem_memory_request: Option<String>,
    /// Which data scripts may read.
    #[arg(long, value_enum, ignore_case = true)]
    pub data_access: Option<DataAccessFlag>,
    /// Run the metadata service without a PersistentVolumeClaim (spec.useEtcdOperator, Pixie's
    /// name): its history of deleted pods is then lost when it restarts.
    #[arg(long)]
    pub use_etcd_operator: bool,
    /// Stay on the deployed version when Pixie Cloud publishes a new one.
    #[arg(long)]
    pub disable_auto_update: bool,
    /// A YAML or JSON file mapping object names (vizier-pem, kelvin, ...) to strategic merge
    /// patches: `spec.patches`.
    #[arg(long, value_name = "FILE")]
    pub patches: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeployError {
    #[error(
        "--cloud-addr needs a deploy key: pass --deploy-key px-dep-... or --deploy-key-secret NAME"
    )]
    CloudNeedsKey,
    #[error("--patches {file}: {reason}")]
    Patches { file: String, reason: String },
}

/// The Vizier to apply and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VizierPlan {
    pub manifest: Value,
    pub notes: Vec<String>,
}

/// The spec fields `deploy` manages, by JSON name.
const MANAGED_FIELDS: &[&str] = &[
    "version",
    "deployKey",
    "customDeployKeySecret",
    "cloudAddr",
    "clusterName",
    "registry",
    "pemMemoryLimit",
    "pemMemoryRequest",
    "dataAccess",
    "useEtcdOperator",
    "disableAutoUpdate",
    "patches",
];

/// The Vizier `deploy` applies: the managed fields of `existing` (the Vizier in the cluster, if
/// any), overridden by the flags. A Vizier must have a deploy key; without a cloud nothing checks
/// it, so when none is given or kept, `local_key` (a fresh random one) is used and a note says so.
pub fn vizier_manifest(
    flags: &VizierFlags,
    namespace: &str,
    existing: Option<&Value>,
    patches: Option<BTreeMap<String, String>>,
    local_key: impl FnOnce() -> String,
) -> Result<VizierPlan, DeployError> {
    let mut spec = Map::new();
    if let Some(old) = existing
        .and_then(|e| e.get("spec"))
        .and_then(Value::as_object)
    {
        for field in MANAGED_FIELDS {
            if let Some(value) = old.get(*field) {
                spec.insert((*field).to_owned(), value.clone());
            }
        }
    }
    let mut set = |field: &str, value: Option<Value>| {
        if let Some(value) = value {
            spec.insert(field.to_owned(), value);
        }
    };
    set("version", flags.vizier_version.clone().map(Value::from));
    set("cloudAddr", flags.cloud_addr.clone().map(Value::from));
    set("clusterName", flags.cluster_name.clone().map(Value::from));
    set("registry", flags.registry.clone().map(Value::from));
    set(
        "pemMemoryLimit",
        flags.pem_memory_limit.clone().map(Value::from),
    );
    set(
        "pemMemoryRequest",
        flags.pem_memory_request.clone().map(Value::from),
    );
    set(
        "dataAccess",
        flags.data_access.map(|d| Value::from(d.as_spec())),
    );
    set(
        "useEtcdOperator",
        flags.use_etcd_operator.then_some(Value::Bool(true)),
    );
    set(
        "disableAutoUpdate",
        flags.disable_auto_update.then_some(Value::Bool(true)),
    );
    set("patches", patches.map(|p| json!(p)));

    // The two ways of giving the key exclude each other: a new one replaces the old one.
    if let Some(key) = &flags.deploy_key {
        spec.remove("customDeployKeySecret");
        spec.insert("deployKey".into(), key.clone().into());
    } else if let Some(secret) = &flags.deploy_key_secret {
        spec.remove("deployKey");
        spec.insert("customDeployKeySecret".into(), secret.clone().into());
    }

    let mut notes = Vec::new();
    let has_key = spec.contains_key("deployKey") || spec.contains_key("customDeployKeySecret");
    if !has_key {
        if spec
            .get("cloudAddr")
            .and_then(Value::as_str)
            .is_some_and(|a| !a.is_empty())
        {
            return Err(DeployError::CloudNeedsKey);
        }
        spec.insert("deployKey".into(), local_key().into());
        notes.push(
            "no --deploy-key given and no Pixie Cloud configured: using a random local deploy key"
                .into(),
        );
    }

    Ok(VizierPlan {
        manifest: json!({
            "apiVersion": format!("{}/{}", pixie_crds::GROUP, pixie_crds::VERSION),
            "kind": "Vizier",
            "metadata": {"name": flags.name, "namespace": namespace},
            "spec": spec,
        }),
        notes,
    })
}

/// A random deploy key in Pixie's format (`px-dep-<uuid>`).
pub fn random_deploy_key() -> String {
    format!("px-dep-{}", uuid::Uuid::new_v4())
}

/// `spec.patches` from a file: a YAML (or JSON) mapping of object name to patch, where each patch
/// is either written out as a mapping or already a JSON/YAML string (Pixie's form).
pub fn parse_patches(file: &str, text: &str) -> Result<BTreeMap<String, String>, DeployError> {
    let error = |reason: String| DeployError::Patches {
        file: file.to_owned(),
        reason,
    };
    let value: Value = serde_saphyr::from_str(text).map_err(|e| error(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(error(
            "expected a mapping of object name to patch, such as `vizier-pem: {spec: ...}`".into(),
        ));
    };
    let mut patches = BTreeMap::new();
    for (target, patch) in map {
        let text = match patch {
            Value::String(text) => text,
            Value::Object(_) => patch.to_string(),
            other => {
                return Err(error(format!(
                    "the patch for {target:?} must be a mapping or a string, not {other}"
                )));
            }
        };
        patches.insert(target, text);
    }
    if patches.is_empty() {
        return Err(error("it holds no patches".into()));
    }
    Ok(patches)
}

/// What an apply did, in `kubectl apply`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// Compares the object before and after an apply. Bookkeeping that every apply touches (managed
/// fields, resourceVersion) and status (the operator's, changing on its own) do not count.
pub fn apply_outcome(before: Option<&Value>, after: &Value) -> ApplyOutcome {
    let Some(before) = before else {
        return ApplyOutcome::Created;
    };
    if comparable(before) == comparable(after) {
        ApplyOutcome::Unchanged
    } else {
        ApplyOutcome::Configured
    }
}

fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
        metadata.remove("resourceVersion");
    }
    object
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: VizierFlags,
    }

    fn flags(args: &[&str]) -> VizierFlags {
        Cli::try_parse_from(std::iter::once("deploy").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    fn plan(args: &[&str], existing: Option<&Value>) -> Result<VizierPlan, DeployError> {
        vizier_manifest(&flags(args), "pl", existing, None, || "px-dep-local".into())
    }

    #[test]
    fn every_flag_lands_on_its_pixie_field() {
        let plan = plan(
            &[
                "--version=0.14.15",
                "--deploy-key=px-dep-1",
                "--cloud-addr=withpixie.ai:443",
                "--cluster-name=prod",
                "--registry=registry.example.com/mirror",
                "--pem-memory-limit=2Gi",
                "--pem-memory-request=1Gi",
                "--data-access=piirestricted",
                "--use-etcd-operator",
                "--disable-auto-update",
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            plan.manifest,
            json!({
                "apiVersion": "px.dev/v1alpha1",
                "kind": "Vizier",
                "metadata": {"name": "pixie", "namespace": "pl"},
                "spec": {
                    "version": "0.14.15", "deployKey": "px-dep-1", "cloudAddr": "withpixie.ai:443",
                    "clusterName": "prod", "registry": "registry.example.com/mirror",
                    "pemMemoryLimit": "2Gi", "pemMemoryRequest": "1Gi", "dataAccess": "PIIRestricted",
                    "useEtcdOperator": true, "disableAutoUpdate": true,
                },
            })
        );
        assert!(plan.notes.is_empty());
        // The manifest is a valid Vizier.
        let vizier: pixie_crds::Vizier = serde_json::from_value(plan.manifest).unwrap();
        assert_eq!(
            vizier.spec.data_access,
            Some(pixie_crds::DataAccess::PiiRestricted)
        );
    }

    #[test]
    fn an_upgrade_keeps_what_it_is_not_told_to_change() {
        let existing = json!({
            "metadata": {"name": "pixie"},
            "spec": {"version": "0.14.14", "customDeployKeySecret": "key", "pemMemoryLimit": "2Gi",
                     "pod": {"labels": {"team": "x"}}},
        });
        let upgrade = plan(&["--version=0.14.15"], Some(&existing)).unwrap();
        assert_eq!(
            upgrade.manifest["spec"],
            json!({"version": "0.14.15", "customDeployKeySecret": "key", "pemMemoryLimit": "2Gi"}),
            "fields deploy does not manage (pod) are left to whoever set them"
        );
        // A new key replaces the other way of giving one.
        let rekeyed = plan(&["--deploy-key=px-dep-2"], Some(&existing)).unwrap();
        assert_eq!(rekeyed.manifest["spec"]["deployKey"], "px-dep-2");
        assert!(
            rekeyed.manifest["spec"]
                .get("customDeployKeySecret")
                .is_none()
        );
    }

    #[test]
    fn without_a_key_or_cloud_a_local_key_is_used_and_said() {
        let local = plan(&["--name=mine"], None).unwrap();
        assert_eq!(local.manifest["metadata"]["name"], "mine");
        assert_eq!(local.manifest["spec"], json!({"deployKey": "px-dep-local"}));
        assert_eq!(local.notes.len(), 1);
        assert_eq!(
            plan(&["--cloud-addr=withpixie.ai:443"], None),
            Err(DeployError::CloudNeedsKey)
        );
        assert!(random_deploy_key().starts_with("px-dep-"));
        assert_ne!(random_deploy_key(), random_deploy_key());
    }

    #[test]
    fn the_two_key_flags_exclude_each_other() {
        assert!(
            Cli::try_parse_from(["deploy", "--deploy-key=a", "--deploy-key-secret=b"]).is_err()
        );
        assert!(Cli::try_parse_from(["deploy", "--data-access=Everything"]).is_err());
    }

    #[test]
    fn patches_are_read_as_mappings_or_strings() {
        let text = "vizier-pem:\n  spec: {template: {spec: {nodeSelector: {pixie: allowed}}}}\n\
                    kelvin: '{\"spec\": {}}'\n";
        let patches = parse_patches("p.yaml", text).unwrap();
        assert_eq!(patches["kelvin"], "{\"spec\": {}}");
        let pem: Value = serde_json::from_str(&patches["vizier-pem"]).unwrap();
        assert_eq!(
            pem["spec"]["template"]["spec"]["nodeSelector"]["pixie"],
            "allowed"
        );

        let err = parse_patches("p.yaml", "- a\n- b\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--patches p.yaml: expected a mapping"),
            "{err}"
        );
        let err = parse_patches("p.yaml", "kelvin: 3\n").unwrap_err();
        assert!(err.to_string().contains("\"kelvin\""), "{err}");
    }

    #[test]
    fn an_apply_is_created_configured_or_unchanged() {
        let before = json!({"metadata": {"name": "a", "resourceVersion": "1",
                            "managedFields": [{"manager": "kubectl"}]}, "spec": {"x": 1},
                            "status": {"phase": "A"}});
        assert_eq!(apply_outcome(None, &before), ApplyOutcome::Created);
        let touched = json!({"metadata": {"name": "a", "resourceVersion": "2",
                             "managedFields": [{"manager": "kubectl-pixie"}]}, "spec": {"x": 1},
                             "status": {"phase": "B"}});
        assert_eq!(
            apply_outcome(Some(&before), &touched),
            ApplyOutcome::Unchanged
        );
        let changed = json!({"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"x": 2}});
        assert_eq!(
            apply_outcome(Some(&before), &changed),
            ApplyOutcome::Configured
        );
        assert_eq!(ApplyOutcome::Configured.as_str(), "configured");
    }
}
