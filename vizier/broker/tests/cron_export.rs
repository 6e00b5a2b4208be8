//! End to end, as root on this host against the real test control plane: `vizier standalone` (the
//! real eBPF collector and query API) traces a Python HTTP server; a CronScript every 10 s counts
//! its requests per method over each run's window; the broker (in-process, scoped to the test's
//! namespace) runs it and delivers the counts through a DataExport to a real OpenTelemetry
//! Collector (tests/otelcol/build.sh), whose file exporter the test reads back.
//!
//! - the exported values add up to exactly the requests the client made, and status says so;
//! - with the collector gone, runs fail, status and Events say why, the bounded queue's drops are
//!   counted; with it back, deliveries succeed again and the drops stay reported;
//! - two broker replicas run each tick once, and the survivor carries on when the leader goes.

use std::collections::BTreeSet;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use pixie_broker::{LeaseSettings, Settings};
use pixie_crds::{CronScript, DataExport, Vizier};
use pixie_tests::{ChildGuard, PythonHttpServer, ResponseStatus, TestCluster, Traffic, first_line};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(120);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "\n\n******** SKIPPED {test}: vizier standalone loads eBPF programs, which needs root ********\n"
    );
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `vizier` binary of this build (another package's binary, so built here first).
fn vizier_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "pixie-vizier", "--bin", "vizier"])
                .status()
                .expect("run cargo build -p pixie-vizier");
            assert!(status.success(), "cargo build -p pixie-vizier failed");
            // target/debug/deps/cron_export-… → target/debug/vizier
            let exe = std::env::current_exe().unwrap();
            let path = exe.parent().and_then(Path::parent).unwrap().join("vizier");
            assert!(path.is_file(), "{} was not built", path.display());
            path
        })
        .clone()
}

fn collector_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otelcol/build.sh");
            let output = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .expect("run build.sh");
            assert!(output.status.success(), "tests/otelcol/build.sh failed");
            let stdout = String::from_utf8(output.stdout).unwrap();
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("build.sh prints the binary path"),
            )
        })
        .clone()
}

/// `vizier standalone` tracing this host, and its query API address.
fn start_vizier(dir: &Path) -> (ChildGuard, String) {
    let log = dir.join("vizier.log");
    let mut child = ChildGuard(
        Command::new(vizier_binary())
            .args(["standalone", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start vizier standalone"),
    );
    let line = first_line(&mut child.0, Duration::from_secs(90)).unwrap_or_else(|| {
        panic!(
            "vizier printed no address\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let addr = line
        .trim()
        .strip_prefix("vizier standalone listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    (child, addr)
}

/// `bursts` bursts of `per_burst` requests (GET, POST, PUT in turn) to `/<nonce>/<burst>/<i>`,
/// `pause_s` seconds apart; each POST and PUT carries one byte.
fn request_bursts(nonce: &str, bursts: u64, per_burst: usize, pause_s: f64) -> Traffic {
    let methods = ["GET", "POST", "PUT"];
    Traffic {
        burst: (0..per_burst)
            .map(|i| (methods[i % 3].to_owned(), format!("/{nonce}/{{burst}}/{i}")))
            .collect(),
        bursts,
        pause: Duration::from_secs_f64(pause_s),
        body_len: 1,
    }
}

/// An OpenTelemetry Collector: OTLP/gRPC on `port`, metrics appended to a file as OTLP JSON lines.
struct Collector {
    child: ChildGuard,
    output: PathBuf,
}

impl Collector {
    fn start(dir: &Path, name: &str, port: u16) -> Collector {
        let output = dir.join(format!("{name}.jsonl"));
        let config = dir.join(format!("{name}.yaml"));
        let log = dir.join(format!("{name}.log"));
        fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\n\
                 exporters:\n  file:\n    path: {}\n    flush_interval: 100ms\n\
                 service:\n  telemetry:\n    metrics:\n      level: none\n  \
                 pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [file]\n",
                output.display()
            ),
        )
        .unwrap();
        let mut child = ChildGuard(
            Command::new(collector_binary())
                .arg(format!("--config=file:{}", config.display()))
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("start the collector"),
        );
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!(
                    "the collector exited with {status}:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the collector never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Collector { child, output }
    }

    /// Every data point of gauge `metric` received so far: (value, attributes as text).
    fn points(&self, metric: &str) -> Vec<(i64, String)> {
        let text = fs::read_to_string(&self.output).unwrap_or_default();
        let mut points = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let request: Value =
                serde_json::from_str(line).expect("the file exporter writes JSON lines");
            for resource in request["resourceMetrics"].as_array().into_iter().flatten() {
                for scope in resource["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in scope["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|m| m["name"] == metric)
                    {
                        for point in m["gauge"]["dataPoints"].as_array().into_iter().flatten() {
                            // OTLP JSON writes 64-bit integers as strings.
                            let value = match &point["asInt"] {
                                Value::String(s) => s.parse().unwrap(),
                                other => other
                                    .as_i64()
                                    .unwrap_or_else(|| panic!("not an int point: {point}")),
                            };
                            points.push((value, point["attributes"].to_string()));
                        }
                    }
                }
            }
        }
        points
    }
}

/// The broker, in-process, until the returned sender is dropped or fired.
fn start_broker(
    client: Client,
    settings: Settings,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = pixie_broker::run(client, settings, shutdown).await {
            panic!("the broker failed: {e}");
        }
    });
    (stop, task)
}

async fn create_vizier(client: &Client, namespace: &str) {
    let mut vizier = Vizier::test();
    vizier.metadata.namespace = Some(namespace.to_owned());
    vizier.metadata.generation = None;
    Api::<Vizier>::namespaced(client.clone(), namespace)
        .create(&Default::default(), &vizier)
        .await
        .expect("create the Vizier");
}

fn counting_script(port: u16, nonce: &str) -> String {
    format!(
        "import px\n\
         df = px.DataFrame(table='http_events', start_time=px.plugin.start_time, end_time=px.plugin.end_time)\n\
         df = df[df.local_port == {port}]\n\
         df = df[px.contains(df.req_path, '{nonce}')]\n\
         df = df.groupby(['req_method']).agg(requests=('latency', px.count))\n\
         df.service = 'cron-e2e'\n\
         px.display(df, 'requests')\n"
    )
}

async fn status_of<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object = api.get(name).await.unwrap();
    serde_json::to_value(&object).unwrap()["status"].clone()
}

