//! The broker API in-process: a server on 127.0.0.1:0 over a store with known rows, and the client
//! the CLI uses. Results come back as Arrow batches; compile errors as line/col/message.

mod common;

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::Int64Type;
use pixie_engine::proto::{ExecuteScriptRequest, Language};
use pixie_engine::server::{self, VizierApi};
use pixie_engine::{ClientError, ClientEvent, Engine, EngineConfig, ProcMetadata, VizierClient};
use pixie_store::tables::http_events;
use pixie_store::{StoreBudget, TableStore};
use tokio::net::TcpListener;

use common::{NEW_NS, row};

struct Running {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Five server-side requests at known times: GET /a 200 ... DELETE /e 503.
fn store() -> TableStore {
    let store = TableStore::new(StoreBudget::default());
    let rows = [
        ("GET", "/a", 200),
        ("POST", "/b", 201),
        ("GET", "/c", 404),
        ("PUT", "/d", 200),
        ("DELETE", "/e", 503),
    ]
    .iter()
    .enumerate()
    .map(|(i, (method, path, status))| row(NEW_NS + i as i64, 77, method, path, *status))
    .collect::<Vec<_>>();
    store
        .append(http_events::NAME, http_events::to_batch(&rows))
        .unwrap();
    store
}

async fn start(store: TableStore, config: EngineConfig) -> Running {
    let engine = Engine::new(&store, Arc::new(ProcMetadata::new()), config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = VizierApi::new(Arc::new(engine), store);
    let task = tokio::spawn(server::serve(listener, api, None, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn pxl(source: &str) -> ExecuteScriptRequest {
    ExecuteScriptRequest {
        query_str: source.into(),
        language: Language::Pxl.into(),
        query_name: "test".into(),
        ..Default::default()
    }
}

fn sql(source: &str) -> ExecuteScriptRequest {
    ExecuteScriptRequest {
        language: Language::Sql.into(),
        ..pxl(source)
    }
}

/// Every event of one request, in order.
async fn events(client: &mut VizierClient, request: ExecuteScriptRequest) -> Vec<ClientEvent> {
    let mut stream = client.execute(request).await.unwrap();
    let mut out = Vec::new();
    while let Some(event) = stream.next().await.unwrap() {
        out.push(event);
    }
    out
}

fn batches_of<'e>(events: &'e [ClientEvent], table: &str) -> Vec<&'e RecordBatch> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Batch { table: t, batch } if t == table => Some(batch),
            _ => None,
        })
        .collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let col = batch.column_by_name(column).unwrap().as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| col.value(i).to_owned())
        .collect()
}

