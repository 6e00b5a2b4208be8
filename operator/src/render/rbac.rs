//! Identities and least-privilege permissions. Only the services that call the Kubernetes API get a
//! ServiceAccount (metadata, query broker, cloud connector); every other pod runs without a token.
//! Each rule names its verbs and resources; none uses a wildcard.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::common::{cluster_meta, cluster_scoped_name, meta};
use super::{CLUSTER_SECRETS, Component};
use crate::resources::Object;
use crate::validate::Inputs;

pub const METADATA_ACCOUNT: &str = "metadata-service-account";
pub const QUERY_BROKER_ACCOUNT: &str = "query-broker-service-account";
pub const CLOUD_CONNECTOR_ACCOUNT: &str = "cloud-conn-service-account";

const READ: &[&str] = &["get", "list", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn named(mut rule: PolicyRule, names: &[&str]) -> PolicyRule {
    rule.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
    rule
}

struct Grant {
    account: &'static str,
    component: Component,
    /// Name of the Role and RoleBinding in the Vizier's namespace.
    role: &'static str,
    rules: Vec<PolicyRule>,
    /// Suffix of the ClusterRole and ClusterRoleBinding, with their rules.
    cluster: Option<(&'static str, Vec<PolicyRule>)>,
}

fn grants(inputs: &Inputs) -> Vec<Grant> {
    let mut grants = vec![
        Grant {
            account: METADATA_ACCOUNT,
            component: Component::Metadata,
            role: "pl-metadata-role",
            rules: vec![
                rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"]),
                rule(&[""], &["configmaps"], READ),
            ],
            // The metadata service mirrors every Pod and Service (reflectors: list, then watch) for
            // `df.ctx[...]`; it reads nothing else.
            cluster: Some(("metadata", vec![rule(&[""], &["pods", "services"], &["list", "watch"])])),
        },
        Grant {
            account: QUERY_BROKER_ACCOUNT,
            component: Component::QueryBroker,
            role: "pl-query-broker-role",
            rules: query_broker_rules(inputs),
            cluster: None,
        },
    ];
    if inputs.cloud_enabled() {
        grants.push(Grant {
            account: CLOUD_CONNECTOR_ACCOUNT,
            component: Component::CloudConnector,
            role: "pl-cloud-connector-role",
            // What `vizier connector` calls: registration applies the cluster id to
            // pl-cluster-secrets (server-side apply is a patch) once the Secret exists, and each
            // heartbeat reads the Vizier's phase. The deploy key reaches it as an environment
            // variable (the kubelet reads that Secret, not the pod).
            rules: vec![
                named(rule(&[""], &["secrets"], &["get", "patch"]), &[CLUSTER_SECRETS]),
                named(rule(&["px.dev"], &["viziers"], &["get"]), &[inputs.name.as_str()]),
            ],
            // The kube-system namespace uid is the cluster's id; node count is reported to the cloud.
            cluster: Some((
                "cloud-connector",
                vec![named(rule(&[""], &["namespaces"], &["get"]), &["kube-system"]), rule(&[""], &["nodes"], &["list"])],
            )),
        });
    }
    grants
}

/// The query broker runs the Vizier's CronScripts (pixie-broker): it reads scripts, exports and
/// the Secrets their headers and CA certificates come from, applies its part of their status
/// (server-side apply is a patch), records Events, and holds the Vizier's broker Lease.
fn query_broker_rules(inputs: &Inputs) -> Vec<PolicyRule> {
    let lease = pixie_broker::LeaseSettings::default_name(&inputs.name);
    vec![
        rule(&[""], &["configmaps"], READ),
        rule(&["px.dev"], &["cronscripts", "pxlscripts", "dataexports"], READ),
        named(rule(&["px.dev"], &["viziers"], &["get"]), &[inputs.name.as_str()]),
        rule(&["px.dev"], &["cronscripts/status", "dataexports/status"], &["patch"]),
        // Only single reads by name: the broker fetches the Secrets a DataExport names.
        rule(&[""], &["secrets"], &["get"]),
        // The recorder creates an Event, then patches it as a series when it repeats.
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        // Creating cannot be limited to a name; reading and renewing can.
        rule(&["coordination.k8s.io"], &["leases"], &["create"]),
        named(rule(&["coordination.k8s.io"], &["leases"], &["get", "patch"]), &[lease.as_str()]),
    ]
}

pub fn render(inputs: &Inputs) -> Vec<Object> {
    let mut objects = Vec::new();
    for grant in grants(inputs) {
        let subject = Subject {
            kind: "ServiceAccount".into(),
            name: grant.account.into(),
            namespace: Some(inputs.namespace.clone()),
            ..Default::default()
        };
        objects.push(Object::from_typed(ServiceAccount {
            metadata: meta(inputs, grant.account, Some(grant.component)),
            ..Default::default()
        }));
        objects.push(Object::from_typed(Role {
            metadata: meta(inputs, grant.role, Some(grant.component)),
            rules: Some(grant.rules),
        }));
        objects.push(Object::from_typed(RoleBinding {
            metadata: meta(inputs, grant.role, Some(grant.component)),
            role_ref: RoleRef { api_group: Some("rbac.authorization.k8s.io".into()), kind: "Role".into(), name: grant.role.into() },
            subjects: Some(vec![subject.clone()]),
        }));
        if let Some((suffix, rules)) = grant.cluster {
            objects.push(Object::from_typed(ClusterRole {
                metadata: cluster_meta(inputs, suffix),
                rules: Some(rules),
                ..Default::default()
            }));
            objects.push(Object::from_typed(ClusterRoleBinding {
                metadata: cluster_meta(inputs, suffix),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: cluster_scoped_name(inputs, suffix),
                },
                subjects: Some(vec![subject]),
            }));
        }
    }
    objects
}
