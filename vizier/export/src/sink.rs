//! [`OtlpSink`]: the delivery side of one DataExport. Batches wait in a bounded queue that a worker
//! task delivers oldest first over OTLP/gRPC, retrying with capped exponential backoff. When the
//! receiver is down or slow and the queue is full, the oldest batches are dropped, and counted.
//!
//! Every [`OtlpSink::send`] returns a [`DeliveryReceipt`] that tells how that batch ended (a
//! CronScript run reports it), [`OtlpSink::stats`] / [`OtlpSink::subscribe`] give the running
//! totals that a DataExport's status shows, and [`OtlpSink::flush`] waits for the queue to empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use pixie_crds::data_export::TlsConfig;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::channel;
use crate::mapping::{OtlpBatch, count_metric_points, count_spans};

/// Transport security, in the terms of the DataExport's `tls` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext gRPC (`tls.insecure: true`).
    Insecure,
    /// TLS, verified against `ca_pem` (PEM certificates) or the system roots when it is `None`,
    /// expecting `server_name` (else the endpoint's host) in the certificate, or accepting any
    /// certificate with `insecure_skip_verify`.
    Tls {
        ca_pem: Option<String>,
        server_name: Option<String>,
        insecure_skip_verify: bool,
    },
}

impl TlsMode {
    /// The mode a DataExport's `spec.sink.otlpGrpc.tls` asks for (TLS with the system roots when
    /// it is left out); `ca_pem` is the content of `caSecretRef`, read by the caller.
    pub fn from_spec(tls: Option<&TlsConfig>, ca_pem: Option<String>) -> TlsMode {
        match tls {
            Some(t) if t.insecure == Some(true) => TlsMode::Insecure,
            Some(t) => TlsMode::Tls {
                ca_pem,
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
            },
            None => TlsMode::Tls {
                ca_pem,
                server_name: None,
                insecure_skip_verify: false,
            },
        }
    }

    pub fn is_plaintext(&self) -> bool {
        matches!(self, TlsMode::Insecure)
    }
}

/// How long to wait between attempts at the same batch: `initial_backoff`, doubling after each
/// failure up to `max_backoff`, back to `initial_backoff` after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Everything an [`OtlpSink`] needs; [`SinkConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// `host:port`, or an `http://` (with [`TlsMode::Insecure`]) or `https://` URL.
    pub endpoint: String,
    pub tls: TlsMode,
    /// gRPC metadata sent with every request, values already resolved from Secrets. Names are
    /// lower-case ASCII metadata keys.
    pub headers: Vec<(String, String)>,
    /// Limit on connecting and on each export request. Default 10s, as the DataExport's timeout.
    pub timeout: Duration,
    /// Data points and spans that may wait for delivery; beyond it the oldest batches are
    /// dropped. Default 100 000.
    pub max_queued_records: u64,
    pub retry: RetryPolicy,
}

impl SinkConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_QUEUED_RECORDS: u64 = 100_000;

    pub fn new(endpoint: impl Into<String>, tls: TlsMode) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls,
            headers: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_queued_records: Self::DEFAULT_MAX_QUEUED_RECORDS,
            retry: RetryPolicy::default(),
        }
    }
}

/// A [`SinkConfig`] that cannot work; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkConfigError {
    #[error("endpoint {endpoint:?}: {problem}")]
    Endpoint { endpoint: String, problem: String },
    #[error("headers[{name:?}]: {problem}")]
    Header { name: String, problem: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Limits(String),
}

/// Running totals of one sink since it was created.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SinkStats {
    /// Data points and spans the receiver accepted.
    pub delivered_records: u64,
    /// Data points and spans dropped because the queue was full (or the sink shut down first).
    pub dropped_records: u64,
    /// Data points and spans the receiver refused for good (invalid data, bad credentials, the
    /// signal not enabled there, or rejected in a partial success).
    pub rejected_records: u64,
    /// Export requests that failed, retried or not.
    pub failed_attempts: u64,
    /// Failed requests since the last successful one.
    pub consecutive_failures: u64,
    /// The most recent failure, kept after later successes; see `consecutive_failures`.
    pub last_error: Option<String>,
    pub last_success: Option<SystemTime>,
    /// Data points and spans waiting, the one being sent included.
    pub queued_records: u64,
}

