//! What `px.export(df, px.otel.Data(...))` compiles to: which output table to send and how each of
//! its rows becomes OpenTelemetry metric points and spans. Every field names a column of that output
//! (checked while compiling); the exporter reads the rows and builds OTLP messages from this alone.
//!
//! The shapes mirror the DataExport CRD's `OtelTableMapping`, so a mapping written in a DataExport
//! and one written in the script reach the exporter the same way.

use std::collections::BTreeMap;

/// One `px.export` call: the output whose rows are exported and how.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportPlan {
    /// The [`crate::OutputPlan`] holding the exported rows: `export`, then `export_1`,
    /// `export_2`, ... in call order, skipping names that `px.display` uses.
    pub output: String,
    /// OpenTelemetry resource attributes: attribute name → STRING column. Always has
    /// `service.name`.
    pub resource: BTreeMap<String, String>,
    pub gauges: Vec<GaugeExport>,
    pub summaries: Vec<SummaryExport>,
    pub spans: Vec<SpanExport>,
}

/// `px.otel.metric.Gauge`: one data point per row, timestamped by the row's `time_`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GaugeExport {
    pub name: String,
    pub description: Option<String>,
    pub unit: Option<String>,
    /// An INT64 or FLOAT64 column.
    pub value_column: String,
    /// Data point attributes: attribute name → STRING column.
    pub attributes: BTreeMap<String, String>,
}

/// `px.otel.metric.Summary`: one data point per row, timestamped by the row's `time_`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryExport {
    pub name: String,
    pub description: Option<String>,
    pub unit: Option<String>,
    /// An INT64 column: how many observations.
    pub count_column: String,
    /// An INT64 or FLOAT64 column: their sum.
    pub sum_column: String,
    /// `(quantile in [0, 1], INT64 or FLOAT64 column)`, in the order the script lists them.
    pub quantiles: Vec<(f64, String)>,
    /// Data point attributes: attribute name → STRING column.
    pub attributes: BTreeMap<String, String>,
}

/// `px.otel.trace.Span`: one span per row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpanExport {
    /// A fixed name for every span; exactly one of `name` and `name_column` is set.
    pub name: Option<String>,
    /// A STRING column holding each span's name.
    pub name_column: Option<String>,
    /// TIME64NS columns.
    pub start_time_column: String,
    pub end_time_column: String,
    /// STRING columns of lower-case hex IDs (32 digits for traces, 16 for spans). The exporter
    /// makes up IDs when a column is not given; a span without a parent is a root span.
    pub trace_id_column: Option<String>,
    pub span_id_column: Option<String>,
    pub parent_span_id_column: Option<String>,
    /// `internal`, `server` (PxL's default), `client`, `producer` or `consumer`; `None` for
    /// `px.otel.trace.SPAN_KIND_UNSPECIFIED`.
    pub kind: Option<String>,
    /// Span attributes: attribute name → STRING column.
    pub attributes: BTreeMap<String, String>,
}
