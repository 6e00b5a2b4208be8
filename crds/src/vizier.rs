//! `Vizier`: one Pixie data plane (PEMs, Kelvin, query broker, metadata, cloud connector) in a
//! namespace. The spec keeps every field of Pixie's own `px.dev/v1alpha1` Vizier under the same JSON
//! name, so a manifest written for Pixie's operator applies unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::rules;

/// A Pixie Vizier: the data plane that collects telemetry on every node of this cluster and answers
/// PxL queries. The operator deploys and upgrades it and reports its health in status.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "px.dev",
    version = "v1alpha1",
    kind = "Vizier",
    namespaced,
    status = "VizierStatus",
    derive = "PartialEq",
    shortname = "vz",
    category = "pixie",
    doc = "A Pixie Vizier: the data plane that collects telemetry on every node of this cluster and answers PxL queries.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether every Vizier component is running and the Vizier answers queries"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.version",
        description = "The Vizier version that is running"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.vizierPhase",
        description = "Pixie's health summary: Healthy, Updating, Degraded, Unhealthy or Disconnected"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterName",
        priority = 1,
        description = "The cluster name shown in Pixie Cloud"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::one_of_required("deployKey", "customDeployKeySecret", "spec"),
    validation = rules::mutually_exclusive("deployKey", "customDeployKeySecret", "spec"),
    validation = Rule::new(
        "!has(self.pemMemoryRequest) || !has(self.pemMemoryLimit) || !isQuantity(self.pemMemoryRequest) \
         || !isQuantity(self.pemMemoryLimit) \
         || quantity(self.pemMemoryRequest).compareTo(quantity(self.pemMemoryLimit)) <= 0")
        .message("spec.pemMemoryRequest must not be larger than spec.pemMemoryLimit")
        .field_path(".pemMemoryRequest"),
)]
pub struct VizierSpec {
    /// Vizier version to run, such as 0.14.7. When empty the operator resolves the latest released
    /// version from Pixie Cloud's artifact tracker and records it in status.version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = rules::VERSION_PATTERN))]
    pub version: Option<String>,

    /// Deploy key that links this Vizier to a Pixie Cloud organisation (px-dep-...). Stored in plain
    /// text in this object; prefer customDeployKeySecret. Exactly one of the two must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub deploy_key: Option<String>,

    /// Name of a Secret in this namespace whose key `deploy-key` holds the deploy key. Exactly one
    /// of deployKey and customDeployKeySecret must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub custom_deploy_key_secret: Option<String>,

    /// When true, the operator keeps the Vizier on its current version instead of upgrading it
    /// when Pixie Cloud publishes a new release. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_auto_update: Option<bool>,

    /// When true, the metadata service runs as a Deployment without a PersistentVolumeClaim, so its
    /// history of terminated pods is kept in memory and does not survive a restart (the rest of
    /// its state is rebuilt from the Kubernetes API). No etcd is deployed; the field keeps the
    /// name Pixie gave it.
    /// The operator also runs it this way, without changing this field, when the cluster has no
    /// single default StorageClass, and keeps an existing metadata service on its current
    /// backend. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_etcd_operator: Option<bool>,

    /// Name under which this cluster appears in Pixie Cloud. A random name is generated when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cluster_name: Option<String>,

    /// Address of the Pixie Cloud this Vizier registers with, as host[:port] without a scheme,
    /// such as withpixie.ai:443. Defaults to Pixie's hosted cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::ENDPOINT_MAX_LENGTH))]
    #[x_kube(validation = rules::no_url_scheme(), validation = rules::host_optional_port())]
    pub cloud_addr: Option<String>,

    /// For development clouds without an ingress only: the namespace the dev cloud runs in, such as
    /// plc-dev. The Vizier then dials api-service.<namespace>.svc.cluster.local:51200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = rules::DNS_LABEL_PATTERN))]
    pub dev_cloud_namespace: Option<String>,

    /// Memory limit of each PEM (the per-node collector), as a quantity such as 2Gi. The PEM sizes
    /// its in-memory tables from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::QUANTITY_MAX_LENGTH))]
    #[x_kube(validation = rules::positive_quantity())]
    pub pem_memory_limit: Option<String>,

    /// Memory request of each PEM, as a quantity such as 1Gi. Defaults to pemMemoryLimit; must not
    /// be larger than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = rules::QUANTITY_MAX_LENGTH))]
    #[x_kube(validation = rules::positive_quantity())]
    pub pem_memory_request: Option<String>,

    /// See [`ClockConverter`] (its doc is the field's description in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_converter: Option<ClockConverter>,

    /// Labels, annotations, resources, scheduling constraints and security context applied to
    /// every pod of the Vizier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodPolicy>,

    /// Strategic merge patches applied to the rendered Vizier resources, keyed by resource name
    /// (for example vizier-pem). Each value is the patch as a JSON or YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    pub patches: Option<BTreeMap<String, String>>,

    /// See [`DataAccess`] (its doc is the field's description in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_access: Option<DataAccess>,

    /// Tuning of the per-node data collector. Defaults are used for anything left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_collector_params: Option<DataCollectorParams>,

    /// Tuning of the Kubernetes leader elections that Vizier services use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leadership_election_params: Option<LeadershipElectionParams>,

    /// Image registry to pull Vizier images from instead of Pixie's default, as host[:port][/path]
    /// without a scheme. Image paths are flattened: gcr.io/pixie-oss/pixie-prod/vizier-pem_image is
    /// expected at <registry>/gcr.io-pixie-oss-pixie-prod-vizier-pem_image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = rules::registry())]
    pub registry: Option<String>,