/// Polls `check` on the object's status until it returns Some, or fails with the last status.
async fn wait_status<K, T>(
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> Option<T>,
) -> T
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        let status = status_of(api, name).await;
        if let Some(found) = check(&status) {
            return found;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{name} never showed {what}; status: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn time_of(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok()
}

async fn events(client: &Client, namespace: &str, kind: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_export_the_traced_requests_and_report_outages_and_drops() {
    if skip_unless_root("cron_runs_export_the_traced_requests_and_report_outages_and_drops") {
        return;
    }
    let cluster = TestCluster::shared();
    cluster.install_crds();
    let client = cluster.client().await;
    let namespace = cluster.fresh_namespace(&client, "cron-export").await;
    create_vizier(&client, &namespace).await;

    let dir = tempfile::tempdir().unwrap();
    let (_vizier, query_addr) = start_vizier(dir.path());
    let server = PythonHttpServer::start(dir.path(), ResponseStatus::Fixed(200));
    let port = server.port();
    let collector_port = free_port();
    let collector = Collector::start(dir.path(), "collector", collector_port);
    let nonce = format!(
        "cron-e2e-{}-{}",
        std::process::id(),
        Timestamp::now().as_millisecond()
    );

    let exports: Api<DataExport> = Api::namespaced(client.clone(), &namespace);
    let export: DataExport = serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1", "kind": "DataExport",
        "metadata": {"name": "otel"},
        "spec": {
            "sink": {"otlpGrpc": {"endpoint": format!("127.0.0.1:{collector_port}"), "tls": {"insecure": true}, "timeout": "2s"}},
            "otel": {"tables": [{
                "table": "requests",
                "resource": {"service.name": "service"},
                "gauges": [{"name": "e2e.http.requests", "valueColumn": "requests", "attributes": {"http.method": "req_method"}}]
            }]}
        }
    }))
    .unwrap();
    exports.create(&Default::default(), &export).await.unwrap();

    let mut settings = Settings::new(&namespace, "pixie", &query_addr);
    // A small queue, so that an outage of a few runs overflows it.
    settings.max_queued_records = 4;
    settings.delivery_wait = Duration::from_secs(3);
    let (stop_broker, broker) = start_broker(cluster.client().await, settings);

    let crons: Api<CronScript> = Api::namespaced(client.clone(), &namespace);
    let cron: CronScript = serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1", "kind": "CronScript",
        "metadata": {"name": "http-counts"},
        "spec": {
            "source": counting_script(port, &nonce),
            "frequency": "10s",
            "vizierRef": {"name": "pixie"},
            "exportRefs": [{"name": "otel"}]
        }
    }))
    .unwrap();
    crons.create(&Default::default(), &cron).await.unwrap();

    // The first run covers time before any traffic; the requests all fall in later windows.
    let first = wait_status(&crons, "http-counts", "a first successful run", |s| {
        (s["lastRun"]["outcome"] == "Succeeded")
            .then(|| time_of(&s["lastRun"]["startTime"]).unwrap())
    })
    .await;
    assert!(time_of(&status_of(&crons, "http-counts").await["nextRunTime"]).unwrap() > first);

    let made = server.send(&request_bursts(&nonce, 4, 15, 3.0)) as i64;
    assert_eq!(made, 60);
    let traffic_end = Timestamp::now();

    // Wait for a run whose window ends after the last request, noting every run on the way: all
    // must succeed (a failed one would have lost its window), and some saw the requests.
    let rows_seen = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = rows_seen.clone();
    wait_status(&crons, "http-counts", "a run after the traffic", move |s| {
        let run = &s["lastRun"];
        assert_ne!(run["outcome"], "Failed", "a run failed: {s:#}");
        if let Some(rows) = run["rows"].as_i64() {
            seen.lock().unwrap().insert(rows);
        }
        let start = time_of(&run["startTime"])?;
        (run["outcome"] == "Succeeded" && start > traffic_end).then_some(())
    })
    .await;
    assert!(
        rows_seen.lock().unwrap().iter().any(|r| *r > 0),
        "no run saw the requests: rows {:?}",
        rows_seen.lock().unwrap()
    );

    let start = Instant::now();
    let points = loop {
        let points = collector.points("e2e.http.requests");
        if points.iter().map(|(v, _)| v).sum::<i64>() >= made
            || start.elapsed() > Duration::from_secs(20)
        {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exported: i64 = points.iter().map(|(v, _)| v).sum();
    assert_eq!(
        exported, made,
        "the exported counts must add up to the requests made: {points:?}"
    );
    for method in ["GET", "POST", "PUT"] {
        assert!(
            points.iter().any(|(_, a)| a.contains(method)),
            "no point for {method}: {points:?}"
        );
    }
    let status = status_of(&crons, "http-counts").await;
    assert_eq!(status["consecutiveFailures"], 0);
    assert_eq!(
        condition(&status, "Degraded").unwrap()["reason"],
        "LastRunSucceeded"
    );
    let delivered = status_of(&exports, "otel").await;
    assert_eq!(
        delivered["lastDelivery"]["succeeded"], true,
        "{delivered:#}"
    );
    assert_eq!(delivered["lastDelivery"]["cronScript"], "http-counts");

    // The collector goes away while traffic goes on: runs fail, the queue overflows.
    let mut traffic = ChildGuard(
        server
            .client(&request_bursts(&nonce, 10_000, 6, 1.0))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let Collector {
        child: mut dead, ..
    } = collector;
    dead.terminate();
    let failing = wait_status(&crons, "http-counts", "failing runs", |s| {
        let degraded = condition(s, "Degraded")?;
        (s["lastRun"]["outcome"] == "Failed"
            && s["consecutiveFailures"].as_i64()? >= 2
            && degraded["status"] == "True"
            && degraded["reason"] == "ExportFailed")
            .then(|| s.clone())
    })
    .await;
    assert!(
        failing["lastRun"]["error"]
            .as_str()
            .unwrap()
            .contains("DataExport \"otel\""),
        "{failing:#}"
    );
    let overflowing = wait_status(&exports, "otel", "failing deliveries with drops", |s| {
        let degraded = condition(s, "Degraded")?;
        (s["lastDelivery"]["succeeded"] == false
            && degraded["status"] == "True"
            && degraded["reason"] == "DeliveryFailing"
            && s["failureCount"].as_i64()? >= 2
            && s["droppedRecords"].as_i64()? > 0)
            .then(|| s.clone())
    })
    .await;
    let dropped = overflowing["droppedRecords"].as_i64().unwrap();
    assert!(
        condition(&overflowing, "Degraded").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("dropped")
    );
    let run_events = events(&client, &namespace, "CronScript", "http-counts").await;
    assert!(
        run_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ExportFailed")
                && e.type_.as_deref() == Some("Warning")),
        "no ExportFailed event: {run_events:#?}"
    );
    let export_events = events(&client, &namespace, "DataExport", "otel").await;
    assert!(
        export_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DeliveryFailing")),
        "no DeliveryFailing event: {export_events:#?}"
    );

    // Back again on the same port: deliveries succeed, and the drops stay on record.
    let revived = Collector::start(dir.path(), "revived", collector_port);
    wait_status(
        &exports,
        "otel",
        "a successful delivery after the outage",
        |s| {
            (s["lastDelivery"]["succeeded"] == true
                && condition(s, "Degraded")?["status"] == "False")
                .then_some(())
        },
    )
    .await;
    wait_status(
        &crons,
        "http-counts",
        "a successful run after the outage",
        |s| {
            (s["lastRun"]["outcome"] == "Succeeded"
                && s["consecutiveFailures"] == 0
                && condition(s, "Degraded")?["status"] == "False")
                .then_some(())
        },
    )
    .await;
    let recovered = status_of(&exports, "otel").await;
    assert!(
        recovered["droppedRecords"].as_i64().unwrap() >= dropped,
        "drops must stay reported: {recovered:#}"
    );
    let start = Instant::now();
    while revived.points("e2e.http.requests").is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "nothing reached the revived collector"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    traffic.terminate();
    let _ = stop_broker.send(());
    broker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broker_replicas_run_each_tick_once_and_the_survivor_takes_over() {
    if skip_unless_root("two_broker_replicas_run_each_tick_once_and_the_survivor_takes_over") {
        return;
    }
    let cluster = TestCluster::shared();
    cluster.install_crds();
    let client = cluster.client().await;
    let namespace = cluster.fresh_namespace(&client, "cron-ha").await;
    create_vizier(&client, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let (_vizier, query_addr) = start_vizier(dir.path());

    let crons: Api<CronScript> = Api::namespaced(client.clone(), &namespace);
    let cron: CronScript = serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1", "kind": "CronScript",
        "metadata": {"name": "ticks"},
        "spec": {
            "source": "import px\n\
                       df = px.DataFrame(table='http_events', start_time=px.plugin.start_time, end_time=px.plugin.end_time)\n\
                       df = df.groupby(['trace_role']).agg(n=('latency', px.count))\n\
                       px.display(df, 'roles')\n",
            "frequency": "10s",
            "vizierRef": {"name": "pixie"}
        }
    }))
    .unwrap();
    crons.create(&Default::default(), &cron).await.unwrap();

    // Every lastRun the API server ever holds, from a watch (polling could miss a quick rewrite).
    let runs = Arc::new(Mutex::new(Vec::<(Timestamp, String)>::new()));
    let recorded = runs.clone();
    let watch_api = crons.clone();
    let watching = tokio::spawn(async move {
        let config = watcher::Config::default().fields("metadata.name=ticks");
        let mut stream = watcher(watch_api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(cron)) = stream.next().await {
            if let Some(run) = cron.status.and_then(|s| s.last_run) {
                let outcome = format!("{:?}", run.outcome);
                let mut runs = recorded.lock().unwrap();
                if runs.last().is_none_or(|(t, _)| *t != run.start_time.0) {
                    runs.push((run.start_time.0, outcome));
                }
            }
        }
    });

    let lease_name = format!("pixie-broker-{}", namespace);
    let replica = |identity: &str| {
        let mut settings = Settings::new(&namespace, "pixie", &query_addr);
        settings.instance = identity.to_owned();
        settings.lease = Some(LeaseSettings {
            name: lease_name.clone(),
            identity: identity.to_owned(),
            duration_secs: 6,
            grace_secs: 2,
        });
        settings
    };
    let (stop_a, broker_a) = start_broker(cluster.client().await, replica("replica-a"));
    let (stop_b, broker_b) = start_broker(cluster.client().await, replica("replica-b"));

    let wait_runs = |count: usize| {
        let runs = runs.clone();
        async move {
            let start = Instant::now();
            while runs.lock().unwrap().len() < count {
                assert!(
                    start.elapsed() < DEADLINE,
                    "only {:?} runs",
                    runs.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_runs(3).await;

    // The leader goes away (its process would die; here its future is dropped mid-term).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let holder = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap();
    let (survivor, stop_survivor, survivor_task) = match holder.as_str() {
        "replica-a" => {
            broker_a.abort();
            drop(stop_a);
            ("replica-b", stop_b, broker_b)
        }
        "replica-b" => {
            broker_b.abort();
            drop(stop_b);
            ("replica-a", stop_a, broker_a)
        }
        other => panic!("unexpected lease holder {other:?}"),
    };
    let before = runs.lock().unwrap().len();
    wait_runs(before + 3).await;
    let holder = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap();
    assert_eq!(holder, survivor);

    let runs = runs.lock().unwrap().clone();
    assert!(
        runs.iter().all(|(_, outcome)| outcome == "Succeeded"),
        "{runs:?}"
    );
    // One run per tick: no two runs start within the same 10 s tick. (A takeover may leave a
    // gap, and runs the latest missed tick once, late, but never twice.)
    let ticks: BTreeSet<i64> = runs
        .iter()
        .map(|(t, _)| t.as_second().div_euclid(10))
        .collect();
    assert_eq!(ticks.len(), runs.len(), "two runs in one tick: {runs:?}");

    watching.abort();
    let _ = stop_survivor.send(());
    survivor_task.await.unwrap();
}
