//! `DataExport`: where CronScript results go. OTLP over gRPC is the first sink type; the sink is a
//! struct with one optional member per type (exactly one set) so that Arrow Flight and Parquet sinks
//! can be added beside it without changing what exists.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{NamedValue, SecretKeyRef};
use crate::rules;

/// A destination for CronScript results. Results reach an OTLP gRPC endpoint as metrics and spans,
/// either mapped from result columns by spec.otel or built by the script itself with px.export.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "px.dev",
    version = "v1alpha1",
    kind = "DataExport",
    namespaced,
    status = "DataExportStatus",
    derive = "PartialEq",
    shortname = "pxexport",
    category = "pixie",
    doc = "A destination for CronScript results, such as an OpenTelemetry collector reached over OTLP/gRPC.",
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.sink.otlpGrpc.endpoint",
        description = "OTLP gRPC endpoint"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the last delivery succeeded"
    ),
    printcolumn(
        name = "Last delivery",
        type_ = "date",
        json_path = ".status.lastDelivery.time",
        description = "When results were last sent"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DataExportSpec {
    /// Where results are sent. Exactly one sink type must be set.
    pub sink: Sink,

    /// How rows of result tables become OpenTelemetry metrics and spans, in the manner of PxL's
    /// px.otel.Data. Leave it out when the script builds its own px.otel.Data with px.export and no
    /// endpoint: the sink's endpoint is injected into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel: Option<OtelMapping>,
}

/// The destination of a DataExport; exactly one member is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.otlpGrpc) ? 1 : 0) == 1")
    .message("exactly one sink type must be set; supported: otlpGrpc")
    .reason(Reason::FieldValueRequired))]
pub struct Sink {
    /// Send results to an OpenTelemetry Protocol (OTLP) receiver over gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_grpc: Option<OtlpGrpcSink>,
}

/// An OTLP/gRPC receiver, such as an OpenTelemetry Collector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OtlpGrpcSink {
    /// host:port of the receiver, without a scheme, such as
    /// otel-collector.observability.svc.cluster.local:4317.
    #[schemars(length(min = 1, max = rules::ENDPOINT_MAX_LENGTH))]
    #[x_kube(validation = rules::no_url_scheme(), validation = rules::host_port())]
    pub endpoint: String,

    /// gRPC metadata sent with every export request, such as an API key header. Values may come
    /// from Secrets in this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub headers: Vec<NamedValue>,

    /// Transport security. TLS with the system's root certificates when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,

    /// How long one export request may take, as a duration such as 10s. Defaults to 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::DURATION_MAX_LENGTH))]
    #[x_kube(validation = rules::duration_at_least("1ms"))]
    pub timeout: Option<String>,
}

/// Transport security of a gRPC connection, in the terms of the OpenTelemetry Collector's settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.insecure) && self.insecure) || (!has(self.caSecretRef) && !has(self.insecureSkipVerify) && !has(self.serverName))")
    .message("insecure sends plaintext: caSecretRef, insecureSkipVerify and serverName only apply to TLS and must be left out")
    .field_path(".insecure")
    .reason(Reason::FieldValueForbidden))]
pub struct TlsConfig {
    /// Send plaintext gRPC with no TLS at all, as px.otel.Endpoint(insecure=True) does. Only for
    /// receivers inside a trusted network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,

    /// Use TLS but accept any server certificate. For testing only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,

    /// PEM-encoded CA certificate(s) that the receiver's certificate must chain to, from a Secret
    /// key in this namespace, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,

    /// Name expected in the receiver's certificate when it differs from the endpoint host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
}

/// How rows of result tables become OpenTelemetry data. Every row becomes one data point or span.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OtelMapping {
    /// One entry per result table to export; tables not listed are not exported.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["table".into()]))]
    pub tables: Vec<OtelTableMapping>,
}

/// How the rows of one result table become metrics and spans.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
        "(has(self.gauges) ? size(self.gauges) : 0) + (has(self.summaries) ? size(self.summaries) : 0) \
         + (has(self.spans) ? size(self.spans) : 0) > 0")
    .message("a table mapping needs at least one entry in gauges, summaries or spans")
    .field_path(".gauges")
    .reason(Reason::FieldValueRequired))]
