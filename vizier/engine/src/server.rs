//! The broker's gRPC API (`px.vizier.v1.VizierService`, `proto/vizier.proto`): `ExecuteScript` streams
//! each output table as Arrow IPC, `Health` says whether this Vizier is up and what it holds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use pixie_store::TableStore;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::execute::{Engine, EngineError, Event, Language, Query};
use crate::ipc::TableEncoder;
use crate::proto::vizier_service_server::{VizierService, VizierServiceServer};
use crate::proto::{self, execute_script_response::Result as Payload};
use crate::remote::RemoteTables;
use crate::tls::ServiceTls;

/// The broker's port in Pixie (`vizier-query-broker`), and ours.
pub const DEFAULT_PORT: u16 = 50300;

/// Arrow payload per gRPC message; well under tonic's 4 MiB default decode limit.
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Messages a client may fall behind before the query waits for it.
const STREAM_BUFFER: usize = 16;

pub(crate) type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<proto::ExecuteScriptResponse, Status>> + Send>>;

pub struct VizierApi {
    engine: Arc<Engine>,
    holdings: Holdings,
    node_name: String,
    started: Instant,
}

/// What `Health` counts rows of.
enum Holdings {
    Store(TableStore),
    Pems(RemoteTables),
}

impl VizierApi {
    /// The API of a server whose engine runs over `store` (a PEM, or `vizier standalone`).
    pub fn new(engine: Arc<Engine>, store: TableStore) -> Self {
        Self::with_holdings(engine, Holdings::Store(store))
    }

    /// The API of an engine over the PEMs' tables (Kelvin); `Health` sums what the PEMs hold.
    pub fn over_pems(engine: Arc<Engine>, pems: RemoteTables) -> Self {
        Self::with_holdings(engine, Holdings::Pems(pems))
    }

    fn with_holdings(engine: Arc<Engine>, holdings: Holdings) -> Self {
        VizierApi {
            engine,
            holdings,
            node_name: String::new(),
            started: Instant::now(),
        }
    }

    /// Names the node whose data this server holds, in `Health` (so that PEMs can be told apart).
    pub fn with_node_name(mut self, node_name: impl Into<String>) -> Self {
        self.node_name = node_name.into();
        self
    }

    pub fn into_service(self) -> VizierServiceServer<Self> {
        VizierServiceServer::new(self)
    }
}

/// Serves the API (this engine's, or a [`crate::ForwardingApi`]) on `listener` until `shutdown`
/// completes; with `tls`, only to clients holding a certificate of the Vizier's CA.
pub async fn serve(
    listener: TcpListener,
    api: impl VizierService,
    tls: Option<&ServiceTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    builder
        .add_service(VizierServiceServer::new(api))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tonic::async_trait]
impl VizierService for VizierApi {
    type ExecuteScriptStream = ResponseStream;

    async fn execute_script(
        &self,
        request: Request<proto::ExecuteScriptRequest>,
    ) -> Result<Response<Self::ExecuteScriptStream>, Status> {
        let request = request.into_inner();
        let query_id = new_query_id();
        let query = to_query(&request)?;
        tracing::info!(
            query_id,
            name = request.query_name,
            language = ?query.language,
            "execute script"
        );
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        match self.engine.execute(&query) {
            Err(e) => {
                tracing::info!(query_id, error = %e, "compile error");
                let payload = Payload::CompileError(proto::CompileError {
                    line: saturating_u32(e.line),
                    col: saturating_u32(e.col),
                    message: e.message,
                });
                // The channel is empty and has room: this cannot wait.
                let _ = tx.try_send(Ok(response(&query_id, payload)));
            }
            Ok(events) => {
                tokio::spawn(forward(query_id, events, tx));
            }
        }
        Ok(Response::new(Box::pin(receiver_stream(rx))))
    }

    async fn health(
        &self,
        _request: Request<proto::HealthRequest>,
    ) -> Result<Response<proto::HealthResponse>, Status> {
        let table_rows = match &self.holdings {
            Holdings::Store(store) => store
                .table_names()
                .into_iter()
                .filter_map(|t| {
                    let rows = store.stats(&t).ok()?.rows as u64;
                    Some((t, rows))
                })
                .collect(),
            // A PEM that does not answer makes queries fail, so Health says so too.
            Holdings::Pems(pems) => pems
                .table_rows()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
                .into_iter()
                .collect(),
        };
        Ok(Response::new(proto::HealthResponse {
            status: "SERVING".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            table_rows,
            uptime_ns: self.started.elapsed().as_nanos() as i64,
            node_name: self.node_name.clone(),
        }))
    }
}

