//! Kelvin's tables: the stores of every PEM, read over their broker API.
//!
//! A [`RemoteTable`] scan sends each PEM a SQL query for just the projected columns and the
//! pushed-down `time_` range, and streams the union of the replies, one DataFusion partition per PEM.
//! Everything above the scan (filters, aggregates, joins, limits) runs here over that union, so an
//! aggregate over several nodes is the aggregate of all their rows.
//!
//! `df.ctx[...]` must be answered by the host that saw the process, not by Kelvin's: before its rows,
//! each PEM's scan asks that PEM for the resolved metadata of the upids in range (the PEM's engine
//! has the metadata UDFs), and [`RemoteMetadata`] answers from those replies. Both the tables and
//! that metadata live for one query ([`RemoteTables::for_query`]), and the set of PEMs is looked up
//! once per query, so PEMs that come and go (behind a headless Service, or by their NATS
//! heartbeats) are picked up. A PEM that does
//! not answer fails the query with an error naming it: partial results would look complete.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableSource};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::TryStreamExt;
use parking_lot::Mutex;
use pixie_pxl::{MetadataField, MetadataResolver, TableCatalog, metadata_udf_name};
use pixie_store::{TIME_COLUMN, TimeRange, Upid};

use crate::agents::AgentDirectory;
use crate::client::{ClientError, ClientEvent, ResultStream, VizierClient};
use crate::proto::{self, ExecuteScriptRequest};
use crate::table::{time_filters_pushdown, time_range};
use crate::tls::ClientTls;

/// The column every table keys its process by.
const UPID_COLUMN: &str = "upid";

/// Where Kelvin finds its PEMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemAddrs {
    /// These `HOST:PORT`s, always.
    Fixed(Vec<String>),
    /// Every address a (headless Service) DNS name resolves to, looked up again for each query;
    /// `HOST:PORT`.
    Service(String),
    /// The PEMs whose heartbeats arrived within the directory's TTL, as of each query.
    Heartbeats(AgentDirectory),
}

impl PemAddrs {
    /// The PEMs to ask now, sorted; an error when there are none.
    pub async fn resolve(&self) -> std::result::Result<Vec<String>, RemoteError> {
        let mut addrs: Vec<String> = match self {
            PemAddrs::Fixed(addrs) => addrs.clone(),
            PemAddrs::Service(name) => tokio::net::lookup_host(name.as_str())
                .await
                .map_err(|e| RemoteError::Lookup {
                    service: name.clone(),
                    reason: e.to_string(),
                })?
                .map(|addr| addr.to_string())
                .collect(),
            PemAddrs::Heartbeats(directory) => directory
                .live(std::time::Instant::now())
                .into_iter()
                .map(|agent| agent.addr)
                .collect(),
        };
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(RemoteError::NoPems(self.to_string()));
        }
        Ok(addrs)
    }
}

impl fmt::Display for PemAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemAddrs::Fixed(addrs) => write!(f, "--pem {}", addrs.join(",")),
            PemAddrs::Service(name) => write!(f, "--pem-service {name}"),
            PemAddrs::Heartbeats(directory) => {
                write!(f, "PEMs heard on NATS within {:?}", directory.ttl())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("looking up the PEMs behind {service}: {reason}")]
    Lookup { service: String, reason: String },
    #[error("no PEMs to query ({0})")]
    NoPems(String),
    /// One PEM failed; `addr` names it.
    #[error("PEM {addr}: {reason}")]
    Pem { addr: String, reason: String },
    #[error(
        "upid {upid} is on PEMs {first} and {second} with different metadata; give each PEM its own \
         --asid"
    )]
    AmbiguousUpid {
        upid: String,
        first: String,
        second: String,
    },
}

