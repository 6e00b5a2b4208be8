//! Compiling scripts the way a Vizier would, without one: [`pixie_pxl::check`] against the
//! standard table schemas, with arguments, and the verdict the status reports. Compiling is pure,
//! so results are cached by source and arguments (the same script is checked on every reconcile
//! of a CronScript that uses it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::datatypes::DataType as ArrowType;
use pixie_crds::pxl_script::{DataType, OutputColumn, OutputTable, ScriptArg, ScriptArgType};
use pixie_pxl::{CompileError, CompileOptions, ScriptParam, ScriptSummary};
use sha2::{Digest, Sha256};

/// Distinct (source, arguments) pairs remembered; the cache starts over when it is full.
const CACHE_ENTRIES: usize = 256;

/// Text arguments by name, as the compiler takes them.
pub type Args = BTreeMap<String, String>;

/// What checking one (source, arguments) pair gave.
type Checked = Result<Arc<ScriptSummary>, CompileError>;

/// Compiles scripts with [`pixie_pxl::check`] and remembers the results.
#[derive(Default)]
pub struct ScriptChecker {
    cache: Mutex<HashMap<[u8; 32], Checked>>,
}

impl ScriptChecker {
    pub fn check(&self, source: &str, args: &Args) -> Result<Arc<ScriptSummary>, CompileError> {
        let mut hasher = Sha256::new();
        hasher.update(source.len().to_le_bytes());
        hasher.update(source.as_bytes());
        for (name, value) in args {
            for part in [name, value] {
                hasher.update(part.len().to_le_bytes());
                hasher.update(part.as_bytes());
            }
        }
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(cached) = self.cache.lock().expect("not poisoned").get(&key) {
            return cached.clone();
        }
        let now_ns = k8s_openapi::jiff::Timestamp::now().as_nanosecond() as i64;
        let options = CompileOptions {
            now_ns,
            args: args.clone(),
            ..CompileOptions::default()
        };
        let result = pixie_pxl::check(source, &options).map(Arc::new);
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result
    }
}

/// What checking a script with its arguments found.
#[derive(Clone, Debug)]
pub enum Verdict {
    Compiled(Arc<ScriptSummary>),
    /// The script itself does not compile: `line:col: message`.
    CompileError(CompileError),
    /// The script compiles, but not with these arguments (or they do not match its parameters).
    InvalidArgs(String),
}

impl Verdict {
    pub fn summary(&self) -> Option<&ScriptSummary> {
        match self {
            Verdict::Compiled(summary) => Some(summary),
            _ => None,
        }
    }
}

/// Compiles `source` with `args`. A failure is blamed on the arguments (`args_field` names where
/// they come from, such as `spec.args`) when it names one of them, or when the script compiles
/// without them.
pub fn check_source(
    checker: &ScriptChecker,
    source: &str,
    args: &Args,
    args_field: &str,
) -> Verdict {
    match checker.check(source, args) {
        Ok(summary) => Verdict::Compiled(summary),
        Err(error)
            if !args.is_empty()
                && (names_an_arg(&error, args) || checker.check(source, &Args::new()).is_ok()) =>
        {
            Verdict::InvalidArgs(format!("{args_field}: {error}"))
        }
        Err(error) => Verdict::CompileError(error),
    }
}

/// Whether the compiler's message is about one of `args` ("argument 'name' must be an int",
/// "f() has no parameter 'name'").
fn names_an_arg(error: &CompileError, args: &Args) -> bool {
    args.keys().any(|name| {
        let message = &error.message;
        message.contains(&format!("argument '{name}'"))
            || message.contains(&format!("parameter '{name}'"))
    })
}

/// The defaults a PxlScript declares, as compiler arguments.
pub fn defaults(args: &[ScriptArg]) -> Args {
    args.iter()
        .filter_map(|arg| Some((arg.name.clone(), arg.default.clone()?)))
        .collect()
}

/// Checks a PxlScript: its source with its declared defaults (overridden by `overrides`, a
/// CronScript's arguments), and its declared arguments against the script's parameters.
pub fn check_pxl_script(
    checker: &ScriptChecker,
    source: &str,
    declared: &[ScriptArg],
    overrides: &Args,
    overrides_field: &str,
) -> Verdict {
    let mut args = defaults(declared);
    args.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    let field = if overrides.is_empty() {
        "spec.args"
    } else {
        overrides_field
    };
    let verdict = check_source(checker, source, &args, field);
    if let Verdict::Compiled(summary) = &verdict
        && let Err(message) = match_args(declared, &summary.params)
    {
        return Verdict::InvalidArgs(message);
    }
    verdict
}

