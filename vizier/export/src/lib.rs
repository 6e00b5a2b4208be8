//! Sends CronScript results to a DataExport's destination: [`mapping`] turns result tables (Arrow
//! record batches) into OTLP metrics and trace requests as `spec.otel` says, with no I/O, and
//! [`sink::OtlpSink`] delivers them to an OTLP/gRPC receiver through a bounded, retrying queue
//! whose drops are counted, never silent.

mod channel;
pub mod mapping;
pub mod sink;

pub use mapping::{
    Mapped, MappingError, OtlpBatch, SCOPE_NAME, TIME_COLUMN, count_metric_points, count_spans,
    map_table, metrics_request, trace_request, trace_request_with_ids,
};
/// The OTLP protobuf types the requests are made of.
pub use opentelemetry_proto::tonic as proto;
pub use sink::{
    DeliveryOutcome, DeliveryReceipt, OtlpSink, RetryPolicy, SinkConfig, SinkConfigError,
    SinkStats, TlsMode,
};
