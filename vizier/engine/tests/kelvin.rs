//! Kelvin in-process: two PEM API servers over two stores with known rows, and an engine over their
//! remote tables. Its results must be those of one engine over the union of the rows; `df.ctx` must
//! come from the PEM that holds each upid; a PEM that does not answer must fail the query by name.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use pixie_engine::proto::{ExecuteScriptRequest, Language};
use pixie_engine::server::{self, VizierApi};
use pixie_engine::{
    ClientEvent, Engine, EngineConfig, ForwardingApi, PemAddrs, ProcMetadata, Query, RemoteTables,
    ServiceTls, VizierClient,
};
use pixie_pxl::{MetadataField, MetadataResolver};
use pixie_store::tables::http_events;
use pixie_store::{StoreBudget, TableStore, Upid};
use tokio::net::TcpListener;

use common::{NEW_NS, OLD_NS, row};

/// `df.ctx` of one host: every upid of its asid is on `node`.
#[derive(Debug)]
struct NodeMetadata {
    asid: u32,
    node: String,
}

impl MetadataResolver for NodeMetadata {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        let upid: Upid = upid.parse().ok()?;
        if upid.asid != self.asid {
            return None;
        }
        match field {
            MetadataField::Node | MetadataField::Hostname => Some(self.node.clone()),
            MetadataField::Pod => Some(format!("pod-{}", upid.pid)),
            _ => None,
        }
    }
}

struct Server {
    addr: String,
    engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn serve(
    api: impl pixie_engine::proto::vizier_service_server::VizierService,
) -> (String, Running) {
    serve_over(api, None).await
}

async fn serve_over(
    api: impl pixie_engine::proto::vizier_service_server::VizierService,
    tls: Option<&ServiceTls>,
) -> (String, Running) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = tls.cloned();
    let task = tokio::spawn(async move {
        server::serve(listener, api, tls.as_ref(), async {
            let _ = stopped.await;
        })
        .await
    });
    (addr, (Some(stop), task))
}

type Running = (
    Option<tokio::sync::oneshot::Sender<()>>,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
);

async fn stop((stop, task): Running) {
    let _ = stop.unwrap().send(());
    task.await.unwrap().unwrap();
}

/// A PEM: its own store and `df.ctx`, behind the API.
async fn pem(rows: &[http_events::Row], asid: u32, node: &str) -> Server {
    pem_over(rows, asid, node, None).await
}

async fn pem_over(
    rows: &[http_events::Row],
    asid: u32,
    node: &str,
    tls: Option<&ServiceTls>,
) -> Server {
    let store = store(rows);
    let metadata = Arc::new(NodeMetadata {
        asid,
        node: node.to_owned(),
    });
    let engine = Arc::new(Engine::new(&store, metadata, EngineConfig::default()).unwrap());
    let api = VizierApi::new(engine.clone(), store).with_node_name(node);
    let (addr, (stop, task)) = serve_over(api, tls).await;
    Server {
        addr,
        engine,
        stop,
        task,
    }
}

fn store(rows: &[http_events::Row]) -> TableStore {
    let store = TableStore::new(StoreBudget::default());
    store
        .append(http_events::NAME, http_events::to_batch(rows))
        .unwrap();
    store
}

/// `count` rows of host `asid`, half a day old and half new, over a few methods, paths and pids.
fn rows(asid: u32, count: usize) -> Vec<http_events::Row> {
    let methods = ["GET", "POST", "PUT"];
    (0..count)
        .map(|i| {
            let time = if i % 2 == 0 { OLD_NS } else { NEW_NS } + (asid as i64) * 1_000 + i as i64;
            let pid = 100 + (i % 3) as u32;
            let mut r = row(
                time,
                pid,
                methods[(i + asid as usize) % 3],
                &format!("/{asid}/{}", i % 4),
                [200, 404, 503][i % 3],
            );
            r.upid = Upid::new(asid, pid, 1000);
            r.latency = (i as i64 + 1) * 1_000 * asid as i64;
            r.resp_body_size = i as i64;
            r
        })
        .collect()
}

