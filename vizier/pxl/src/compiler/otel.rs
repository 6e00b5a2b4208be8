//! `px.otel`, `px.export` and `px.plugin`, with Pixie's argument names.
//!
//! The `px.otel` constructors only record which columns they name and where; `px.export(df, data)`
//! checks every name and type against `df`, adds `df` as an output and describes the export as an
//! [`ExportPlan`]. Each metric point takes its time from the row's `time_`, as in Pixie.
//!
//! `px.plugin.start_time`/`end_time` are the run's window in integer nanoseconds (as in Pixie), so
//! they go wherever a time does: `px.DataFrame(start_time=...)` or `df.time_ >= ...`.

use std::collections::BTreeMap;

use datafusion::logical_expr::Expr;
use ruff_text_size::TextRange;

use super::args::{Arg, CallArgs};
use super::value::{Kind, type_name};
use super::{Compiler, Result, Value};
use crate::export::{ExportPlan, GaugeExport, SpanExport, SummaryExport};
use crate::suggest::closest;
use pixie_store::TIME_COLUMN;

/// The `px` submodules and their members.
const MODULES: [(&str, &[&str]); 4] = [
    ("otel", &["Data", "Endpoint", "metric", "trace"]),
    ("otel.metric", &["Gauge", "Summary"]),
    (
        "otel.trace",
        &[
            "Span",
            "SPAN_KIND_UNSPECIFIED",
            "SPAN_KIND_INTERNAL",
            "SPAN_KIND_SERVER",
            "SPAN_KIND_CLIENT",
            "SPAN_KIND_PRODUCER",
            "SPAN_KIND_CONSUMER",
        ],
    ),
    ("plugin", &["start_time", "end_time"]),
];

/// The submodules reached directly from `px`.
pub const TOP_MODULES: [&str; 2] = ["otel", "plugin"];

/// The constructors, by their name under `px.`.
const CONSTRUCTORS: [&str; 5] = [
    "otel.Data",
    "otel.Endpoint",
    "otel.metric.Gauge",
    "otel.metric.Summary",
    "otel.trace.Span",
];

/// OTLP's `Span.SpanKind` numbers, which Pixie exposes as `px.otel.trace.SPAN_KIND_*`, and the
/// kind's name in [`SpanExport::kind`].
const SPAN_KINDS: [(&str, i64, Option<&str>); 6] = [
    ("SPAN_KIND_UNSPECIFIED", 0, None),
    ("SPAN_KIND_INTERNAL", 1, Some("internal")),
    ("SPAN_KIND_SERVER", 2, Some("server")),
    ("SPAN_KIND_CLIENT", 3, Some("client")),
    ("SPAN_KIND_PRODUCER", 4, Some("producer")),
    ("SPAN_KIND_CONSUMER", 5, Some("consumer")),
];

/// Pixie's default kind for `px.otel.trace.Span`.
const DEFAULT_SPAN_KIND: Option<&str> = Some("server");

const SIGNALS: &str = "px.otel.metric.Gauge, px.otel.metric.Summary or px.otel.trace.Span";

/// What a `px.otel` constructor returned.
#[derive(Debug, Clone)]
pub enum OtelValue {
    Endpoint,
    Gauge(GaugeDef),
    Summary(SummaryDef),
    Span(SpanDef),
    Data(DataDef),
}

impl OtelValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            OtelValue::Endpoint => "px.otel.Endpoint",
            OtelValue::Gauge(_) => "px.otel.metric.Gauge",
            OtelValue::Summary(_) => "px.otel.metric.Summary",
            OtelValue::Span(_) => "px.otel.trace.Span",
            OtelValue::Data(_) => "px.otel.Data",
        }
    }
}

/// A column named in a `px.otel` argument and where; checked when the DataFrame is exported.
#[derive(Debug, Clone)]
pub struct ColumnRef {
    name: String,
    at: TextRange,
}

/// `{'attribute': df.column}` in the order written.
type Attributes = Vec<(String, ColumnRef)>;

#[derive(Debug, Clone)]
pub struct GaugeDef {
    name: String,
    description: Option<String>,
    unit: Option<String>,
    value: ColumnRef,
    attributes: Attributes,
    at: TextRange,
}