/// How one sent batch ended, or where it stands.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver accepted every record. `attempts` counts export requests: one per signal
    /// (metrics, spans) plus retries.
    Delivered { records: u64, attempts: u32 },
    /// The receiver refused some or all records for good; the rest were accepted.
    Rejected {
        delivered: u64,
        rejected: u64,
        error: String,
    },
    /// Dropped before it could all be delivered: the queue was full and this was the oldest, or
    /// the sink shut down first.
    Dropped {
        delivered: u64,
        dropped: u64,
        reason: String,
    },
    /// Still queued or being retried when [`DeliveryReceipt::wait`] gave up waiting.
    Pending {
        delivered: u64,
        queued: u64,
        attempts: u32,
        last_error: Option<String>,
    },
}

impl DeliveryOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }

    /// Records the receiver accepted.
    pub fn delivered(&self) -> u64 {
        match *self {
            DeliveryOutcome::Delivered { records, .. } => records,
            DeliveryOutcome::Rejected { delivered, .. }
            | DeliveryOutcome::Dropped { delivered, .. }
            | DeliveryOutcome::Pending { delivered, .. } => delivered,
        }
    }

    /// Why the batch was not (yet) delivered, for a status message.
    pub fn error(&self) -> Option<String> {
        match self {
            DeliveryOutcome::Delivered { .. } => None,
            DeliveryOutcome::Rejected {
                error, rejected, ..
            } => Some(format!("the receiver rejected {rejected} records: {error}")),
            DeliveryOutcome::Dropped {
                dropped, reason, ..
            } => Some(format!("{dropped} records dropped: {reason}")),
            DeliveryOutcome::Pending {
                queued, last_error, ..
            } => Some(match last_error {
                Some(e) => format!("{queued} records not delivered yet, still retrying: {e}"),
                None => format!("{queued} records not delivered yet"),
            }),
        }
    }
}

/// The outcome of one [`OtlpSink::send`], to be awaited.
pub struct DeliveryReceipt {
    id: u64,
    records: u64,
    outcome: oneshot::Receiver<DeliveryOutcome>,
    known: Option<DeliveryOutcome>,
    shared: Arc<Shared>,
}

impl DeliveryReceipt {
    /// Data points and spans in the batch.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The final outcome if it comes within `timeout`, else [`DeliveryOutcome::Pending`] (the
    /// sink goes on retrying; wait again later).
    pub async fn wait(&mut self, timeout: Duration) -> DeliveryOutcome {
        if let Some(known) = &self.known {
            return known.clone();
        }
        match tokio::time::timeout(timeout, &mut self.outcome).await {
            Ok(outcome) => {
                let outcome = outcome.unwrap_or_else(|_| self.worker_gone());
                self.known = Some(outcome.clone());
                outcome
            }
            Err(_) => self.pending(),
        }
    }

    /// The final outcome, however long it takes.
    pub async fn outcome(mut self) -> DeliveryOutcome {
        if let Some(known) = self.known.take() {
            return known;
        }
        (&mut self.outcome)
            .await
            .unwrap_or_else(|_| self.worker_gone())
    }

    fn pending(&mut self) -> DeliveryOutcome {
        let state = self.shared.lock();
        if let Some(entry) = state.queue.iter().find(|e| e.id == self.id) {
            return DeliveryOutcome::Pending {
                delivered: entry.delivered,
                queued: entry.remaining(),
                attempts: entry.attempts,
                last_error: entry.last_error.clone(),
            };
        }
        drop(state);
        // Finished between the timeout and the look-up.
        match self.outcome.try_recv() {
            Ok(outcome) => {
                self.known = Some(outcome.clone());
                outcome
            }
            Err(_) => self.worker_gone(),
        }
    }

    fn worker_gone(&self) -> DeliveryOutcome {
        DeliveryOutcome::Dropped {
            delivered: 0,
            dropped: self.records,
            reason: "the sink stopped before delivering".into(),
        }
    }
}

