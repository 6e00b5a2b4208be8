//! Result rows → OTLP requests, following a DataExport's `spec.otel` table mapping. Pure: no I/O,
//! and the only randomness is in span and trace IDs that the mapping leaves to us.
//!
//! Decisions, in the manner of Pixie's px.otel:
//! - Every row gives one data point per gauge and summary, and one span per span mapping.
//! - Rows are grouped by their resource attribute values: one `ResourceMetrics` / `ResourceSpans`
//!   per distinct set, in order of first appearance, each with a single scope ([`SCOPE_NAME`]).
//! - A data point's time is the row's `time_` column when the output has one (and the row's value
//!   is not null), else the end of the script run.
//! - Gauge values from integer columns are sent as `as_int`, from float columns as `as_double`.
//! - Span start and end come from TIME64NS columns. Trace IDs are 32 and span IDs 16 hex digits
//!   (case-insensitive); an ID column left out, or null in a row, gets a random ID; a null parent
//!   makes a root span. All-zero IDs are refused, as OTLP receivers do.
//! - Nulls: a null attribute value leaves that attribute out; a row whose gauge value, summary
//!   count or sum, span name, start or end is null gives no point or span for that entry, and is
//!   counted in [`Mapped::skipped`] so that nothing disappears unnoticed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampNanosecondType,
};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint,
    metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use pixie_crds::data_export::{OtelTableMapping, SpanKind};
use rand::RngCore;

/// The instrumentation scope every exported metric and span carries.
pub const SCOPE_NAME: &str = "px.dev/pixie";

/// The column that holds a row's timestamp in Pixie tables.
pub const TIME_COLUMN: &str = "time_";

/// A mapping that cannot be applied to a result table. `field` is the path of the offending
/// mapping entry, such as `gauges[0].valueColumn` or `resource["service.name"]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    #[error("{field}: column \"{column}\" is not in output \"{table}\" (columns: {available})")]
    MissingColumn {
        field: String,
        column: String,
        table: String,
        available: String,
    },
    #[error("{field}: column \"{column}\" of output \"{table}\" is {found}; expected {expected}")]
    WrongType {
        field: String,
        column: String,
        table: String,
        found: String,
        expected: &'static str,
    },
    #[error("{field}: column \"{column}\" of output \"{table}\", row {row}: {problem}")]
    BadValue {
        field: String,
        column: String,
        table: String,
        row: usize,
        problem: String,
    },
}

/// One OTLP request built from a result table, with what went into it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapped<R> {
    pub request: R,
    /// Data points or spans in `request`.
    pub records: u64,
    /// Points or spans not made because a required value was null in that row.
    pub skipped: u64,
}

/// What one delivery carries: the metrics and spans of one or more result tables of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OtlpBatch {
    /// Left out when the mappings made no data point.
    pub metrics: Option<ExportMetricsServiceRequest>,
    /// Left out when the mappings made no span.
    pub traces: Option<ExportTraceServiceRequest>,
    /// Points and spans not made because a required value was null.
    pub skipped: u64,
}

impl OtlpBatch {
    /// Data points and spans carried.
    pub fn records(&self) -> u64 {
        self.metric_points() + self.spans()
    }

    pub fn metric_points(&self) -> u64 {
        self.metrics.as_ref().map_or(0, count_metric_points)
    }

    pub fn spans(&self) -> u64 {
        self.traces.as_ref().map_or(0, count_spans)
    }

    pub fn is_empty(&self) -> bool {
        self.records() == 0
    }

    /// Adds another table's (or another record batch's) data, so that one run is one delivery.
    pub fn merge(&mut self, other: OtlpBatch) {
        if let Some(metrics) = other.metrics {
            match &mut self.metrics {
                Some(mine) => mine.resource_metrics.extend(metrics.resource_metrics),
                None => self.metrics = Some(metrics),
            }
        }
        if let Some(traces) = other.traces {
            match &mut self.traces {
                Some(mine) => mine.resource_spans.extend(traces.resource_spans),
                None => self.traces = Some(traces),
            }
        }
        self.skipped += other.skipped;
    }
}

/// Data points in a metrics request (all metric types).
pub fn count_metric_points(request: &ExportMetricsServiceRequest) -> u64 {
    let points = |metric: &Metric| match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        None => 0,
    };
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| points(m) as u64)
        .sum()
}

/// Spans in a trace request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// Both requests for one result table: metrics when the mapping has gauges or summaries, spans
/// when it has span entries; a request with nothing in it is left out.
pub fn map_table(
    batch: &RecordBatch,
    mapping: &OtelTableMapping,
    end_time: SystemTime,
) -> Result<OtlpBatch, MappingError> {
    let mut out = OtlpBatch::default();
    if !mapping.gauges.is_empty() || !mapping.summaries.is_empty() {
        let metrics = metrics_request(batch, mapping, end_time)?;
        out.skipped += metrics.skipped;
        if metrics.records > 0 {
            out.metrics = Some(metrics.request);
        }
    }
    if !mapping.spans.is_empty() {
        let traces = trace_request(batch, mapping)?;
        out.skipped += traces.skipped;
        if traces.records > 0 {
            out.traces = Some(traces.request);
        }
    }
    Ok(out)
}

