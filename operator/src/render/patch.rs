//! Strategic merge patch (the `kubectl patch --type strategic` semantics) for the `spec.patches`
//! of a Vizier, implemented on JSON for the cases pod specs need:
//! - maps merge key by key; `null` deletes a key;
//! - lists of named things merge element by element on their merge key (`containers`,
//!   `initContainers`, `env`, `volumes`, `imagePullSecrets` by `name`; `volumeMounts` by
//!   `mountPath`; `ports` by `containerPort` or, in a Service, `port`; `hostAliases` by `ip`;
//!   `topologySpreadConstraints` by `topologyKey`); other lists (`args`, `command`, `tolerations`)
//!   are replaced, as in Kubernetes;
//! - directives: `$patch: delete` on a list element or a map, `$patch: replace` on a map or list,
//!   `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` and `$retainKeys` are accepted
//!   and ignored (order and retained keys do not change what is deployed).
//!
//! This is a strategic merge rather than a JSON merge patch because Pixie's users write patches
//! such as `{"spec":{"template":{"spec":{"containers":[{"name":"pem","env":[...]}]}}}}`, which a JSON
//! merge patch would turn into a container without an image.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("a patch must be a JSON or YAML object")]
    NotAnObject,
    #[error("at {path}: list element has no merge key `{key}`")]
    MissingMergeKey { path: String, key: &'static str },
    #[error("at {path}: unknown directive $patch: {value}")]
    UnknownDirective { path: String, value: String },
}

/// Parses a patch written as JSON or YAML into an object.
pub fn parse(text: &str) -> Result<Value, String> {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => serde_saphyr::from_str(text).map_err(|e| e.to_string())?,
    };
    if value.is_object() { Ok(value) } else { Err(PatchError::NotAnObject.to_string()) }
}

/// Applies `patch` to `base` in place.
pub fn strategic_merge(base: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else { return Err(PatchError::NotAnObject) };
    merge_map(base, patch, "")
}