impl From<RemoteError> for DataFusionError {
    fn from(e: RemoteError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// The tables every PEM holds (their schemas are the store's, fixed at build time) and where the
/// PEMs are.
#[derive(Debug, Clone)]
pub struct RemoteTables {
    pems: PemAddrs,
    tls: Option<ClientTls>,
    schemas: BTreeMap<String, SchemaRef>,
}

impl RemoteTables {
    pub fn new(pems: PemAddrs) -> Self {
        let schemas = pixie_store::tables::all()
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect();
        RemoteTables {
            pems,
            tls: None,
            schemas,
        }
    }

    /// Talks to the PEMs over mutual TLS.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn pems(&self) -> &PemAddrs {
        &self.pems
    }

    /// The tables and `df.ctx` answers of one query.
    pub fn for_query(&self) -> RemoteQuery {
        let state = Arc::new(QueryState {
            pems: self.pems.clone(),
            tls: self.tls.clone(),
            resolved: tokio::sync::OnceCell::new(),
            metadata: Arc::new(RemoteMetadata::default()),
        });
        let tables = self
            .schemas
            .iter()
            .map(|(name, schema)| {
                let table = RemoteTable {
                    name: name.clone(),
                    schema: schema.clone(),
                    query: state.clone(),
                };
                (name.clone(), Arc::new(table))
            })
            .collect();
        RemoteQuery { tables, state }
    }

    /// Rows held per table, summed over every PEM (for `Health`).
    pub async fn table_rows(&self) -> std::result::Result<BTreeMap<String, u64>, RemoteError> {
        let addrs = self.pems.resolve().await?;
        let replies = futures::future::join_all(addrs.iter().map(|addr| async move {
            let mut client = connect(addr, self.tls.as_ref()).await?;
            client.health().await.map_err(|e| pem_error(addr, e))
        }))
        .await;
        let mut rows = BTreeMap::new();
        for reply in replies {
            for (table, n) in reply?.table_rows {
                *rows.entry(table).or_insert(0) += n;
            }
        }
        Ok(rows)
    }
}

/// What one query's tables share: the PEMs, looked up on the first scan, and the metadata the scans
/// bring back.
#[derive(Debug)]
struct QueryState {
    pems: PemAddrs,
    tls: Option<ClientTls>,
    resolved: tokio::sync::OnceCell<Vec<String>>,
    metadata: Arc<RemoteMetadata>,
}

impl QueryState {
    async fn pems(&self) -> std::result::Result<&[String], RemoteError> {
        self.resolved
            .get_or_try_init(|| self.pems.resolve())
            .await
            .map(Vec::as_slice)
    }
}

/// The catalog one query compiles against.
#[derive(Debug)]
pub struct RemoteQuery {
    tables: BTreeMap<String, Arc<RemoteTable>>,
    state: Arc<QueryState>,
}

impl RemoteQuery {
    /// The `df.ctx` resolver that goes with these tables.
    pub fn metadata(&self) -> Arc<RemoteMetadata> {
        self.state.metadata.clone()
    }
}

impl TableCatalog for RemoteQuery {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        let table = self.tables.get(name)?.clone();
        Some(provider_as_source(table))
    }
}

/// The metadata fields a PEM is asked for (the pid is part of the upid).
const FETCHED_FIELDS: [MetadataField; 7] = [
    MetadataField::Pod,
    MetadataField::Service,
    MetadataField::Namespace,
    MetadataField::Node,
    MetadataField::Container,
    MetadataField::Cmdline,
    MetadataField::Hostname,
];

/// `df.ctx` answers of one query, as the PEMs holding each upid's rows gave them.
#[derive(Debug, Default)]
pub struct RemoteMetadata {
    upids: Mutex<HashMap<String, Resolved>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    pem: String,
    /// In [`FETCHED_FIELDS`] order; `""` is unknown.
    values: Vec<String>,
}

impl RemoteMetadata {
    /// Records what `pem` says about `upid`. The same upid from another PEM with other values means
    /// two hosts share an asid: no answer would be right, so the query fails.
    fn insert(&self, upid: String, pem: &str, values: Vec<String>) -> Result<(), RemoteError> {
        let mut upids = self.upids.lock();
        match upids.get(&upid) {
            Some(known) if known.pem != pem && known.values != values => {
                Err(RemoteError::AmbiguousUpid {
                    upid,
                    first: known.pem.clone(),
                    second: pem.to_owned(),
                })
            }
            _ => {
                upids.insert(
                    upid,
                    Resolved {
                        pem: pem.to_owned(),
                        values,
                    },
                );
                Ok(())
            }
        }
    }
}

impl MetadataResolver for RemoteMetadata {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        if field == MetadataField::Pid {
            return upid.parse::<Upid>().ok().map(|u| u.pid.to_string());
        }
        let index = FETCHED_FIELDS.iter().position(|f| *f == field)?;
        let upids = self.upids.lock();
        let value = upids.get(upid)?.values.get(index)?;
        (!value.is_empty()).then(|| value.clone())
    }
}

/// One table of every PEM.
pub struct RemoteTable {
    name: String,
    schema: SchemaRef,
    query: Arc<QueryState>,
}