/// Delivers batches to one OTLP/gRPC receiver; see the module documentation.
pub struct OtlpSink {
    shared: Arc<Shared>,
    stats: watch::Receiver<SinkStats>,
    worker: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl OtlpSink {
    /// Checks `config` and starts the worker on the current Tokio runtime. Nothing connects until
    /// the first batch is sent, so an unreachable receiver is not an error here.
    pub fn new(config: SinkConfig) -> Result<Self, SinkConfigError> {
        if config.max_queued_records == 0 {
            return Err(SinkConfigError::Limits(
                "maxQueuedRecords must be at least 1".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(SinkConfigError::Limits("timeout must be above zero".into()));
        }
        let headers = parse_headers(&config.headers)?;
        let target = channel::parse_endpoint(&config.endpoint, &config.tls)?;
        let channel = channel::lazy_channel(&target, &config.tls, config.timeout)?;

        let (stats_tx, stats) = watch::channel(SinkStats::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stats: stats_tx,
            wake: tokio::sync::Notify::new(),
            max_queued_records: config.max_queued_records,
        });
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            shared: shared.clone(),
            metrics: MetricsServiceClient::new(channel.clone()),
            traces: TraceServiceClient::new(channel),
            headers,
            retry: config.retry,
            stop: stop_rx,
        };
        let worker = tokio::spawn(worker.run());
        Ok(Self {
            shared,
            stats,
            worker: Some(worker),
            stop,
        })
    }

    /// Queues `batch` for delivery, dropping the oldest queued batches if it does not fit.
    pub fn send(&self, batch: OtlpBatch) -> DeliveryReceipt {
        let (tx, rx) = oneshot::channel();
        let metrics = batch
            .metrics
            .map(|r| (count_metric_points(&r), r))
            .filter(|(n, _)| *n > 0);
        let traces = batch
            .traces
            .map(|r| (count_spans(&r), r))
            .filter(|(n, _)| *n > 0);
        let records = metrics.as_ref().map_or(0, |m| m.0) + traces.as_ref().map_or(0, |t| t.0);

        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        let receipt = |state: MutexGuard<'_, State>| {
            drop(state);
            DeliveryReceipt {
                id,
                records,
                outcome: rx,
                known: None,
                shared: self.shared.clone(),
            }
        };
        if records == 0 {
            let _ = tx.send(DeliveryOutcome::Delivered {
                records: 0,
                attempts: 0,
            });
            return receipt(state);
        }
        let max = self.shared.max_queued_records;
        let refused = if state.stopping {
            Some("the sink is shutting down".to_owned())
        } else if records > max {
            Some(format!(
                "a batch of {records} records does not fit in a queue of {max}"
            ))
        } else {
            None
        };
        if let Some(reason) = refused {
            state.stats.dropped_records += records;
            let _ = tx.send(DeliveryOutcome::Dropped {
                delivered: 0,
                dropped: records,
                reason,
            });
            self.shared.publish(&mut state);
            return receipt(state);
        }
        // Make room by dropping the oldest batches, except one in the middle of a request (it may
        // arrive), which can leave the queue above its bound by that batch until it ends.
        while state.queued() + records > max {
            let attempting = state.attempting;
            let Some(index) = state.queue.iter().position(|e| Some(e.id) != attempting) else {
                break;
            };
            let entry = state.queue.remove(index).expect("position is in range");
            let dropped = entry.remaining();
            let delivered = entry.delivered;
            state.stats.dropped_records += dropped;
            tracing::warn!(
                dropped,
                "OTLP receiver is not keeping up; dropped the oldest queued results"
            );
            entry.finish(DeliveryOutcome::Dropped {
                delivered,
                dropped,
                reason: format!(
                    "the queue ({max} records) was full and newer results needed the room"
                ),
            });
        }
        state.queue.push_back(Entry {
            id,
            metrics,
            traces,
            attempts: 0,
            delivered: 0,
            rejected: 0,
            last_error: None,
            done: Some(tx),
        });
        self.shared.publish(&mut state);
        self.shared.wake.notify_one();
        receipt(state)
    }

    /// The running totals now.
    pub fn stats(&self) -> SinkStats {
        self.stats.borrow().clone()
    }

    /// The running totals, updated after every change.
    pub fn subscribe(&self) -> watch::Receiver<SinkStats> {
        self.stats.clone()
    }