fn to_query(request: &proto::ExecuteScriptRequest) -> Result<Query, Status> {
    let language = match proto::Language::try_from(request.language) {
        Ok(proto::Language::Pxl) => Language::Pxl,
        Ok(proto::Language::Sql) => Language::Sql,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown language {}",
                request.language
            )));
        }
    };
    let mut query = match language {
        Language::Pxl => Query::pxl(request.query_str.clone()),
        Language::Sql => Query::sql(request.query_str.clone()),
    };
    query.args = request.args.clone().into_iter().collect();
    query.max_rows = match request.max_rows_per_output {
        0 => None,
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    query.window =
        window(request.window_start_ns, request.window_end_ns).map_err(Status::invalid_argument)?;
    Ok(query)
}

/// The request's run window: none when both ends are 0, else a start before the end.
fn window(start_ns: i64, end_ns: i64) -> Result<Option<(i64, i64)>, String> {
    match (start_ns, end_ns) {
        (0, 0) => Ok(None),
        (start, end) if start < end => Ok(Some((start, end))),
        (start, end) => Err(format!(
            "window_start_ns ({start}) must be before window_end_ns ({end}); leave both 0 for no \
             window"
        )),
    }
}

/// Turns engine events into wire messages: schemas and batches become Arrow IPC chunks.
async fn forward(
    query_id: String,
    mut events: mpsc::Receiver<Result<Event, EngineError>>,
    tx: mpsc::Sender<Result<proto::ExecuteScriptResponse, Status>>,
) {
    let mut encoder: Option<TableEncoder> = None;
    let mut bytes_returned = 0u64;
    while let Some(event) = events.recv().await {
        let messages = match event {
            Ok(event) => encode(event, &mut encoder, &mut bytes_returned),
            Err(e) => {
                tracing::warn!(query_id, error = %e, cause = e.metric_label(), "query failed");
                if e.is_resources_exhausted() {
                    Err(Status::resource_exhausted(e.to_string()))
                } else {
                    Err(Status::internal(e.to_string()))
                }
            }
        };
        let failed = messages.is_err();
        let messages = match messages {
            Ok(payloads) => payloads
                .into_iter()
                .map(|p| Ok(response(&query_id, p)))
                .collect(),
            Err(status) => vec![Err(status)],
        };
        for message in messages {
            if tx.send(message).await.is_err() {
                tracing::debug!(query_id, "client went away; query cancelled");
                return;
            }
        }
        if failed {
            return;
        }
    }
}

fn encode(
    event: Event,
    encoder: &mut Option<TableEncoder>,
    bytes_returned: &mut u64,
) -> Result<Vec<Payload>, Status> {
    let arrow_error = |e: arrow::error::ArrowError| Status::internal(format!("arrow ipc: {e}"));
    Ok(match event {
        Event::Outputs(names) => vec![Payload::Metadata(proto::QueryMetadata {
            output_tables: names,
        })],
        Event::Schema { table, schema } => {
            let enc = TableEncoder::new(&schema).map_err(arrow_error)?;
            let arrow_schema = enc.schema_bytes().to_vec();
            *encoder = Some(enc);
            vec![Payload::Schema(proto::TableSchema {
                table_name: table,
                arrow_schema,
            })]
        }
        Event::Batch { table, batch } => {
            let enc = encoder
                .as_mut()
                .ok_or_else(|| Status::internal("a batch came before its schema"))?;
            enc.encode_bounded(&batch, MAX_CHUNK_BYTES)
                .map_err(arrow_error)?
                .into_iter()
                .map(|(part, arrow_ipc)| {
                    *bytes_returned += arrow_ipc.len() as u64;
                    Payload::Batch(proto::RecordBatch {
                        table_name: table.clone(),
                        arrow_ipc,
                        num_rows: part.num_rows() as u64,
                    })
                })
                .collect()
        }
        Event::TableEnd {
            table,
            rows,
            batches,
            truncated,
        } => {
            *encoder = None;
            vec![Payload::TableEnd(proto::TableEnd {
                table_name: table,
                num_rows: rows,
                num_batches: batches,
                truncated,
            })]
        }
        Event::Done(stats) => vec![Payload::Stats(proto::QueryStats {
            compile_ns: stats.compile_ns,
            execution_ns: stats.execution_ns,
            rows_returned: stats.rows,
            bytes_returned: *bytes_returned,
        })],
    })
}

fn response(query_id: &str, payload: Payload) -> proto::ExecuteScriptResponse {
    proto::ExecuteScriptResponse {
        query_id: query_id.to_owned(),
        result: Some(payload),
    }
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Unique within this process and readable in logs: start time and a counter.
fn new_query_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    format!("{epoch:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
