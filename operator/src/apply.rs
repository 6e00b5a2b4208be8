//! Server-side apply of the rendered objects, with one field manager, forced, and only when needed:
//! an object is written when it is missing, when what we rendered changed since the last apply
//! (a digest of the rendered body is kept in an annotation), or when someone changed a field we
//! set (the stored object no longer contains the rendered one). A reconcile with nothing to change
//! therefore writes nothing. Objects of this Vizier that are no longer rendered are deleted.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::error::Error;
use crate::fetch::Live;
use crate::quantity;
use crate::resources::{Kind, Object};

/// The digest of the rendered body, as last applied.
pub const ANNOTATION_APPLIED_DIGEST: &str = "px.dev/applied-digest";

/// The object as it is applied: the rendered body plus the digest of that body.
pub fn stamped(object: &Object) -> Object {
    let digest = object.digest();
    let mut stamped = object.clone();
    let metadata = stamped.body["metadata"].as_object_mut().expect("rendered objects have metadata");
    let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
    annotations[ANNOTATION_APPLIED_DIGEST] = Value::String(digest);
    stamped
}

/// True when applying `stamped` over `live` would change nothing we care about.
pub fn up_to_date(stamped: &Object, live: &Value) -> bool {
    let digest = |v: &Value| v.pointer("/metadata/annotations").and_then(|a| a.get(ANNOTATION_APPLIED_DIGEST)).cloned();
    digest(&stamped.body).is_some() && digest(&stamped.body) == digest(live) && contains(live, &stamped.body)
}

/// Whether the stored object `have` holds everything in `want`: maps key by key (extra keys such
/// as defaults and status are fine), lists element by element with the same length, quantities by
/// value ("1.5Gi" is stored as "1536Mi"), and an empty, zero or null wanted value matches a missing
/// one.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (_, Value::Null) => true,
        (Value::Object(have), Value::Object(want)) => want.iter().all(|(key, wanted)| match have.get(key) {
            Some(value) => contains(value, wanted),
            None => is_empty(wanted),
        }),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w))
        }
        (Value::String(have), Value::String(want)) => have == want || quantity::same_value(have, want),
        (have, want) => have == want,
    }
}

/// What the apiserver leaves out when it stores an object: Go's `omitempty` drops empty maps and
/// lists, zero numbers and false.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn api(client: &Client, namespace: &str, kind: Kind) -> Api<DynamicObject> {
    let ar = kind.api_resource();
    if kind.is_namespaced() {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// The state of the Vizier's objects after [`apply_all`].
#[derive(Debug, Default)]
pub struct Applied {
    /// Every rendered object as it now stands (the apiserver's answer, or the unchanged live object).
    pub objects: BTreeMap<(Kind, String), Value>,
    /// Objects written by this reconcile.
    pub changed: Vec<(Kind, String)>,
}

pub async fn apply_all(client: &Client, namespace: &str, desired: &[Object], live: &Live) -> Result<Applied, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Applied::default();
    for object in desired {
        let stamped = stamped(object);
        let key = (object.kind, object.name.clone());
        if let Some(current) = live.get(object.kind, &object.name)
            && up_to_date(&stamped, current)
        {
            applied.objects.insert(key, current.clone());
            continue;
        }
        let result = api(client, namespace, object.kind)
            .patch(&object.name, &params, &Patch::Apply(&stamped.body))
            .await
            .map_err(|source| Error::Apply { kind: object.kind, name: object.name.clone(), source })?;
        tracing::info!(kind = %object.kind, name = %object.name, "applied");
        applied.objects.insert(key.clone(), serde_json::to_value(&result)?);
        applied.changed.push(key);
    }
    Ok(applied)
}

/// Deletes this Vizier's objects that are no longer rendered (the cloud connector once `cloudAddr`
/// is removed, the other metadata backend after a switch). Never deletes the generated Secrets or
/// the metadata volume, and only objects this Vizier owns.
pub async fn prune(client: &Client, namespace: &str, uid: &str, desired: &[Object], live: &Live) -> Result<Vec<(Kind, String)>, Error> {
    let wanted: BTreeSet<(Kind, &str)> = desired.iter().map(|o| (o.kind, o.name.as_str())).collect();
    let mut deleted = Vec::new();
    for ((kind, name), object) in &live.objects {
        let generated = *kind == Kind::Secret && crate::secrets::GENERATED.contains(&name.as_str());
        if wanted.contains(&(*kind, name.as_str())) || generated || kind.keeps_data() {
            continue;
        }
        let owned = !kind.is_namespaced()
            || object["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|owners| owners.iter().any(|o| o["uid"] == uid));
        if !owned {
            continue;
        }
        match api(client, namespace, *kind).delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(Error::Prune { kind: *kind, name: name.clone(), source }),
        }
        tracing::info!(%kind, %name, "deleted: no longer rendered");
        deleted.push((*kind, name.clone()));
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_defaults_and_status() {
        let want = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let have = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}}, "status": {"replicas": 1}});
        assert!(contains(&have, &want));
    }

    #[test]
    fn contains_sees_changed_values_and_list_lengths() {
        let want = json!({"spec": {"tolerations": [{"key": "a"}]}});
        assert!(!contains(&json!({"spec": {"tolerations": [{"key": "b"}]}}), &want));
        assert!(!contains(&json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}), &want));
        assert!(!contains(&json!({"spec": {}}), &want));
    }

    #[test]
    fn contains_compares_quantities_by_value_and_empty_as_missing() {
        assert!(contains(&json!({"memory": "1536Mi"}), &json!({"memory": "1.5Gi"})));
        assert!(!contains(&json!({"memory": "1Gi"}), &json!({"memory": "2Gi"})));
        assert!(contains(&json!({}), &json!({"emptyDir": {}, "args": [], "x": null})));
        // A probe's `initialDelaySeconds: 0` and `privileged: false` are not stored.
        assert!(contains(&json!({}), &json!({"initialDelaySeconds": 0, "privileged": false})));
        assert!(!contains(&json!({}), &json!({"initialDelaySeconds": 5})));
        assert!(!contains(&json!({"initialDelaySeconds": 5}), &json!({"initialDelaySeconds": 0})));
    }

    fn object() -> Object {
        Object {
            kind: Kind::ConfigMap,
            name: "c".into(),
            body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
        }
    }

    #[test]
    fn up_to_date_needs_the_same_digest_and_the_same_fields() {
        let stamped = stamped(&object());
        let mut live = stamped.body.clone();
        live["metadata"]["resourceVersion"] = json!("7");
        assert!(up_to_date(&stamped, &live));

        // Someone edited a field we own: write again.
        let mut drifted = live.clone();
        drifted["data"]["k"] = json!("edited");
        assert!(!up_to_date(&stamped, &drifted));

        // We stopped rendering a key: the digest differs, so the apply removes it.
        let mut smaller = object();
        smaller.body["data"] = json!({});
        assert!(!up_to_date(&super::stamped(&smaller), &live));
    }
}
