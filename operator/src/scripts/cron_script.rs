//! CronScript: the operator checks what the query broker needs to run it and reports `Ready`; the
//! broker runs it and owns the run fields and `Degraded`.
//!
//! Ready=False reasons, in the order they are checked (the message lists every problem, the
//! reason is the first): `VizierNotFound` (spec.vizierRef), `ScriptNotFound` (spec.scriptRef),
//! `ScriptNotCompiled` (the referenced PxlScript does not compile), `CompileError` (the inline
//! source does not compile), `InvalidArgs` (the script compiles, but not with spec.args),
//! `ExportNotFound` (every missing spec.exportRefs entry), `InvalidSchedule` (spec.schedule or
//! spec.frequency), `MappingError` (a DataExport's spec.otel does not fit the script's outputs, or
//! nothing would be exported). Otherwise Ready=True with reason `Scheduled`.

use std::time::SystemTime;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use pixie_broker::schedule::Schedule;
use pixie_crds::common::CONDITION_READY;
use pixie_crds::{CronScript, CronScriptSpec, DataExport, PxlScript};
use pixie_pxl::ScriptSummary;
use serde_json::Map;

use super::check::{self, ScriptChecker, Verdict};
use super::status::{self, want};
use super::{Context, Error, RESYNC};
use crate::status::Want;

/// What a CronScript refers to, as found in the caches.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub spec: CronScriptSpec,
    pub vizier_exists: bool,
    /// The PxlScript named by spec.scriptRef, when it exists.
    pub script: Option<PxlScript>,
    /// Each spec.exportRefs entry, with the DataExport when it exists.
    pub exports: Vec<(String, Option<DataExport>)>,
}

/// One thing that keeps a CronScript from running as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        reason,
        message: message.into(),
    }
}

/// Parses spec.schedule or spec.frequency with the broker's own parser, so that what the operator
/// accepts is exactly what the broker runs; Ok is a description of when the script runs.
pub fn parse_schedule(spec: &CronScriptSpec) -> Result<String, String> {
    match Schedule::from_spec(spec).map_err(|e| e.to_string())? {
        Schedule::Cron { expression, .. } => Ok(format!("runs on schedule {expression:?} (UTC)")),
        Schedule::Every(_) => Ok(format!("runs every {}", spec.frequency.as_deref().unwrap_or_default())),
    }
}

/// Checks a DataExport's spec.otel against the outputs of the script; every problem names the
/// mapping entry and the column.
pub fn mapping_problems(summary: &ScriptSummary, export: &DataExport) -> Vec<String> {
    let name = export.name_any();
    let Some(otel) = &export.spec.otel else {
        return if summary.exports.is_empty() {
            vec![format!(
                "DataExport {name:?} has no spec.otel mapping and the script calls no px.export: nothing would be \
                 exported"
            )]
        } else {
            Vec::new()
        };
    };
    let mut problems = Vec::new();
    let mut mapped_any = false;
    for (index, table) in otel.tables.iter().enumerate() {
        let Some(output) = summary.outputs.iter().find(|o| o.name == table.table) else {
            continue;
        };
        mapped_any = true;
        // The exporter resolves every column before it reads a row, so an empty batch of the
        // output's schema finds exactly the mistakes a real run would.
        let fields: Vec<Field> = output
            .columns
            .iter()
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect();
        let batch = RecordBatch::new_empty(std::sync::Arc::new(Schema::new(fields)));
        if let Err(error) = pixie_export::map_table(&batch, table, SystemTime::UNIX_EPOCH) {
            problems.push(format!(
                "DataExport {name:?} spec.otel.tables[{index}].{error}"
            ));
        }
    }
    if !mapped_any && summary.exports.is_empty() {
        let tables: Vec<&str> = otel.tables.iter().map(|t| t.table.as_str()).collect();
        problems.push(format!(
            "DataExport {name:?} maps tables {} but the script outputs {} and calls no px.export: nothing would be \
             exported",
            tables.join(", "),
            check::output_names(summary)
        ));
    }
    problems
}

