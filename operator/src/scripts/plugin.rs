//! Plugin: while `spec.enabled`, the operator materialises the plugin as
//!
//! - a DataExport named like the Plugin, sending to `customExportURL` (or `defaultExportURL`) with
//!   the plugin's `configurations` as headers and `insecureTLS` as `tls.insecure`, and
//! - one CronScript `<plugin>-<preset>` per preset script: its script inline, every
//!   `defaultFrequency`, on `spec.vizierRef`, exporting to that DataExport,
//!
//! each controlled by the Plugin (garbage-collected with it) and labelled `px.dev/plugin=<plugin>`.
//! They are applied without force (see [`super::ownership`]): a field a user changes on them, such
//! as a CronScript's frequency, schedule or suspend, stays as the user set it. Presets removed from
//! the spec are deleted, and so is everything when the plugin is disabled.
//!
//! Ready: True with reason `Materialized` (or `Disabled`), False with `InvalidSpec`, `ApplyFailed`,
//! `InvalidScript` (naming the preset and line:col) or `VizierNotFound`. Degraded: True with reason
//! `ObjectsFailing` while a materialised object is not Ready or is Degraded, naming it.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use pixie_crds::common::{CONDITION_DEGRADED, CONDITION_READY};
use pixie_crds::{CronScript, DataExport, MaterializedScript, Plugin};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::check::{self, Args, ScriptChecker, Verdict};
use super::ownership::{self, CRON_SCRIPT_GROUPS, DATA_EXPORT_GROUPS, Group};
use super::status::{self, want};
use super::{Context, Error, RESYNC};
use crate::FIELD_MANAGER;
use crate::status::Want;

/// Label on every object materialised for a Plugin: the Plugin's name.
pub const LABEL_PLUGIN: &str = "px.dev/plugin";

/// The status fields besides conditions and observedGeneration that this controller owns.
pub const OWNED_FIELDS: &[&str] = &["dataExport", "cronScripts"];

/// The name of the CronScript made from `preset`.
pub fn cron_script_name(plugin: &str, preset: &str) -> String {
    format!("{plugin}-{preset}")
}

