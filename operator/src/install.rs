//! What installs the operator itself: its Namespace, ServiceAccount, RBAC, Deployment and metrics
//! Service, as typed objects. Pure: `xtask manifests` and `xtask bundle` write them as config/ and
//! the OLM bundle, and `kubectl pixie deploy` applies them, so every install path runs the same spec.
//! The CRDs are not here: `pixie_crds::all_crds()` has them.
//!
//! The permissions are derived from what the operator calls (the controllers, fetch, apply, prune,
//! secrets, status, events, leader election) and from what it grants to Vizier components in
//! `render::rbac`: Kubernetes refuses to create a Role granting what its creator does not hold,
//! unless the creator has `escalate`/`bind`. Holding the few extra verbs is narrower than `escalate`,
//! which would let the operator grant anything at all.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Namespace,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::OPERATOR_VERSION;
use crate::render::common::{
    DEFAULT_REGISTRY, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, LABEL_VERSION,
};

/// Name of the ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment and Lease.
pub const OPERATOR_NAME: &str = "pixie-operator";
/// Role and RoleBinding for leader election in the operator's own namespace.
pub const LEADER_ELECTION_ROLE: &str = "pixie-operator-leader-election";
/// The metrics Service (`/metrics` on port 8080).
pub const METRICS_SERVICE: &str = "pixie-operator-metrics";
/// The container in the Deployment.
pub const CONTAINER: &str = "operator";
/// The port of `/metrics`, `/healthz` and `/readyz` (the operator's `--metrics-addr`).
pub const METRICS_PORT: i32 = 8080;
pub const METRICS_PORT_NAME: &str = "metrics";
/// The distroless `nonroot` user the image runs as (operator/Dockerfile).
pub const RUN_AS_USER: i64 = 65532;
/// `app.kubernetes.io/managed-by` of the install objects. Not `pixie-operator`: the operator
/// watches objects with that value as its own, and must not see itself among them.
pub const MANAGED_BY: &str = "pixie-install";
pub const DEFAULT_NAMESPACE: &str = "px-operator";

/// How the operator is installed.
#[derive(Clone, Debug, PartialEq)]
pub struct InstallOptions {
    /// Namespace of the operator (its Deployment, ServiceAccount and Lease).
    pub namespace: String,
    /// The operator image, by full reference.
    pub image: String,
    /// Reconcile Viziers of this namespace only (`WATCH_NAMESPACE`); all namespaces when None.
    pub watch_namespace: Option<String>,
    /// Replicas of the Deployment; leader election lets only one reconcile.
    pub replicas: i32,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            image: format!("{DEFAULT_REGISTRY}/pixie-operator:{OPERATOR_VERSION}"),
            watch_namespace: None,
            replicas: 1,
        }
    }
}

impl InstallOptions {
    /// Checks what Kubernetes would refuse later, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        check_dns_label("namespace", &self.namespace)?;
        if let Some(watch) = &self.watch_namespace {
            check_dns_label("watch_namespace", watch)?;
        }
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(format!("image: {:?} is not an image reference", self.image));
        }
        if self.replicas < 0 {
            return Err(format!(
                "replicas: must be 0 or more, not {}",
                self.replicas
            ));
        }
        Ok(())
    }
}

fn check_dns_label(field: &str, value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{field}: {value:?} is not a valid namespace name (at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit)"
        ))
    }
}

