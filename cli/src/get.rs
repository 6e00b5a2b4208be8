//! What `kubectl pixie get` prints for a list of px.dev objects: a table with each kind's status
//! columns, the objects as JSON or YAML (one object, or a `List` like kubectl's), or their names.
//!
//! Objects are read as JSON values rather than the typed structs so that a status field this build
//! does not know yet (a newer operator's) still shows, and an object another version wrote never
//! fails to print.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::kinds::PxKind;
use crate::table::{NONE, Table, age_since};

/// `-o` of `get` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectFormat {
    Table,
    Json,
    Yaml,
    Name,
}

/// The longest message `-o table` shows before cutting it with `…`.
pub const MAX_MESSAGE_CHARS: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The value at `path` under `value`, if every step exists.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// The string at `path`, if it is one.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

/// The condition of type `type_` in `status.conditions`.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    at(object, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// `True`, `False` or `Unknown` of a condition; `<none>` when it is not there.
fn condition_status(object: &Value, type_: &str) -> String {
    condition(object, type_)
        .and_then(|c| c.get("status")?.as_str())
        .unwrap_or(NONE)
        .to_owned()
}

fn text(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or(NONE).to_owned()
}

fn number(value: Option<&Value>, absent: &str) -> String {
    value
        .and_then(Value::as_i64)
        .map_or(absent.to_owned(), |n| n.to_string())
}

fn boolean(value: Option<&Value>) -> String {
    match value.and_then(Value::as_bool) {
        Some(true) => "True".to_owned(),
        _ => "False".to_owned(),
    }
}

/// The first line of `message`, cut to `max` characters with `…`.
pub fn short_message(message: &str, max: usize) -> String {
    let line = message.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The column headers of `kind`'s table (without NAMESPACE).
pub fn headers(kind: PxKind) -> &'static [&'static str] {
    match kind {
        PxKind::Vizier => &["NAME", "VERSION", "PHASE", "READY", "DEGRADED", "AGE"],
        PxKind::PxlScript => &["NAME", "COMPILED", "AGE", "MESSAGE"],
        PxKind::CronScript => &[
            "NAME", "SCHEDULE", "SUSPEND", "LAST RUN", "OUTCOME", "FAILURES", "AGE",
        ],
        PxKind::DataExport => &[
            "NAME",
            "ENDPOINT",
            "READY",
            "LAST DELIVERY",
            "DROPPED",
            "AGE",
        ],
        PxKind::Plugin => &["NAME", "VERSION", "ENABLED", "READY", "AGE"],
    }
}

/// One table row of `object`, in the order of [`headers`].
pub fn row(kind: PxKind, object: &Value, now: Timestamp) -> Vec<String> {
    let name = text(str_at(object, &["metadata", "name"]));
    let age = age_since(str_at(object, &["metadata", "creationTimestamp"]), now);
    match kind {
        PxKind::Vizier => {
            let degraded = match condition(object, "Degraded") {
                Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {
                    text(c.get("reason").and_then(Value::as_str))
                }
                Some(c) => text(c.get("status").and_then(Value::as_str)),
                None => NONE.to_owned(),
            };
            vec![
                name,
                text(str_at(object, &["status", "version"])),
                text(str_at(object, &["status", "vizierPhase"])),
                condition_status(object, "Ready"),
                degraded,
                age,
            ]
        }
        PxKind::PxlScript => {
            let message = condition(object, "Compiled")
                .and_then(|c| c.get("message")?.as_str())
                .map(|m| short_message(m, MAX_MESSAGE_CHARS))
                .unwrap_or_default();
            vec![name, condition_status(object, "Compiled"), age, message]
        }
        PxKind::CronScript => {
            let schedule = match (
                str_at(object, &["spec", "schedule"]),
                str_at(object, &["spec", "frequency"]),
            ) {
                (Some(cron), _) => cron.to_owned(),
                (None, Some(every)) => format!("every {every}"),
                (None, None) => NONE.to_owned(),
            };
            let last_run = match str_at(object, &["status", "lastRun", "startTime"]) {
                Some(start) => age_since(Some(start), now),
                None => NONE.to_owned(),
            };
            vec![
                name,
                schedule,
                boolean(at(object, &["spec", "suspend"])),
                last_run,
                text(str_at(object, &["status", "lastRun", "outcome"])),
                number(at(object, &["status", "consecutiveFailures"]), "0"),
                age,
            ]
        }
        PxKind::DataExport => {
            let last_delivery = match str_at(object, &["status", "lastDelivery", "time"]) {
                Some(time) => age_since(Some(time), now),
                None => NONE.to_owned(),
            };
            vec![
                name,
                text(str_at(object, &["spec", "sink", "otlpGrpc", "endpoint"])),
                condition_status(object, "Ready"),
                last_delivery,
                // Records dropped because the export queue was full (absent on older operators).
                number(at(object, &["status", "droppedRecords"]), "0"),
                age,
            ]
        }
        PxKind::Plugin => vec![
            name,
            text(str_at(object, &["spec", "version"])),
            boolean(at(object, &["spec", "enabled"])),
            condition_status(object, "Ready"),
            age,
        ],
    }
}