/// The objects an enabled Plugin stands for, as server-side apply bodies.
#[derive(Clone, Debug, PartialEq)]
pub struct Materialized {
    pub data_export: (String, Value),
    pub cron_scripts: Vec<MaterializedCron>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MaterializedCron {
    pub preset: String,
    pub name: String,
    pub object: Value,
}

fn metadata(plugin: &Plugin, name: &str) -> Result<Value, String> {
    let owner = plugin
        .controller_owner_ref(&())
        .ok_or("the Plugin has no uid (not read from the apiserver)")?;
    let labels = Map::from_iter([(LABEL_PLUGIN.to_owned(), Value::String(plugin.name_any()))]);
    Ok(json!({
        "name": name,
        "namespace": plugin.namespace(),
        "labels": labels,
        "ownerReferences": [owner],
    }))
}

/// What an enabled Plugin materialises as. Errors name the field that is missing.
pub fn render(plugin: &Plugin) -> Result<Materialized, String> {
    let spec = &plugin.spec;
    let name = plugin.name_any();
    let vizier = spec
        .vizier_ref
        .as_ref()
        .ok_or("spec.vizierRef must name the Vizier that runs the plugin's scripts")?;
    let endpoint = spec
        .custom_export_url
        .as_ref()
        .filter(|_| spec.allow_custom_export_url == Some(true))
        .or(spec.default_export_url.as_ref())
        .ok_or("spec.customExportURL or spec.defaultExportURL must say where the results go")?;

    let mut sink = json!({"endpoint": endpoint});
    if !spec.configurations.is_empty() {
        sink["headers"] = serde_json::to_value(&spec.configurations).map_err(|e| e.to_string())?;
    }
    if spec.insecure_tls == Some(true) {
        sink["tls"] = json!({"insecure": true});
    }
    let data_export = json!({
        "apiVersion": format!("{}/{}", pixie_crds::GROUP, pixie_crds::VERSION),
        "kind": "DataExport",
        "metadata": metadata(plugin, &name)?,
        "spec": {"sink": {"otlpGrpc": sink}},
    });

    let cron_scripts = spec
        .preset_scripts
        .iter()
        .map(|preset| {
            let cron_name = cron_script_name(&name, &preset.name);
            let object = json!({
                "apiVersion": format!("{}/{}", pixie_crds::GROUP, pixie_crds::VERSION),
                "kind": "CronScript",
                "metadata": metadata(plugin, &cron_name)?,
                "spec": {
                    "source": preset.script,
                    "frequency": preset.default_frequency,
                    "vizierRef": {"name": vizier.name},
                    "exportRefs": [{"name": name}],
                },
            });
            Ok(MaterializedCron {
                preset: preset.name.clone(),
                name: cron_name,
                object,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Materialized {
        data_export: (name, data_export),
        cron_scripts,
    })
}

/// Every preset script that does not compile, as `spec.presetScripts[i] (name): line:col: message`.
pub fn invalid_presets(plugin: &Plugin, checker: &ScriptChecker) -> Vec<String> {
    plugin
        .spec
        .preset_scripts
        .iter()
        .enumerate()
        .filter_map(|(index, preset)| {
            match check::check_source(checker, &preset.script, &Args::new(), "") {
                Verdict::Compiled(_) => None,
                Verdict::CompileError(error) => Some(format!(
                    "spec.presetScripts[{index}] ({}): {error}",
                    preset.name
                )),
                Verdict::InvalidArgs(message) => Some(format!(
                    "spec.presetScripts[{index}] ({}): {message}",
                    preset.name
                )),
            }
        })
        .collect()
}

/// What is wrong with a materialised object, from its conditions.
pub fn object_trouble(kind: &str, name: &str, conditions: &[Condition]) -> Option<String> {
    let troubles: Vec<String> = conditions
        .iter()
        .filter(|c| {
            (c.type_ == CONDITION_READY && c.status == "False")
                || (c.type_ == CONDITION_DEGRADED && c.status == "True")
        })
        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
        .collect();
    (!troubles.is_empty()).then(|| format!("{kind} {name}: {}", troubles.join("; ")))
}

/// The facts a Plugin's conditions are made from.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub invalid_spec: Option<String>,
    pub apply_failures: Vec<String>,
    pub invalid_presets: Vec<String>,
    pub vizier: Option<String>,
    pub vizier_exists: bool,
    pub troubles: Vec<String>,
    pub data_export: Option<String>,
    pub cron_scripts: Vec<String>,
}

/// Ready and Degraded for an enabled Plugin.
pub fn assess(findings: &Findings) -> [Want; 2] {
    let mut problems: Vec<(&str, String)> = Vec::new();
    if let Some(message) = &findings.invalid_spec {
        problems.push(("InvalidSpec", message.clone()));
    }
    problems.extend(
        findings
            .apply_failures
            .iter()
            .map(|m| ("ApplyFailed", m.clone())),
    );
    problems.extend(
        findings
            .invalid_presets
            .iter()
            .map(|m| ("InvalidScript", m.clone())),
    );
    if let Some(vizier) = findings.vizier.as_ref().filter(|_| !findings.vizier_exists) {
        problems.push((
            "VizierNotFound",
            format!("spec.vizierRef: Vizier {vizier:?} does not exist in this namespace"),
        ));
    }
    let ready = match problems.first() {
        Some((reason, _)) => {
            let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            want(CONDITION_READY, false, reason, messages.join("; "))
        }
        None => {
            let export = findings.data_export.as_deref().unwrap_or_default();
            let message = match findings.cron_scripts.as_slice() {
                [] => format!("DataExport {export} is in place; the plugin has no preset scripts"),
                crons => format!(
                    "DataExport {export} and CronScripts {} are in place",
                    crons.join(", ")
                ),
            };
            want(CONDITION_READY, true, "Materialized", message)
        }
    };
    let degraded = if findings.troubles.is_empty() {
        want(
            CONDITION_DEGRADED,
            false,
            "AsExpected",
            "every materialised object is Ready",
        )
    } else {
        want(
            CONDITION_DEGRADED,
            true,
            "ObjectsFailing",
            findings.troubles.join("; "),
        )
    };
    [ready, degraded]
}

/// The conditions of a disabled Plugin.
pub fn disabled() -> [Want; 2] {
    [
        want(
            CONDITION_READY,
            true,
            "Disabled",
            "disabled: no DataExport or CronScripts are materialised",
        ),
        want(CONDITION_DEGRADED, false, "AsExpected", "disabled"),
    ]
}

/// Whether `object` was materialised for the Plugin with this name and uid.
fn materialised_for<K: Resource>(object: &K, plugin: &str, uid: &str) -> bool {
    object.labels().get(LABEL_PLUGIN).map(String::as_str) == Some(plugin)
        && object
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Applies `desired` unless the live object already holds it, leaving out what users took over.
/// Returns whether a request was sent.
async fn apply_materialized<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    live: Option<Arc<K>>,
    desired: &Value,
    groups: &[Group],
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let managed = live
        .as_ref()
        .and_then(|l| l.meta().managed_fields.clone())
        .unwrap_or_default();
    let mut leave: Vec<Group> = Vec::new();
    for (group, owners) in ownership::taken_over(&managed, groups) {
        tracing::debug!(
            kind,
            name,
            ?group,
            ?owners,
            "leaving fields to their owners"
        );
        leave.push(group);
    }
    let live = live.map(|l| serde_json::to_value(&*l)).transpose()?;
    let mut retried = false;
    loop {
        let mut object = desired.clone();
        ownership::leave_out_groups(&mut object, &leave);
        ownership::stamp(&mut object);
        if live
            .as_ref()
            .is_some_and(|live| ownership::holds(live, &object))
        {
            return Ok(false);
        }
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => return Ok(true),
            // Someone took a field over after the cache was filled: hand it over and try again.
            Err(kube::Error::Api(status)) if status.code == 409 && !retried => {
                let more =
                    ownership::groups_holding(&ownership::conflicting_fields(&status), groups);
                if more.is_empty() {
                    return Err(Error::Apply {
                        kind,
                        name: name.to_owned(),
                        source: kube::Error::Api(status),
                    });
                }
                leave.extend(more);
                retried = true;
            }
            Err(source) => {
                return Err(Error::Apply {
                    kind,
                    name: name.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Deletes what was materialised for the Plugin and is not wanted any more.
async fn prune<K>(
    api: &Api<K>,
    store: &Store<K>,
    kind: &'static str,
    plugin: &Plugin,
    wanted: &BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
{
    let (name, namespace, uid) = (
        plugin.name_any(),
        plugin.namespace(),
        plugin.uid().unwrap_or_default(),
    );
    let stale: Vec<String> = store
        .state()
        .iter()
        .filter(|o| o.namespace() == namespace && o.meta().deletion_timestamp.is_none())
        .filter(|o| materialised_for(&***o, &name, &uid) && !wanted.contains(&o.name_any()))
        .map(|o| o.name_any())
        .collect();
    for stale in stale {
        match api.delete(&stale, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(kind, name = %stale, "deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind,
                    name: stale,
                    source,
                });
            }
        }
    }
    Ok(())
}

fn conditions_of<K: Serialize>(object: &K) -> Vec<Condition> {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| v.pointer("/status/conditions").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default()
}

pub async fn reconcile(plugin: &Plugin, ctx: &Context) -> Result<Action, Error> {
    let namespace = plugin.namespace().unwrap_or_default();
    Context::ready(&ctx.viziers, "Viziers").await?;
    Context::ready(&ctx.cron_scripts, "CronScripts").await?;
    Context::ready(&ctx.data_exports, "DataExports").await?;
    let plugins: Api<Plugin> = Api::namespaced(ctx.client.clone(), &namespace);
    let crons: Api<CronScript> = Api::namespaced(ctx.client.clone(), &namespace);
    let exports: Api<DataExport> = Api::namespaced(ctx.client.clone(), &namespace);

    if !plugin.spec.enabled {
        prune(
            &crons,
            &ctx.cron_scripts,
            "CronScript",
            plugin,
            &BTreeSet::new(),
        )
        .await?;
        prune(
            &exports,
            &ctx.data_exports,
            "DataExport",
            plugin,
            &BTreeSet::new(),
        )
        .await?;
        status::write(
            &plugins,
            &ctx.recorder,
            plugin,
            &disabled(),
            OWNED_FIELDS,
            Map::new(),
        )
        .await
        .map_err(Error::Status)?;
        return Ok(Action::requeue(RESYNC));
    }

    let materialized = match render(plugin) {
        Ok(materialized) => materialized,
        Err(message) => {
            let findings = Findings {
                invalid_spec: Some(message),
                vizier_exists: true,
                ..Default::default()
            };
            status::write(
                &plugins,
                &ctx.recorder,
                plugin,
                &assess(&findings),
                OWNED_FIELDS,
                Map::new(),
            )
            .await
            .map_err(Error::Status)?;
            return Ok(Action::await_change());
        }
    };

    let mut first_error = None;
    let mut findings = Findings {
        vizier: plugin.spec.vizier_ref.as_ref().map(|r| r.name.clone()),
        data_export: Some(materialized.data_export.0.clone()),
        ..Default::default()
    };
    let (export_name, export_object) = &materialized.data_export;
    let live = ctx
        .data_exports
        .get(&ObjectRef::new(export_name).within(&namespace));
    let applied = apply_materialized(
        &exports,
        "DataExport",
        export_name,
        live,
        export_object,
        DATA_EXPORT_GROUPS,
    )
    .await;
    if let Err(error) = applied {
        findings.apply_failures.push(error.to_string());
        first_error.get_or_insert(error);
    }
    for cron in &materialized.cron_scripts {
        let live = ctx
            .cron_scripts
            .get(&ObjectRef::new(&cron.name).within(&namespace));
        match apply_materialized(
            &crons,
            "CronScript",
            &cron.name,
            live,
            &cron.object,
            CRON_SCRIPT_GROUPS,
        )
        .await
        {
            Ok(_) => findings.cron_scripts.push(cron.name.clone()),
            Err(error) => {
                findings.apply_failures.push(error.to_string());
                first_error.get_or_insert(error);
            }
        }
    }
    let wanted: BTreeSet<String> = materialized
        .cron_scripts
        .iter()
        .map(|c| c.name.clone())
        .collect();
    prune(&crons, &ctx.cron_scripts, "CronScript", plugin, &wanted).await?;

    findings.vizier_exists = findings
        .vizier
        .as_ref()
        .is_some_and(|v| ctx.vizier_exists(&namespace, v));
    let (checked, checker) = (plugin.clone(), ctx.checker.clone());
    findings.invalid_presets =
        tokio::task::spawn_blocking(move || invalid_presets(&checked, &checker)).await?;
    if let Some(export) = ctx
        .data_exports
        .get(&ObjectRef::new(export_name).within(&namespace))
    {
        findings.troubles.extend(object_trouble(
            "DataExport",
            export_name,
            &conditions_of(&*export),
        ));
    }
    for cron in &materialized.cron_scripts {
        if let Some(live) = ctx
            .cron_scripts
            .get(&ObjectRef::new(&cron.name).within(&namespace))
        {
            findings.troubles.extend(object_trouble(
                "CronScript",
                &cron.name,
                &conditions_of(&*live),
            ));
        }
    }

    let mut fields = Map::new();
    fields.insert("dataExport".into(), Value::String(export_name.clone()));
    let listed: Vec<MaterializedScript> = materialized
        .cron_scripts
        .iter()
        .map(|c| MaterializedScript {
            preset: c.preset.clone(),
            cron_script: c.name.clone(),
        })
        .collect();
    if !listed.is_empty() {
        fields.insert("cronScripts".into(), serde_json::to_value(&listed)?);
    }
    status::write(
        &plugins,
        &ctx.recorder,
        plugin,
        &assess(&findings),
        OWNED_FIELDS,
        fields,
    )
    .await
    .map_err(Error::Status)?;
    match first_error {
        Some(error) => Err(error),
        None => Ok(Action::requeue(RESYNC)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Plugin {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/samples/px_v1alpha1_plugin.yaml"
        ))
        .unwrap();
        let mut plugin: Plugin = serde_saphyr::from_str(&text).unwrap();
        plugin.metadata.namespace = Some("pl".into());
        plugin.metadata.uid = Some("uid-1".into());
        plugin
    }

    #[test]
    fn the_sample_renders_an_owned_labelled_export_and_cron_script() {
        let materialized = render(&sample()).unwrap();
        let (name, export) = &materialized.data_export;
        assert_eq!(name, "opentelemetry");
        assert_eq!(export["metadata"]["labels"][LABEL_PLUGIN], "opentelemetry");
        let owner = &export["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("Plugin"), Some("uid-1"), Some(true))
        );
        assert_eq!(
            export["spec"],
            json!({"sink": {"otlpGrpc": {
                "endpoint": "otel-collector.observability.svc.cluster.local:4317",
                "headers": [{"name": "x-api-key", "valueFrom": {"secretKeyRef": {"name": "otel-collector-credentials", "key": "api-key"}}}],
            }}})
        );
        let [cron] = materialized.cron_scripts.as_slice() else {
            panic!("one preset")
        };
        assert_eq!(
            (cron.preset.as_str(), cron.name.as_str()),
            ("http-requests", "opentelemetry-http-requests")
        );
        assert_eq!(cron.object["spec"]["frequency"], "10s");
        assert_eq!(cron.object["spec"]["vizierRef"], json!({"name": "pixie"}));
        assert_eq!(
            cron.object["spec"]["exportRefs"],
            json!([{"name": "opentelemetry"}])
        );
        assert!(
            cron.object["spec"]["source"]
                .as_str()
                .unwrap()
                .contains("px.export")
        );
        // The rendered objects are what the CRD types read back.
        let _: DataExport = serde_json::from_value(export.clone()).unwrap();
        let _: CronScript = serde_json::from_value(cron.object.clone()).unwrap();
    }

    #[test]
    fn a_custom_url_and_insecure_tls_are_honoured_only_when_allowed() {
        let mut plugin = sample();
        plugin.spec.custom_export_url = Some("collector.example:4317".into());
        plugin.spec.insecure_tls = Some(true);
        let export = render(&plugin).unwrap().data_export.1;
        assert_eq!(
            export["spec"]["sink"]["otlpGrpc"]["endpoint"],
            "collector.example:4317"
        );
        assert_eq!(
            export["spec"]["sink"]["otlpGrpc"]["tls"],
            json!({"insecure": true})
        );
        plugin.spec.allow_custom_export_url = Some(false);
        let export = render(&plugin).unwrap().data_export.1;
        assert_eq!(
            export["spec"]["sink"]["otlpGrpc"]["endpoint"],
            "otel-collector.observability.svc.cluster.local:4317"
        );
        plugin.spec.vizier_ref = None;
        assert!(render(&plugin).unwrap_err().contains("spec.vizierRef"));
    }

    #[test]
    fn the_sample_presets_compile_and_a_broken_one_is_named() {
        let checker = ScriptChecker::default();
        let mut plugin = sample();
        assert_eq!(invalid_presets(&plugin, &checker), Vec::<String>::new());
        plugin.spec.preset_scripts[0].script =
            "import px\npx.display(px.DataFrame(table='http_events').nope)\n".into();
        let invalid = invalid_presets(&plugin, &checker);
        assert_eq!(invalid.len(), 1);
        assert!(
            invalid[0].starts_with("spec.presetScripts[0] (http-requests): 2:"),
            "{}",
            invalid[0]
        );
        let [ready, _] = assess(&Findings {
            invalid_presets: invalid,
            vizier_exists: true,
            ..Default::default()
        });
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (false, "InvalidScript")
        );
    }

    #[test]
    fn conditions_say_what_is_materialised_and_what_fails() {
        let findings = Findings {
            vizier: Some("pixie".into()),
            vizier_exists: true,
            data_export: Some("otel".into()),
            cron_scripts: vec!["otel-a".into()],
            ..Default::default()
        };
        let [ready, degraded] = assess(&findings);
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (true, "Materialized")
        );
        assert_eq!(
            ready.message,
            "DataExport otel and CronScripts otel-a are in place"
        );
        assert!(!degraded.status);

        let missing = Findings {
            vizier_exists: false,
            ..findings.clone()
        };
        let [ready, _] = assess(&missing);
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (false, "VizierNotFound")
        );

        let condition = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "SecretNotFound".into(),
            message: "no secret".into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        let trouble = object_trouble("DataExport", "otel", &[condition("Ready", "False")]).unwrap();
        assert_eq!(
            trouble,
            "DataExport otel: Ready=False SecretNotFound: no secret"
        );
        assert_eq!(
            object_trouble("DataExport", "otel", &[condition("Ready", "True")]),
            None
        );
        let [_, degraded] = assess(&Findings {
            troubles: vec![trouble],
            ..findings
        });
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (true, "ObjectsFailing")
        );
    }
}