const READ: &[&str] = &["get", "list", "watch"];
/// What server-side apply, the owner watches, fetch and prune need: an apply that creates an
/// object is authorized as both `patch` and `create`.
const MANAGE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
/// Status is written with server-side apply on `/status`, which is a patch and nothing else.
const STATUS: &[&str] = &["patch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The operator's ClusterRole. Each rule says who needs it; "grants" means a Vizier component's
/// Role or ClusterRole in `render::rbac` holds it, so the operator must hold it too.
pub fn cluster_rules() -> Vec<PolicyRule> {
    vec![
        // px.dev: Viziers are reconciled (finalizer by patch, status by apply on /status); the
        // finalizers subresource lets owner references block deletion where the
        // OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift): the Vizier's
        // objects and a Plugin's CronScripts and DataExports carry blockOwnerDeletion.
        rule(
            &["px.dev"],
            &["viziers"],
            &["get", "list", "watch", "patch"],
        ),
        rule(&["px.dev"], &["viziers/status"], STATUS),
        rule(
            &["px.dev"],
            &["viziers/finalizers", "plugins/finalizers"],
            &["update"],
        ),
        // PxlScripts are compiled and their status written.
        rule(&["px.dev"], &["pxlscripts"], READ),
        // Plugins create, update and delete the CronScripts and DataExports of their preset scripts.
        rule(&["px.dev"], &["cronscripts", "dataexports"], MANAGE),
        rule(&["px.dev"], &["plugins"], READ),
        // Every kind's status; the query broker is granted cronscripts/status and
        // dataexports/status patch too.
        rule(
            &["px.dev"],
            &[
                "pxlscripts/status",
                "cronscripts/status",
                "dataexports/status",
                "plugins/status",
            ],
            STATUS,
        ),
        // What a Vizier is made of (resources::Kind).
        rule(
            &[""],
            &[
                "configmaps",
                "services",
                "serviceaccounts",
                "persistentvolumeclaims",
            ],
            MANAGE,
        ),
        // Generated secrets are created, user secrets (deploy key, export credentials) read; the
        // cloud connector is granted get and patch on pl-cluster-secrets.
        rule(
            &[""],
            &["secrets"],
            &[
                "get", "list", "watch", "create", "patch", "update", "delete",
            ],
        ),
        rule(
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            MANAGE,
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            MANAGE,
        ),
        // Cluster-scoped grants are deleted together by the finalizer.
        rule(
            &["rbac.authorization.k8s.io"],
            &["clusterroles", "clusterrolebindings"],
            &[
                "get",
                "list",
                "watch",
                "create",
                "patch",
                "delete",
                "deletecollection",
            ],
        ),
        // Pod and node health decide the conditions; the metadata service is granted list and
        // watch of pods (and services, covered above) cluster-wide.
        rule(&[""], &["pods", "nodes"], READ),
        // Granted to the cloud connector: kube-system's uid is the cluster's id.
        rule(&[""], &["namespaces"], &["get"]),
        // A default StorageClass decides the metadata backend.
        rule(&["storage.k8s.io"], &["storageclasses"], &["list"]),
        // Events on every reconciled object (kube's Recorder creates, then patches a series).
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        // Granted to the metadata service and the query broker for their own leader election, in
        // the Vizier's namespace. The operator's own Lease does not rely on
        // this rule but on leader_election_rules(), which stays when the grants change.
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "create", "update", "patch"],
        ),
    ]
}

/// The operator's Role in its own namespace: its leader-election Lease (kube-lease-manager reads,
/// creates and patches it).
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![rule(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "patch"],
    )]
}

/// Labels of every install object.
pub fn labels() -> BTreeMap<String, String> {
    let mut labels = selector_labels();
    labels.insert(LABEL_PART_OF.to_owned(), "pixie".to_owned());
    labels.insert(LABEL_VERSION.to_owned(), OPERATOR_VERSION.to_owned());
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// The labels that select the operator's pods: only ones that never change.
pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), OPERATOR_NAME.to_owned()),
        (LABEL_COMPONENT.to_owned(), "operator".to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..Default::default()
    }
}

fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

fn http_probe(path: &str, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(METRICS_PORT_NAME.to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        ..Default::default()
    }
}