#[tokio::test]
async fn a_pxl_script_streams_its_outputs_in_order_as_arrow() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let script = "import px\n\
        df = px.DataFrame(table='http_events', start_time=0)\n\
        px.display(df[['req_method', 'req_path', 'resp_status']], 'requests')\n\
        errors = df[df.resp_status >= 400]\n\
        px.display(errors[['req_path']], 'errors')\n";
    let got = events(&mut client, pxl(script)).await;

    match &got[0] {
        ClientEvent::Outputs(names) => assert_eq!(names, &["requests", "errors"]),
        other => panic!("first event {other:?}"),
    }
    let order: Vec<String> = got
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Table { name, .. } => Some(format!("schema {name}")),
            ClientEvent::TableEnd { table, .. } => Some(format!("end {table}")),
            ClientEvent::Stats(_) => Some("stats".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "schema requests",
            "end requests",
            "schema errors",
            "end errors",
            "stats"
        ]
    );

    let requests = batches_of(&got, "requests");
    let all = concat_batches(&requests[0].schema(), requests.iter().copied()).unwrap();
    let mut paths = strings(&all, "req_path");
    paths.sort();
    assert_eq!(paths, ["/a", "/b", "/c", "/d", "/e"]);
    let errors = batches_of(&got, "errors");
    let mut error_paths: Vec<String> = errors.iter().flat_map(|b| strings(b, "req_path")).collect();
    error_paths.sort();
    assert_eq!(error_paths, ["/c", "/e"]);
    match got.last().unwrap() {
        ClientEvent::Stats(stats) => {
            assert_eq!(stats.rows_returned, 7);
            assert!(stats.bytes_returned > 0);
        }
        other => panic!("last event {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_compile_error_comes_back_with_line_and_column() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let script = "import px\ndf = px.DataFrame(table='http_events')\ndf = df[df.resp_statu >= 400]\npx.display(df)\n";
    let got = events(&mut client, pxl(script)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    match &got[0] {
        ClientEvent::CompileError { line, col, message } => {
            assert_eq!(*line, 3, "{message}");
            assert!(*col > 1, "{col}");
            assert!(message.contains("resp_statu"), "{message}");
            // The closest column is suggested.
            assert!(message.contains("resp_status"), "{message}");
        }
        other => panic!("want a compile error, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn sql_works_over_the_same_tables() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let got = events(
        &mut client,
        sql("SELECT req_method, count(*) AS n FROM http_events GROUP BY req_method ORDER BY req_method"),
    )
    .await;
    let batches = batches_of(&got, "output");
    let all = concat_batches(&batches[0].schema(), batches.iter().copied()).unwrap();
    assert_eq!(
        strings(&all, "req_method"),
        ["DELETE", "GET", "POST", "PUT"]
    );
    let n = all.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    assert_eq!(n.values().to_vec(), vec![1, 2, 1, 1]);
    server.stop().await;
}

#[tokio::test]
async fn outputs_are_cut_at_the_row_cap_and_marked() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let mut request = sql("SELECT req_path FROM http_events");
    request.max_rows_per_output = 3;
    let got = events(&mut client, request).await;
    let rows: usize = batches_of(&got, "output")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 3);
    assert!(
        got.iter().any(|e| matches!(
            e,
            ClientEvent::TableEnd {
                rows: 3,
                truncated: true,
                ..
            }
        )),
        "{got:?}"
    );

    // Exactly at the cap is not cut.
    let mut request = sql("SELECT req_path FROM http_events");
    request.max_rows_per_output = 5;
    let got = events(&mut client, request).await;
    assert!(
        got.iter().any(|e| matches!(
            e,
            ClientEvent::TableEnd {
                rows: 5,
                truncated: false,
                ..
            }
        )),
        "{got:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_server_default_cap_applies_when_the_request_gives_none() {
    let config = EngineConfig {
        default_max_rows: 2,
        ..Default::default()
    };
    let server = start(store(), config).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let got = events(&mut client, sql("SELECT req_path FROM http_events")).await;
    assert!(
        got.iter().any(|e| matches!(
            e,
            ClientEvent::TableEnd {
                rows: 2,
                truncated: true,
                ..
            }
        )),
        "{got:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_query_over_the_memory_limit_fails_as_resource_exhausted() {
    let config = EngineConfig {
        memory_limit_bytes: 1024,
        ..Default::default()
    };
    let server = start(common::store_with_old_and_new(1, 1, 5_000), config).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    // A hash join must hold its build side (10 000 paths) in memory; 1 KiB is not enough.
    let mut stream = client
        .execute(sql(
            "SELECT a.req_path FROM http_events a JOIN http_events b ON a.req_path = b.req_path",
        ))
        .await
        .unwrap();
    let error = loop {
        match stream.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the query succeeded under a 1 KiB limit"),
            Err(e) => break e,
        }
    };
    match error {
        ClientError::Status(status) => {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}")
        }
        other => panic!("want a status, got {other:?}"),
    }
    // The server is still fine.
    assert_eq!(client.health().await.unwrap().status, "SERVING");
    server.stop().await;
}

#[tokio::test]
async fn health_reports_rows_per_table() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "SERVING");
    assert_eq!(health.table_rows.get("http_events"), Some(&5));
    assert_eq!(health.table_rows.get("conn_stats"), Some(&0));
    server.stop().await;
}

#[tokio::test]
async fn an_address_with_nothing_listening_is_unreachable_not_a_hang() {
    // Bind and drop: the port was free a moment ago and nothing listens on it now.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    match VizierClient::connect(&addr).await {
        Err(e @ ClientError::Unreachable { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("no Vizier at {addr}: connection refused")
            );
        }
        other => panic!("want Unreachable, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_run_window_bounds_px_plugin_times_and_exports_stream_as_outputs() {
    let server = start(store(), EngineConfig::default()).await;
    let mut client = VizierClient::connect(&server.addr).await.unwrap();
    let script = "import px\n\
        df = px.DataFrame(table='http_events', start_time=px.plugin.start_time, \
        end_time=px.plugin.end_time)\n\
        df = df.groupby('req_method').agg(requests=('latency', px.count), time_=('time_', px.max))\n\
        px.export(df, px.otel.Data(resource={'service.name': df.req_method}, \
        data=[px.otel.metric.Gauge(name='http.requests', value=df.requests)]))\n";

    // [NEW_NS + 1, NEW_NS + 3) holds the second and third request: POST /b and GET /c.
    let got = events(&mut client, pxl(script).with_window(NEW_NS + 1, NEW_NS + 3)).await;
    match &got[0] {
        ClientEvent::Outputs(names) => assert_eq!(names, &["export"]),
        other => panic!("first event {other:?}"),
    }
    let mut methods: Vec<String> = batches_of(&got, "export")
        .iter()
        .flat_map(|b| strings(b, "req_method"))
        .collect();
    methods.sort();
    assert_eq!(methods, ["GET", "POST"]);

    // Without a window px.plugin has no times.
    let got = events(&mut client, pxl(script)).await;
    match &got[..] {
        [ClientEvent::CompileError { line, col, message }] => {
            assert_eq!((*line, *col), (2, 51));
            assert_eq!(
                message,
                "px.plugin.start_time is only set when a CronScript or plugin runs the script"
            );
        }
        other => panic!("want one compile error, got {other:?}"),
    }

    // A window that does not move forward is refused before compiling.
    match client
        .execute(pxl(script).with_window(NEW_NS, NEW_NS))
        .await
    {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("window_start_ns"), "{status:?}");
        }
        Err(other) => panic!("want InvalidArgument, got {other:?}"),
        Ok(_) => panic!("want InvalidArgument, got a stream"),
    }
    server.stop().await;
}