/// Everything that keeps the CronScript from running as written, in the order of the reasons in
/// the module documentation.
pub fn problems(inputs: &Inputs, checker: &ScriptChecker) -> Vec<Problem> {
    let spec = &inputs.spec;
    let mut problems = Vec::new();
    if !inputs.vizier_exists {
        problems.push(problem(
            "VizierNotFound",
            format!(
                "spec.vizierRef: Vizier {:?} does not exist in this namespace",
                spec.vizier_ref.name
            ),
        ));
    }
    let verdict = match (&spec.source, &spec.script_ref, &inputs.script) {
        (Some(source), _, _) => match check::check_source(checker, source, &spec.args, "spec.args")
        {
            Verdict::CompileError(error) => {
                problems.push(problem("CompileError", error.to_string()));
                None
            }
            verdict => Some(verdict),
        },
        (None, Some(reference), None) => {
            problems.push(problem(
                "ScriptNotFound",
                format!(
                    "spec.scriptRef: PxlScript {:?} does not exist in this namespace",
                    reference.name
                ),
            ));
            None
        }
        (None, Some(reference), Some(script)) => {
            let own = check::check_pxl_script(
                checker,
                &script.spec.source,
                &script.spec.args,
                &Default::default(),
                "",
            );
            match own {
                Verdict::Compiled(_) => Some(check::check_pxl_script(
                    checker,
                    &script.spec.source,
                    &script.spec.args,
                    &spec.args,
                    "spec.args",
                )),
                Verdict::CompileError(error) => {
                    problems.push(problem(
                        "ScriptNotCompiled",
                        format!("PxlScript {:?} does not compile: {error}", reference.name),
                    ));
                    None
                }
                Verdict::InvalidArgs(message) => {
                    problems.push(problem(
                        "ScriptNotCompiled",
                        format!("PxlScript {:?} does not compile: {message}", reference.name),
                    ));
                    None
                }
            }
        }
        (None, None, _) => {
            problems.push(problem(
                "CompileError",
                "one of spec.source or spec.scriptRef must be set",
            ));
            None
        }
    };
    let summary = match verdict {
        Some(Verdict::InvalidArgs(message)) => {
            problems.push(problem("InvalidArgs", message));
            None
        }
        Some(Verdict::Compiled(summary)) => Some(summary),
        _ => None,
    };
    let missing: Vec<&str> = inputs
        .exports
        .iter()
        .filter(|(_, found)| found.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() == 1 {
            ("DataExport", "does")
        } else {
            ("DataExports", "do")
        };
        let names: Vec<String> = missing.iter().map(|n| format!("{n:?}")).collect();
        problems.push(problem(
            "ExportNotFound",
            format!(
                "spec.exportRefs: {noun} {} {verb} not exist in this namespace",
                names.join(", ")
            ),
        ));
    }
    if let Err(message) = parse_schedule(spec) {
        problems.push(problem("InvalidSchedule", message));
    }
    if let Some(summary) = summary {
        for export in inputs
            .exports
            .iter()
            .filter_map(|(_, found)| found.as_ref())
        {
            problems.extend(
                mapping_problems(&summary, export)
                    .into_iter()
                    .map(|m| problem("MappingError", m)),
            );
        }
    }
    problems
}

/// The Ready condition for these inputs.
pub fn assess(inputs: &Inputs, checker: &ScriptChecker) -> Want {
    let problems = problems(inputs, checker);
    if let Some(first) = problems.first() {
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        return want(CONDITION_READY, false, first.reason, messages.join("; "));
    }
    let spec = &inputs.spec;
    let when = parse_schedule(spec).unwrap_or_default();
    let mut message = format!("{when} on Vizier {:?}", spec.vizier_ref.name);
    if !spec.export_refs.is_empty() {
        let names: Vec<&str> = spec.export_refs.iter().map(|r| r.name.as_str()).collect();
        message.push_str(&format!(", exporting to {}", names.join(", ")));
    }
    if spec.suspend == Some(true) {
        message.push_str("; suspended: no new runs start");
    }
    want(CONDITION_READY, true, "Scheduled", message)
}