#[derive(Debug, Clone)]
pub struct SummaryDef {
    name: String,
    description: Option<String>,
    unit: Option<String>,
    count: ColumnRef,
    sum: ColumnRef,
    quantiles: Vec<(f64, ColumnRef)>,
    attributes: Attributes,
    at: TextRange,
}

#[derive(Debug, Clone)]
enum SpanName {
    Fixed(String),
    Column(ColumnRef),
}

#[derive(Debug, Clone)]
pub struct SpanDef {
    name: SpanName,
    start_time: ColumnRef,
    end_time: ColumnRef,
    trace_id: Option<ColumnRef>,
    span_id: Option<ColumnRef>,
    parent_span_id: Option<ColumnRef>,
    kind: Option<&'static str>,
    attributes: Attributes,
}

#[derive(Debug, Clone)]
pub struct DataDef {
    resource: Attributes,
    gauges: Vec<GaugeDef>,
    summaries: Vec<SummaryDef>,
    spans: Vec<SpanDef>,
}

/// The `px.*` name of a module member that is a constructor, e.g. `otel.metric.Gauge`.
fn constructor(module: &str, member: &str) -> Option<&'static str> {
    CONSTRUCTORS
        .iter()
        .copied()
        .find(|c| c.strip_prefix(module).and_then(|r| r.strip_prefix('.')) == Some(member))
}