    /// Waits until nothing is queued (delivered, rejected or dropped); false if `timeout` came
    /// first.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let mut stats = self.stats.clone();
        tokio::time::timeout(timeout, stats.wait_for(|s| s.queued_records == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Delivers what it can within `grace`, then drops (and counts) the rest and stops the worker.
    pub async fn shutdown(mut self, grace: Duration) -> SinkStats {
        self.flush(grace).await;
        self.shared.lock().stopping = true;
        let _ = self.stop.send(true);
        self.shared.wake.notify_one();
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
        self.stats()
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        // The worker drops what is left, completes its receipts and ends.
        self.shared.lock().stopping = true;
        let _ = self.stop.send(true);
        self.shared.wake.notify_one();
    }
}

struct Shared {
    state: Mutex<State>,
    stats: watch::Sender<SinkStats>,
    wake: tokio::sync::Notify,
    max_queued_records: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue consistent (every change is one step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: &mut State) {
        state.stats.queued_records = state.queued();
        self.stats.send_replace(state.stats.clone());
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Entry>,
    /// The batch with a request in flight, which must not be dropped meanwhile.
    attempting: Option<u64>,
    next_id: u64,
    stopping: bool,
    stats: SinkStats,
}

impl State {
    fn queued(&self) -> u64 {
        self.queue.iter().map(Entry::remaining).sum()
    }
}

/// A queued batch. Its metrics and spans go in separate requests; each part is removed once the
/// receiver has answered it, so a retry never sends a part twice.
struct Entry {
    id: u64,
    metrics: Option<(u64, ExportMetricsServiceRequest)>,
    traces: Option<(u64, ExportTraceServiceRequest)>,
    attempts: u32,
    delivered: u64,
    rejected: u64,
    last_error: Option<String>,
    done: Option<oneshot::Sender<DeliveryOutcome>>,
}

impl Entry {
    fn remaining(&self) -> u64 {
        self.metrics.as_ref().map_or(0, |m| m.0) + self.traces.as_ref().map_or(0, |t| t.0)
    }

    fn finish(mut self, outcome: DeliveryOutcome) {
        if let Some(done) = self.done.take() {
            // The receipt may have been dropped; nobody is waiting then.
            let _ = done.send(outcome);
        }
    }
}

enum Part {
    Metrics(u64, ExportMetricsServiceRequest),
    Traces(u64, ExportTraceServiceRequest),
}

/// What the receiver said to one request.
enum Answer {
    /// Accepted, maybe with some records refused (OTLP partial success).
    Accepted { rejected: u64, message: String },
    /// Failed; worth trying again (the receiver is down, busy or timed out).
    Retry(String),
    /// Refused for good; sending the same again would fail the same way.
    Refused(String),
}

struct Worker {
    shared: Arc<Shared>,
    metrics: MetricsServiceClient<Channel>,
    traces: TraceServiceClient<Channel>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    retry: RetryPolicy,
    stop: watch::Receiver<bool>,
}

impl Worker {
    async fn run(self) {
        // Its own receiver, so that waiting on it does not borrow the worker.
        let mut stop = self.stop.clone();
        let mut backoff = self.retry.initial_backoff;
        loop {
            let next = {
                let mut state = self.shared.lock();
                if state.stopping {
                    break;
                }
                let next = state.queue.front().map(|entry| {
                    let part = match (&entry.metrics, &entry.traces) {
                        (Some((n, r)), _) => Part::Metrics(*n, r.clone()),
                        (None, Some((n, r))) => Part::Traces(*n, r.clone()),
                        (None, None) => unreachable!("empty entries are completed, not queued"),
                    };
                    (entry.id, part)
                });
                state.attempting = next.as_ref().map(|(id, _)| *id);
                next
            };
            let Some((id, part)) = next else {
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let is_metrics = matches!(part, Part::Metrics(..));
            let records = match &part {
                Part::Metrics(n, _) | Part::Traces(n, _) => *n,
            };
            let answer = tokio::select! {
                answer = self.export(part) => answer,
                _ = stop.changed() => break,
            };
            let retry = self.settle(id, is_metrics, records, answer);
            if retry {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(self.retry.max_backoff);
            } else {
                backoff = self.retry.initial_backoff;
            }
        }
        self.drop_all();
    }

    async fn export(&self, part: Part) -> Answer {
        let result = match part {
            Part::Metrics(_, request) => self
                .metrics
                .clone()
                .export(self.request(request))
                .await
                .map(|r| {
                    r.into_inner()
                        .partial_success
                        .map(|p| (p.rejected_data_points, p.error_message))
                }),
            Part::Traces(_, request) => self
                .traces
                .clone()
                .export(self.request(request))
                .await
                .map(|r| {
                    r.into_inner()
                        .partial_success
                        .map(|p| (p.rejected_spans, p.error_message))
                }),
        };
        match result {
            Ok(partial) => {
                let (rejected, message) = partial.unwrap_or_default();
                Answer::Accepted {
                    rejected: rejected.max(0) as u64,
                    message,
                }
            }
            Err(status) if retryable(&status) => Answer::Retry(describe(&status)),
            Err(status) => Answer::Refused(describe(&status)),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        for (key, value) in &self.headers {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        request
    }

    /// Records the answer to the request for one part of batch `id`; true when it should be
    /// retried after a backoff.
    fn settle(&self, id: u64, is_metrics: bool, records: u64, answer: Answer) -> bool {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        state.attempting = None;
        let Some(index) = state.queue.iter().position(|e| e.id == id) else {
            return false;
        };
        let now = SystemTime::now();
        let mut retry = false;
        let done_part = |entry: &mut Entry| {
            if is_metrics {
                entry.metrics = None;
            } else {
                entry.traces = None;
            }
        };
        let stats = &mut state.stats;
        let entry = &mut state.queue[index];
        entry.attempts += 1;
        match answer {
            Answer::Accepted { rejected, message } => {
                let rejected = rejected.min(records);
                stats.delivered_records += records - rejected;
                stats.consecutive_failures = 0;
                stats.last_success = Some(now);
                entry.delivered += records - rejected;
                if rejected > 0 {
                    let error = format!("partial success: {message}");
                    stats.rejected_records += rejected;
                    stats.last_error = Some(error.clone());
                    entry.rejected += rejected;
                    entry.last_error = Some(error);
                }
                done_part(entry);
            }
            Answer::Retry(error) => {
                stats.failed_attempts += 1;
                stats.consecutive_failures += 1;
                if stats.consecutive_failures == 1 {
                    tracing::warn!(%error, "OTLP export failed; retrying with backoff");
                }
                stats.last_error = Some(error.clone());
                entry.last_error = Some(error);
                retry = true;
            }
            Answer::Refused(error) => {
                tracing::warn!(%error, records, "OTLP receiver refused results");
                stats.failed_attempts += 1;
                stats.consecutive_failures += 1;
                stats.rejected_records += records;
                stats.last_error = Some(error.clone());
                entry.rejected += records;
                entry.last_error = Some(error);
                done_part(entry);
            }
        }
        if entry.remaining() == 0 {
            let entry = state.queue.remove(index).expect("index is in range");
            let outcome = if entry.rejected == 0 {
                DeliveryOutcome::Delivered {
                    records: entry.delivered,
                    attempts: entry.attempts,
                }
            } else {
                DeliveryOutcome::Rejected {
                    delivered: entry.delivered,
                    rejected: entry.rejected,
                    error: entry.last_error.clone().unwrap_or_default(),
                }
            };
            entry.finish(outcome);
        }
        self.shared.publish(state);
        retry
    }

    fn drop_all(&self) {
        let mut state = self.shared.lock();
        state.attempting = None;
        while let Some(entry) = state.queue.pop_front() {
            let dropped = entry.remaining();
            let delivered = entry.delivered;
            state.stats.dropped_records += dropped;
            entry.finish(DeliveryOutcome::Dropped {
                delivered,
                dropped,
                reason: "the sink shut down before delivering".into(),
            });
        }
        self.shared.publish(&mut state);
    }
}

/// Retry what the OTLP specification calls retryable, plus UNKNOWN and RESOURCE_EXHAUSTED: tonic
/// reports some broken connections as UNKNOWN, and a receiver's memory limiter answers
/// RESOURCE_EXHAUSTED; the bounded queue caps what retrying them can cost.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
            | Code::Unknown
    )
}

fn describe(status: &Status) -> String {
    let mut text = format!("{}: {}", status.code().description(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn parse_headers(
    headers: &[(String, String)],
) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, SinkConfigError> {
    headers
        .iter()
        .map(|(name, value)| {
            let bad = |problem: &str| SinkConfigError::Header {
                name: name.clone(),
                problem: problem.to_owned(),
            };
            if name.ends_with("-bin") {
                return Err(bad("binary (-bin) metadata is not supported"));
            }
            let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid gRPC metadata name (lower-case ASCII)"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| bad("the value must be visible ASCII"))?;
            Ok((key, value))
        })
        .collect()
}
