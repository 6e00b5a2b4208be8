//! PxlScript: compile the source with its declared argument defaults and report `Compiled` (True
//! with the output tables in `status.outputs`, False with the compiler's `line:col: message`).
//!
//! Reasons: `Compiled`; `CompileError` (the source does not compile); `InvalidArgs` (the source
//! compiles, but `spec.args` names a parameter the script does not have, a type that does not fit
//! the parameter's annotation, or a default the compiler cannot convert).

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use pixie_crds::common::CONDITION_COMPILED;
use pixie_crds::pxl_script::OutputTable;
use pixie_crds::{PxlScript, PxlScriptSpec};
use serde_json::Map;

use super::check::{self, Args, ScriptChecker, Verdict};
use super::status::{self, want};
use super::{Context, Error};
use crate::status::Want;

/// The status fields besides conditions and observedGeneration that this controller owns.
pub const OWNED_FIELDS: &[&str] = &["outputs"];

/// The Compiled condition and the output tables (empty unless it compiles).
pub fn assess(spec: &PxlScriptSpec, checker: &ScriptChecker) -> (Want, Vec<OutputTable>) {
    match check::check_pxl_script(checker, &spec.source, &spec.args, &Args::new(), "spec.args") {
        Verdict::Compiled(summary) => {
            let message = format!("compiles; outputs: {}", check::output_names(&summary));
            (
                want(CONDITION_COMPILED, true, "Compiled", message),
                check::output_tables(&summary),
            )
        }
        Verdict::CompileError(error) => (
            want(CONDITION_COMPILED, false, "CompileError", error.to_string()),
            Vec::new(),
        ),
        Verdict::InvalidArgs(message) => (
            want(CONDITION_COMPILED, false, "InvalidArgs", message),
            Vec::new(),
        ),
    }
}

pub async fn reconcile(script: &PxlScript, ctx: &Context) -> Result<Action, Error> {
    let (spec, checker) = (script.spec.clone(), ctx.checker.clone());
    let (compiled, outputs) = tokio::task::spawn_blocking(move || assess(&spec, &checker)).await?;
    let mut fields = Map::new();
    if !outputs.is_empty() {
        fields.insert("outputs".into(), serde_json::to_value(&outputs)?);
    }
    let api: Api<PxlScript> =
        Api::namespaced(ctx.client.clone(), &script.namespace().unwrap_or_default());
    status::write(
        &api,
        &ctx.recorder,
        script,
        &[compiled],
        OWNED_FIELDS,
        fields,
    )
    .await
    .map_err(Error::Status)?;
    // The verdict depends on the spec alone.
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str) -> PxlScriptSpec {
        PxlScriptSpec {
            source: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_script_that_compiles_lists_its_outputs() {
        let checker = ScriptChecker::default();
        let source = "import px\ndf = px.DataFrame(table='http_events', start_time='-1m')\npx.display(df[['req_path']], 'paths')\n";
        let (condition, outputs) = assess(&spec(source), &checker);
        assert!(condition.status, "{condition:?}");
        assert_eq!(condition.reason, "Compiled");
        assert_eq!(condition.message, "compiles; outputs: paths");
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].columns[0].name, "req_path");
    }

    #[test]
    fn a_broken_script_is_not_compiled_and_has_no_outputs() {
        let checker = ScriptChecker::default();
        let (condition, outputs) = assess(
            &spec("import px\npx.display(px.DataFrame(table='nope'))\n"),
            &checker,
        );
        assert!(!condition.status);
        assert_eq!(condition.reason, "CompileError");
        assert!(condition.message.starts_with("2:"), "{}", condition.message);
        assert!(outputs.is_empty());
    }

    #[test]
    fn the_sample_compiles() {
        let sample = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/samples/px_v1alpha1_pxlscript.yaml"
        ))
        .unwrap();
        let script: PxlScript = serde_saphyr::from_str(&sample).unwrap();
        let (condition, outputs) = assess(&script.spec, &ScriptChecker::default());
        assert!(condition.status, "{condition:?}");
        assert_eq!(outputs[0].name, "http_service_stats");
    }
}
