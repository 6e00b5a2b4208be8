//! Sharing materialised objects with their users through server-side apply field ownership.
//!
//! The operator applies a Plugin's CronScripts and DataExport without forcing. A user who changes a
//! field the operator set (`kubectl patch`, `kubectl edit`, or a forced `kubectl apply
//! --server-side`) becomes its owner in `metadata.managedFields`; from then on the operator leaves
//! that field out of what it applies, so the user's value survives every reconcile. Fields are
//! handed over in groups: a user who sets `schedule` also takes `frequency`, its alternative.
//!
//! To write nothing when nothing changed, the applied object carries a fingerprint of itself in
//! [`ANNOTATION_FINGERPRINT`]: an apply is skipped when the live object has that fingerprint and
//! every value the operator sets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::FIELD_MANAGER;

/// Fingerprint of what the operator last applied to a materialised object.
pub const ANNOTATION_FINGERPRINT: &str = "px.dev/applied-fingerprint";

/// A path of JSON field names from the object's root, such as `spec.frequency`.
pub type Path = &'static [&'static str];

/// Fields that change hands together.
pub type Group = &'static [Path];

/// What the operator sets on a materialised CronScript, by group.
pub const CRON_SCRIPT_GROUPS: &[Group] = &[
    &[&["spec", "source"], &["spec", "scriptRef"]],
    &[&["spec", "schedule"], &["spec", "frequency"]],
    &[&["spec", "vizierRef"]],
    &[&["spec", "exportRefs"]],
];

/// What the operator sets on a materialised DataExport, by group.
pub const DATA_EXPORT_GROUPS: &[Group] = &[
    &[&["spec", "sink", "otlpGrpc", "endpoint"]],
    &[&["spec", "sink", "otlpGrpc", "headers"]],
    &[&["spec", "sink", "otlpGrpc", "tls"]],
];

/// The managers other than the operator that own `path` (or anything under it) of the object
/// itself; the status subresource is not the object's.
pub fn other_owners(managed: &[ManagedFieldsEntry], path: &[&str]) -> Vec<String> {
    managed
        .iter()
        .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|entry| entry.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|entry| {
            let mut node = entry.fields_v1.as_ref().map(|f| &f.0);
            for name in path {
                node = node.and_then(|n| n.get(format!("f:{name}")));
            }
            node.is_some()
        })
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

/// The groups someone else has taken over, with who took them.
pub fn taken_over(managed: &[ManagedFieldsEntry], groups: &[Group]) -> Vec<(Group, Vec<String>)> {
    groups
        .iter()
        .filter_map(|group| {
            let mut owners: Vec<String> = group
                .iter()
                .flat_map(|path| other_owners(managed, path))
                .collect();
            owners.sort();
            owners.dedup();
            (!owners.is_empty()).then_some((*group, owners))
        })
        .collect()
}

