//! The PxL compiler: parses Pixie's Python-like DataFrame language and turns each script into
//! DataFusion logical plans, one per displayed output, with errors as `line:col: message`.
//!
//! The compiler is a pure function of the script, the table schemas ([`TableCatalog`]) and the
//! [`CompileOptions`]; metadata look-ups (`df.ctx[...]`, `px.upid_to_*`) become UDF calls in the plan
//! that ask the engine's [`MetadataResolver`] at run time.
//!
//! # The language, as compiled here
//!
//! A script is run top to bottom by an abstract interpreter: constants are folded, DataFrames are
//! logical plans, and column expressions are DataFusion expressions checked for type errors as they
//! are written. `import px` is required before `px` is used.
//!
//! **Outputs and entry functions.** Each `px.display(df, 'name')` (or `px.debug`) adds one output
//! (default name `output`, names must be unique). If the top-level code displays nothing, the script's
//! *entry function* is the last `def` at top level: its parameters are [`CompiledScript::params`],
//! filled from [`CompileOptions::args`] (converted by their annotation: `int`, `float`, `bool`, anything
//! else is a string) or their default values, and its returned DataFrame is the output `output`.
//! Arguments given to a script that displays at top level are an error.
//!
//! **Types.** Times (`time_`) behave as int64 nanoseconds in arithmetic (`time ± int` stays a time,
//! `time - time` is an int); `/` is true division (float), `//` floor division, `%` takes the
//! dividend's sign (as in Pixie's C++); comparisons need compatible types (numbers with numbers,
//! strings with strings, times with times or integer nanoseconds). `px.DurationNanos`, `px.Bytes`,
//! `px.Percent` and the `px.Service`-style semantic types pass values through unchanged.
//!
//! **Aggregates.** `px.count`, `px.sum`, `px.mean`, `px.min`, `px.max`, `px.any` (the minimum, so
//! results are deterministic) and `px.quantiles`, a struct `{p01, p10, p25, p50, p75, p90, p99}` from a
//! t-digest (see [`quantiles`]); `px.pluck_float64(q, 'p99')` reads a field.
//!
//! **Metadata.** `df.ctx['pod'|'service'|'namespace'|'node'|'container'|'cmdline'|'hostname']` and
//! `px.upid_to_*` read the `upid` column through the resolver (unknown upids give `''`);
//! `df.ctx['pid']` and `px.upid_to_pid` read the pid out of the upid text itself.
//!
//! **Columns** are referred to by name: an expression written against one DataFrame can be used on
//! another that has the columns it reads (merges rename shared columns with their suffixes).
//!
//! **Times.** `px.DataFrame(start_time=, end_time=)` take `'-5m'`-style relative times, absolute
//! RFC 3339 times, or integer nanoseconds (e.g. `px.now() - px.parse_duration('5m')`); they become
//! `time_ >= start` and `time_ < end` filters on the scan, which table providers can push down.
//! `px.plugin.start_time` and `px.plugin.end_time` are [`CompileOptions::window`] in integer
//! nanoseconds (as in Pixie); using them without a window is a compile error.
//!
//! **Export.** `px.export(df, px.otel.Data(resource={...}, data=[...]))` takes Pixie's
//! `px.otel.metric.Gauge`, `px.otel.metric.Summary` and `px.otel.trace.Span` with Pixie's argument
//! names. The exported DataFrame becomes an output like a displayed one, named `export`, `export_1`,
//! ... in call order (skipping names `px.display` uses), and an [`ExportPlan`] in
//! [`CompiledScript::exports`] says how its rows become OpenTelemetry data. Every column named must
//! be a plain column of the exported DataFrame (attributes: strings; gauge values, summary sums and
//! quantiles: numbers; summary counts: ints; span times: times); metric points are stamped with the
//! row's `time_`, which the DataFrame must keep. `px.otel.Endpoint` is refused: where data goes is
//! the DataExport's (or Plugin's) business, with its TLS settings, Secret headers and status.
//!
//! **Checking without a Vizier.** [`check`] compiles against [`SchemaCatalog::standard`], the
//! store's table schemas without rows, and reports each output's columns.

mod check;
mod compiler;
mod error;
mod export;
pub mod quantiles;
mod scripts;
mod sql;
mod suggest;
mod time;
mod udf;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, LogicalPlan, ScalarUDF, TableSource};

pub use check::{OutputSchema, SchemaCatalog, ScriptSummary, check};
pub use error::CompileError;
pub use export::{ExportPlan, GaugeExport, SpanExport, SummaryExport};
pub use scripts::bundled_scripts;
pub use suggest::closest;
pub use time::{parse_duration, parse_time};
pub use udf::{metadata_udf_name, udfs};