fn kelvin_over(pems: &[&Server]) -> Engine {
    let addrs = pems.iter().map(|p| p.addr.clone()).collect();
    Engine::remote(
        RemoteTables::new(PemAddrs::Fixed(addrs)),
        EngineConfig::default(),
    )
    .unwrap()
}

/// Each output's rows as sorted text lines (row order across PEMs is not defined).
async fn run(engine: &Engine, query: &Query) -> BTreeMap<String, Vec<String>> {
    let (outputs, _) = engine.collect(query).await.unwrap();
    outputs
        .into_iter()
        .map(|(name, batches)| (name, lines(&batches)))
        .collect()
}

fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let text = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(str::to_owned)
        .collect();
    rows.sort();
    rows
}

fn pxl(source: &str) -> Query {
    let mut query = Query::pxl(source);
    // A minute after the new rows: '-5m' keeps them and not the day-old ones.
    query.now_ns = Some(NEW_NS + 60_000_000_000);
    query
}

const GROUPBY: &str = "import px\n\
    df = px.DataFrame(table='http_events', start_time=0)\n\
    df = df.groupby(['req_method', 'resp_status']).agg(n=('latency', px.count), \
    total=('resp_body_size', px.sum), slowest=('latency', px.max), mean=('latency', px.mean))\n\
    px.display(df, 'by_method')\n";

const SELECT: &str = "import px\n\
    df = px.DataFrame(table='http_events', start_time=0)\n\
    px.display(df[['time_', 'upid', 'req_method', 'req_path', 'resp_status', 'latency']], 'rows')\n";

const WINDOW: &str = "import px\n\
    df = px.DataFrame(table='http_events', start_time='-5m')\n\
    df = df[df.resp_status >= 400]\n\
    df = df.groupby('req_path').agg(n=('latency', px.count))\n\
    px.display(df, 'errors')\n";