/// The field paths of a 409 Conflict from a server-side apply, such as `spec.frequency`.
pub fn conflicting_fields(status: &kube::core::Status) -> Vec<String> {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    causes
        .iter()
        .map(|cause| cause.field.trim_start_matches('.').to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The groups that hold any of `fields` (paths as a conflict names them: `spec.exportRefs[name="a"]`).
pub fn groups_holding(fields: &[String], groups: &[Group]) -> Vec<Group> {
    groups
        .iter()
        .filter(|group| {
            group.iter().any(|path| {
                fields.iter().any(|field| {
                    let names: Vec<&str> = field
                        .split('.')
                        .map(|part| part.split('[').next().unwrap_or(part))
                        .collect();
                    names.starts_with(path)
                })
            })
        })
        .copied()
        .collect()
}

/// Removes `path` from `object`, and parents it leaves empty.
pub fn leave_out(object: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if parents.is_empty() {
        if let Some(map) = object.as_object_mut() {
            map.remove(*last);
        }
        return;
    }
    if let Some(child) = object.get_mut(parents[0]) {
        leave_out(child, &path[1..]);
        if child.as_object().is_some_and(|m| m.is_empty())
            && let Some(map) = object.as_object_mut()
        {
            map.remove(parents[0]);
        }
    }
}

/// Leaves every field of `groups` out of `object`.
pub fn leave_out_groups(object: &mut Value, groups: &[Group]) {
    for path in groups.iter().flat_map(|g| g.iter()) {
        leave_out(object, path);
    }
}

/// Whether `live` holds every value of `wanted`: objects by key, lists element by element (each
/// wanted element held by some live element), anything else by equality.
pub fn holds(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => wanted
            .iter()
            .all(|(key, value)| live.get(key).is_some_and(|l| holds(l, value))),
        (Value::Array(live), Value::Array(wanted)) => {
            wanted.iter().all(|w| live.iter().any(|l| holds(l, w)))
        }
        _ => live == wanted,
    }
}

/// Sets the fingerprint of `object` (computed without it) in its annotations.
pub fn stamp(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION_FINGERPRINT);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    let digest = hex::encode(Sha256::digest(object.to_string().as_bytes()));
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(
            ANNOTATION_FINGERPRINT.into(),
            Value::String(digest[..16].to_owned()),
        );
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    use super::*;

    fn entry(manager: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn managed() -> Vec<ManagedFieldsEntry> {
        vec![
            entry(
                FIELD_MANAGER,
                None,
                json!({"f:spec": {"f:frequency": {}, "f:source": {}, "f:exportRefs": {}}}),
            ),
            entry(
                "kubectl-patch",
                None,
                json!({"f:spec": {"f:frequency": {}}}),
            ),
            entry(
                "pixie-broker",
                Some("status"),
                json!({"f:status": {"f:lastRun": {}}}),
            ),
            entry(
                "user",
                None,
                json!({"f:spec": {"f:suspend": {}}, "f:metadata": {"f:labels": {"f:team": {}}}}),
            ),
        ]
    }

    #[test]
    fn a_field_someone_else_changed_is_theirs_with_its_alternative() {
        let taken = taken_over(&managed(), CRON_SCRIPT_GROUPS);
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(taken[0].0, CRON_SCRIPT_GROUPS[1]);
        assert_eq!(taken[0].1, ["kubectl-patch"]);
        // The operator's own entries and the broker's status are never a takeover.
        assert!(other_owners(&managed(), &["spec", "source"]).is_empty());
        assert!(other_owners(&managed(), &["status"]).is_empty());
    }

    #[test]
    fn taken_over_fields_are_left_out_of_the_apply() {
        let mut desired = json!({
            "apiVersion": "px.dev/v1alpha1",
            "kind": "CronScript",
            "metadata": {"name": "p-a", "labels": {"px.dev/plugin": "p"}},
            "spec": {"source": "import px", "frequency": "10s", "vizierRef": {"name": "pixie"}},
        });
        leave_out_groups(&mut desired, &[CRON_SCRIPT_GROUPS[1]]);
        assert_eq!(
            desired["spec"],
            json!({"source": "import px", "vizierRef": {"name": "pixie"}})
        );
        let mut export =
            json!({"spec": {"sink": {"otlpGrpc": {"endpoint": "a:1"}}}, "metadata": {"name": "p"}});
        leave_out(&mut export, &["spec", "sink", "otlpGrpc", "endpoint"]);
        assert_eq!(
            export,
            json!({"metadata": {"name": "p"}}),
            "emptied parents go too"
        );
    }

    #[test]
    fn conflicts_name_the_groups_to_hand_over() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "status": "Failure",
            "code": 409,
            "reason": "Conflict",
            "details": {"causes": [
                {"reason": "FieldManagerConflict", "message": "conflict with \"user\"", "field": ".spec.frequency"},
                {"reason": "FieldManagerConflict", "message": "conflict with \"user\"",
                 "field": ".spec.exportRefs[name=\"a\"].name"},
            ]},
        }))
        .unwrap();
        let fields = conflicting_fields(&status);
        assert_eq!(
            fields,
            ["spec.frequency", r#"spec.exportRefs[name="a"].name"#]
        );
        assert_eq!(
            groups_holding(&fields, CRON_SCRIPT_GROUPS),
            [CRON_SCRIPT_GROUPS[1], CRON_SCRIPT_GROUPS[3]]
        );
    }

    #[test]
    fn a_live_object_holds_what_was_applied_plus_defaults_and_other_owners_values() {
        let mut desired = json!({
            "metadata": {"name": "p-a", "labels": {"px.dev/plugin": "p"}},
            "spec": {"frequency": "10s", "exportRefs": [{"name": "p"}]},
        });
        stamp(&mut desired);
        let fingerprint = desired["metadata"]["annotations"][ANNOTATION_FINGERPRINT].clone();
        assert_eq!(fingerprint.as_str().unwrap().len(), 16);
        let mut live = desired.clone();
        live["metadata"]["labels"]["team"] = json!("a");
        live["metadata"]["resourceVersion"] = json!("12");
        live["spec"]["concurrencyPolicy"] = json!("Forbid");
        live["spec"]["exportRefs"] = json!([{"name": "p"}, {"name": "mine"}]);
        live["status"] = json!({"lastRun": {}});
        assert!(holds(&live, &desired));

        live["spec"]["frequency"] = json!("30s");
        assert!(!holds(&live, &desired));

        // Dropping a field changes the fingerprint, so the smaller apply is sent once.
        let mut smaller = desired.clone();
        leave_out(&mut smaller, &["spec", "frequency"]);
        stamp(&mut smaller);
        assert_ne!(
            smaller["metadata"]["annotations"][ANNOTATION_FINGERPRINT],
            fingerprint
        );
        stamp(&mut desired);
        assert_eq!(
            desired["metadata"]["annotations"][ANNOTATION_FINGERPRINT], fingerprint,
            "stable"
        );
    }
}