fn merge_map(base: &mut Value, patch: &Map<String, Value>, path: &str) -> Result<(), PatchError> {
    match directive(patch, path)? {
        Some(Directive::Replace) => {
            *base = clean(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some(Directive::Delete) => {
            // Handled by the caller, which removes the key; at the top level it empties the object.
            *base = Value::Object(Map::new());
            return Ok(());
        }
        None => {}
    }
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let target = base.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        let here = format!("{path}/{key}");
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (target.get_mut(field), value) {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) if matches!(directive(inner, &here)?, Some(Directive::Delete)) => {
                target.remove(key);
            }
            Value::Object(inner) => {
                merge_map(target.entry(key.clone()).or_insert(Value::Null), inner, &here)?;
            }
            Value::Array(items) => {
                let merged = merge_list(target.get(key), key, items, &here)?;
                target.insert(key.clone(), merged);
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(base: Option<&Value>, field: &str, patch: &[Value], path: &str) -> Result<Value, PatchError> {
    let replace = patch.iter().any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    let base_items: &[Value] = base.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let key = merge_key(field, base_items, patch);
    let (Some(key), false) = (key, replace) else {
        let kept = patch.iter().filter(|item| item.get("$patch").is_none()).map(clean).collect();
        return Ok(Value::Array(kept));
    };
    let mut merged = base_items.to_vec();
    for item in patch {
        let Value::Object(fields) = item else {
            return Err(PatchError::MissingMergeKey { path: path.to_owned(), key });
        };
        let id = fields.get(key).ok_or_else(|| PatchError::MissingMergeKey { path: path.to_owned(), key })?;
        let position = merged.iter().position(|existing| existing.get(key) == Some(id));
        match (directive(fields, path)?, position) {
            (Some(Directive::Delete), Some(index)) => {
                merged.remove(index);
            }
            (Some(Directive::Delete), None) => {}
            (_, Some(index)) => merge_map(&mut merged[index], fields, &format!("{path}[{key}={id}]"))?,
            (_, None) => merged.push(clean(item)),
        }
    }
    Ok(Value::Array(merged))
}

/// The merge key Kubernetes declares for a list field, or None for lists that are replaced whole.
fn merge_key(field: &str, base: &[Value], patch: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        // Container ports merge on containerPort, Service ports on port.
        "ports" => {
            let container = base.iter().chain(patch).any(|item| item.get("containerPort").is_some());
            Some(if container { "containerPort" } else { "port" })
        }
        _ => None,
    }
}

enum Directive {
    Replace,
    Delete,
}

fn directive(map: &Map<String, Value>, path: &str) -> Result<Option<Directive>, PatchError> {
    match map.get("$patch") {
        None => Ok(None),
        Some(Value::String(s)) if s == "replace" => Ok(Some(Directive::Replace)),
        Some(Value::String(s)) if s == "delete" => Ok(Some(Directive::Delete)),
        Some(Value::String(s)) if s == "merge" => Ok(None),
        Some(other) => Err(PatchError::UnknownDirective { path: path.to_owned(), value: other.to_string() }),
    }
}

/// A patch fragment inserted as new content, with its directives removed.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), clean(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(mut base: Value, patch: Value) -> Value {
        strategic_merge(&mut base, &patch).unwrap();
        base
    }

    fn pod() -> Value {
        json!({"spec": {"template": {"spec": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "containers": [
                {"name": "pem", "image": "pem:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}],
                 "volumeMounts": [{"name": "sys", "mountPath": "/sys"}]},
                {"name": "sidecar", "image": "side:1"}
            ],
            "volumes": [{"name": "sys", "hostPath": {"path": "/sys"}}],
            "tolerations": [{"key": "a", "operator": "Exists"}]
        }}}})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {
            "nodeSelector": {"pixie": "allowed", "kubernetes.io/os": null}}}}}));
        assert_eq!(out["spec"]["template"]["spec"]["nodeSelector"], json!({"pixie": "allowed"}));
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "pem:1");
    }

    #[test]
    fn containers_and_env_merge_by_name() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {"containers": [
            {"name": "pem", "env": [{"name": "B", "value": "changed"}, {"name": "C", "value": "3"}]}
        ]}}}}));
        let pem = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(pem["image"], "pem:1", "a container patch keeps the fields it does not name");
        assert_eq!(
            pem["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "changed"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(out["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
    }

    #[test]
    fn patch_delete_removes_a_list_element_by_key() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "$patch": "delete"}],
            "volumes": [{"name": "sys", "$patch": "delete"}, {"name": "extra", "emptyDir": {}}]
        }}}}));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        assert_eq!(spec["volumes"], json!([{"name": "extra", "emptyDir": {}}]));
    }

    #[test]
    fn patch_delete_on_a_map_removes_the_key() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {"nodeSelector": {"$patch": "delete"}}}}}));
        assert!(out["spec"]["template"]["spec"].get("nodeSelector").is_none());
    }

    #[test]
    fn replace_directive_and_lists_without_merge_key_are_replaced() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "nodeSelector": {"$patch": "replace", "only": "this"}
        }}}}));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["tolerations"], json!([{"key": "b", "operator": "Exists"}]));
        assert_eq!(spec["nodeSelector"], json!({"only": "this"}));

        let out = patched(pod(), json!({"spec": {"template": {"spec": {
            "containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}));
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "x"}]));
    }

    #[test]
    fn ports_and_mounts_use_their_own_merge_keys() {
        let out = patched(pod(), json!({"spec": {"template": {"spec": {"containers": [{"name": "pem",
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "volumeMounts": [{"mountPath": "/sys", "readOnly": true}]}]}}}}));
        let pem = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(pem["ports"], json!([{"containerPort": 80, "name": "http", "hostPort": 8080}]));
        assert_eq!(pem["volumeMounts"], json!([{"name": "sys", "mountPath": "/sys", "readOnly": true}]));

        let service = patched(json!({"spec": {"ports": [{"port": 1, "name": "a"}]}}),
            json!({"spec": {"ports": [{"port": 1, "targetPort": 2}, {"port": 3}]}}));
        assert_eq!(service["spec"]["ports"], json!([{"port": 1, "name": "a", "targetPort": 2}, {"port": 3}]));
    }

    #[test]
    fn delete_from_primitive_list() {
        let out = patched(json!({"args": ["a", "b", "c"]}), json!({"$deleteFromPrimitiveList/args": ["b"]}));
        assert_eq!(out, json!({"args": ["a", "c"]}));
    }

    #[test]
    fn errors_name_the_problem() {
        let mut base = pod();
        let err = strategic_merge(&mut base, &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}))
            .unwrap_err();
        assert!(matches!(err, PatchError::MissingMergeKey { key: "name", .. }), "{err}");
        assert!(matches!(strategic_merge(&mut base, &json!([1])), Err(PatchError::NotAnObject)));
        let err = strategic_merge(&mut base, &json!({"spec": {"$patch": "explode"}})).unwrap_err();
        assert!(matches!(err, PatchError::UnknownDirective { .. }));
    }

    #[test]
    fn parse_accepts_json_and_yaml_objects_only() {
        assert_eq!(parse(r#"{"a": 1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(parse("spec:\n  replicas: 2\n").unwrap(), json!({"spec": {"replicas": 2}}));
        assert!(parse("- 1\n- 2\n").is_err());
        assert!(parse("{not json").is_err());
    }
}