#[tokio::test]
async fn kelvin_over_two_pems_answers_like_one_engine_over_all_their_rows() {
    let (rows_a, rows_b) = (rows(1, 40), rows(2, 30));
    let (a, b) = (
        pem(&rows_a, 1, "node-a").await,
        pem(&rows_b, 2, "node-b").await,
    );
    let kelvin = kelvin_over(&[&a, &b]);
    let union: Vec<_> = rows_a.iter().chain(&rows_b).cloned().collect();
    let single = Engine::new(
        &store(&union),
        Arc::new(ProcMetadata::new()),
        EngineConfig::default(),
    )
    .unwrap();

    for script in [GROUPBY, SELECT, WINDOW] {
        let (want, got) = (
            run(&single, &pxl(script)).await,
            run(&kelvin, &pxl(script)).await,
        );
        assert!(!want.values().next().unwrap().is_empty(), "{script}");
        assert_eq!(got, want, "{script}");
    }
    // All 70 rows in the select; groups span both PEMs (GET comes from each).
    assert_eq!(run(&kelvin, &pxl(SELECT)).await["rows"].len(), 70);

    // The window reached the PEMs: they returned only their new rows.
    let scanned = |pem: &Server| {
        pem.engine
            .catalog()
            .unwrap()
            .scan_stats(http_events::NAME)
            .unwrap()
    };
    let (before_a, before_b) = (scanned(&a), scanned(&b));
    run(&kelvin, &pxl(WINDOW)).await;
    assert_eq!(scanned(&a).rows - before_a.rows, 20);
    assert_eq!(scanned(&b).rows - before_b.rows, 15);

    // head() cuts the union, not each PEM's share.
    let head = "import px\ndf = px.DataFrame(table='http_events', start_time=0)\n\
        px.display(df.head(5), 'some')\n";
    assert_eq!(run(&kelvin, &pxl(head)).await["some"].len(), 5);

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn ctx_is_resolved_by_the_pem_that_holds_the_upid() {
    let (a, b) = (
        pem(&rows(1, 10), 1, "node-a").await,
        pem(&rows(2, 6), 2, "node-b").await,
    );
    let kelvin = kelvin_over(&[&a, &b]);
    let script = "import px\n\
        df = px.DataFrame(table='http_events', start_time=0)\n\
        df.node = df.ctx['node']\n\
        df.pod = df.ctx['pod']\n\
        df = df.groupby(['node', 'pod']).agg(n=('latency', px.count))\n\
        px.display(df, 'by_node')\n";
    let got = run(&kelvin, &pxl(script)).await;
    let want: Vec<String> = [
        ("node-a", "pod-100", 4),
        ("node-a", "pod-101", 3),
        ("node-a", "pod-102", 3),
        ("node-b", "pod-100", 2),
        ("node-b", "pod-101", 2),
        ("node-b", "pod-102", 2),
    ]
    .iter()
    .map(|(node, pod, n)| format!("| {node} | {pod} | {n} |"))
    .collect();
    assert_eq!(got["by_node"], want);

    // The same upid on two hosts with different metadata cannot be answered right: an error.
    let c = pem(&rows(1, 4), 1, "node-c").await;
    let ambiguous = kelvin_over(&[&a, &c]);
    let err = ambiguous
        .collect(&pxl(script))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--asid") && err.contains(&c.addr), "{err}");

    for pem in [a, b, c] {
        pem.stop().await;
    }
}

#[tokio::test]
async fn a_pem_that_does_not_answer_fails_the_query_by_name() {
    let a = pem(&rows(1, 10), 1, "node-a").await;
    // A port nothing listens on: bound, then released.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = gone.local_addr().unwrap().to_string();
    drop(gone);
    let kelvin = Engine::remote(
        RemoteTables::new(PemAddrs::Fixed(vec![a.addr.clone(), dead.clone()])),
        EngineConfig::default(),
    )
    .unwrap();
    let err = kelvin.collect(&pxl(GROUPBY)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("PEM {dead}")), "{err}");
    assert!(!err.contains(&a.addr), "{err}");

    // A Service name that resolves to nothing is an error too, naming it.
    let service = Engine::remote(
        RemoteTables::new(PemAddrs::Service("no-such-pems.invalid:50400".into())),
        EngineConfig::default(),
    )
    .unwrap();
    let err = service
        .collect(&pxl(GROUPBY))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-pems.invalid"), "{err}");
    a.stop().await;
}

#[tokio::test]
async fn a_service_name_finds_every_pem_behind_it() {
    // `localhost` resolves to this host only; the port picks the PEM.
    let a = pem(&rows(1, 10), 1, "node-a").await;
    let port = a.addr.rsplit(':').next().unwrap();
    let kelvin = Engine::remote(
        RemoteTables::new(PemAddrs::Service(format!("localhost:{port}"))),
        EngineConfig::default(),
    )
    .unwrap();
    // `localhost` may also resolve to ::1, where nothing listens: then that is the error.
    match kelvin.collect(&pxl(SELECT)).await {
        Ok((outputs, _)) => assert_eq!(lines(&outputs[0].1).len(), 10),
        Err(e) => assert!(e.to_string().contains("PEM [::1]"), "{e}"),
    }
    a.stop().await;
}