impl fmt::Debug for RemoteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTable")
            .field("name", &self.name)
            .field("pems", &self.query.pems)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for RemoteTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The PEMs prune by time; the filter still runs here.
        Ok(time_filters_pushdown(filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => self.schema.clone(),
        };
        let range = time_range(filters);
        let columns: Vec<&str> = projected
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let rows_sql = rows_sql(&self.name, &columns, range, limit);
        let metadata_sql = columns
            .contains(&UPID_COLUMN)
            .then(|| metadata_sql(&self.name, range));
        let pems = self.query.pems().await?;
        tracing::debug!(table = %self.name, ?range, pems = pems.len(), "remote scan");
        let partitions = pems
            .iter()
            .map(|addr| {
                Arc::new(PemScan {
                    addr: addr.clone(),
                    schema: projected.clone(),
                    rows_sql: rows_sql.clone(),
                    metadata_sql: metadata_sql.clone(),
                    metadata: self.query.metadata.clone(),
                    tls: self.query.tls.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let exec = StreamingTableExec::try_new(projected, partitions, None, [], false, None)?;
        Ok(Arc::new(exec))
    }
}

/// The rows of `columns` in `range` (all of `time_` when no column is wanted: only the count
/// matters then).
fn rows_sql(table: &str, columns: &[&str], range: TimeRange, limit: Option<usize>) -> String {
    let select = if columns.is_empty() {
        quote(TIME_COLUMN)
    } else {
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sql = format!("SELECT {select} FROM {}{}", quote(table), where_time(range));
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// Each distinct upid in `range` with its resolved metadata, in [`FETCHED_FIELDS`] order.
fn metadata_sql(table: &str, range: TimeRange) -> String {
    let upid = quote(UPID_COLUMN);
    let fields: Vec<String> = FETCHED_FIELDS
        .iter()
        .map(|f| format!("{}({upid})", metadata_udf_name(*f)))
        .collect();
    format!(
        "SELECT DISTINCT {upid}, {} FROM {}{}",
        fields.join(", "),
        quote(table),
        where_time(range)
    )
}

fn where_time(range: TimeRange) -> String {
    let time = quote(TIME_COLUMN);
    let mut bounds = Vec::new();
    if range.start_ns != i64::MIN {
        bounds.push(format!("{time} >= to_timestamp_nanos({})", range.start_ns));
    }
    if range.end_ns != i64::MAX {
        bounds.push(format!("{time} < to_timestamp_nanos({})", range.end_ns));
    }
    if bounds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", bounds.join(" AND "))
    }
}

/// A SQL identifier, quoted so that any column name is taken as is.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// One PEM's share of a scan: its metadata for the upids in range, then its rows.
#[derive(Debug, Clone)]
struct PemScan {
    addr: String,
    schema: SchemaRef,
    rows_sql: String,
    metadata_sql: Option<String>,
    metadata: Arc<RemoteMetadata>,
    tls: Option<ClientTls>,
}

impl PartitionStream for PemScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let scan = self.clone();
        let schema = self.schema.clone();
        let batches = futures::stream::once(async move {
            let rows = scan.open().await?;
            Ok::<_, DataFusionError>(batches(rows, scan.addr, scan.schema))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

impl PemScan {
    async fn open(&self) -> std::result::Result<ResultStream, RemoteError> {
        let mut client = connect(&self.addr, self.tls.as_ref()).await?;
        // The metadata first: a row must not reach a ctx lookup before its upid is known.
        if let Some(sql) = &self.metadata_sql {
            let mut stream = execute(&mut client, &self.addr, sql).await?;
            while let Some(batch) = next_batch(&mut stream, &self.addr).await? {
                self.remember(&batch)?;
            }
        }
        execute(&mut client, &self.addr, &self.rows_sql).await
    }

    fn remember(&self, batch: &RecordBatch) -> std::result::Result<(), RemoteError> {
        let malformed = |what: String| pem_error(&self.addr, format!("metadata reply: {what}"));
        if batch.num_columns() != FETCHED_FIELDS.len() + 1 {
            return Err(malformed(format!("{} columns", batch.num_columns())));
        }
        let columns = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| malformed(e.to_string()))?;
        let text: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
        for row in 0..batch.num_rows() {
            if text[0].is_null(row) {
                continue;
            }
            let values = text[1..]
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        String::new()
                    } else {
                        c.value(row).to_owned()
                    }
                })
                .collect();
            self.metadata
                .insert(text[0].value(row).to_owned(), &self.addr, values)?;
        }
        Ok(())
    }
}

/// The batches of one reply, as `schema` (the PEM's physical schema may differ in nullability).
fn batches(
    stream: ResultStream,
    addr: String,
    schema: SchemaRef,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::try_unfold(
        (stream, addr, schema),
        |(mut stream, addr, schema)| async move {
            let Some(batch) = next_batch(&mut stream, &addr).await? else {
                return Ok(None);
            };
            let batch = if schema.fields().is_empty() {
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &options)?
            } else {
                RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| pem_error(&addr, format!("unexpected columns: {e}")))?
            };
            Ok(Some((batch, (stream, addr, schema))))
        },
    )
}