pub struct OtelTableMapping {
    /// Name of the result table, as given to px.display in the script.
    #[schemars(length(min = 1, max = 128))]
    pub table: String,

    /// OpenTelemetry resource attributes, each taken from a STRING column: attribute name to
    /// column name. service.name is required, as in px.otel.
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("'service.name' in self")
        .message("must map service.name to a column")
        .reason(Reason::FieldValueRequired))]
    pub resource: BTreeMap<String, String>,

    /// Gauge metrics, one data point per row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub gauges: Vec<GaugeMapping>,

    /// Summary metrics (count, sum and quantiles), one data point per row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub summaries: Vec<SummaryMapping>,

    /// Spans, one per row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub spans: Vec<SpanMapping>,
}

/// A gauge metric built from a numeric column, as px.otel.metric.Gauge.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GaugeMapping {
    /// Metric name, such as http.server.request_count.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Metric description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Unit in UCUM notation, such as ms, By or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub unit: Option<String>,
    /// Numeric column holding the gauge's value.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub value_column: String,
    /// Data point attributes: attribute name to STRING column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub attributes: BTreeMap<String, String>,
}

/// A summary metric built from count, sum and quantile columns, as px.otel.metric.Summary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SummaryMapping {
    /// Metric name, such as http.server.duration.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Metric description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Unit in UCUM notation, such as ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub unit: Option<String>,
    /// Integer column holding the number of observations.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub count_column: String,
    /// Numeric column holding the sum of the observations.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub sum_column: String,
    /// Quantile values, each from its own column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub quantiles: Vec<QuantileColumn>,
    /// Data point attributes: attribute name to STRING column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub attributes: BTreeMap<String, String>,
}

/// One quantile of a summary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuantileColumn {
    /// The quantile, between 0 and 1 inclusive, such as 0.99.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: f64,
    /// Numeric column holding the value at that quantile.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub value_column: String,
}

/// A span built from one row, as px.otel.trace.Span.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::one_of_required("name", "nameColumn", ""),
    validation = rules::mutually_exclusive("name", "nameColumn", ""),
)]
pub struct SpanMapping {
    /// Fixed span name for every row. Exactly one of name and nameColumn must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,
    /// STRING column holding each span's name. Exactly one of name and nameColumn must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub name_column: Option<String>,
    /// TIME64NS column holding the span's start.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub start_time_column: String,
    /// TIME64NS column holding the span's end.
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub end_time_column: String,
    /// STRING column holding the trace ID (32 hex digits). A random ID is used when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub trace_id_column: Option<String>,
    /// STRING column holding the span ID (16 hex digits). A random ID is used when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub span_id_column: Option<String>,
    /// STRING column holding the parent span ID; the span is a root span when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub parent_span_id_column: Option<String>,
    /// See [`SpanKind`] (its doc is the field's description in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SpanKind>,
    /// Span attributes: attribute name to STRING column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub attributes: BTreeMap<String, String>,
}

/// OpenTelemetry span kind: Internal (the default), Server, Client, Producer or Consumer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SpanKind {
    /// An operation internal to a service.
    Internal,
    /// The server side of a synchronous call.
    Server,
    /// The client side of a synchronous call.
    Client,
    /// The sender of an asynchronous message.
    Producer,
    /// The receiver of an asynchronous message.
    Consumer,
}

/// Observed state of a DataExport, written by the query broker as it delivers results.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataExportStatus {
    /// Ready: the sink's Secrets resolve and the last delivery succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation of the spec in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The most recent delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Delivery>,

    /// Deliveries that failed in a row since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,

    /// Deliveries that failed since this DataExport was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_count: Option<i64>,

    /// Data points and spans dropped, since the query broker started, because the endpoint could
    /// not keep up or was unreachable and the bounded queue of undelivered results was full (the
    /// oldest results are dropped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_records: Option<i64>,

    /// Data points and spans waiting to be delivered (queued or being retried) when the status
    /// was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_records: Option<i64>,
}

/// One delivery of results to a sink.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// When the delivery was attempted.
    pub time: Time,
    /// The CronScript whose results were delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_script: Option<String>,
    /// Whether the sink accepted the results.
    pub succeeded: bool,
    /// Data points and spans sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<i64>,
    /// Why the delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