    /// Set on GKE Autopilot clusters: selects workload variants that Autopilot admits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autopilot: Option<bool>,
}

// An optional enum's schema takes its description from the enum type, not from the field (kube's
// OptionalEnum transform), so the enums below carry the text `kubectl explain` shows for their field.

/// How PEMs convert node-local timestamps to a cluster-wide reference time: default (the built-in
/// routine) or grpc (the gRPC clock-sync integration).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ClockConverter {
    /// The built-in clock conversion routine.
    #[serde(rename = "default")]
    Default,
    /// The gRPC clock-sync integration.
    #[serde(rename = "grpc")]
    Grpc,
}

/// Which data scripts may read: Full (default, everything), Restricted (columns that may hold
/// sensitive data, such as HTTP bodies, are redacted entirely) or PIIRestricted (best-effort
/// redaction of IP addresses, e-mail addresses, MAC addresses, card numbers and IMEIs).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DataAccess {
    /// All collected data is readable.
    Full,
    /// Columns that may hold sensitive data (such as HTTP bodies) are redacted entirely.
    Restricted,
    /// Best-effort redaction of personal data: IP, e-mail and MAC addresses, card numbers, IMEIs.
    #[serde(rename = "PIIRestricted")]
    PiiRestricted,
}

/// Policy applied to every pod the operator creates for this Vizier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodPolicy {
    /// Labels added to every Vizier pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,

    /// Annotations added to every Vizier pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,

    /// Compute resources (requests and limits) of the Vizier containers. The PEM memory is set
    /// separately with spec.pemMemoryLimit and spec.pemMemoryRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a node must carry for Vizier pods to be scheduled on it.
    /// More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations that let Vizier pods (including the PEM DaemonSet) run on tainted nodes.
    /// More info: https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Security context for the Vizier pods that do not need privileges. Privileged pods (the PEMs)
    /// keep their privileged security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
}

/// Security context for non-privileged Vizier pods, for clusters whose admission policies require one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// Whether to set a securityContext on the pods at all. Not needed when no admission policy
    /// asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Supplemental group applied to all containers of a pod and to the volumes it mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub fs_group: Option<i64>,

    /// UID that runs the containers' entrypoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub run_as_user: Option<i64>,

    /// GID that runs the containers' entrypoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub run_as_group: Option<i64>,
}

/// Tuning of the per-node data collector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataCollectorParams {
    /// Bytes buffered per traced connection while its messages are reassembled. Defaults to
    /// 1048576 (1 MiB); raise it for high-throughput services that lose data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295_i64))]
    pub datastream_buffer_size: Option<i64>,

    /// Bytes a connection's buffer may temporarily grow to before it is processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295_i64))]
    pub datastream_buffer_spike_size: Option<i64>,

    /// Deprecated: the per-table size limit of older Pixie releases, in bytes. Accepted so that
    /// old manifests still apply; set PL_TABLE_STORE_DATA_LIMIT_MB in customPEMFlags instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub table_store_table_size_limit: Option<i32>,

    /// Extra settings passed to every PEM as environment variables, such as
    /// PL_TABLE_STORE_DATA_LIMIT_MB: "1000".
    #[serde(
        default,
        rename = "customPEMFlags",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("maxProperties" = 64))]
    pub custom_pem_flags: Option<BTreeMap<String, String>>,
}

/// Tuning of the Kubernetes leader elections that Vizier services use.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeadershipElectionParams {
    /// How often, in milliseconds, Vizier services run a leader election; also how long they wait
    /// for the Kubernetes API to answer one. Raise it when the API server is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 3600000))]
    pub election_period_ms: Option<i64>,
}

/// Observed state of a Vizier, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VizierStatus {
    /// Ready, Progressing and Degraded, following Kubernetes condition conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The Vizier version that is deployed (the resolved latest version when spec.version is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Version of the operator that last reconciled this Vizier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_version: Option<String>,

    /// See [`VizierPhase`] (its doc is the field's description in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vizier_phase: Option<VizierPhase>,

    /// Machine-readable reason for vizierPhase, such as CloudConnectorMissing or PEMsHighFailureRate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vizier_reason: Option<String>,

    /// Human-readable detail on vizierPhase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// See [`ReconciliationPhase`] (its doc is the field's description in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation_phase: Option<ReconciliationPhase>,

    /// When reconciliationPhase last changed. A deployment Updating for 30 minutes is marked Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciliation_phase_time: Option<Time>,

    /// SHA-256 (hex) of the spec as last deployed successfully. The operator redeploys when the
    /// current spec hashes differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// Pixie's one-word health summary (Healthy, Updating, Degraded, Unhealthy or Disconnected), kept
/// for tools written against Pixie's operator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum VizierPhase {
    /// Fully working and queryable.
    Healthy,
    /// Being created or updated.
    Updating,
    /// Queryable, but data may be missing (some PEMs lack memory, kernels are too old, PEMs crash).
    Degraded,
    /// Not queryable.
    Unhealthy,
    /// Cannot reach or register with Pixie Cloud.
    Disconnected,
}

/// Where the operator's deployment of this Vizier stands: Updating, Ready or Failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ReconciliationPhase {
    /// The desired version is deployed.
    Ready,
    /// A deployment is in progress.
    Updating,
    /// The last deployment failed or timed out.
    Failed,
}
