//! Compiles a query and runs its outputs one after the other, as a bounded stream of events.
//!
//! Execution runs in its own task and hands events to a bounded channel: a slow or gone client
//! stops the task from pulling more batches out of DataFusion, so memory stays bounded by the channel
//! and by DataFusion's own operators, and each output is cut at its row cap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use pixie_pxl::{CompileError, CompileOptions, CompiledScript, MetadataResolver, TableCatalog};
use pixie_store::TableStore;
use tokio::sync::mpsc;

use crate::catalog::StoreCatalog;
use crate::remote::{RemoteMetadata, RemoteTables};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows kept per output when a query does not say.
    pub default_max_rows: usize,
    /// The most rows per output a query may ask for.
    pub max_rows_ceiling: usize,
    /// DataFusion's partitions per scan (parallelism); the number of cores by default.
    pub target_partitions: usize,
    /// Events buffered between execution and the consumer.
    pub channel_capacity: usize,
    /// Memory DataFusion's operators may hold for all running queries together (sorts, joins,
    /// aggregates); past it a query fails with "resources exhausted" instead of taking the process
    /// down. The scanned store batches are shared, not counted.
    pub memory_limit_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_max_rows: 10_000,
            max_rows_ceiling: 1_000_000,
            target_partitions: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            channel_capacity: 8,
            memory_limit_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Pxl,
    Sql,
}

/// One query as a client sends it.
#[derive(Debug, Clone)]
pub struct Query {
    pub source: String,
    pub language: Language,
    /// Values of the script's typed arguments.
    pub args: BTreeMap<String, String>,
    /// Rows kept per output; the engine's default when `None`, never above its ceiling.
    pub max_rows: Option<usize>,
    /// What `px.now()` and relative start times mean; the wall clock when `None`.
    pub now_ns: Option<i64>,
    /// `(start_ns, end_ns)` of a CronScript or plugin run: `px.plugin.start_time`/`end_time`.
    pub window: Option<(i64, i64)>,
}

impl Query {
    pub fn pxl(source: impl Into<String>) -> Self {
        Self::new(source, Language::Pxl)
    }

    pub fn sql(source: impl Into<String>) -> Self {
        Self::new(source, Language::Sql)
    }

    fn new(source: impl Into<String>, language: Language) -> Self {
        Query {
            source: source.into(),
            language,
            args: BTreeMap::new(),
            max_rows: None,
            now_ns: None,
            window: None,
        }
    }
}

/// What a running query produces, in this order: `Outputs`; per output `Schema`, `Batch`es,
/// `TableEnd`; then `Done`.
#[derive(Debug, Clone)]
pub enum Event {
    Outputs(Vec<String>),
    Schema {
        table: String,
        schema: SchemaRef,
    },
    Batch {
        table: String,
        batch: RecordBatch,
    },
    TableEnd {
        table: String,
        rows: u64,
        batches: u64,
        truncated: bool,
    },
    Done(ExecStats),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecStats {
    pub compile_ns: u64,
    pub execution_ns: u64,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("setting up DataFusion: {0}")]
    Setup(#[source] DataFusionError),
    #[error("{0}")]
    Compile(CompileError),
    #[error("executing output {table:?}: {source}")]
    Execution {
        table: String,
        #[source]
        source: DataFusionError,
    },
}

impl EngineError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            EngineError::Setup(_) => "setup",
            EngineError::Compile(_) => "compile",
            EngineError::Execution { source, .. } if is_resources_exhausted(source) => {
                "resources_exhausted"
            }
            EngineError::Execution { .. } => "execution",
        }
    }

    /// The query needed more memory than [`EngineConfig::memory_limit_bytes`] allows.
    pub fn is_resources_exhausted(&self) -> bool {
        matches!(self, EngineError::Execution { source, .. } if is_resources_exhausted(source))
    }
}

/// Where an engine's tables and `df.ctx` answers come from.
enum Tables {
    /// This process's store, and a resolver for the processes of this host.
    Store {
        catalog: StoreCatalog,
        metadata: Arc<dyn MetadataResolver>,
    },
    /// The PEMs' stores (Kelvin); tables and metadata are made afresh for each query.
    Remote(RemoteTables),
}

