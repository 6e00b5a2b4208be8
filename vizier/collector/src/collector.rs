//! The collection loop: kernel events into the socket tracer, and rows into the table store on
//! fixed periods (http_events every push period, conn_stats and process_stats on their own).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use arrow::array::RecordBatch;
use pixie_bpf::{BpfError, EventReader, KernelStats, LoadOptions, SocketTracer};
use pixie_store::tables::{conn_stats, http_events, process_stats};
use pixie_store::{StoreError, TableStore};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use crate::clock::{ClockConverter, monotonic_now_ns};
use crate::process_stats::ProcessStatsSource;
use crate::socket_trace::{ConnectorStats, ProcFs, SocketTraceConfig, SocketTraceConnector};

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// How often completed http_events rows go to the store (Pixie: 100 ms sampling).
    pub push_period: Duration,
    /// How often conn_stats is sampled (Pixie: 5 s).
    pub conn_stats_period: Duration,
    /// How often /proc is scanned for process_stats.
    pub process_stats_period: Duration,
    /// Where the host's /proc is (the PEM sees it at `$PL_HOST_PATH/proc`).
    pub proc_root: PathBuf,
    pub socket_trace: SocketTraceConfig,
    pub bpf: LoadOptions,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            push_period: Duration::from_millis(100),
            conn_stats_period: Duration::from_secs(5),
            process_stats_period: Duration::from_secs(5),
            proc_root: PathBuf::from("/proc"),
            socket_trace: SocketTraceConfig::default(),
            bpf: LoadOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("socket tracer BPF: {0}")]
    Bpf(#[from] BpfError),
    #[error("reading the socket tracer's ring buffer: {0}")]
    RingBuffer(io::Error),
}

impl CollectorError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            CollectorError::Bpf(e) => e.metric_label(),
            CollectorError::RingBuffer(_) => "ring_buffer",
        }
    }
}

/// Called with every batch appended to the store (e.g. to print rows as they arrive).
pub type BatchSink = Box<dyn FnMut(&'static str, &RecordBatch) + Send>;

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Default)]
pub struct CollectorSummary {
    pub connector: ConnectorStats,
    pub kernel: KernelStats,
    pub decode_errors: u64,
    pub rows_pushed: Vec<(&'static str, u64)>,
    pub append_errors: u64,
}

/// The PEM's collector, with its BPF programs loaded and attached.
pub struct Collector {
    config: CollectorConfig,
    store: TableStore,
    sink: Option<BatchSink>,
    tracer: SocketTracer,
    reader: EventReader,
    connector: SocketTraceConnector<ProcFs>,
    processes: ProcessStatsSource,
    summary: CollectorSummary,
}

impl Collector {
    /// Loads and attaches the socket tracer: once this returns, traffic is being captured. Must be
    /// called inside a tokio runtime (the ring buffer registers with its reactor).
    pub fn start(config: CollectorConfig, store: TableStore) -> Result<Self, CollectorError> {
        let mut tracer = SocketTracer::load(&config.bpf)?;
        tracer.attach()?;
        let reader = tracer.events()?;
        let connector =
            SocketTraceConnector::new(config.socket_trace, ProcFs, ClockConverter::measure());
        let processes =
            ProcessStatsSource::with_proc_root(config.socket_trace.asid, config.proc_root.clone());
        tracing::info!(
            skip_tgid = ?config.bpf.skip_tgid,
            ring_buffer_bytes = config.bpf.ring_buffer_bytes,
            "socket tracer attached (tp_btf sys_enter/sys_exit, sched_process_exit)"
        );
        Ok(Collector {
            config,
            store,
            sink: None,
            tracer,
            reader,
            connector,
            processes,
            summary: CollectorSummary {
                rows_pushed: vec![
                    (http_events::NAME, 0),
                    (conn_stats::NAME, 0),
                    (process_stats::NAME, 0),
                ],
                ..Default::default()
            },
        })
    }

    pub fn with_sink(mut self, sink: BatchSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Runs until `shutdown` completes, then flushes what is pending and returns a summary.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<CollectorSummary, CollectorError> {
        let start = Instant::now();
        let mut push = interval_at(start + self.config.push_period, self.config.push_period);
        let mut conn_stats_tick = interval_at(
            start + self.config.conn_stats_period,
            self.config.conn_stats_period,
        );
        let mut process_tick = interval_at(start, self.config.process_stats_period);
        for tick in [&mut push, &mut conn_stats_tick, &mut process_tick] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        tokio::pin!(shutdown);

        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                read = self.reader.read(|ev| self.connector.handle(ev, monotonic_now_ns())) => {
                    read.map_err(CollectorError::RingBuffer)?;
                }
                _ = push.tick() => self.push_http_events(),
                _ = conn_stats_tick.tick() => {
                    self.push_conn_stats();
                    self.log_kernel_stats();
                }
                _ = process_tick.tick() => self.push_process_stats(),
            }
        }

        // Whatever the kernel already emitted still counts.
        self.reader
            .read_available(|ev| self.connector.handle(ev, monotonic_now_ns()));
        self.push_http_events();
        self.push_conn_stats();
        self.log_kernel_stats();
        self.summary.connector = self.connector.stats();
        self.summary.decode_errors = self.reader.decode_errors();
        Ok(self.summary)
    }

    fn push_http_events(&mut self) {
        self.connector.set_clock(ClockConverter::measure());
        self.connector.tick(monotonic_now_ns());
        let rows = self.connector.take_http_rows();
        if !rows.is_empty() {
            self.append(http_events::NAME, http_events::to_batch(&rows));
        }
    }

    fn push_conn_stats(&mut self) {
        let rows = self.connector.sample_conn_stats(monotonic_now_ns());
        if !rows.is_empty() {
            self.append(conn_stats::NAME, conn_stats::to_batch(&rows));
        }
    }

    fn push_process_stats(&mut self) {
        let rows = self.processes.sample();
        if !rows.is_empty() {
            self.append(process_stats::NAME, process_stats::to_batch(&rows));
        }
    }

    fn log_kernel_stats(&mut self) {
        match self.tracer.stats() {
            Ok(kernel) => {
                if kernel.lost_events > self.summary.kernel.lost_events {
                    tracing::warn!(
                        lost_events = kernel.lost_events,
                        lost_data_bytes = kernel.lost_data_bytes,
                        "socket tracer ring buffer overflowed"
                    );
                }
                self.summary.kernel = kernel;
            }
            Err(e) => tracing::warn!(error = %e, "reading socket tracer kernel stats"),
        }
        let c = self.connector.stats();
        tracing::debug!(
            events = c.events,
            open_connections = c.open_connections,
            http_records = c.http_records,
            buffered_bytes = self.connector.buffered_bytes(),
            "socket tracer"
        );
    }

    fn append(&mut self, table: &'static str, batch: RecordBatch) {
        let rows = batch.num_rows() as u64;
        if let Some(sink) = &mut self.sink {
            sink(table, &batch);
        }
        match self.store.append(table, batch) {
            Ok(()) => {
                if let Some((_, n)) = self
                    .summary
                    .rows_pushed
                    .iter_mut()
                    .find(|(t, _)| *t == table)
                {
                    *n += rows;
                }
            }
            // Over budget or a bad batch loses these rows but must not stop collection.
            Err(e) => {
                self.summary.append_errors += 1;
                log_append_error(table, &e);
            }
        }
    }
}

fn log_append_error(table: &str, e: &StoreError) {
    tracing::warn!(table, error = %e, label = e.metric_label(), "table store refused a batch");
}