/// The table of `objects`; with `all_namespaces`, a NAMESPACE column first.
pub fn table(kind: PxKind, objects: &[Value], all_namespaces: bool, now: Timestamp) -> Table {
    let mut table = Table::new(headers(kind).iter().copied());
    for object in objects {
        table.push(row(kind, object, now));
    }
    if all_namespaces {
        let namespaces: Vec<String> = objects
            .iter()
            .map(|o| text(str_at(o, &["metadata", "namespace"])))
            .collect();
        table.prepend_column("NAMESPACE", &namespaces);
    }
    table
}

/// kubectl's note when a list is empty (it goes to stderr).
pub fn nothing_found(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_owned(),
    }
}

/// `object` as `kubectl get -o json` shows it: `apiVersion` and `kind` set, managed fields left out
/// (kubectl hides them unless asked).
pub fn for_output(kind: PxKind, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        let resource = kind.api_resource();
        map.insert("apiVersion".into(), Value::String(resource.api_version));
        map.insert("kind".into(), Value::String(resource.kind));
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    object
}

/// Everything `get` prints to stdout: `single` is true when the user named one object, which then
/// prints as itself rather than inside a `List`.
pub fn render(
    kind: PxKind,
    format: ObjectFormat,
    objects: Vec<Value>,
    single: bool,
    all_namespaces: bool,
    now: Timestamp,
) -> Result<String, RenderError> {
    match format {
        ObjectFormat::Table => {
            if objects.is_empty() {
                return Ok(String::new());
            }
            Ok(table(kind, &objects, all_namespaces, now).render())
        }
        ObjectFormat::Name => Ok(objects
            .iter()
            .map(|o| kind.object_name(str_at(o, &["metadata", "name"]).unwrap_or_default()) + "\n")
            .collect()),
        ObjectFormat::Json | ObjectFormat::Yaml => {
            let document = document(kind, objects, single);
            if format == ObjectFormat::Json {
                Ok(serde_json::to_string_pretty(&document)? + "\n")
            } else {
                Ok(serde_saphyr::to_string(&document)?)
            }
        }
    }
}