/// The gauges and summaries of `mapping` over the rows of `batch`. `end_time` stamps the points
/// of a table without a `time_` column.
pub fn metrics_request(
    batch: &RecordBatch,
    mapping: &OtelTableMapping,
    end_time: SystemTime,
) -> Result<Mapped<ExportMetricsServiceRequest>, MappingError> {
    let table = Table::new(batch, &mapping.table);
    let groups = resource_groups(&table, mapping)?;
    let times = table.optional_time_column()?;
    let end_ns = unix_nanos(end_time);
    let time_at = |row: usize| -> u64 {
        match &times {
            Some(t) if t.is_valid(row) => t.value(row).max(0) as u64,
            _ => end_ns,
        }
    };

    let gauges = mapping
        .gauges
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let field = format!("gauges[{i}]");
            Ok((
                g,
                table.number(&format!("{field}.valueColumn"), &g.value_column)?,
                table.attributes(&format!("{field}.attributes"), &g.attributes)?,
            ))
        })
        .collect::<Result<Vec<_>, MappingError>>()?;
    let summaries = mapping
        .summaries
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("summaries[{i}]");
            let quantiles = s
                .quantiles
                .iter()
                .enumerate()
                .map(|(q, quantile)| {
                    let column = table.number(
                        &format!("{field}.quantiles[{q}].valueColumn"),
                        &quantile.value_column,
                    )?;
                    Ok((quantile.quantile, column))
                })
                .collect::<Result<Vec<_>, MappingError>>()?;
            Ok(SummaryColumns {
                count: table.count(&format!("{field}.countColumn"), &s.count_column)?,
                sum: table.number(&format!("{field}.sumColumn"), &s.sum_column)?,
                quantiles,
                attributes: table.attributes(&format!("{field}.attributes"), &s.attributes)?,
            })
        })
        .collect::<Result<Vec<_>, MappingError>>()?;

    let mut records = 0;
    let mut skipped = 0;
    let mut resource_metrics = Vec::with_capacity(groups.len());
    for group in &groups {
        let mut metrics = Vec::new();
        for (gauge, value, attributes) in &gauges {
            let mut data_points = Vec::new();
            for &row in &group.rows {
                let Some(value) = value.at(row) else {
                    skipped += 1;
                    continue;
                };
                data_points.push(NumberDataPoint {
                    attributes: attributes.at(row),
                    time_unix_nano: time_at(row),
                    value: Some(value),
                    ..Default::default()
                });
            }
            if data_points.is_empty() {
                continue;
            }
            records += data_points.len() as u64;
            metrics.push(Metric {
                name: gauge.name.clone(),
                description: gauge.description.clone().unwrap_or_default(),
                unit: gauge.unit.clone().unwrap_or_default(),
                data: Some(metric::Data::Gauge(Gauge { data_points })),
                ..Default::default()
            });
        }
        for (summary, columns) in mapping.summaries.iter().zip(&summaries) {
            let mut data_points = Vec::new();
            for &row in &group.rows {
                let (Some(count), Some(sum)) = (columns.count.at(row)?, columns.sum.at(row)) else {
                    skipped += 1;
                    continue;
                };
                let quantile_values = columns
                    .quantiles
                    .iter()
                    .filter_map(|(quantile, column)| {
                        column.at(row).map(|v| ValueAtQuantile {
                            quantile: *quantile,
                            value: v.as_f64(),
                        })
                    })
                    .collect();
                data_points.push(SummaryDataPoint {
                    attributes: columns.attributes.at(row),
                    time_unix_nano: time_at(row),
                    count,
                    sum: sum.as_f64(),
                    quantile_values,
                    ..Default::default()
                });
            }
            if data_points.is_empty() {
                continue;
            }
            records += data_points.len() as u64;
            metrics.push(Metric {
                name: summary.name.clone(),
                description: summary.description.clone().unwrap_or_default(),
                unit: summary.unit.clone().unwrap_or_default(),
                data: Some(metric::Data::Summary(Summary { data_points })),
                ..Default::default()
            });
        }
        if metrics.is_empty() {
            continue;
        }
        resource_metrics.push(ResourceMetrics {
            resource: Some(group.resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Ok(Mapped {
        request: ExportMetricsServiceRequest { resource_metrics },
        records,
        skipped,
    })
}

/// The spans of `mapping` over the rows of `batch`, one per row and span entry.
pub fn trace_request(
    batch: &RecordBatch,
    mapping: &OtelTableMapping,
) -> Result<Mapped<ExportTraceServiceRequest>, MappingError> {
    trace_request_with_ids(batch, mapping, &mut rand::rng())
}

/// [`trace_request`] with the source of the random IDs given, for reproducible tests.
pub fn trace_request_with_ids(
    batch: &RecordBatch,
    mapping: &OtelTableMapping,
    ids: &mut impl RngCore,
) -> Result<Mapped<ExportTraceServiceRequest>, MappingError> {
    let table = Table::new(batch, &mapping.table);
    let groups = resource_groups(&table, mapping)?;
    let entries = mapping
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("spans[{i}]");
            let optional_string = |name: &str, column: &Option<String>| {
                column
                    .as_ref()
                    .map(|c| table.string(&format!("{field}.{name}"), c))
                    .transpose()
            };
            Ok(SpanColumns {
                name: match (&s.name, &s.name_column) {
                    (_, Some(column)) => {
                        SpanName::Column(table.string(&format!("{field}.nameColumn"), column)?)
                    }
                    (Some(name), None) => SpanName::Fixed(name.clone()),
                    (None, None) => SpanName::Fixed(String::new()),
                },
                start: table.time(&format!("{field}.startTimeColumn"), &s.start_time_column)?,
                end: table.time(&format!("{field}.endTimeColumn"), &s.end_time_column)?,
                trace_id: optional_string("traceIdColumn", &s.trace_id_column)?,
                span_id: optional_string("spanIdColumn", &s.span_id_column)?,
                parent_span_id: optional_string("parentSpanIdColumn", &s.parent_span_id_column)?,
                kind: proto_span_kind(s.kind.unwrap_or(SpanKind::Internal)),
                attributes: table.attributes(&format!("{field}.attributes"), &s.attributes)?,
            })
        })
        .collect::<Result<Vec<_>, MappingError>>()?;

    let mut records = 0;
    let mut skipped = 0;
    let mut resource_spans = Vec::with_capacity(groups.len());
    for group in &groups {
        let mut spans = Vec::new();
        for columns in &entries {
            for &row in &group.rows {
                let name = match &columns.name {
                    SpanName::Fixed(name) => Some(name.clone()),
                    SpanName::Column(c) => c.at(row).map(str::to_owned),
                };
                let (Some(name), Some(start), Some(end)) =
                    (name, columns.start.at(row), columns.end.at(row))
                else {
                    skipped += 1;
                    continue;
                };
                let trace_id = match &columns.trace_id {
                    Some(c) => c.id::<16>(row)?,
                    None => None,
                }
                .unwrap_or_else(|| random_id::<16>(ids));
                let span_id = match &columns.span_id {
                    Some(c) => c.id::<8>(row)?,
                    None => None,
                }
                .unwrap_or_else(|| random_id::<8>(ids));
                let parent_span_id = match &columns.parent_span_id {
                    Some(c) => c.id::<8>(row)?.map(Vec::from).unwrap_or_default(),
                    None => Vec::new(),
                };
                spans.push(Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id,
                    name,
                    kind: columns.kind as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes: columns.attributes.at(row),
                    ..Default::default()
                });
            }
        }
        if spans.is_empty() {
            continue;
        }
        records += spans.len() as u64;
        resource_spans.push(ResourceSpans {
            resource: Some(group.resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Ok(Mapped {
        request: ExportTraceServiceRequest { resource_spans },
        records,
        skipped,
    })
}

/// Nanoseconds since the Unix epoch; 0 for times before it.
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Parses an ID of `N` bytes written as `2N` hex digits (either case). An all-zero ID is an
/// error: OTLP defines it as invalid.
pub fn parse_hex_id<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let mut id = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| format!("{text:?} is not an ID of {} hex digits", 2 * N))?;
    if id == [0u8; N] {
        return Err(format!("{text:?} is all zeros, which is not a valid ID"));
    }
    Ok(id)
}

fn random_id<const N: usize>(ids: &mut impl RngCore) -> [u8; N] {
    let mut id = [0u8; N];
    while id == [0u8; N] {
        ids.fill_bytes(&mut id);
    }
    id
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn proto_span_kind(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

fn string_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// A result table under its output name, with columns looked up and type-checked by the mapping
/// field that names them.
struct Table<'a> {
    batch: &'a RecordBatch,
    name: &'a str,
}

impl<'a> Table<'a> {
    fn new(batch: &'a RecordBatch, name: &'a str) -> Self {
        Self { batch, name }
    }

    fn schema(&self) -> Arc<Schema> {
        self.batch.schema()
    }

    fn column(&self, field: &str, column: &str) -> Result<&'a ArrayRef, MappingError> {
        match self.schema().index_of(column) {
            Ok(index) => Ok(self.batch.column(index)),
            Err(_) => Err(MappingError::MissingColumn {
                field: field.to_owned(),
                column: column.to_owned(),
                table: self.name.to_owned(),
                available: self
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn wrong_type(
        &self,
        field: &str,
        column: &str,
        found: &DataType,
        expected: &'static str,
    ) -> MappingError {
        MappingError::WrongType {
            field: field.to_owned(),
            column: column.to_owned(),
            table: self.name.to_owned(),
            found: pixie_type_name(found),
            expected,
        }
    }

    /// Casts a column of an accepted type to the one the mapping reads; `safe: false` makes an
    /// out-of-range value (a UINT64 above INT64's range) an error instead of a silent null.
    fn cast(
        &self,
        field: &str,
        column: &str,
        array: &ArrayRef,
        to: &DataType,
    ) -> Result<ArrayRef, MappingError> {
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        cast_with_options(array, to, &options).map_err(|e| MappingError::BadValue {
            field: field.to_owned(),
            column: column.to_owned(),
            table: self.name.to_owned(),
            row: first_unconvertible_row(array, to),
            problem: e.to_string(),
        })
    }

    fn string(&self, field: &str, column: &str) -> Result<StringColumn, MappingError> {
        let array = self.column(field, column)?;
        let accepted = match array.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            DataType::Dictionary(_, values) => {
                matches!(
                    **values,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            }
            _ => false,
        };
        if !accepted {
            return Err(self.wrong_type(field, column, array.data_type(), "a STRING column"));
        }
        let strings = self.cast(field, column, array, &DataType::Utf8)?;
        Ok(StringColumn {
            strings,
            field: field.to_owned(),
            column: column.to_owned(),
            table: self.name.to_owned(),
        })
    }

    fn number(&self, field: &str, column: &str) -> Result<NumberColumn, MappingError> {
        let array = self.column(field, column)?;
        let data_type = array.data_type();
        if data_type.is_integer() {
            Ok(NumberColumn::Int(self.cast(
                field,
                column,
                array,
                &DataType::Int64,
            )?))
        } else if data_type.is_floating() {
            Ok(NumberColumn::Float(self.cast(
                field,
                column,
                array,
                &DataType::Float64,
            )?))
        } else {
            Err(self.wrong_type(
                field,
                column,
                data_type,
                "a numeric column (INT64 or FLOAT64)",
            ))
        }
    }

    fn count(&self, field: &str, column: &str) -> Result<CountColumn, MappingError> {
        let array = self.column(field, column)?;
        if !array.data_type().is_integer() {
            return Err(self.wrong_type(field, column, array.data_type(), "an INT64 column"));
        }
        Ok(CountColumn {
            counts: self.cast(field, column, array, &DataType::Int64)?,
            field: field.to_owned(),
            column: column.to_owned(),
            table: self.name.to_owned(),
        })
    }

    fn time(&self, field: &str, column: &str) -> Result<TimeColumn, MappingError> {
        let array = self.column(field, column)?;
        let nanos = DataType::Timestamp(TimeUnit::Nanosecond, None);
        match array.data_type() {
            DataType::Timestamp(_, _) => Ok(TimeColumn(self.cast(field, column, array, &nanos)?)),
            // Nanoseconds since the epoch, as a script may compute them.
            DataType::Int64 => Ok(TimeColumn(self.cast(field, column, array, &nanos)?)),
            other => Err(self.wrong_type(field, column, other, "a TIME64NS column")),
        }
    }

    fn optional_time_column(
        &self,
    ) -> Result<Option<arrow::array::PrimitiveArray<TimestampNanosecondType>>, MappingError> {
        if self.schema().index_of(TIME_COLUMN).is_err() {
            return Ok(None);
        }
        let TimeColumn(array) = self.time(TIME_COLUMN, TIME_COLUMN)?;
        Ok(Some(
            array.as_primitive::<TimestampNanosecondType>().clone(),
        ))
    }

    fn attributes(
        &self,
        field: &str,
        mapping: &std::collections::BTreeMap<String, String>,
    ) -> Result<AttributeColumns, MappingError> {
        let columns = mapping
            .iter()
            .map(|(key, column)| {
                Ok((
                    key.clone(),
                    self.string(&format!("{field}[{key:?}]"), column)?,
                ))
            })
            .collect::<Result<Vec<_>, MappingError>>()?;
        Ok(AttributeColumns(columns))
    }
}

/// Arrow types under the names PxL users know them by.
fn pixie_type_name(data_type: &DataType) -> String {
    let pixie = match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING",
        DataType::Boolean => "BOOLEAN",
        DataType::Int64 => "INT64",
        DataType::Float64 => "FLOAT64",
        DataType::Timestamp(TimeUnit::Nanosecond, _) => "TIME64NS",
        _ => return data_type.to_string(),
    };
    pixie.to_owned()
}

/// The first row whose value a strict cast refuses, for the error message (0 when unknown).
fn first_unconvertible_row(array: &ArrayRef, to: &DataType) -> usize {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    (0..array.len())
        .find(|&row| cast_with_options(&array.slice(row, 1), to, &options).is_err())
        .unwrap_or(0)
}

struct StringColumn {
    strings: ArrayRef,
    field: String,
    column: String,
    table: String,
}

impl StringColumn {
    fn at(&self, row: usize) -> Option<&str> {
        let strings: &StringArray = self.strings.as_string::<i32>();
        strings.is_valid(row).then(|| strings.value(row))
    }

    /// The row's ID of `N` bytes; `None` when null or empty.
    fn id<const N: usize>(&self, row: usize) -> Result<Option<[u8; N]>, MappingError> {
        match self.at(row) {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => {
                parse_hex_id::<N>(text)
                    .map(Some)
                    .map_err(|problem| MappingError::BadValue {
                        field: self.field.clone(),
                        column: self.column.clone(),
                        table: self.table.clone(),
                        row,
                        problem,
                    })
            }
        }
    }
}

enum NumberColumn {
    Int(ArrayRef),
    Float(ArrayRef),
}

impl NumberColumn {
    fn at(&self, row: usize) -> Option<number_data_point::Value> {
        match self {
            NumberColumn::Int(a) => {
                let a = a.as_primitive::<Int64Type>();
                a.is_valid(row)
                    .then(|| number_data_point::Value::AsInt(a.value(row)))
            }
            NumberColumn::Float(a) => {
                let a = a.as_primitive::<Float64Type>();
                a.is_valid(row)
                    .then(|| number_data_point::Value::AsDouble(a.value(row)))
            }
        }
    }
}

trait AsF64 {
    fn as_f64(&self) -> f64;
}

impl AsF64 for number_data_point::Value {
    fn as_f64(&self) -> f64 {
        match *self {
            number_data_point::Value::AsInt(v) => v as f64,
            number_data_point::Value::AsDouble(v) => v,
        }
    }
}

struct CountColumn {
    counts: ArrayRef,
    field: String,
    column: String,
    table: String,
}

impl CountColumn {
    fn at(&self, row: usize) -> Result<Option<u64>, MappingError> {
        let counts = self.counts.as_primitive::<Int64Type>();
        if counts.is_null(row) {
            return Ok(None);
        }
        let count = counts.value(row);
        u64::try_from(count)
            .map(Some)
            .map_err(|_| MappingError::BadValue {
                field: self.field.clone(),
                column: self.column.clone(),
                table: self.table.clone(),
                row,
                problem: format!("a count cannot be negative, found {count}"),
            })
    }
}

struct TimeColumn(ArrayRef);

impl TimeColumn {
    fn at(&self, row: usize) -> Option<u64> {
        let times = self.0.as_primitive::<TimestampNanosecondType>();
        times.is_valid(row).then(|| times.value(row).max(0) as u64)
    }
}

struct AttributeColumns(Vec<(String, StringColumn)>);

impl AttributeColumns {
    fn at(&self, row: usize) -> Vec<KeyValue> {
        self.0
            .iter()
            .filter_map(|(key, column)| column.at(row).map(|v| string_value(key, v)))
            .collect()
    }
}

struct SummaryColumns {
    count: CountColumn,
    sum: NumberColumn,
    quantiles: Vec<(f64, NumberColumn)>,
    attributes: AttributeColumns,
}

enum SpanName {
    Fixed(String),
    Column(StringColumn),
}

struct SpanColumns {
    name: SpanName,
    start: TimeColumn,
    end: TimeColumn,
    trace_id: Option<StringColumn>,
    span_id: Option<StringColumn>,
    parent_span_id: Option<StringColumn>,
    kind: span::SpanKind,
    attributes: AttributeColumns,
}

/// Rows that share one set of resource attribute values.
struct ResourceGroup {
    attributes: Vec<KeyValue>,
    rows: Vec<usize>,
}

impl ResourceGroup {
    fn resource(&self) -> Resource {
        Resource {
            attributes: self.attributes.clone(),
            ..Default::default()
        }
    }
}

fn resource_groups(
    table: &Table<'_>,
    mapping: &OtelTableMapping,
) -> Result<Vec<ResourceGroup>, MappingError> {
    let columns = table.attributes("resource", &mapping.resource)?;
    let mut index: HashMap<Vec<Option<&str>>, usize> = HashMap::new();
    let mut groups: Vec<ResourceGroup> = Vec::new();
    for row in 0..table.batch.num_rows() {
        let key: Vec<Option<&str>> = columns.0.iter().map(|(_, c)| c.at(row)).collect();
        let next = groups.len();
        let group = *index.entry(key).or_insert(next);
        if group == next {
            groups.push(ResourceGroup {
                attributes: columns.at(row),
                rows: Vec::new(),
            });
        }
        groups[group].rows.push(row);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::Field;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoSpanKind;
    use pixie_crds::data_export::{GaugeMapping, QuantileColumn, SpanMapping, SummaryMapping};
    use proptest::prelude::*;
    use rand::SeedableRng;

    use super::*;

    const END: Duration = Duration::from_secs(1_700_000_000);

    fn end_time() -> SystemTime {
        UNIX_EPOCH + END
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    /// Three rows of service statistics: two from "cart", one from "checkout".
    fn service_stats() -> RecordBatch {
        batch(vec![
            (
                "time_",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(10),
                    Some(20),
                    None,
                ])),
            ),
            (
                "service",
                strings(&[Some("cart"), Some("checkout"), Some("cart")]),
            ),
            ("method", strings(&[Some("GET"), None, Some("POST")])),
            (
                "requests",
                Arc::new(Int64Array::from(vec![Some(5), Some(7), None])),
            ),
            (
                "latency_ms",
                Arc::new(Float64Array::from(vec![1.5, 2.5, 3.5])),
            ),
            ("count", Arc::new(Int64Array::from(vec![3, 4, 5]))),
            ("sum", Arc::new(Float64Array::from(vec![30.0, 40.0, 50.0]))),
            (
                "p99",
                Arc::new(Float64Array::from(vec![Some(9.9), None, Some(11.0)])),
            ),
        ])
    }

    fn gauge(name: &str, column: &str) -> GaugeMapping {
        GaugeMapping {
            name: name.into(),
            description: Some(format!("{name} per service")),
            unit: Some("1".into()),
            value_column: column.into(),
            attributes: BTreeMap::from([("http.method".into(), "method".into())]),
        }
    }

    fn table_mapping() -> OtelTableMapping {
        OtelTableMapping {
            table: "stats".into(),
            resource: BTreeMap::from([("service.name".into(), "service".into())]),
            gauges: vec![
                gauge("http.requests", "requests"),
                gauge("http.latency", "latency_ms"),
            ],
            summaries: vec![SummaryMapping {
                name: "http.duration".into(),
                description: None,
                unit: Some("ms".into()),
                count_column: "count".into(),
                sum_column: "sum".into(),
                quantiles: vec![QuantileColumn {
                    quantile: 0.99,
                    value_column: "p99".into(),
                }],
                attributes: BTreeMap::new(),
            }],
            spans: vec![],
        }
    }

    fn resource_names(request: &ExportMetricsServiceRequest) -> Vec<String> {
        request
            .resource_metrics
            .iter()
            .map(|r| attribute(&r.resource.as_ref().unwrap().attributes, "service.name").unwrap())
            .collect()
    }

    fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes.iter().find(|kv| kv.key == key).map(|kv| {
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("{key} is not a string: {other:?}"),
            }
        })
    }

    fn metric<'a>(resource: &'a ResourceMetrics, name: &str) -> &'a Metric {
        resource.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    fn gauge_points(metric: &Metric) -> &[NumberDataPoint] {
        match &metric.data {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            other => panic!("{} is not a gauge: {other:?}", metric.name),
        }
    }

    #[test]
    fn rows_become_points_grouped_by_resource_in_order_of_first_appearance() {
        let mapped = metrics_request(&service_stats(), &table_mapping(), end_time()).unwrap();
        assert_eq!(resource_names(&mapped.request), ["cart", "checkout"]);
        let cart = &mapped.request.resource_metrics[0];
        assert_eq!(
            cart.scope_metrics[0].scope.as_ref().unwrap().name,
            SCOPE_NAME
        );

        // requests is null in the third row: that row makes no requests point, and says so.
        let requests = gauge_points(metric(cart, "http.requests"));
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].value, Some(number_data_point::Value::AsInt(5)));
        assert_eq!(requests[0].time_unix_nano, 10);
        assert_eq!(
            attribute(&requests[0].attributes, "http.method").as_deref(),
            Some("GET")
        );
        assert_eq!(
            metric(cart, "http.requests").description,
            "http.requests per service"
        );
        assert_eq!(metric(cart, "http.requests").unit, "1");

        // Float columns become doubles; a null time_ falls back to the end of the run.
        let latency = gauge_points(metric(cart, "http.latency"));
        assert_eq!(latency.len(), 2);
        assert_eq!(
            latency[1].value,
            Some(number_data_point::Value::AsDouble(3.5))
        );
        assert_eq!(latency[1].time_unix_nano, END.as_nanos() as u64);

        // A null attribute value leaves the attribute out.
        let checkout = &mapped.request.resource_metrics[1];
        let point = &gauge_points(metric(checkout, "http.requests"))[0];
        assert_eq!(attribute(&point.attributes, "http.method"), None);

        // 3 rows × (2 gauges + 1 summary) = 9, less the null requests value.
        assert_eq!(mapped.records, 8);
        assert_eq!(mapped.skipped, 1);
        assert_eq!(count_metric_points(&mapped.request), 8);
    }

    #[test]
    fn summaries_carry_count_sum_and_the_quantiles_present() {
        let mapped = metrics_request(&service_stats(), &table_mapping(), end_time()).unwrap();
        let checkout = &mapped.request.resource_metrics[1];
        let summary = metric(checkout, "http.duration");
        assert_eq!(summary.unit, "ms");
        let Some(metric::Data::Summary(Summary { data_points })) = &summary.data else {
            panic!("not a summary: {summary:?}");
        };
        assert_eq!(data_points.len(), 1);
        assert_eq!((data_points[0].count, data_points[0].sum), (4, 40.0));
        // p99 is null in this row: no quantile rather than a made-up value.
        assert!(data_points[0].quantile_values.is_empty());

        let cart = &mapped.request.resource_metrics[0];
        let Some(metric::Data::Summary(Summary { data_points })) =
            &metric(cart, "http.duration").data
        else {
            panic!("not a summary");
        };
        assert_eq!(
            data_points[1].quantile_values,
            [ValueAtQuantile {
                quantile: 0.99,
                value: 11.0
            }]
        );
    }

    #[test]
    fn a_table_without_time_column_is_stamped_with_the_end_of_the_run() {
        let b = batch(vec![
            ("service", strings(&[Some("a")])),
            ("requests", Arc::new(UInt64Array::from(vec![3u64]))),
        ]);
        let mut mapping = table_mapping();
        mapping.summaries.clear();
        mapping.gauges = vec![GaugeMapping {
            attributes: BTreeMap::new(),
            ..gauge("r", "requests")
        }];
        let mapped = metrics_request(&b, &mapping, end_time()).unwrap();
        let point =
            &gauge_points(&mapped.request.resource_metrics[0].scope_metrics[0].metrics[0])[0];
        assert_eq!(point.time_unix_nano, END.as_nanos() as u64);
        assert_eq!(point.value, Some(number_data_point::Value::AsInt(3)));
    }

    #[test]
    fn a_missing_column_names_the_field_the_output_and_its_columns() {
        let mut mapping = table_mapping();
        mapping.gauges[0].value_column = "reqs".into();
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gauges[0].valueColumn: column \"reqs\" is not in output \"stats\" (columns: time_, \
             service, method, requests, latency_ms, count, sum, p99)"
        );

        let mut mapping = table_mapping();
        mapping.resource.insert("k8s.pod.name".into(), "pod".into());
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resource[\"k8s.pod.name\"]: column \"pod\" is not in"),
            "{err}"
        );
    }

    #[test]
    fn type_mismatches_name_the_field_and_both_types() {
        let mut mapping = table_mapping();
        mapping.gauges[1].value_column = "service".into();
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gauges[1].valueColumn: column \"service\" of output \"stats\" is STRING; expected a \
             numeric column (INT64 or FLOAT64)"
        );

        let mut mapping = table_mapping();
        mapping
            .resource
            .insert("service.name".into(), "requests".into());
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resource[\"service.name\"]: column \"requests\" of output \"stats\" is INT64; \
             expected a STRING column"
        );

        let mut mapping = table_mapping();
        mapping.summaries[0].count_column = "latency_ms".into();
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert!(
            err.to_string().starts_with("summaries[0].countColumn: "),
            "{err}"
        );

        let mut mapping = table_mapping();
        mapping.summaries[0].quantiles[0].value_column = "method".into();
        let err = metrics_request(&service_stats(), &mapping, end_time()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("summaries[0].quantiles[0].valueColumn: "),
            "{err}"
        );
    }

    #[test]
    fn types_are_checked_even_when_there_are_no_rows() {
        let empty = service_stats().slice(0, 0);
        let mut mapping = table_mapping();
        mapping.gauges[0].value_column = "method".into();
        assert!(metrics_request(&empty, &mapping, end_time()).is_err());
        let mapped = metrics_request(&empty, &table_mapping(), end_time()).unwrap();
        assert_eq!(
            (mapped.records, mapped.request.resource_metrics.len()),
            (0, 0)
        );
    }

    #[test]
    fn bad_values_name_the_row() {
        let b = batch(vec![
            ("service", strings(&[Some("a"), Some("a")])),
            ("count", Arc::new(Int64Array::from(vec![1, -2]))),
            ("sum", Arc::new(Float64Array::from(vec![1.0, 1.0]))),
            ("big", Arc::new(UInt64Array::from(vec![1, u64::MAX]))),
        ]);
        let mut mapping = table_mapping();
        mapping.gauges.clear();
        mapping.summaries[0].quantiles.clear();
        let err = metrics_request(&b, &mapping, end_time()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "summaries[0].countColumn: column \"count\" of output \"stats\", row 1: a count cannot \
             be negative, found -2"
        );

        let mut mapping = table_mapping();
        mapping.summaries.clear();
        mapping.gauges = vec![GaugeMapping {
            attributes: BTreeMap::new(),
            ..gauge("big", "big")
        }];
        let err = metrics_request(&b, &mapping, end_time()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gauges[0].valueColumn: column \"big\" of output \"stats\", row 1: "),
            "{err}"
        );
    }

    fn spans_batch() -> RecordBatch {
        batch(vec![
            (
                "service",
                strings(&[Some("cart"), Some("cart"), Some("cart")]),
            ),
            ("endpoint", strings(&[Some("/buy"), Some("/list"), None])),
            (
                "start",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(100),
                    Some(200),
                    Some(300),
                ])),
            ),
            (
                "end",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(150),
                    None,
                    Some(350),
                ])),
            ),
            (
                "trace",
                strings(&[Some("0AF7651916CD43DD8448EB211C80319C"), None, None]),
            ),
            ("span", strings(&[Some("b7ad6b7169203331"), None, None])),
            (
                "parent",
                strings(&[Some("00f067aa0ba902b7"), None, Some("")]),
            ),
        ])
    }

    fn span_mapping() -> OtelTableMapping {
        OtelTableMapping {
            table: "requests".into(),
            resource: BTreeMap::from([("service.name".into(), "service".into())]),
            spans: vec![SpanMapping {
                name: None,
                name_column: Some("endpoint".into()),
                start_time_column: "start".into(),
                end_time_column: "end".into(),
                trace_id_column: Some("trace".into()),
                span_id_column: Some("span".into()),
                parent_span_id_column: Some("parent".into()),
                kind: Some(SpanKind::Server),
                attributes: BTreeMap::from([("http.route".into(), "endpoint".into())]),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rows_become_spans_with_ids_from_hex_and_times_from_columns() {
        let mut ids = rand::rngs::StdRng::seed_from_u64(7);
        let mapped = trace_request_with_ids(&spans_batch(), &span_mapping(), &mut ids).unwrap();
        // Row 1 has no end and row 2 no name: neither becomes a span.
        assert_eq!((mapped.records, mapped.skipped), (1, 2));
        let span = &mapped.request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(hex::encode(&span.span_id), "b7ad6b7169203331");
        assert_eq!(hex::encode(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(span.name, "/buy");
        assert_eq!(span.kind, ProtoSpanKind::Server as i32);
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (100, 150)
        );
        assert_eq!(
            attribute(&span.attributes, "http.route").as_deref(),
            Some("/buy")
        );
    }

    #[test]
    fn spans_without_id_columns_get_random_ids_and_no_parent() {
        let mut mapping = span_mapping();
        let entry = &mut mapping.spans[0];
        entry.name = Some("request".into());
        entry.name_column = None;
        entry.end_time_column = "start".into();
        entry.trace_id_column = None;
        entry.span_id_column = None;
        entry.parent_span_id_column = None;
        entry.kind = None;
        let mapped = trace_request(&spans_batch(), &mapping).unwrap();
        let spans = &mapped.request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        for span in spans {
            assert_eq!((span.trace_id.len(), span.span_id.len()), (16, 8));
            assert_ne!(span.trace_id, vec![0; 16]);
            assert!(span.parent_span_id.is_empty());
            assert_eq!(span.kind, ProtoSpanKind::Internal as i32);
            assert_eq!(span.name, "request");
        }
        assert_ne!(spans[0].trace_id, spans[1].trace_id);
    }

    #[test]
    fn malformed_ids_are_refused_with_the_row() {
        let b = batch(vec![
            ("service", strings(&[Some("cart")])),
            ("endpoint", strings(&[Some("/buy")])),
            ("start", Arc::new(TimestampNanosecondArray::from(vec![1]))),
            ("end", Arc::new(TimestampNanosecondArray::from(vec![2]))),
            ("trace", strings(&[Some("xyz")])),
            ("span", strings(&[Some("0000000000000000")])),
            ("parent", strings(&[None])),
        ]);
        let err = trace_request(&b, &span_mapping()).unwrap_err().to_string();
        assert_eq!(
            err,
            "spans[0].traceIdColumn: column \"trace\" of output \"requests\", row 0: \"xyz\" is \
             not an ID of 32 hex digits"
        );
        let mut mapping = span_mapping();
        mapping.spans[0].trace_id_column = None;
        let err = trace_request(&b, &mapping).unwrap_err().to_string();
        assert!(err.contains("all zeros"), "{err}");

        let mut mapping = span_mapping();
        mapping.spans[0].start_time_column = "endpoint".into();
        let err = trace_request(&b, &mapping).unwrap_err().to_string();
        assert_eq!(
            err,
            "spans[0].startTimeColumn: column \"endpoint\" of output \"requests\" is STRING; \
             expected a TIME64NS column"
        );
    }

    #[test]
    fn map_table_leaves_out_what_the_mapping_does_not_ask_for() {
        let out = map_table(&service_stats(), &table_mapping(), end_time()).unwrap();
        assert!(out.traces.is_none());
        assert_eq!((out.metric_points(), out.records(), out.skipped), (8, 8, 1));

        let out = map_table(&spans_batch(), &span_mapping(), end_time()).unwrap();
        assert!(out.metrics.is_none());
        assert_eq!(out.spans(), 1);

        let mut run = OtlpBatch::default();
        run.merge(map_table(&service_stats(), &table_mapping(), end_time()).unwrap());
        run.merge(map_table(&spans_batch(), &span_mapping(), end_time()).unwrap());
        run.merge(map_table(&service_stats(), &table_mapping(), end_time()).unwrap());
        assert_eq!((run.metric_points(), run.spans(), run.skipped), (16, 1, 4));
        assert_eq!(run.metrics.unwrap().resource_metrics.len(), 4);
    }

    #[test]
    fn pixie_type_names_are_used_in_messages() {
        assert_eq!(pixie_type_name(&DataType::Utf8), "STRING");
        assert_eq!(
            pixie_type_name(&DataType::Timestamp(TimeUnit::Nanosecond, None)),
            "TIME64NS"
        );
        assert_eq!(pixie_type_name(&DataType::Int32), "Int32");
    }

    proptest! {
        /// Whatever the rows, every non-null value becomes exactly one point under its own
        /// service, the resources are distinct, and the counts add up.
        #[test]
        fn every_non_null_value_is_one_point_under_its_own_resource(
            rows in proptest::collection::vec(
                (0..4usize, proptest::option::of(any::<i64>()), proptest::option::of(-1e9..1e9f64)),
                0..60,
            )
        ) {
            let services = ["a", "b", "c", "d"];
            let b = batch(vec![
                ("service", strings(&rows.iter().map(|r| Some(services[r.0])).collect::<Vec<_>>())),
                ("i", Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
                ("f", Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
            ]);
            let mapping = OtelTableMapping {
                table: "t".into(),
                resource: BTreeMap::from([("service.name".into(), "service".into())]),
                gauges: vec![
                    GaugeMapping { name: "i".into(), value_column: "i".into(), ..Default::default() },
                    GaugeMapping { name: "f".into(), value_column: "f".into(), ..Default::default() },
                ],
                ..Default::default()
            };
            let mapped = metrics_request(&b, &mapping, end_time()).unwrap();
            let non_null = rows.iter().map(|r| r.1.is_some() as u64 + r.2.is_some() as u64).sum::<u64>();
            prop_assert_eq!(mapped.records, non_null);
            prop_assert_eq!(mapped.skipped, 2 * rows.len() as u64 - non_null);
            prop_assert_eq!(count_metric_points(&mapped.request), non_null);

            let names = resource_names(&mapped.request);
            let mut distinct = names.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), names.len());

            for resource in &mapped.request.resource_metrics {
                let service = attribute(&resource.resource.as_ref().unwrap().attributes, "service.name").unwrap();
                for m in &resource.scope_metrics[0].metrics {
                    let mut expected: Vec<number_data_point::Value> = rows
                        .iter()
                        .filter(|r| services[r.0] == service)
                        .filter_map(|r| if m.name == "i" {
                            r.1.map(number_data_point::Value::AsInt)
                        } else {
                            r.2.map(number_data_point::Value::AsDouble)
                        })
                        .collect();
                    let got: Vec<_> = gauge_points(m).iter().map(|p| p.value.unwrap()).collect();
                    prop_assert_eq!(std::mem::take(&mut expected), got);
                }
            }
        }

        #[test]
        fn hex_ids_round_trip(bytes in any::<[u8; 16]>(), upper in any::<bool>()) {
            prop_assume!(bytes != [0; 16]);
            let text = if upper { hex::encode_upper(bytes) } else { hex::encode(bytes) };
            prop_assert_eq!(parse_hex_id::<16>(&text).unwrap(), bytes);
            prop_assert!(parse_hex_id::<8>(&text).is_err());
        }
    }
}
