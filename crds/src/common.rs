//! Types that several kinds share: references to objects in the same namespace, values that may
//! come from a Secret, and status conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// Condition type: the object is doing what its spec asks.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the operator is moving the object towards its spec.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: the object works, but not fully (for a Vizier: data may be missing).
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type on a PxlScript: the script compiles.
pub const CONDITION_COMPILED: &str = "Compiled";

/// A reference to another object in the same namespace, by name.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct LocalObjectRef {
    /// Name of the referenced object, in this object's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

impl LocalObjectRef {
    /// A reference to the object called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// One key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret, in this object's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key inside the Secret's data whose value is used.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::SECRET_KEY_PATTERN))]
    pub key: String,
}

impl SecretKeyRef {
    /// The value stored under `key` in the Secret `name`.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// Where a value comes from when it is not written inline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValueSource {
    /// Take the value from a key of a Secret in this namespace. Use this for API keys and tokens.
    pub secret_key_ref: SecretKeyRef,
}

/// A named value written inline or taken from a Secret, shaped like a container's `env` entry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::one_of_required("value", "valueFrom", ""),
    validation = rules::mutually_exclusive("value", "valueFrom", ""),
)]
pub struct NamedValue {
    /// Name of the value. Both OTLP headers and plugin configurations travel as gRPC metadata, so
    /// this is a lower-case metadata key such as x-api-key.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::GRPC_METADATA_KEY_PATTERN))]
    pub name: String,
    /// The value itself, stored in plain text in this object. Use valueFrom for secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// Where to read the value from instead of writing it inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueSource>,
}

impl NamedValue {
    /// A value written inline.
    pub fn plain(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    /// A value read from `key` of the Secret `secret`.
    pub fn from_secret(
        name: impl Into<String>,
        secret: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            value: None,
            value_from: Some(ValueSource {
                secret_key_ref: SecretKeyRef::new(secret, key),
            }),
        }
    }
}

/// Status conditions, merged by `type` (Kubernetes condition conventions: one entry per type,
/// `lastTransitionTime` changes only when `status` flips).
pub type Conditions = Vec<Condition>;

/// Looks up the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// True when the condition of the given type exists and has status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|condition| condition.status == "True")
}
