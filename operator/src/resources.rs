//! The kinds of object the operator manages, and a rendered object: kind, name and JSON body.
//! Rendering builds typed k8s-openapi objects; everything after (patches, hashing, comparison,
//! server-side apply) works on the JSON, and [`Kind::check`] turns it back into the typed object to
//! prove a patched body still has the kind's shape.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Resource;
use kube::core::ApiResource;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Every kind the operator applies, in apply order: identities and permissions first, then
/// configuration and services, then the workloads that use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
    ConfigMap,
    Secret,
    Service,
    PersistentVolumeClaim,
    StatefulSet,
    Deployment,
    DaemonSet,
}

macro_rules! kinds {
    ($($kind:ident),* $(,)?) => {
        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$kind => stringify!($kind)),* }
            }

            pub fn api_resource(self) -> ApiResource {
                match self { $(Kind::$kind => ApiResource::erase::<$kind>(&())),* }
            }

            /// Deserializes `body` as the typed object of this kind.
            pub fn check(self, body: &Value) -> Result<(), serde_json::Error> {
                match self { $(Kind::$kind => serde_json::from_value::<$kind>(body.clone()).map(drop)),* }
            }
        }
    };
}

kinds!(
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
    ConfigMap,
    Secret,
    Service,
    PersistentVolumeClaim,
    StatefulSet,
    Deployment,
    DaemonSet,
);

impl Kind {
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::ClusterRole | Kind::ClusterRoleBinding)
    }

    /// Workloads whose rollout and availability decide Progressing and Ready.
    pub fn is_workload(self) -> bool {
        matches!(self, Kind::StatefulSet | Kind::Deployment | Kind::DaemonSet)
    }

    /// Objects that hold state a user would lose: never deleted by pruning, only by the garbage
    /// collector when the Vizier itself goes.
    pub fn keeps_data(self) -> bool {
        matches!(self, Kind::PersistentVolumeClaim)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rendered object, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    /// The full object, `apiVersion` and `kind` included.
    pub body: Value,
}

impl Object {
    /// Wraps a typed object. Panics only on a programming error (an object without a name, or a
    /// kind missing from [`Kind`]), which the render tests catch.
    pub fn from_typed<K>(object: K) -> Object
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let kind = Kind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == K::kind(&()))
            .unwrap_or_else(|| panic!("{} is not a managed kind", K::kind(&())));
        let name = object.meta().name.clone().expect("rendered objects are named");
        let mut body = serde_json::to_value(&object).expect("k8s-openapi objects serialize");
        body["apiVersion"] = Value::String(K::api_version(&()).into_owned());
        body["kind"] = Value::String(K::kind(&()).into_owned());
        Object { kind, name, body }
    }

    /// SHA-256 of the body (keys sorted, so stable), hex.
    pub fn digest(&self) -> String {
        digest_json(&self.body)
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.body["metadata"]["annotations"]
            .as_object()
            .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default()
    }
}

/// SHA-256 of a JSON value in its canonical (sorted-key) serialization, hex.
pub fn digest_json(value: &Value) -> String {
    let bytes = serde_json::to_vec(value).expect("JSON values serialize");
    hex::encode(Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn from_typed_sets_type_meta_and_name() {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some("pem".into()), ..Default::default() },
            ..Default::default()
        };
        let object = Object::from_typed(sa);
        assert_eq!(object.kind, Kind::ServiceAccount);
        assert_eq!(object.body["apiVersion"], "v1");
        assert_eq!(object.body["kind"], "ServiceAccount");
        assert_eq!(object.name, "pem");
    }

    #[test]
    fn check_rejects_a_body_of_the_wrong_shape() {
        let body = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicas": "three"}});
        assert!(Kind::Deployment.check(&body).is_err());
    }
}