/// The query engine of one Vizier: its tables, the metadata resolver behind `df.ctx`, and one
/// DataFusion session shared by every query.
pub struct Engine {
    tables: Tables,
    ctx: SessionContext,
    config: EngineConfig,
}

impl Engine {
    /// An engine over `store`, answering `df.ctx` with `metadata`.
    pub fn new(
        store: &TableStore,
        metadata: Arc<dyn MetadataResolver>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let ctx = session(&config, metadata.clone())?;
        let tables = Tables::Store {
            catalog: StoreCatalog::new(store),
            metadata,
        };
        Ok(Engine {
            tables,
            ctx,
            config,
        })
    }

    /// An engine over the PEMs' tables (Kelvin): every scan reads from all of them, and `df.ctx` is
    /// answered by the PEM that holds each upid.
    pub fn remote(tables: RemoteTables, config: EngineConfig) -> Result<Self, EngineError> {
        // Queries compile with their own resolver, filled by their scans; the session's, for SQL run
        // on the session directly, has no scans behind it and knows no upid.
        let ctx = session(&config, Arc::new(RemoteMetadata::default()))?;
        Ok(Engine {
            tables: Tables::Remote(tables),
            ctx,
            config,
        })
    }

    /// The local store's tables; `None` for an engine over remote tables.
    pub fn catalog(&self) -> Option<&StoreCatalog> {
        match &self.tables {
            Tables::Store { catalog, .. } => Some(catalog),
            Tables::Remote(_) => None,
        }
    }