/// The next batch of a single-output reply; `None` at its end. A cut output is an error: the rows
/// past the PEM's cap would be missing from the result.
async fn next_batch(
    stream: &mut ResultStream,
    addr: &str,
) -> std::result::Result<Option<RecordBatch>, RemoteError> {
    loop {
        let event = stream.next().await.map_err(|e| pem_error(addr, e))?;
        match event {
            None => return Ok(None),
            Some(ClientEvent::Batch { batch, .. }) => return Ok(Some(batch)),
            Some(ClientEvent::TableEnd {
                truncated: true,
                rows,
                ..
            }) => {
                return Err(pem_error(
                    addr,
                    format!("more than {rows} rows in range; narrow the time range"),
                ));
            }
            Some(ClientEvent::CompileError { message, .. }) => {
                return Err(pem_error(addr, format!("refused the scan: {message}")));
            }
            Some(_) => {}
        }
    }
}

async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
) -> std::result::Result<VizierClient, RemoteError> {
    VizierClient::connect_over(addr, tls)
        .await
        .map_err(|e| match e {
            // The error names the PEM already.
            ClientError::Unreachable { reason, .. } => {
                pem_error(addr, format!("unreachable: {reason}"))
            }
            other => pem_error(addr, other),
        })
}

async fn execute(
    client: &mut VizierClient,
    addr: &str,
    sql: &str,
) -> std::result::Result<ResultStream, RemoteError> {
    let request = ExecuteScriptRequest {
        query_str: sql.to_owned(),
        language: proto::Language::Sql.into(),
        query_name: "kelvin scan".into(),
        // As many as the PEM allows; more than that fails the scan (see `next_batch`).
        max_rows_per_output: u64::MAX,
        ..Default::default()
    };
    client
        .execute(request)
        .await
        .map_err(|e| pem_error(addr, e))
}

fn pem_error(addr: &str, reason: impl fmt::Display) -> RemoteError {
    RemoteError::Pem {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_ask_for_the_projected_columns_in_the_pushed_down_range() {
        assert_eq!(
            rows_sql(
                "http_events",
                &["time_", "upid"],
                TimeRange::new(5, 9),
                None
            ),
            "SELECT \"time_\", \"upid\" FROM \"http_events\" WHERE \"time_\" >= \
             to_timestamp_nanos(5) AND \"time_\" < to_timestamp_nanos(9)"
        );
        assert_eq!(
            rows_sql("t", &[], TimeRange::since(5), Some(3)),
            "SELECT \"time_\" FROM \"t\" WHERE \"time_\" >= to_timestamp_nanos(5) LIMIT 3"
        );
        assert_eq!(
            rows_sql("t", &["a\"b"], TimeRange::all(), None),
            "SELECT \"a\"\"b\" FROM \"t\""
        );
        let sql = metadata_sql("t", TimeRange::all());
        assert!(
            sql.starts_with("SELECT DISTINCT \"upid\", px_upid_to_pod_name(\"upid\"), "),
            "{sql}"
        );
    }

    #[test]
    fn metadata_answers_what_the_owning_pem_said() {
        let meta = RemoteMetadata::default();
        let values = |node: &str| {
            FETCHED_FIELDS
                .iter()
                .map(|f| match f {
                    MetadataField::Node => node.to_owned(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
        };
        meta.insert("1:42:7".into(), "a:1", values("node-a"))
            .unwrap();
        meta.insert("2:42:7".into(), "b:1", values("node-b"))
            .unwrap();
        assert_eq!(
            meta.resolve("1:42:7", MetadataField::Node).as_deref(),
            Some("node-a")
        );
        assert_eq!(
            meta.resolve("2:42:7", MetadataField::Node).as_deref(),
            Some("node-b")
        );
        assert_eq!(meta.resolve("1:42:7", MetadataField::Pod), None);
        assert_eq!(
            meta.resolve("1:42:7", MetadataField::Pid).as_deref(),
            Some("42")
        );
        assert_eq!(meta.resolve("3:1:1", MetadataField::Node), None);
        // The same upid on another host with other values cannot be answered.
        let err = meta
            .insert("1:42:7".into(), "b:1", values("node-b"))
            .unwrap_err();
        assert!(err.to_string().contains("a:1 and b:1"), "{err}");
        // Another table of the same PEM may repeat it.
        meta.insert("1:42:7".into(), "a:1", values("node-a"))
            .unwrap();
    }
}