/// The operator's Deployment.
pub fn deployment(opts: &InstallOptions) -> Deployment {
    let mut env = vec![
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
    ];
    if let Some(watch) = &opts.watch_namespace {
        env.push(EnvVar {
            name: "WATCH_NAMESPACE".to_owned(),
            value: Some(watch.clone()),
            ..Default::default()
        });
    }
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "--leader-elect=true".to_owned(),
            format!("--lease-name={OPERATOR_NAME}"),
            format!("--metrics-addr=0.0.0.0:{METRICS_PORT}"),
            "--log-json".to_owned(),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.to_owned()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        liveness_probe: Some(http_probe("/healthz", 15)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("100m", "128Mi")),
            limits: Some(quantities("1", "512Mi")),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod_labels = labels();
    pod_labels.remove(LABEL_MANAGED_BY);
    Deployment {
        metadata: meta(OPERATOR_NAME, Some(&opts.namespace)),
        spec: DeploymentSpec {
            replicas: Some(opts.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(OPERATOR_NAME.to_owned()),
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    node_selector: Some(BTreeMap::from([(
                        "kubernetes.io/os".to_owned(),
                        "linux".to_owned(),
                    )])),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn subject(opts: &InstallOptions) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: OPERATOR_NAME.to_owned(),
        namespace: Some(opts.namespace.clone()),
        ..Default::default()
    }
}

fn to_value<K: Resource<DynamicType = ()> + Serialize>(object: K) -> Value {
    let mut body = serde_json::to_value(&object).expect("k8s-openapi objects serialize");
    body["apiVersion"] = Value::String(K::api_version(&()).into_owned());
    body["kind"] = Value::String(K::kind(&()).into_owned());
    body
}

/// Everything that installs the operator except the CRDs, in apply order: the Namespace, the
/// identity and its permissions, then the Deployment and its Service.
pub fn objects(opts: &InstallOptions) -> Vec<Value> {
    let ns = Some(opts.namespace.as_str());
    vec![
        to_value(Namespace {
            metadata: meta(&opts.namespace, None),
            ..Default::default()
        }),
        to_value(ServiceAccount {
            metadata: meta(OPERATOR_NAME, ns),
            ..Default::default()
        }),
        to_value(ClusterRole {
            metadata: meta(OPERATOR_NAME, None),
            rules: Some(cluster_rules()),
            ..Default::default()
        }),
        to_value(ClusterRoleBinding {
            metadata: meta(OPERATOR_NAME, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "ClusterRole".to_owned(),
                name: OPERATOR_NAME.to_owned(),
            },
            subjects: Some(vec![subject(opts)]),
        }),
        to_value(Role {
            metadata: meta(LEADER_ELECTION_ROLE, ns),
            rules: Some(leader_election_rules()),
        }),
        to_value(RoleBinding {
            metadata: meta(LEADER_ELECTION_ROLE, ns),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "Role".to_owned(),
                name: LEADER_ELECTION_ROLE.to_owned(),
            },
            subjects: Some(vec![subject(opts)]),
        }),
        to_value(deployment(opts)),
        to_value(Service {
            metadata: meta(METRICS_SERVICE, ns),
            spec: Some(ServiceSpec {
                selector: Some(selector_labels()),
                ports: Some(vec![ServicePort {
                    name: Some(METRICS_PORT_NAME.to_owned()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String(METRICS_PORT_NAME.to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;
    use crate::validate::{BackendFacts, Outcome, validate};
    use pixie_crds::Vizier;

    /// Whether some rule grants `verb` on `resource` of `group` to every object (no resourceNames).
    fn holds(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
        rules.iter().any(|rule| {
            rule.api_groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|g| g == group)
                && rule
                    .resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r == resource)
                && rule.verbs.iter().any(|v| v == verb)
                && rule
                    .resource_names
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
        })
    }

    #[test]
    fn rules_name_every_verb_group_and_resource_without_wildcards() {
        for rule in cluster_rules().iter().chain(&leader_election_rules()) {
            let words = rule
                .verbs
                .iter()
                .chain(rule.api_groups.iter().flatten())
                .chain(rule.resources.iter().flatten())
                .chain(rule.resource_names.iter().flatten());
            for word in words {
                assert!(!word.contains('*'), "wildcard in {rule:?}");
            }
            assert!(rule.non_resource_urls.is_none(), "{rule:?}");
            assert!(
                !rule
                    .verbs
                    .iter()
                    .any(|v| v == "escalate" || v == "bind" || v == "impersonate"),
                "{rule:?}"
            );
        }
    }

    #[test]
    fn every_kind_the_operator_applies_is_covered_for_watch_apply_and_prune() {
        let rules = cluster_rules();
        for kind in Kind::ALL {
            let ar = kind.api_resource();
            // list+watch: owner watches and fetch; create+patch: server-side apply that creates;
            // delete: prune.
            for verb in ["list", "watch", "create", "patch", "delete"] {
                assert!(
                    holds(&rules, &ar.group, &ar.plural, verb),
                    "{kind}: no {verb} on {}/{}",
                    ar.group,
                    ar.plural
                );
            }
        }
        for resource in ["clusterroles", "clusterrolebindings"] {
            assert!(
                holds(
                    &rules,
                    "rbac.authorization.k8s.io",
                    resource,
                    "deletecollection"
                ),
                "finalizer cleanup of {resource}"
            );
        }
        assert!(
            holds(&rules, "", "secrets", "get") && holds(&rules, "", "secrets", "create"),
            "generated secrets"
        );
        for resource in ["pods", "nodes"] {
            assert!(
                holds(&rules, "", resource, "list") && holds(&rules, "", resource, "watch"),
                "{resource}"
            );
        }
        assert!(holds(&rules, "storage.k8s.io", "storageclasses", "list"));
        assert!(
            holds(&rules, "events.k8s.io", "events", "create")
                && holds(&rules, "events.k8s.io", "events", "patch")
        );
        for verb in ["get", "create", "patch"] {
            assert!(
                holds(
                    &leader_election_rules(),
                    "coordination.k8s.io",
                    "leases",
                    verb
                ),
                "lease {verb}"
            );
        }
    }

    #[test]
    fn every_px_dev_kind_is_read_and_its_status_written() {
        let rules = cluster_rules();
        for crd in pixie_crds::all_crds() {
            let plural = &crd.spec.names.plural;
            for verb in ["get", "list", "watch"] {
                assert!(holds(&rules, "px.dev", plural, verb), "{plural}: no {verb}");
            }
            assert!(
                holds(&rules, "px.dev", &format!("{plural}/status"), "patch"),
                "{plural}/status"
            );
        }
        assert!(
            holds(&rules, "px.dev", "viziers", "patch"),
            "the finalizer is added by patch"
        );
        // Plugins manage the CronScripts and DataExports of their preset scripts.
        for plural in ["cronscripts", "dataexports"] {
            for verb in ["create", "patch", "delete"] {
                assert!(holds(&rules, "px.dev", plural, verb), "{plural}: no {verb}");
            }
        }
    }

    fn sample_inputs() -> crate::validate::Inputs {
        let path = format!(
            "{}/../config/samples/px_v1alpha1_vizier.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut vizier: Vizier = serde_saphyr::from_str(&text).unwrap();
        vizier.metadata.namespace = Some("pl".into());
        vizier.metadata.uid = Some("uid-1".into());
        match validate(&vizier, BackendFacts::default(), DEFAULT_REGISTRY, "0.1.0").unwrap() {
            Outcome::Deploy { inputs, .. } => *inputs,
            other => panic!("not deployable: {other:?}"),
        }
    }

    #[test]
    fn the_operator_holds_everything_it_grants_to_vizier_components() {
        let inputs = sample_inputs();
        assert!(
            inputs.cloud_enabled(),
            "the sample must render the cloud connector's grants too"
        );
        let rendered = crate::render::render(&inputs).unwrap();
        let held = cluster_rules();
        let mut checked = 0;
        for object in rendered
            .objects
            .iter()
            .filter(|o| matches!(o.kind, Kind::Role | Kind::ClusterRole))
        {
            let granted: Vec<PolicyRule> =
                serde_json::from_value(object.body["rules"].clone()).unwrap();
            for rule in granted {
                for group in rule.api_groups.iter().flatten() {
                    for resource in rule.resources.iter().flatten() {
                        for verb in &rule.verbs {
                            // A grant limited to resourceNames is covered by holding the verb on all.
                            assert!(
                                holds(&held, group, resource, verb),
                                "{} {} grants {verb} on {group}/{resource}, which the operator does not hold",
                                object.kind,
                                object.name
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 20, "only {checked} grants checked");
    }

    #[test]
    fn deployment_runs_locked_down_with_probes_and_leader_election() {
        let body = to_value(deployment(&InstallOptions::default()));
        let pod = &body["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["runAsUser"], RUN_AS_USER);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["ports"][0]["containerPort"], METRICS_PORT);
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        assert!(
            container["args"]
                .as_array()
                .unwrap()
                .contains(&"--leader-elect=true".into())
        );
        let env: Vec<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
        assert_eq!(pod["serviceAccountName"], OPERATOR_NAME);
        for label in [
            LABEL_NAME,
            LABEL_COMPONENT,
            LABEL_PART_OF,
            LABEL_VERSION,
            LABEL_MANAGED_BY,
        ] {
            assert!(body["metadata"]["labels"][label].is_string(), "{label}");
        }
        assert_eq!(
            body["spec"]["template"]["metadata"]["labels"][LABEL_NAME],
            OPERATOR_NAME
        );
    }

    #[test]
    fn watch_namespace_and_replicas_reach_the_deployment() {
        let opts = InstallOptions {
            watch_namespace: Some("team-a".into()),
            replicas: 2,
            ..Default::default()
        };
        let body = to_value(deployment(&opts));
        assert_eq!(body["spec"]["replicas"], 2);
        let env = body["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "WATCH_NAMESPACE" && e["value"] == "team-a"),
            "{env:?}"
        );
    }

    #[test]
    fn objects_live_in_the_chosen_namespace_and_bind_its_service_account() {
        let opts = InstallOptions {
            namespace: "ops".into(),
            ..Default::default()
        };
        let objects = objects(&opts);
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "Service"
            ]
        );
        assert_eq!(objects[0]["metadata"]["name"], "ops");
        for object in &objects {
            let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"]
                .contains(&object["kind"].as_str().unwrap());
            assert_eq!(
                object["metadata"]["namespace"].is_null(),
                cluster_scoped,
                "{}",
                object["kind"]
            );
            if !cluster_scoped {
                assert_eq!(object["metadata"]["namespace"], "ops");
            }
            if let Some(subjects) = object["subjects"].as_array() {
                assert_eq!(subjects[0]["namespace"], "ops");
                assert_eq!(subjects[0]["name"], OPERATOR_NAME);
            }
        }
        // The operator must not take its own objects for a Vizier's.
        assert_ne!(
            objects[6]["metadata"]["labels"][LABEL_MANAGED_BY],
            crate::render::common::MANAGED_BY
        );
    }

    #[test]
    fn default_image_is_the_operator_at_this_version() {
        assert_eq!(
            InstallOptions::default().image,
            format!("ghcr.io/pixie-rs/pixie-operator:{OPERATOR_VERSION}")
        );
        assert_eq!(InstallOptions::default().namespace, "px-operator");
        InstallOptions::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = |opts: InstallOptions| opts.validate().unwrap_err();
        assert!(
            bad(InstallOptions {
                namespace: "Px_Operator".into(),
                ..Default::default()
            })
            .starts_with("namespace:")
        );
        assert!(
            bad(InstallOptions {
                watch_namespace: Some("-x".into()),
                ..Default::default()
            })
            .starts_with("watch_namespace:")
        );
        assert!(
            bad(InstallOptions {
                image: " ".into(),
                ..Default::default()
            })
            .starts_with("image:")
        );
        assert!(
            bad(InstallOptions {
                replicas: -1,
                ..Default::default()
            })
            .starts_with("replicas:")
        );
    }
}
