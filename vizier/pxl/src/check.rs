//! Checking a script without a running Vizier: compiled against the schemas of the store's tables
//! only, with no data and no metadata, so that the operator can validate PxlScripts and CronScripts
//! as they are applied and report their output tables.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::TableSource;
use datafusion::logical_expr::builder::LogicalTableSource;
use pixie_store::tables;

use crate::export::ExportPlan;
use crate::{
    CompileError, CompileOptions, MetadataField, MetadataResolver, ScriptParam, TableCatalog,
};

/// How far back the window of a check without one reaches.
const CHECK_WINDOW_NS: i64 = 60_000_000_000;

/// Every table pixie-store defines, as schemas without rows. Plans compiled against it have the
/// same shape and types as on a Vizier but are not meant to run.
#[derive(Debug, Clone)]
pub struct SchemaCatalog {
    tables: Vec<(&'static str, SchemaRef)>,
}

impl SchemaCatalog {
    /// The tables of [`pixie_store::tables::all`], the one place that knows them.
    pub fn standard() -> Self {
        SchemaCatalog {
            tables: tables::all(),
        }
    }
}

impl TableCatalog for SchemaCatalog {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|(n, _)| n.to_string()).collect()
    }

    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        self.tables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, schema)| {
                Arc::new(LogicalTableSource::new(schema.clone())) as Arc<dyn TableSource>
            })
    }
}

/// A resolver that knows nothing: checked plans never run, so no look-up happens.
#[derive(Debug)]
struct NoMetadata;

impl MetadataResolver for NoMetadata {
    fn resolve(&self, _upid: &str, _field: MetadataField) -> Option<String> {
        None
    }
}

/// What a script produces, as far as can be known without running it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptSummary {
    /// Every output in display order, exported ones included.
    pub outputs: Vec<OutputSchema>,
    pub exports: Vec<ExportPlan>,
    /// The entry function's parameters (empty for scripts that display at top level).
    pub params: Vec<ScriptParam>,
}

/// An output table's name and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSchema {
    pub name: String,
    pub columns: Vec<(String, DataType)>,
}

/// Compiles `source` against [`SchemaCatalog::standard()`] with a resolver that knows no metadata;
/// plans are not executed. `options.now_ns` is "now" for relative times, and when `options.window`
/// is `None` the window is the minute before it, so that scripts using `px.plugin.start_time` check
/// as they would run.
pub fn check(source: &str, options: &CompileOptions) -> Result<ScriptSummary, CompileError> {
    let mut options = options.clone();
    if options.window.is_none() {
        let end = options.now_ns;
        options.window = Some((end.saturating_sub(CHECK_WINDOW_NS), end));
    }
    let script = crate::compile(
        source,
        &SchemaCatalog::standard(),
        Arc::new(NoMetadata),
        &options,
    )?;
    let outputs = script
        .outputs
        .iter()
        .map(|o| OutputSchema {
            name: o.name.clone(),
            columns: o
                .plan
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
        })
        .collect();
    Ok(ScriptSummary {
        outputs,
        exports: script.exports,
        params: script.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn options() -> CompileOptions {
        CompileOptions {
            now_ns: NOW,
            ..CompileOptions::default()
        }
    }

    #[test]
    fn outputs_list_their_columns_and_types() {
        let summary = check(
            "import px\n\
             df = px.DataFrame(table='http_events', start_time='-5m')\n\
             df = df.groupby('req_method').agg(n=('latency', px.count))\n\
             px.display(df, 'methods')\n",
            &options(),
        )
        .unwrap();
        assert_eq!(
            summary.outputs,
            vec![OutputSchema {
                name: "methods".into(),
                columns: vec![
                    ("req_method".into(), DataType::Utf8),
                    ("n".into(), DataType::Int64)
                ],
            }]
        );
        assert!(summary.exports.is_empty());
    }

    #[test]
    fn a_plugin_window_is_made_up_when_none_is_given() {
        let source = "import px\n\
             df = px.DataFrame(table='conn_stats', start_time=px.plugin.start_time, \
             end_time=px.plugin.end_time)\n\
             px.display(df)\n";
        assert!(check(source, &options()).is_ok());
        let err = crate::compile(
            source,
            &SchemaCatalog::standard(),
            Arc::new(NoMetadata),
            &options(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2:50: px.plugin.start_time is only set when a CronScript or plugin runs the script"
        );
    }

    #[test]
    fn a_given_window_is_kept() {
        // An end before the start is refused by px.DataFrame, so the caller's window is in use.
        let options = CompileOptions {
            window: Some((NOW, NOW - 1)),
            ..options()
        };
        let err = check(
            "import px\n\
             df = px.DataFrame(table='http_events', start_time=px.plugin.start_time, \
             end_time=px.plugin.end_time)\n\
             px.display(df)\n",
            &options,
        )
        .unwrap_err();
        assert_eq!(err.message, "start_time must be before end_time");
    }

    #[test]
    fn entry_parameters_are_reported() {
        let summary = check(
            "import px\n\
             def f(start_time: str = '-5m', limit: int = 10):\n    \
                 return px.DataFrame(table='process_stats', start_time=start_time).head(limit)\n",
            &options(),
        )
        .unwrap();
        let names: Vec<&str> = summary.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["start_time", "limit"]);
        assert_eq!(summary.outputs[0].name, "output");
    }
}