#[tokio::test]
async fn the_broker_forwards_to_kelvin_and_streams_its_results_back() {
    let (a, b) = (
        pem(&rows(1, 12), 1, "node-a").await,
        pem(&rows(2, 8), 2, "node-b").await,
    );
    let tables = RemoteTables::new(PemAddrs::Fixed(vec![a.addr.clone(), b.addr.clone()]));
    let engine = Arc::new(Engine::remote(tables.clone(), EngineConfig::default()).unwrap());
    let (kelvin_addr, kelvin_server) = serve(VizierApi::over_pems(engine, tables)).await;
    let (broker_addr, broker_server) = serve(ForwardingApi::new(&kelvin_addr, None).unwrap()).await;

    let mut client = VizierClient::connect(&broker_addr).await.unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.table_rows.get(http_events::NAME), Some(&20));
    let request = ExecuteScriptRequest {
        query_str: SELECT.into(),
        language: Language::Pxl.into(),
        ..Default::default()
    };
    let mut stream = client.execute(request).await.unwrap();
    let (mut rows, mut outputs) = (0, Vec::new());
    while let Some(event) = stream.next().await.unwrap() {
        match event {
            ClientEvent::Outputs(names) => outputs = names,
            ClientEvent::Batch { batch, .. } => rows += batch.num_rows(),
            _ => {}
        }
    }
    assert_eq!((outputs, rows), (vec!["rows".to_owned()], 20));

    // A PEM's own Health names its node.
    let mut direct = VizierClient::connect(&a.addr).await.unwrap();
    assert_eq!(direct.health().await.unwrap().node_name, "node-a");

    // Kelvin gone: the broker's error names it.
    stop(kelvin_server).await;
    let err = client.health().await.unwrap_err().to_string();
    assert!(err.contains(&kelvin_addr), "{err}");

    stop(broker_server).await;
    a.stop().await;
    b.stop().await;
}

/// This Vizier's certificates in a directory, as the pods mount them.
fn service_tls(pki: &pixie_tests::TestPki) -> (tempfile::TempDir, ServiceTls) {
    let dir = tempfile::tempdir().unwrap();
    pki.write_service_tls(dir.path());
    let tls = ServiceTls::load(dir.path()).unwrap();
    (dir, tls)
}

#[tokio::test]
async fn with_mutual_tls_every_hop_is_encrypted_and_strangers_are_refused() {
    let pki = pixie_tests::private_ca(&["localhost"]);
    let (_dir, tls) = service_tls(&pki);
    let (a, b) = (
        pem_over(&rows(1, 12), 1, "node-a", Some(&tls)).await,
        pem_over(&rows(2, 8), 2, "node-b", Some(&tls)).await,
    );
    let tables = RemoteTables::new(PemAddrs::Fixed(vec![a.addr.clone(), b.addr.clone()]))
        .with_tls(tls.client().clone());
    let engine = Arc::new(Engine::remote(tables.clone(), EngineConfig::default()).unwrap());
    let (kelvin_addr, kelvin_server) =
        serve_over(VizierApi::over_pems(engine, tables), Some(&tls)).await;
    let broker = ForwardingApi::new(&kelvin_addr, Some(tls.client())).unwrap();
    let (broker_addr, broker_server) = serve_over(broker, Some(&tls)).await;

    // Client → broker → Kelvin → both PEMs, every hop over TLS.
    let mut client = VizierClient::connect_tls(&broker_addr, tls.client())
        .await
        .unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.table_rows.get(http_events::NAME), Some(&20));

    // Plaintext gets no answer from a TLS server.
    let plaintext = async { VizierClient::connect(&broker_addr).await?.health().await };
    assert!(plaintext.await.is_err(), "a plaintext client was answered");

    // A client certificate of another CA is refused by the server...
    let stranger = pixie_tests::private_ca(&["localhost"]);
    let impostor = pixie_tests::TestPki {
        ca_pem: pki.ca_pem.clone(),
        ..stranger
    };
    let (_impostor_dir, impostor_tls) = service_tls(&impostor);
    let refused = async {
        VizierClient::connect_tls(&a.addr, impostor_tls.client())
            .await?
            .health()
            .await
    };
    assert!(
        refused.await.is_err(),
        "a stranger's client certificate was accepted"
    );

    // ...and a server of another CA is not trusted by our clients.
    let (_other_dir, other_tls) = service_tls(&pixie_tests::private_ca(&["localhost"]));
    let (other_addr, other_server) = serve_over(
        VizierApi::new(a.engine.clone(), store(&[])),
        Some(&other_tls),
    )
    .await;
    let untrusted = async {
        VizierClient::connect_tls(&other_addr, tls.client())
            .await?
            .health()
            .await
    };
    assert!(
        untrusted.await.is_err(),
        "a server of another CA was trusted"
    );

    stop(other_server).await;
    stop(broker_server).await;
    stop(kelvin_server).await;
    a.stop().await;
    b.stop().await;
}