    /// The PEMs' tables; `None` for an engine over a local store.
    pub fn remote_tables(&self) -> Option<&RemoteTables> {
        match &self.tables {
            Tables::Remote(remote) => Some(remote),
            Tables::Store { .. } => None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The session plans run in (e.g. to `EXPLAIN` them).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The row cap that applies to `query`.
    pub fn row_cap(&self, query: &Query) -> usize {
        query
            .max_rows
            .unwrap_or(self.config.default_max_rows)
            .clamp(1, self.config.max_rows_ceiling.max(1))
    }

    pub fn compile(&self, query: &Query) -> Result<CompiledScript, CompileError> {
        let options = CompileOptions {
            now_ns: query.now_ns.unwrap_or_else(wall_clock_ns),
            args: query.args.clone(),
            // One row past the cap, so that a cut output can be told from one that fits exactly.
            max_output_rows: Some(self.row_cap(query).saturating_add(1)),
            window: query.window,
        };
        match &self.tables {
            Tables::Store { catalog, metadata } => {
                compile(query, catalog, metadata.clone(), &options)
            }
            Tables::Remote(remote) => {
                let scope = remote.for_query();
                let metadata = scope.metadata();
                compile(query, &scope, metadata, &options)
            }
        }
    }

    /// Compiles `query` now and starts running it; events arrive on the returned channel. Dropping the
    /// receiver cancels the query.
    pub fn execute(
        &self,
        query: &Query,
    ) -> Result<mpsc::Receiver<Result<Event, EngineError>>, CompileError> {
        let started = Instant::now();
        let script = self.compile(query)?;
        let compile_ns = started.elapsed().as_nanos() as u64;
        let (tx, rx) = mpsc::channel(self.config.channel_capacity.max(1));
        let ctx = self.ctx.clone();
        let cap = self.row_cap(query);
        tokio::spawn(async move {
            let run = run_outputs(ctx, script, cap, compile_ns, &tx).await;
            if let Err(e) = run {
                // The receiver may be gone; then nobody is left to tell.
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    /// Runs `query` to the end and returns each output's batches, in display order.
    pub async fn collect(
        &self,
        query: &Query,
    ) -> Result<(Vec<(String, Vec<RecordBatch>)>, ExecStats), EngineError> {
        let mut rx = self.execute(query).map_err(EngineError::Compile)?;
        let mut outputs: Vec<(String, Vec<RecordBatch>)> = Vec::new();
        let mut stats = ExecStats::default();
        while let Some(event) = rx.recv().await {
            match event? {
                Event::Schema { table, .. } => outputs.push((table, Vec::new())),
                Event::Batch { batch, .. } => {
                    if let Some((_, batches)) = outputs.last_mut() {
                        batches.push(batch);
                    }
                }
                Event::Done(s) => stats = s,
                Event::Outputs(_) | Event::TableEnd { .. } => {}
            }
        }
        Ok((outputs, stats))
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Engine");
        match &self.tables {
            Tables::Store { catalog, metadata } => {
                f.field("catalog", catalog).field("metadata", metadata)
            }
            Tables::Remote(remote) => f.field("remote", remote),
        };
        f.field("config", &self.config).finish_non_exhaustive()
    }
}

/// One DataFusion session for every query of an engine, with its memory limit and the PxL functions.
fn session(
    config: &EngineConfig,
    metadata: Arc<dyn MetadataResolver>,
) -> Result<SessionContext, EngineError> {
    let session = SessionConfig::new().with_target_partitions(config.target_partitions.max(1));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(config.memory_limit_bytes, 1.0)
        .build_arc()
        .map_err(EngineError::Setup)?;
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    // Compiled plans carry their functions; registering them too lets SQL call them by name.
    for udf in pixie_pxl::udfs(metadata) {
        ctx.register_udf(udf);
    }
    for udaf in pixie_pxl::udafs() {
        ctx.register_udaf(udaf);
    }
    Ok(ctx)
}

fn compile(
    query: &Query,
    catalog: &dyn TableCatalog,
    metadata: Arc<dyn MetadataResolver>,
    options: &CompileOptions,
) -> Result<CompiledScript, CompileError> {
    match query.language {
        Language::Pxl => pixie_pxl::compile(&query.source, catalog, metadata, options),
        Language::Sql => pixie_pxl::compile_sql(&query.source, catalog, metadata, options),
    }
}

/// The consumer dropped its receiver: stop quietly, nobody is listening.
struct Gone;

async fn run_outputs(
    ctx: SessionContext,
    script: CompiledScript,
    cap: usize,
    compile_ns: u64,
    tx: &mpsc::Sender<Result<Event, EngineError>>,
) -> Result<(), EngineError> {
    let started = Instant::now();
    let names: Vec<String> = script.outputs.iter().map(|o| o.name.clone()).collect();
    let mut total_rows = 0u64;
    if send(tx, Event::Outputs(names)).await.is_err() {
        return Ok(());
    }
    for output in script.outputs {
        let table = output.name;
        let fail = |source| EngineError::Execution {
            table: table.clone(),
            source,
        };
        let frame = ctx.execute_logical_plan(output.plan).await.map_err(fail)?;
        let mut stream = frame.execute_stream().await.map_err(fail)?;
        // The physical schema, which the batches carry (the logical one may differ in nullability).
        let schema: SchemaRef = stream.schema();
        let event = Event::Schema {
            table: table.clone(),
            schema,
        };
        if send(tx, event).await.is_err() {
            return Ok(());
        }
        let (mut rows, mut batches, mut truncated) = (0usize, 0u64, false);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(fail)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let room = cap - rows;
            if room == 0 {
                truncated = true;
                break;
            }
            let batch = if batch.num_rows() > room {
                truncated = true;
                batch.slice(0, room)
            } else {
                batch
            };
            rows += batch.num_rows();
            batches += 1;
            let event = Event::Batch {
                table: table.clone(),
                batch,
            };
            if send(tx, event).await.is_err() {
                return Ok(());
            }
            if truncated {
                break;
            }
        }
        // Stop DataFusion's work on the rest of a cut output now, not when the task ends.
        drop(stream);
        total_rows += rows as u64;
        let end = Event::TableEnd {
            table,
            rows: rows as u64,
            batches,
            truncated,
        };
        if send(tx, end).await.is_err() {
            return Ok(());
        }
    }
    let stats = ExecStats {
        compile_ns,
        execution_ns: started.elapsed().as_nanos() as u64,
        rows: total_rows,
    };
    let _ = send(tx, Event::Done(stats)).await;
    Ok(())
}

async fn send(tx: &mpsc::Sender<Result<Event, EngineError>>, event: Event) -> Result<(), Gone> {
    tx.send(Ok(event)).await.map_err(|_| Gone)
}

fn is_resources_exhausted(error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::ResourcesExhausted(_))
}

fn wall_clock_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