/// OpenTelemetry's instrument name syntax, which Pixie checks too.
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl<'a> Compiler<'a> {
    /// `px.<module>.<name>`: a submodule, a constructor, a span kind or a window bound.
    pub(super) fn module_attribute(
        &self,
        module: &'static str,
        name: &str,
        name_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let members = MODULES
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, members)| *members)
            .expect("every PxModule value is listed in MODULES");
        if !members.contains(&name) {
            let hint = match closest(name, members.iter().copied()) {
                Some(c) => format!("; did you mean px.{module}.{c}?"),
                None => match MODULES.iter().find(|(_, ms)| ms.contains(&name)) {
                    Some((other, _)) => format!("; it is px.{other}.{name}"),
                    None => format!(" (it has {})", members.join(", ")),
                },
            };
            return self.err(
                name_at,
                format!("px.{module} has no attribute '{name}'{hint}"),
            );
        }
        if let Some(f) = constructor(module, name) {
            return Ok(Value::PxFn(f));
        }
        match (module, name) {
            ("otel", "metric") => Ok(Value::PxModule("otel.metric")),
            ("otel", "trace") => Ok(Value::PxModule("otel.trace")),
            ("otel.trace", kind) => {
                let (_, number, _) = SPAN_KINDS
                    .iter()
                    .find(|(k, _, _)| *k == kind)
                    .expect("listed in MODULES");
                Ok(Value::Int(*number))
            }
            ("plugin", bound) => match self.options.window {
                Some((start, end)) => {
                    Ok(Value::Int(if bound == "start_time" { start } else { end }))
                }
                None => self.err(
                    at,
                    format!(
                        "px.plugin.{bound} is only set when a CronScript or plugin runs the script"
                    ),
                ),
            },
            _ => unreachable!("every member of MODULES is handled"),
        }
    }

    /// Calls `px.export` and the `px.otel` constructors (`name` as in [`CONSTRUCTORS`]).
    pub(super) fn call_otel(&mut self, name: &str, args: CallArgs<'a>) -> Result<Value<'a>> {
        let fname = format!("px.{name}()");
        let call_at = args.range;
        let otel = |v: OtelValue| -> Result<Value<'a>> { Ok(Value::Otel(Box::new(v))) };
        match name {
            "export" => {
                let [df, data] = self.bind_fixed(&fname, &["df", "data"], 2, args)?;
                let (df, data) = (df.expect("required"), data.expect("required"));
                let Value::DataFrame(id) = df.value else {
                    return self.err(
                        df.range,
                        format!("{fname} exports a DataFrame, got {}", df.value.type_name()),
                    );
                };
                let Value::Otel(otel_data) = &data.value else {
                    return self.err(
                        data.range,
                        format!(
                            "{fname} needs px.otel.Data(...) as its second argument, got {}",
                            data.value.type_name()
                        ),
                    );
                };
                let OtelValue::Data(definition) = otel_data.as_ref() else {
                    return self.err(
                        data.range,
                        format!(
                            "{fname} needs px.otel.Data(...) as its second argument, got {}; \
                             wrap it: px.otel.Data(resource={{...}}, data=[...])",
                            otel_data.type_name()
                        ),
                    );
                };
                let plan = self.export_plan(id, definition)?;
                self.export(id, plan, call_at.start());
                Ok(Value::None)
            }
            "otel.Data" => {
                let [resource, data, endpoint] =
                    self.bind_fixed(&fname, &["resource", "data", "endpoint"], 2, args)?;
                let resource_arg = resource.expect("required");
                let resource_at = resource_arg.range;
                let resource = self.attributes(&fname, "resource", Some(resource_arg))?;
                if !resource.iter().any(|(k, _)| k == "service.name") {
                    return self.err(
                        resource_at,
                        format!(
                            "{fname} resource must set 'service.name' to a column, e.g. \
                             {{'service.name': df.service}}"
                        ),
                    );
                }
                let mut definition = DataDef {
                    resource,
                    gauges: Vec::new(),
                    summaries: Vec::new(),
                    spans: Vec::new(),
                };
                let data = data.expect("required");
                let items = match data.value {
                    Value::List(items) | Value::Tuple(items) => items,
                    other => {
                        return self.err(
                            data.range,
                            format!(
                                "{fname} argument 'data' must be a list such as \
                                 [px.otel.metric.Gauge(...)], got {}",
                                other.type_name()
                            ),
                        );
                    }
                };
                if items.is_empty() {
                    return self.err(
                        data.range,
                        format!("{fname} needs at least one {SIGNALS} in data"),
                    );
                }
                for item in items {
                    match item {
                        Value::Otel(o) => match *o {
                            OtelValue::Gauge(g) => definition.gauges.push(g),
                            OtelValue::Summary(s) => definition.summaries.push(s),
                            OtelValue::Span(s) => definition.spans.push(s),
                            other => {
                                return self.err(
                                    data.range,
                                    format!(
                                        "{fname} data holds {SIGNALS}, got {}",
                                        other.type_name()
                                    ),
                                );
                            }
                        },
                        other => {
                            return self.err(
                                data.range,
                                format!("{fname} data holds {SIGNALS}, got {}", other.type_name()),
                            );
                        }
                    }
                }
                match endpoint {
                    None
                    | Some(Arg {
                        value: Value::None, ..
                    }) => {}
                    Some(Arg {
                        value: Value::Otel(o),
                        range,
                    }) if matches!(*o, OtelValue::Endpoint) => {
                        // Sending to an address written in the script would bypass the
                        // DataExport's TLS settings, Secret headers, retries and status.
                        return self.err(
                            range,
                            "endpoint= is not used by this Vizier: a CronScript's exports go to \
                             the DataExports it references and a Plugin's to its export URL; \
                             remove the endpoint argument",
                        );
                    }
                    Some(other) => {
                        return self.err(
                            other.range,
                            format!(
                                "{fname} argument 'endpoint' must be a px.otel.Endpoint, got {}",
                                other.value.type_name()
                            ),
                        );
                    }
                }
                otel(OtelValue::Data(definition))
            }
            "otel.Endpoint" => {
                let [url, headers, insecure, timeout] =
                    self.bind_fixed(&fname, &["url", "headers", "insecure", "timeout"], 1, args)?;
                let url = url.expect("required");
                if !matches!(url.value, Value::Str(_)) {
                    return self.err(
                        url.range,
                        format!("{fname} url must be a string such as 'otel-collector:4317'"),
                    );
                }
                if let Some(headers) = headers {
                    let entries = match headers.value {
                        Value::None => Vec::new(),
                        Value::Dict(entries) => entries,
                        other => {
                            return self.err(
                                headers.range,
                                format!(
                                    "{fname} headers must be a dict of strings, got {}",
                                    other.type_name()
                                ),
                            );
                        }
                    };
                    for e in entries {
                        if !matches!((&e.key, &e.value), (Value::Str(_), Value::Str(_))) {
                            return self.err(
                                e.key_at,
                                format!(
                                    "{fname} headers must map strings to strings, got {}: {}",
                                    e.key.repr(),
                                    e.value.repr()
                                ),
                            );
                        }
                    }
                }
                for (arg, param, want) in [
                    (insecure, "insecure", "a bool"),
                    (timeout, "timeout", "an int (seconds)"),
                ] {
                    let Some(arg) = arg else { continue };
                    let ok = match param {
                        "insecure" => matches!(arg.value, Value::Bool(_)),
                        _ => matches!(arg.value, Value::Int(_)),
                    };
                    if !ok {
                        return self.err(
                            arg.range,
                            format!("{fname} {param} must be {want}, got {}", arg.value.repr()),
                        );
                    }
                }
                otel(OtelValue::Endpoint)
            }
            "otel.metric.Gauge" => {
                let [name, value, description, attributes, unit] = self.bind_fixed(
                    &fname,
                    &["name", "value", "description", "attributes", "unit"],
                    2,
                    args,
                )?;
                otel(OtelValue::Gauge(GaugeDef {
                    name: self.metric_name(&fname, name.expect("required"))?,
                    value: self.column_ref(&fname, "value", value.expect("required"))?,
                    description: self.optional_text(&fname, "description", description)?,
                    attributes: self.attributes(&fname, "attributes", attributes)?,
                    unit: self.optional_text(&fname, "unit", unit)?,
                    at: call_at,
                }))
            }
            "otel.metric.Summary" => {
                let [
                    name,
                    count,
                    sum,
                    quantile_values,
                    description,
                    attributes,
                    unit,
                ] = self.bind_fixed(
                    &fname,
                    &[
                        "name",
                        "count",
                        "sum",
                        "quantile_values",
                        "description",
                        "attributes",
                        "unit",
                    ],
                    4,
                    args,
                )?;
                otel(OtelValue::Summary(SummaryDef {
                    name: self.metric_name(&fname, name.expect("required"))?,
                    count: self.column_ref(&fname, "count", count.expect("required"))?,
                    sum: self.column_ref(&fname, "sum", sum.expect("required"))?,
                    quantiles: self.quantile_values(&fname, quantile_values.expect("required"))?,
                    description: self.optional_text(&fname, "description", description)?,
                    attributes: self.attributes(&fname, "attributes", attributes)?,
                    unit: self.optional_text(&fname, "unit", unit)?,
                    at: call_at,
                }))
            }
            "otel.trace.Span" => {
                let [
                    name,
                    start_time,
                    end_time,
                    trace_id,
                    span_id,
                    parent_span_id,
                    attributes,
                    kind,
                ] = self.bind_fixed(
                    &fname,
                    &[
                        "name",
                        "start_time",
                        "end_time",
                        "trace_id",
                        "span_id",
                        "parent_span_id",
                        "attributes",
                        "kind",
                    ],
                    3,
                    args,
                )?;
                let name = name.expect("required");
                let name = match name.value {
                    Value::Str(s) if !s.is_empty() => SpanName::Fixed(s),
                    value @ Value::Column(_) => SpanName::Column(self.column_ref(
                        &fname,
                        "name",
                        Arg {
                            value,
                            range: name.range,
                        },
                    )?),
                    other => {
                        return self.err(
                            name.range,
                            format!(
                                "{fname} name must be a non-empty string or a column such as \
                                 df.req_path, got {}",
                                other.repr()
                            ),
                        );
                    }
                };
                let kind = match kind {
                    None => DEFAULT_SPAN_KIND,
                    Some(Arg {
                        value: Value::Int(k),
                        ..
                    }) if SPAN_KINDS.iter().any(|(_, n, _)| *n == k) => {
                        SPAN_KINDS
                            .iter()
                            .find(|(_, n, _)| *n == k)
                            .expect("found")
                            .2
                    }
                    Some(other) => {
                        let names: Vec<String> = SPAN_KINDS
                            .iter()
                            .map(|(k, _, _)| format!("px.otel.trace.{k}"))
                            .collect();
                        return self.err(
                            other.range,
                            format!(
                                "{fname} kind must be one of {}, got {}",
                                names.join(", "),
                                other.value.repr()
                            ),
                        );
                    }
                };
                let optional = |this: &Self, param: &str, arg: Option<Arg<'a>>| match arg {
                    None
                    | Some(Arg {
                        value: Value::None, ..
                    }) => Ok(None),
                    Some(arg) => this.column_ref(&fname, param, arg).map(Some),
                };
                otel(OtelValue::Span(SpanDef {
                    name,
                    start_time: self.column_ref(
                        &fname,
                        "start_time",
                        start_time.expect("required"),
                    )?,
                    end_time: self.column_ref(&fname, "end_time", end_time.expect("required"))?,
                    trace_id: optional(self, "trace_id", trace_id)?,
                    span_id: optional(self, "span_id", span_id)?,
                    parent_span_id: optional(self, "parent_span_id", parent_span_id)?,
                    kind,
                    attributes: self.attributes(&fname, "attributes", attributes)?,
                }))
            }
            other => {
                unreachable!("call_otel is only called for px.export and CONSTRUCTORS, not {other}")
            }
        }
    }

    /// A column of the DataFrame being described, as `df.name`; expressions are refused because the
    /// exporter reads stored columns.
    fn column_ref(&self, fname: &str, param: &str, arg: Arg<'a>) -> Result<ColumnRef> {
        let got = match &arg.value {
            Value::Column(c) => match &c.expr {
                Expr::Column(column) => {
                    return Ok(ColumnRef {
                        name: column.name.clone(),
                        at: arg.range,
                    });
                }
                _ => format!(
                    "the expression {}; assign it to a column first (df.x = ...)",
                    c.desc
                ),
            },
            Value::Str(s) => format!(
                "the string '{s}'; to export a constant, add it as a column first \
                 (df.x = '{s}')"
            ),
            other => other.repr(),
        };
        self.err(
            arg.range,
            format!("{fname} {param} must be a DataFrame column (df.<name>), got {got}"),
        )
    }

    /// `{'attribute': df.column, ...}`; absent or `None` is no attributes.
    fn attributes(&self, fname: &str, param: &str, arg: Option<Arg<'a>>) -> Result<Attributes> {
        let Some(arg) = arg else {
            return Ok(Vec::new());
        };
        let entries = match arg.value {
            Value::None => return Ok(Vec::new()),
            Value::Dict(entries) => entries,
            other => {
                return self.err(
                    arg.range,
                    format!(
                        "{fname} {param} must be a dict such as {{'service.name': df.service}}, \
                         got {}",
                        other.type_name()
                    ),
                );
            }
        };
        let mut attributes = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = match &entry.key {
                Value::Str(k) if !k.is_empty() => k.clone(),
                other => {
                    return self.err(
                        entry.key_at,
                        format!(
                            "{fname} {param} names must be non-empty strings, got {}",
                            other.repr()
                        ),
                    );
                }
            };
            let what = format!("{param} '{key}'");
            let column = self.column_ref(
                fname,
                &what,
                Arg {
                    value: entry.value,
                    range: entry.value_at,
                },
            )?;
            attributes.push((key, column));
        }
        Ok(attributes)
    }

    fn metric_name(&self, fname: &str, arg: Arg<'a>) -> Result<String> {
        match arg.value {
            Value::Str(name) if valid_metric_name(&name) => Ok(name),
            Value::Str(name) => self.err(
                arg.range,
                format!(
                    "invalid metric name '{name}': OpenTelemetry instrument names start with a \
                     letter and hold only letters, digits, '_', '.' and '-'"
                ),
            ),
            other => self.err(
                arg.range,
                format!("{fname} name must be a string, got {}", other.repr()),
            ),
        }
    }

    /// A description or unit: a string, with `''` and `None` meaning unset.
    fn optional_text(
        &self,
        fname: &str,
        param: &str,
        arg: Option<Arg<'a>>,
    ) -> Result<Option<String>> {
        match arg {
            None => Ok(None),
            Some(Arg { value, range }) => match value {
                Value::None => Ok(None),
                Value::Str(s) if s.is_empty() => Ok(None),
                Value::Str(s) => Ok(Some(s)),
                other => self.err(
                    range,
                    format!("{fname} {param} must be a string, got {}", other.repr()),
                ),
            },
        }
    }

    /// `{0.5: df.p50, 0.99: df.p99}`.
    fn quantile_values(&self, fname: &str, arg: Arg<'a>) -> Result<Vec<(f64, ColumnRef)>> {
        let entries = match arg.value {
            Value::Dict(entries) if !entries.is_empty() => entries,
            Value::Dict(_) => {
                return self.err(
                    arg.range,
                    format!("{fname} needs at least one quantile in quantile_values"),
                );
            }
            other => {
                return self.err(
                    arg.range,
                    format!(
                        "{fname} quantile_values must be a dict such as {{0.5: df.p50, 0.99: \
                         df.p99}}, got {}",
                        other.type_name()
                    ),
                );
            }
        };
        let mut quantiles = Vec::with_capacity(entries.len());
        for entry in entries {
            let q = match entry.key {
                Value::Float(q) if (0.0..=1.0).contains(&q) => q,
                Value::Int(q @ (0 | 1)) => q as f64,
                other => {
                    return self.err(
                        entry.key_at,
                        format!(
                            "{fname} quantiles must be numbers between 0 and 1, got {}",
                            other.repr()
                        ),
                    );
                }
            };
            let what = format!("quantile {}", Value::Float(q).repr());
            let column = self.column_ref(
                fname,
                &what,
                Arg {
                    value: entry.value,
                    range: entry.value_at,
                },
            )?;
            quantiles.push((q, column));
        }
        Ok(quantiles)
    }

    /// Checks every column `definition` names against DataFrame `df` and builds the plan (its
    /// output name is given once every output is known).
    fn export_plan(&self, df: usize, definition: &DataDef) -> Result<ExportPlan> {
        let strings = |this: &Self, what: &str, attributes: &Attributes| {
            attributes
                .iter()
                .map(|(key, column)| {
                    let what = format!("{what} '{key}'");
                    let name = this.export_column(df, column, &what, &[Kind::Str], "a string")?;
                    Ok((key.clone(), name))
                })
                .collect::<Result<BTreeMap<String, String>>>()
        };
        const NUMBER: [Kind; 2] = [Kind::Int, Kind::Float];
        let mut plan = ExportPlan {
            output: String::new(),
            resource: strings(self, "resource attribute", &definition.resource)?,
            ..ExportPlan::default()
        };
        for g in &definition.gauges {
            self.check_metric_time(df, "px.otel.metric.Gauge", g.at)?;
            let what = format!("the value of gauge '{}'", g.name);
            plan.gauges.push(GaugeExport {
                name: g.name.clone(),
                description: g.description.clone(),
                unit: g.unit.clone(),
                value_column: self.export_column(df, &g.value, &what, &NUMBER, "a number")?,
                attributes: strings(
                    self,
                    &format!("gauge '{}' attribute", g.name),
                    &g.attributes,
                )?,
            });
        }
        for s in &definition.summaries {
            self.check_metric_time(df, "px.otel.metric.Summary", s.at)?;
            let of = format!("of summary '{}'", s.name);
            let quantiles = s
                .quantiles
                .iter()
                .map(|(q, column)| {
                    let what = format!("quantile {} {of}", Value::Float(*q).repr());
                    Ok((
                        *q,
                        self.export_column(df, column, &what, &NUMBER, "a number")?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            plan.summaries.push(SummaryExport {
                name: s.name.clone(),
                description: s.description.clone(),
                unit: s.unit.clone(),
                count_column: self.export_column(
                    df,
                    &s.count,
                    &format!("the count {of}"),
                    &[Kind::Int],
                    "an int",
                )?,
                sum_column: self.export_column(
                    df,
                    &s.sum,
                    &format!("the sum {of}"),
                    &NUMBER,
                    "a number",
                )?,
                quantiles,
                attributes: strings(
                    self,
                    &format!("summary '{}' attribute", s.name),
                    &s.attributes,
                )?,
            });
        }
        for s in &definition.spans {
            let (name, name_column) = match &s.name {
                SpanName::Fixed(n) => (Some(n.clone()), None),
                SpanName::Column(c) => {
                    let column =
                        self.export_column(df, c, "the name of a span", &[Kind::Str], "a string")?;
                    (None, Some(column))
                }
            };
            let time = |this: &Self, c: &ColumnRef, which: &str| {
                this.export_column(
                    df,
                    c,
                    &format!("the {which} of a span"),
                    &[Kind::Time],
                    "a time",
                )
            };
            let id = |this: &Self, c: &Option<ColumnRef>, which: &str| {
                c.as_ref()
                    .map(|c| {
                        this.export_column(
                            df,
                            c,
                            &format!("the {which} of a span"),
                            &[Kind::Str],
                            "a string of hex digits",
                        )
                    })
                    .transpose()
            };
            plan.spans.push(SpanExport {
                name,
                name_column,
                start_time_column: time(self, &s.start_time, "start_time")?,
                end_time_column: time(self, &s.end_time, "end_time")?,
                trace_id_column: id(self, &s.trace_id, "trace_id")?,
                span_id_column: id(self, &s.span_id, "span_id")?,
                parent_span_id_column: id(self, &s.parent_span_id, "parent_span_id")?,
                kind: s.kind.map(str::to_string),
                attributes: strings(self, "span attribute", &s.attributes)?,
            });
        }
        Ok(plan)
    }

    /// The column `column` names, if DataFrame `df` has it with one of the `kinds`.
    fn export_column(
        &self,
        df: usize,
        column: &ColumnRef,
        what: &str,
        kinds: &[Kind],
        want: &str,
    ) -> Result<String> {
        let schema = self.schema(df);
        let Some(field) = schema.fields().iter().find(|f| *f.name() == column.name) else {
            let names = self.column_names(df);
            return self.err(
                column.at,
                format!(
                    "{what} reads column '{}', which the exported DataFrame does not have{} \
                     (columns: {})",
                    column.name,
                    crate::suggest::did_you_mean(&column.name, names.iter().map(String::as_str)),
                    names.join(", ")
                ),
            );
        };
        if !kinds.contains(&Kind::of(field.data_type())) {
            return self.err(
                column.at,
                format!(
                    "{what} must be {want}, got column '{}' ({})",
                    column.name,
                    type_name(field.data_type())
                ),
            );
        }
        Ok(column.name.clone())
    }

    /// Metric points are stamped with the row's `time_`, so the exported DataFrame needs one.
    fn check_metric_time(&self, df: usize, fname: &str, at: TextRange) -> Result<()> {
        let schema = self.schema(df);
        match schema.fields().iter().find(|f| f.name() == TIME_COLUMN) {
            Some(f) if Kind::of(f.data_type()) == Kind::Time => Ok(()),
            Some(f) => self.err(
                at,
                format!(
                    "{fname} stamps each point with the row's {TIME_COLUMN}, which must be a \
                     time, got {}",
                    type_name(f.data_type())
                ),
            ),
            None => self.err(
                at,
                format!(
                    "{fname} stamps each point with the row's {TIME_COLUMN}, which the exported \
                     DataFrame does not have (columns: {}); keep it, e.g. \
                     agg({TIME_COLUMN}=('{TIME_COLUMN}', px.max))",
                    self.column_names(df).join(", ")
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_instrument_name_syntax() {
        for ok in ["http.server.duration", "a", "req_count-2"] {
            assert!(valid_metric_name(ok), "{ok}");
        }
        for bad in ["", "1xx", "http server", "_x", "é"] {
            assert!(!valid_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_module_member_resolves_to_something() {
        for (module, members) in MODULES {
            for member in members {
                let is_constructor = constructor(module, member).is_some();
                let is_module = MODULES
                    .iter()
                    .any(|(m, _)| *m == format!("{module}.{member}"));
                let is_kind = SPAN_KINDS.iter().any(|(k, _, _)| k == member);
                let is_bound = module == "plugin";
                assert!(
                    is_constructor || is_module || is_kind || is_bound,
                    "px.{module}.{member}"
                );
            }
        }
        for c in CONSTRUCTORS {
            let (module, member) = c.rsplit_once('.').unwrap();
            assert_eq!(constructor(module, member), Some(c));
        }
    }
}