fn document(kind: PxKind, objects: Vec<Value>, single: bool) -> Value {
    let mut objects: Vec<Value> = objects.into_iter().map(|o| for_output(kind, o)).collect();
    if single && objects.len() == 1 {
        return objects.pop().expect("one object");
    }
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": objects,
        "metadata": {"resourceVersion": ""},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn vizier(name: &str, ns: &str, status: Value) -> Value {
        json!({
            "apiVersion": "px.dev/v1alpha1",
            "kind": "Vizier",
            "metadata": {
                "name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:55:00Z",
                "managedFields": [{"manager": "kubectl-pixie"}],
            },
            "spec": {"deployKey": "px-dep-x"},
            "status": status,
        })
    }

    fn healthy() -> Value {
        json!({
            "version": "0.14.15", "vizierPhase": "Healthy",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "ok"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "ok"},
            ],
        })
    }

    #[test]
    fn a_vizier_row_shows_version_phase_ready_and_the_degraded_reason() {
        let ok = vizier("pixie", "pl", healthy());
        assert_eq!(
            row(PxKind::Vizier, &ok, now()),
            ["pixie", "0.14.15", "Healthy", "True", "False", "5m"]
        );
        let degraded = vizier(
            "pixie",
            "pl",
            json!({"vizierPhase": "Degraded", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Degraded", "status": "True", "reason": "PEMsHighFailureRate"},
            ]}),
        );
        assert_eq!(
            row(PxKind::Vizier, &degraded, now()),
            [
                "pixie",
                "<none>",
                "Degraded",
                "True",
                "PEMsHighFailureRate",
                "5m"
            ]
        );
        // Before the operator has written any status.
        let fresh = vizier("pixie", "pl", Value::Null);
        assert_eq!(
            row(PxKind::Vizier, &fresh, now()),
            ["pixie", "<none>", "<none>", "<none>", "<none>", "5m"]
        );
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column_first() {
        let objects = [
            vizier("pixie", "pl", healthy()),
            vizier("b", "team-a", healthy()),
        ];
        let text = table(PxKind::Vizier, &objects, true, now()).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "NAME",
                "VERSION",
                "PHASE",
                "READY",
                "DEGRADED",
                "AGE"
            ]
        );
        assert!(lines[2].starts_with("team-a      b "), "{text}");
    }

    #[test]
    fn a_script_row_shows_the_first_line_of_the_compile_message() {
        let script = json!({
            "metadata": {"name": "broken", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Compiled", "status": "False",
                "message": "3:5: unknown column 'x'\nmore detail"}]},
        });
        assert_eq!(
            row(PxKind::PxlScript, &script, now()),
            ["broken", "False", "60m", "3:5: unknown column 'x'"]
        );
        assert_eq!(short_message(&"a".repeat(100), 10), "aaaaaaaaa…");
    }

    #[test]
    fn a_cron_row_shows_schedule_or_frequency_and_the_last_run() {
        let every = json!({
            "metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"frequency": "10s", "suspend": true},
            "status": {"lastRun": {"startTime": "2026-01-01T00:59:50Z", "outcome": "Failed"},
                       "consecutiveFailures": 3},
        });
        assert_eq!(
            row(PxKind::CronScript, &every, now()),
            ["c", "every 10s", "True", "10s", "Failed", "3", "60m"]
        );
        let cron = json!({"metadata": {"name": "d"}, "spec": {"schedule": "* * * * *"}});
        assert_eq!(
            row(PxKind::CronScript, &cron, now()),
            ["d", "* * * * *", "False", "<none>", "<none>", "0", "<none>"]
        );
    }

    #[test]
    fn an_export_row_reads_dropped_records_when_the_status_has_them() {
        let export = json!({
            "metadata": {"name": "otel"},
            "spec": {"sink": {"otlpGrpc": {"endpoint": "collector:4317"}}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                       "lastDelivery": {"time": "2026-01-01T00:58:00Z", "succeeded": false},
                       "droppedRecords": 42},
        });
        assert_eq!(
            row(PxKind::DataExport, &export, now()),
            ["otel", "collector:4317", "False", "2m", "42", "<none>"]
        );
        let plugin =
            json!({"metadata": {"name": "p"}, "spec": {"version": "0.0.3", "enabled": true}});
        assert_eq!(
            row(PxKind::Plugin, &plugin, now()),
            ["p", "0.0.3", "True", "<none>", "<none>"]
        );
    }

    #[test]
    fn one_named_object_prints_as_itself_and_several_as_a_list() {
        let one = render(
            PxKind::Vizier,
            ObjectFormat::Json,
            vec![vizier("pixie", "pl", healthy())],
            true,
            false,
            now(),
        )
        .unwrap();
        let value: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(value["kind"], "Vizier");
        assert!(value["metadata"].get("managedFields").is_none(), "{one}");

        let list = render(
            PxKind::Vizier,
            ObjectFormat::Yaml,
            vec![vizier("a", "pl", healthy()), vizier("b", "pl", healthy())],
            false,
            false,
            now(),
        )
        .unwrap();
        let value: Value = serde_saphyr::from_str(&list).unwrap();
        assert_eq!(value["kind"], "List");
        assert_eq!(value["items"][1]["metadata"]["name"], "b");
        assert_eq!(value["items"][0]["apiVersion"], "px.dev/v1alpha1");

        let names = render(
            PxKind::Vizier,
            ObjectFormat::Name,
            vec![vizier("a", "pl", healthy())],
            false,
            false,
            now(),
        )
        .unwrap();
        assert_eq!(names, "vizier.px.dev/a\n");
    }
}