/// The argument types that fit a parameter annotated `annotation`.
fn fitting_types(annotation: &str) -> &'static [ScriptArgType] {
    use ScriptArgType::*;
    const TEXT: &[ScriptArgType] = &[String, Pod, Service, Namespace, Node, Container];
    match annotation {
        "int" => &[Int64],
        "float" => &[Float64],
        "bool" => &[Boolean],
        "px.Pod" => &[Pod, String],
        "px.Service" => &[Service, String],
        "px.Namespace" => &[Namespace, String],
        "px.Node" => &[Node, String],
        "px.Container" => &[Container, String],
        _ => TEXT,
    }
}

/// Checks the arguments a PxlScript declares against the parameters of its entry function: each
/// must be a parameter, of a type that fits the parameter's annotation.
pub fn match_args(declared: &[ScriptArg], params: &[ScriptParam]) -> Result<(), String> {
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let problems: Vec<String> = declared
        .iter()
        .enumerate()
        .filter_map(|(index, arg)| {
            let field = format!("spec.args[{index}] ({})", arg.name);
            let Some(param) = params.iter().find(|p| p.name == arg.name) else {
                return Some(if params.is_empty() {
                    format!(
                        "{field}: the script takes no arguments (it calls px.display at top level); declare \
                         arguments as parameters of an entry function that returns a DataFrame"
                    )
                } else {
                    format!("{field}: the script has no parameter of that name (parameters: {})", names.join(", "))
                });
            };
            let fitting = fitting_types(&param.type_name);
            (!fitting.contains(&arg.type_)).then(|| {
                let fitting: Vec<String> = fitting.iter().map(|t| format!("{t:?}")).collect();
                format!(
                    "{field}: type {:?} does not fit the parameter's annotation {} (use {})",
                    arg.type_,
                    param.type_name,
                    fitting.join(" or ")
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// PxL's name for an Arrow type, as the CRD reports columns. Nested values (px.quantiles) are
/// shown as JSON text, as Pixie does.
pub fn pxl_type(data_type: &ArrowType) -> DataType {
    match data_type {
        ArrowType::Boolean => DataType::Boolean,
        ArrowType::Int8
        | ArrowType::Int16
        | ArrowType::Int32
        | ArrowType::Int64
        | ArrowType::UInt8
        | ArrowType::UInt16
        | ArrowType::UInt32
        | ArrowType::UInt64
        | ArrowType::Duration(_) => DataType::Int64,
        ArrowType::Float16
        | ArrowType::Float32
        | ArrowType::Float64
        | ArrowType::Decimal128(..) => DataType::Float64,
        ArrowType::Timestamp(..) | ArrowType::Date64 => DataType::Time64Ns,
        ArrowType::FixedSizeBinary(16) => DataType::Uint128,
        _ => DataType::String,
    }
}

/// The output tables of a summary, for status.
pub fn output_tables(summary: &ScriptSummary) -> Vec<OutputTable> {
    summary
        .outputs
        .iter()
        .map(|output| OutputTable {
            name: output.name.clone(),
            columns: output
                .columns
                .iter()
                .map(|(name, data_type)| OutputColumn {
                    name: name.clone(),
                    type_: pxl_type(data_type),
                })
                .collect(),
        })
        .collect()
}

/// "a, b and c" style list of output names, for messages.
pub fn output_names(summary: &ScriptSummary) -> String {
    let names: Vec<&str> = summary.outputs.iter().map(|o| o.name.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP_LEVEL: &str = "import px\n\
        df = px.DataFrame(table='http_events', start_time='-5m')\n\
        df = df.groupby('req_method').agg(n=('latency', px.count))\n\
        px.display(df, 'methods')\n";

    const ENTRY: &str = "import px\n\
        def methods(start_time: str, limit: int = 10):\n\
        \x20   df = px.DataFrame(table='http_events', start_time=start_time)\n\
        \x20   df = df.groupby('req_method').agg(n=('latency', px.count))\n\
        \x20   return df.head(limit)\n";

    fn arg(name: &str, type_: ScriptArgType, default: Option<&str>) -> ScriptArg {
        ScriptArg {
            name: name.into(),
            type_,
            default: default.map(str::to_owned),
            description: None,
            valid_values: None,
        }
    }

    #[test]
    fn a_script_that_compiles_reports_its_outputs_with_pxl_types() {
        let checker = ScriptChecker::default();
        let Verdict::Compiled(summary) =
            check_pxl_script(&checker, TOP_LEVEL, &[], &Args::new(), "spec.args")
        else {
            panic!("compiles");
        };
        let tables = output_tables(&summary);
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].name, "methods");
        let columns: Vec<(&str, DataType)> = tables[0]
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_))
            .collect();
        assert_eq!(
            columns,
            vec![("req_method", DataType::String), ("n", DataType::Int64)]
        );
    }

    #[test]
    fn a_broken_script_reports_line_and_column() {
        let checker = ScriptChecker::default();
        let source = "import px\ndf = px.DataFrame(table='http_events')\ndf.x = df.no_such_column + 1\npx.display(df)\n";
        match check_pxl_script(&checker, source, &[], &Args::new(), "spec.args") {
            Verdict::CompileError(error) => {
                assert_eq!(error.line, 3, "{error}");
                assert!(error.to_string().starts_with("3:"), "{error}");
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
    }

    #[test]
    fn declared_defaults_are_compiled_with_and_checked_against_the_parameters() {
        let checker = ScriptChecker::default();
        let good = [
            arg("start_time", ScriptArgType::String, Some("-5m")),
            arg("limit", ScriptArgType::Int64, Some("5")),
        ];
        assert!(matches!(
            check_pxl_script(&checker, ENTRY, &good, &Args::new(), "spec.args"),
            Verdict::Compiled(_)
        ));

        let unknown = [
            arg("start_time", ScriptArgType::String, Some("-5m")),
            arg("nope", ScriptArgType::String, None),
        ];
        let Verdict::InvalidArgs(message) =
            check_pxl_script(&checker, ENTRY, &unknown, &Args::new(), "spec.args")
        else {
            panic!("an undeclared parameter is refused");
        };
        assert!(
            message.contains("spec.args[1] (nope)") && message.contains("start_time, limit"),
            "{message}"
        );

        let mistyped = [
            arg("start_time", ScriptArgType::String, Some("-5m")),
            arg("limit", ScriptArgType::Boolean, None),
        ];
        let Verdict::InvalidArgs(message) =
            check_pxl_script(&checker, ENTRY, &mistyped, &Args::new(), "spec.args")
        else {
            panic!("a type that does not fit the annotation is refused");
        };
        assert!(
            message.contains("spec.args[1] (limit): type Boolean") && message.contains("Int64"),
            "{message}"
        );

        // A default the compiler cannot convert: blamed on the arguments, with the position.
        let bad_default = [
            arg("start_time", ScriptArgType::String, Some("-5m")),
            arg("limit", ScriptArgType::Int64, Some("ten")),
        ];
        let Verdict::InvalidArgs(message) =
            check_pxl_script(&checker, ENTRY, &bad_default, &Args::new(), "spec.args")
        else {
            panic!("a default of the wrong type is refused");
        };
        assert!(
            message.starts_with("spec.args: 2:") && message.contains("ten"),
            "{message}"
        );
    }

    #[test]
    fn arguments_for_a_script_without_parameters_are_refused() {
        let checker = ScriptChecker::default();
        let declared = [arg("start_time", ScriptArgType::String, Some("-5m"))];
        let Verdict::InvalidArgs(message) =
            check_pxl_script(&checker, TOP_LEVEL, &declared, &Args::new(), "spec.args")
        else {
            panic!("arguments of a script that takes none are refused");
        };
        assert!(message.starts_with("spec.args: 4:"), "{message}");
        let no_default = [arg("start_time", ScriptArgType::String, None)];
        let Verdict::InvalidArgs(message) =
            check_pxl_script(&checker, TOP_LEVEL, &no_default, &Args::new(), "spec.args")
        else {
            panic!("also without a default");
        };
        assert!(message.contains("takes no arguments"), "{message}");
    }

    #[test]
    fn a_cron_scripts_arguments_override_the_defaults() {
        let checker = ScriptChecker::default();
        let declared = [arg("start_time", ScriptArgType::String, Some("-5m"))];
        let overrides: Args = [("limit".to_owned(), "x".to_owned())].into();
        let Verdict::InvalidArgs(message) = check_pxl_script(
            &checker,
            ENTRY,
            &declared,
            &overrides,
            "CronScript spec.args",
        ) else {
            panic!("bad override");
        };
        assert!(message.starts_with("CronScript spec.args: "), "{message}");
        let overrides: Args = [("limit".to_owned(), "3".to_owned())].into();
        assert!(matches!(
            check_pxl_script(&checker, ENTRY, &declared, &overrides, "spec.args"),
            Verdict::Compiled(_)
        ));
    }

    #[test]
    fn results_are_cached_by_source_and_arguments() {
        let checker = ScriptChecker::default();
        let first = checker.check(TOP_LEVEL, &Args::new()).unwrap();
        let again = checker.check(TOP_LEVEL, &Args::new()).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(checker.cache.lock().unwrap().len(), 1);
    }
}