pub async fn reconcile(cron: &CronScript, ctx: &Context) -> Result<Action, Error> {
    let namespace = cron.namespace().unwrap_or_default();
    Context::ready(&ctx.viziers, "Viziers").await?;
    Context::ready(&ctx.pxl_scripts, "PxlScripts").await?;
    Context::ready(&ctx.data_exports, "DataExports").await?;
    let spec = &cron.spec;
    let inputs = Inputs {
        spec: spec.clone(),
        vizier_exists: ctx.vizier_exists(&namespace, &spec.vizier_ref.name),
        script: spec
            .script_ref
            .as_ref()
            .and_then(|r| {
                ctx.pxl_scripts
                    .get(&ObjectRef::new(&r.name).within(&namespace))
            })
            .map(|s| (*s).clone()),
        exports: spec
            .export_refs
            .iter()
            .map(|r| {
                let found = ctx
                    .data_exports
                    .get(&ObjectRef::new(&r.name).within(&namespace))
                    .map(|e| (*e).clone());
                (r.name.clone(), found)
            })
            .collect(),
    };
    let checker = ctx.checker.clone();
    let ready = tokio::task::spawn_blocking(move || assess(&inputs, &checker)).await?;
    let api: Api<CronScript> = Api::namespaced(ctx.client.clone(), &namespace);
    status::write(&api, &ctx.recorder, cron, &[ready], &[], Map::new())
        .await
        .map_err(Error::Status)?;
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    use pixie_crds::LocalObjectRef;
    use pixie_crds::data_export::{
        GaugeMapping, OtelMapping, OtelTableMapping, OtlpGrpcSink, Sink,
    };
    use pixie_crds::{DataExportSpec, PxlScriptSpec};

    use super::*;

    const SOURCE: &str = "import px\n\
        df = px.DataFrame(table='http_events', start_time='-1m')\n\
        df.service = df.ctx['service']\n\
        df = df.groupby('service').agg(requests=('latency', px.count))\n\
        px.display(df, 'per_service')\n";

    fn spec() -> CronScriptSpec {
        CronScriptSpec {
            source: Some(SOURCE.into()),
            script_ref: None,
            args: Default::default(),
            schedule: None,
            frequency: Some("10s".into()),
            vizier_ref: LocalObjectRef::new("pixie"),
            export_refs: vec![LocalObjectRef::new("otel")],
            suspend: None,
            concurrency_policy: Default::default(),
            starting_deadline_seconds: None,
        }
    }

    fn export(name: &str, value_column: &str) -> DataExport {
        let mapping = OtelTableMapping {
            table: "per_service".into(),
            resource: [("service.name".to_owned(), "service".to_owned())].into(),
            gauges: vec![GaugeMapping {
                name: "http.requests".into(),
                value_column: value_column.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let sink = Sink {
            otlp_grpc: Some(OtlpGrpcSink {
                endpoint: "otel:4317".into(),
                ..Default::default()
            }),
        };
        DataExport::new(
            name,
            DataExportSpec {
                sink,
                otel: Some(OtelMapping {
                    tables: vec![mapping],
                }),
            },
        )
    }

    fn inputs() -> Inputs {
        Inputs {
            spec: spec(),
            vizier_exists: true,
            script: None,
            exports: vec![("otel".into(), Some(export("otel", "requests")))],
        }
    }

    fn reasons(inputs: &Inputs) -> Vec<&'static str> {
        problems(inputs, &ScriptChecker::default())
            .into_iter()
            .map(|p| p.reason)
            .collect()
    }

    #[test]
    fn a_complete_cron_script_is_scheduled() {
        let ready = assess(&inputs(), &ScriptChecker::default());
        assert!(ready.status, "{ready:?}");
        assert_eq!(ready.reason, "Scheduled");
        assert_eq!(
            ready.message,
            "runs every 10s on Vizier \"pixie\", exporting to otel"
        );
    }

    #[test]
    fn missing_references_are_named_each() {
        let mut inputs = inputs();
        inputs.vizier_exists = false;
        inputs.spec.export_refs.push(LocalObjectRef::new("b"));
        inputs.spec.export_refs.push(LocalObjectRef::new("c"));
        inputs.exports.push(("b".into(), None));
        inputs.exports.push(("c".into(), None));
        let ready = assess(&inputs, &ScriptChecker::default());
        assert!(!ready.status);
        assert_eq!(ready.reason, "VizierNotFound");
        assert!(
            ready
                .message
                .contains(r#"spec.vizierRef: Vizier "pixie" does not exist"#),
            "{}",
            ready.message
        );
        assert!(
            ready
                .message
                .contains(r#"spec.exportRefs: DataExports "b", "c" do not exist"#),
            "{}",
            ready.message
        );
        assert_eq!(reasons(&inputs), ["VizierNotFound", "ExportNotFound"]);
    }

    #[test]
    fn a_referenced_script_must_exist_and_compile() {
        let mut inputs = inputs();
        inputs.spec.source = None;
        inputs.spec.script_ref = Some(LocalObjectRef::new("stats"));
        assert_eq!(reasons(&inputs), ["ScriptNotFound"]);

        let broken = PxlScriptSpec {
            source: "import px\npx.display(px.DataFrame(table='nope'))\n".into(),
            ..Default::default()
        };
        inputs.script = Some(PxlScript::new("stats", broken));
        let found = problems(&inputs, &ScriptChecker::default());
        assert_eq!(found[0].reason, "ScriptNotCompiled");
        assert!(
            found[0]
                .message
                .starts_with(r#"PxlScript "stats" does not compile: 2:"#),
            "{}",
            found[0].message
        );

        inputs.script = Some(PxlScript::new(
            "stats",
            PxlScriptSpec {
                source: SOURCE.into(),
                ..Default::default()
            },
        ));
        assert!(reasons(&inputs).is_empty());
        inputs.spec.args.insert("start_time".into(), "-5m".into());
        let found = problems(&inputs, &ScriptChecker::default());
        assert_eq!(found[0].reason, "InvalidArgs");
        assert!(
            found[0].message.starts_with("spec.args: 5:"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn an_inline_source_that_does_not_compile_is_a_compile_error() {
        let mut inputs = inputs();
        inputs.spec.source = Some(
            "import px\ndf = px.DataFrame(table='http_events')\ndf.x = df.nope\npx.display(df)\n"
                .into(),
        );
        let found = problems(&inputs, &ScriptChecker::default());
        assert_eq!(found[0].reason, "CompileError");
        assert!(found[0].message.starts_with("3:"), "{}", found[0].message);
    }

    #[test]
    fn schedules_parse_as_the_broker_parses_them() {
        let with = |schedule: Option<&str>, frequency: Option<&str>| CronScriptSpec {
            schedule: schedule.map(str::to_owned),
            frequency: frequency.map(str::to_owned),
            ..spec()
        };
        assert!(parse_schedule(&with(Some("*/5 * * * *"), None)).is_ok());
        assert!(parse_schedule(&with(Some("0 9 * * 1-5"), None)).is_ok());
        assert!(parse_schedule(&with(Some("@midnight"), None)).is_ok());
        assert!(
            parse_schedule(&with(Some("0 0 30 2 *"), None))
                .unwrap_err()
                .contains("never matches")
        );
        assert!(
            parse_schedule(&with(Some("* * * *"), None))
                .unwrap_err()
                .contains("five-field")
        );
        assert!(
            parse_schedule(&with(Some("61 * * * *"), None))
                .unwrap_err()
                .starts_with("spec.schedule")
        );
        assert_eq!(
            parse_schedule(&with(None, Some("1m"))).unwrap(),
            "runs every 1m"
        );
        assert!(
            parse_schedule(&with(None, Some("500ms")))
                .unwrap_err()
                .starts_with("spec.frequency")
        );
        let mut inputs = inputs();
        inputs.spec = with(Some("0 0 31 2 *"), None);
        assert_eq!(reasons(&inputs), ["InvalidSchedule"]);
    }

    fn sample<T: serde::de::DeserializeOwned>(file: &str) -> T {
        let path = format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_samples_fit_together() {
        let cron: CronScript = sample("px_v1alpha1_cronscript.yaml");
        let inputs = Inputs {
            spec: cron.spec.clone(),
            vizier_exists: true,
            script: Some(sample("px_v1alpha1_pxlscript.yaml")),
            exports: vec![(
                "otel-collector".into(),
                Some(sample("px_v1alpha1_dataexport.yaml")),
            )],
        };
        assert_eq!(problems(&inputs, &ScriptChecker::default()), []);
    }

    #[test]
    fn export_mappings_must_fit_the_scripts_outputs() {
        let mut inputs = inputs();
        inputs.exports = vec![("otel".into(), Some(export("otel", "latency_p99")))];
        let found = problems(&inputs, &ScriptChecker::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].reason, "MappingError");
        assert!(
            found[0].message.starts_with(r#"DataExport "otel" spec.otel.tables[0].gauges[0].valueColumn: column "latency_p99""#),
            "{}",
            found[0].message
        );

        // The wrong type: a gauge of a string column.
        inputs.exports = vec![("otel".into(), Some(export("otel", "service")))];
        assert_eq!(reasons(&inputs), ["MappingError"]);

        // No table the script outputs, and no px.export: nothing would leave.
        let mut other = export("otel", "requests");
        other.spec.otel.as_mut().unwrap().tables[0].table = "elsewhere".into();
        inputs.exports = vec![("otel".into(), Some(other))];
        let found = problems(&inputs, &ScriptChecker::default());
        assert!(
            found[0].message.contains("nothing would be exported"),
            "{}",
            found[0].message
        );
    }
}