/// The tables a script may read, by name. The engine implements it over its table store.
pub trait TableCatalog: Send + Sync {
    fn table_names(&self) -> Vec<String>;
    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>>;
}

/// Values behind `df.ctx[...]` and `px.upid_to_*`; I/O lives in the engine's implementation, tests
/// use a fixed one. `None` means unknown (shown as `''`).
pub trait MetadataResolver: Send + Sync + fmt::Debug {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String>;
}

/// A metadata field of a process. [`MetadataField::Pid`] is never asked for by the plans this crate
/// builds (the pid is read from the upid text), but resolvers may answer it for other callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetadataField {
    Pod,
    Service,
    Namespace,
    Node,
    Container,
    Pid,
    Cmdline,
    Hostname,
}

impl MetadataField {
    pub const ALL: [MetadataField; 8] = [
        MetadataField::Pod,
        MetadataField::Service,
        MetadataField::Namespace,
        MetadataField::Node,
        MetadataField::Container,
        MetadataField::Pid,
        MetadataField::Cmdline,
        MetadataField::Hostname,
    ];

    /// The `df.ctx[...]` key, e.g. `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataField::Pod => "pod",
            MetadataField::Service => "service",
            MetadataField::Namespace => "namespace",
            MetadataField::Node => "node",
            MetadataField::Container => "container",
            MetadataField::Pid => "pid",
            MetadataField::Cmdline => "cmdline",
            MetadataField::Hostname => "hostname",
        }
    }
}

/// What a compilation depends on besides the script and the tables.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// "Now" for relative times and `px.now()`, nanoseconds since the Unix epoch.
    pub now_ns: i64,
    /// Arguments for the entry function's parameters, by name, as text (the CLI's `-- --name value`).
    pub args: BTreeMap<String, String>,
    /// When set, every output is limited to this many rows.
    pub max_output_rows: Option<usize>,
    /// `(start_ns, end_ns)`: the time window of a CronScript or plugin run, which
    /// `px.plugin.start_time` and `px.plugin.end_time` evaluate to.
    pub window: Option<(i64, i64)>,
}

/// The plans of one script, in display order.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    pub outputs: Vec<OutputPlan>,
    /// The entry function's typed parameters (empty for scripts that display at top level).
    pub params: Vec<ScriptParam>,
    /// One per `px.export`, in call order; each names its output in `outputs`.
    pub exports: Vec<ExportPlan>,
}

/// One displayed or exported table: run `plan` with `SessionContext::execute_logical_plan`.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub name: String,
    pub plan: LogicalPlan,
}

/// A parameter of the entry function, e.g. `start_time: str = '-5m'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptParam {
    pub name: String,
    /// The annotation as written (`str`, `int`, `float`, `bool`, `px.Service`, ...); `str` if none.
    pub type_name: String,
    /// The default value as text (strings without quotes), if the parameter has one.
    pub default: Option<String>,
}

/// Compiles a PxL script into one logical plan per displayed output.
pub fn compile(
    source: &str,
    catalog: &dyn TableCatalog,
    metadata: Arc<dyn MetadataResolver>,
    options: &CompileOptions,
) -> Result<CompiledScript, CompileError> {
    compiler::compile(source, catalog, metadata, options)
}

/// Plans plain SQL over the same tables (one output named `output`). The PxL UDFs are callable by
/// name (`px_upid_to_service_name(upid)`, `px_pluck(req_headers, 'Host')`, `px_quantiles(latency)`),
/// and `now()` is [`CompileOptions::now_ns`]. `options.args` must be empty.
pub fn compile_sql(
    sql: &str,
    catalog: &dyn TableCatalog,
    metadata: Arc<dyn MetadataResolver>,
    options: &CompileOptions,
) -> Result<CompiledScript, CompileError> {
    sql::compile_sql(sql, catalog, metadata, options)
}

/// The aggregate UDFs PxL plans can contain (`px_quantiles`), for engines that register functions.
pub fn udafs() -> Vec<AggregateUDF> {
    vec![AggregateUDF::new_from_impl(quantiles::Quantiles::new())]
}

/// Scalar and aggregate UDFs together, as `Arc`s, e.g. for a SQL function registry.
pub(crate) fn all_functions(
    metadata: Arc<dyn MetadataResolver>,
) -> (Vec<Arc<ScalarUDF>>, Vec<Arc<AggregateUDF>>) {
    (
        udfs(metadata).into_iter().map(Arc::new).collect(),
        udafs().into_iter().map(Arc::new).collect(),
    )
}
