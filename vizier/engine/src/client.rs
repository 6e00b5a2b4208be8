//! A client of the broker API that hands back decoded Arrow batches (the CLI and tests use it).

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};
pub use tonic::{Code, Status};

use crate::ipc::TableDecoder;
use crate::proto::vizier_service_client::VizierServiceClient;
use crate::proto::{self, execute_script_response::Result as Payload};
use crate::tls::ClientTls;

/// Largest message accepted; the server sends at most about 1 MiB of Arrow per message.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address (refused, unresolvable, timed out).
    #[error("no Vizier at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    #[error("malformed response: {0}")]
    Protocol(String),
    #[error("decoding Arrow data: {0}")]
    Arrow(#[from] ArrowError),
}

/// One step of a script's results, decoded.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Outputs(Vec<String>),
    Table {
        name: String,
        schema: SchemaRef,
    },
    Batch {
        table: String,
        batch: RecordBatch,
    },
    TableEnd {
        table: String,
        rows: u64,
        truncated: bool,
    },
    Stats(proto::QueryStats),
    CompileError {
        line: u32,
        col: u32,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct VizierClient {
    inner: VizierServiceClient<Channel>,
}

impl VizierClient {
    /// Connects to `addr` (`HOST:PORT`, or a full `http://` URL) in plaintext.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_over(addr, None).await
    }

    /// Connects to `addr` (`HOST:PORT`) over mutual TLS with this Vizier's certificates.
    pub async fn connect_tls(addr: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        Self::connect_over(addr, Some(tls)).await
    }

    /// Connects to `addr` over mutual TLS with `tls`, or in plaintext without.
    pub async fn connect_over(addr: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let channel =
            endpoint(addr, tls)?
                .connect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    addr: addr.to_owned(),
                    reason: root_cause(&e),
                })?;
        Ok(VizierClient {
            inner: VizierServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    pub async fn health(&mut self) -> Result<proto::HealthResponse, ClientError> {
        Ok(self
            .inner
            .health(proto::HealthRequest {})
            .await?
            .into_inner())
    }

    pub async fn execute(
        &mut self,
        request: proto::ExecuteScriptRequest,
    ) -> Result<ResultStream, ClientError> {
        let stream = self.inner.execute_script(request).await?.into_inner();
        Ok(ResultStream {
            inner: stream,
            decoder: None,
        })
    }
}

impl proto::ExecuteScriptRequest {
    /// Runs the script over `[start_ns, end_ns)`, the window `px.plugin.start_time` and
    /// `px.plugin.end_time` stand for (as a CronScript run does).
    pub fn with_window(mut self, start_ns: i64, end_ns: i64) -> Self {
        self.window_start_ns = start_ns;
        self.window_end_ns = end_ns;
        self
    }
}

/// The responses of one `ExecuteScript`, decoded one by one.
pub struct ResultStream {
    inner: Streaming<proto::ExecuteScriptResponse>,
    decoder: Option<(String, TableDecoder)>,
}

impl ResultStream {
    /// The next event; `None` once the server has closed the stream.
    pub async fn next(&mut self) -> Result<Option<ClientEvent>, ClientError> {
        let Some(message) = self.inner.message().await? else {
            return Ok(None);
        };
        let payload = message
            .result
            .ok_or_else(|| ClientError::Protocol("a response without a result".into()))?;
        let event = match payload {
            Payload::Metadata(m) => ClientEvent::Outputs(m.output_tables),
            Payload::Schema(s) => {
                let decoder = TableDecoder::new(&s.arrow_schema)?;
                let schema = decoder.schema();
                self.decoder = Some((s.table_name.clone(), decoder));
                ClientEvent::Table {
                    name: s.table_name,
                    schema,
                }
            }
            Payload::Batch(b) => {
                let decoder = match &mut self.decoder {
                    Some((table, decoder)) if *table == b.table_name => decoder,
                    _ => {
                        return Err(ClientError::Protocol(format!(
                            "a batch of table {:?} before its schema",
                            b.table_name
                        )));
                    }
                };
                ClientEvent::Batch {
                    table: b.table_name,
                    batch: decoder.decode(&b.arrow_ipc)?,
                }
            }
            Payload::TableEnd(end) => {
                self.decoder = None;
                ClientEvent::TableEnd {
                    table: end.table_name,
                    rows: end.num_rows,
                    truncated: end.truncated,
                }
            }
            Payload::Stats(stats) => ClientEvent::Stats(stats),
            Payload::CompileError(e) => ClientEvent::CompileError {
                line: e.line,
                col: e.col,
                message: e.message,
            },
        };
        Ok(Some(event))
    }
}

/// Where `addr` (`HOST:PORT`, or a full `http://` URL) is, with our connect timeout; with `tls`,
/// `addr` must be `HOST:PORT` and the connection is mutual TLS.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, ClientError> {
    let invalid = |reason: String| ClientError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let url = match (addr.contains("://"), tls) {
        (false, None) => format!("http://{addr}"),
        (false, Some(_)) => format!("https://{addr}"),
        (true, None) => addr.to_owned(),
        (true, Some(_)) => {
            return Err(invalid(
                "with TLS, give HOST:PORT, not a URL (the scheme is https)".into(),
            ));
        }
    };
    let mut endpoint =
        Endpoint::from_shared(url).map_err(|e| invalid(format!("invalid address: {e}")))?;
    if let Some(tls) = tls {
        let host = endpoint.uri().host().unwrap_or_default().to_owned();
        endpoint = endpoint
            .tls_config(tls.config(&host))
            .map_err(|e| invalid(format!("TLS settings: {}", root_cause(&e))))?;
    }
    Ok(endpoint.connect_timeout(Duration::from_secs(5)))
}

/// The innermost cause, in words a person expects ("connection refused"), not hyper's wrapping.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            _ => io.to_string(),
        };
    }
    current.to_string()
}
