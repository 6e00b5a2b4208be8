//! Delivery to a real OpenTelemetry Collector (OTLP receiver → file exporter), built from the
//! official modules by tests/otelcol/build.sh the first time. Each test runs its own collectors on
//! free loopback ports and reads back what they wrote. Nothing here is timed: waits poll with
//! generous deadlines.

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use pixie_crds::data_export::{GaugeMapping, OtelTableMapping, SpanKind, SpanMapping};
use pixie_export::{
    DeliveryOutcome, OtlpBatch, OtlpSink, RetryPolicy, SinkConfig, SinkStats, TlsMode, map_table,
};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

/// The collector binary, built once per machine (cached outside the repository).
fn collector_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otelcol/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/otelcol/build.sh");
        assert!(output.status.success(), "tests/otelcol/build.sh failed");
        let path = String::from_utf8(output.stdout).unwrap();
        let path = PathBuf::from(
            path.lines()
                .last()
                .expect("build.sh printed the binary path"),
        );
        assert!(path.is_file(), "{} is not a file", path.display());
        path
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Server certificate and key files for the receiver, and the CA that signed them.
struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
}

/// One collector process: OTLP/gRPC on `port`, every metric and span appended to `output` as
/// OTLP JSON lines.
struct Collector {
    child: Child,
    output: PathBuf,
    log: PathBuf,
}

impl Collector {
    fn start(dir: &Path, name: &str, port: u16, tls: Option<&ServerTls>) -> Collector {
        let output = dir.join(format!("{name}.jsonl"));
        let log = dir.join(format!("{name}.log"));
        let config = dir.join(format!("{name}.yaml"));
        let tls = match tls {
            Some(t) => format!(
                "\n        tls:\n          cert_file: {}\n          key_file: {}",
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        fs::write(
            &config,
            format!(
                r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}{tls}
exporters:
  file:
    path: {output}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
                output = output.display()
            ),
        )
        .unwrap();
        let child = Command::new(collector_binary())
            .arg(format!("--config=file:{}", config.display()))
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err.log")).unwrap())
            .spawn()
            .expect("start the collector");
        let mut collector = Collector { child, output, log };
        collector.wait_listening(port);
        collector
    }

    fn wait_listening(&mut self, port: u16) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the collector exited with {status}:\n{}",
                    fs::read_to_string(self.log.with_extension("err.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the collector never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every OTLP JSON line written so far.
    fn lines(&self) -> Vec<Value> {
        fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("the file exporter writes JSON lines"))
            .collect()
    }

    /// Polls the output until `done` holds for what has arrived.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the collector never received {what}; it has: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// Four rows of per-service request counts whose values are `marker * 100 + row`.
fn counts(marker: i64) -> OtlpBatch {
    let rows = batch(vec![
        (
            "service",
            Arc::new(StringArray::from(vec!["cart", "cart", "checkout", "cart"])),
        ),
        (
            "method",
            Arc::new(StringArray::from(vec!["GET", "POST", "GET", "PUT"])),
        ),
        (
            "requests",
            Arc::new(Int64Array::from_iter_values(
                (0..4).map(|i| marker * 100 + i),
            )),
        ),
    ]);
    let mapping = OtelTableMapping {
        table: "counts".into(),
        resource: BTreeMap::from([("service.name".into(), "service".into())]),
        gauges: vec![GaugeMapping {
            name: "px.test.requests".into(),
            description: Some("requests in the window".into()),
            unit: Some("1".into()),
            value_column: "requests".into(),
            attributes: BTreeMap::from([("http.method".into(), "method".into())]),
        }],
        ..Default::default()
    };
    map_table(&rows, &mapping, SystemTime::now()).unwrap()
}

/// Two rows mapped to a latency gauge and to server spans.
fn requests() -> OtlpBatch {
    let rows = batch(vec![
        (
            "time_",
            Arc::new(TimestampNanosecondArray::from(vec![
                1_700_000_000_000_000_000,
                1_700_000_001_000_000_000,
            ])),
        ),
        ("service", Arc::new(StringArray::from(vec!["cart", "cart"]))),
        ("route", Arc::new(StringArray::from(vec!["/buy", "/list"]))),
        ("latency_ms", Arc::new(Float64Array::from(vec![12.5, 3.25]))),
        (
            "start",
            Arc::new(TimestampNanosecondArray::from(vec![
                1_700_000_000_000_000_000,
                1_700_000_001_000_000_000,
            ])),
        ),
        (
            "end",
            Arc::new(TimestampNanosecondArray::from(vec![
                1_700_000_000_012_500_000,
                1_700_000_001_003_250_000,
            ])),
        ),
        (
            "trace_id",
            Arc::new(StringArray::from(vec![
                "0af7651916cd43dd8448eb211c80319c",
                "4bf92f3577b34da6a3ce929d0e0e4736",
            ])),
        ),
        (
            "span_id",
            Arc::new(StringArray::from(vec![
                "b7ad6b7169203331",
                "00f067aa0ba902b7",
            ])),
        ),
    ]);
    let mapping = OtelTableMapping {
        table: "requests".into(),
        resource: BTreeMap::from([("service.name".into(), "service".into())]),
        gauges: vec![GaugeMapping {
            name: "px.test.latency".into(),
            value_column: "latency_ms".into(),
            unit: Some("ms".into()),
            attributes: BTreeMap::from([("http.route".into(), "route".into())]),
            ..Default::default()
        }],
        spans: vec![SpanMapping {
            name_column: Some("route".into()),
            start_time_column: "start".into(),
            end_time_column: "end".into(),
            trace_id_column: Some("trace_id".into()),
            span_id_column: Some("span_id".into()),
            kind: Some(SpanKind::Server),
            ..Default::default()
        }],
        ..Default::default()
    };
    map_table(&rows, &mapping, SystemTime::now()).unwrap()
}

fn quick_retries(endpoint: String, tls: TlsMode) -> SinkConfig {
    SinkConfig {
        timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        ..SinkConfig::new(endpoint, tls)
    }
}

/// `(metric name, resource service.name, point attributes, value as text)` for every gauge point.
fn gauge_points(lines: &[Value]) -> Vec<(String, String, BTreeMap<String, String>, String)> {
    let mut points = Vec::new();
    for line in lines {
        for resource in line["resourceMetrics"].as_array().into_iter().flatten() {
            let service = attribute(&resource["resource"]["attributes"], "service.name");
            for scope in resource["scopeMetrics"].as_array().into_iter().flatten() {
                assert_eq!(scope["scope"]["name"], pixie_export::SCOPE_NAME);
                for metric in scope["metrics"].as_array().into_iter().flatten() {
                    for point in metric["gauge"]["dataPoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let value = match (&point["asInt"], &point["asDouble"]) {
                            (Value::String(i), _) => i.clone(),
                            (_, Value::Number(d)) => d.to_string(),
                            other => panic!("a point without a value: {other:?}"),
                        };
                        points.push((
                            metric["name"].as_str().unwrap().to_owned(),
                            service.clone(),
                            attributes(&point["attributes"]),
                            value,
                        ));
                    }
                }
            }
        }
    }
    points
}

fn spans(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_owned(),
                kv["value"]["stringValue"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn attribute(list: &Value, key: &str) -> String {
    attributes(list).remove(key).unwrap_or_default()
}

fn values_of(lines: &[Value], metric: &str) -> Vec<String> {
    let mut values: Vec<String> = gauge_points(lines)
        .into_iter()
        .filter(|p| p.0 == metric)
        .map(|p| p.3)
        .collect();
    values.sort();
    values
}

fn marker_values(marker: i64) -> Vec<String> {
    (0..4).map(|i| (marker * 100 + i).to_string()).collect()
}

async fn wait_for_stats(sink: &OtlpSink, what: &str, done: impl Fn(&SinkStats) -> bool) {
    let mut stats = sink.subscribe();
    let result = tokio::time::timeout(DEADLINE, stats.wait_for(|s| done(s))).await;
    assert!(
        result.is_ok(),
        "stats never showed {what}: {:?}",
        sink.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_metrics_and_spans_arrive_at_a_real_collector() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let collector = Collector::start(dir.path(), "collector", port, None);
    let sink = OtlpSink::new(quick_retries(
        format!("127.0.0.1:{port}"),
        TlsMode::Insecure,
    ))
    .unwrap();

    let mut run = counts(1);
    run.merge(requests());
    assert_eq!((run.metric_points(), run.spans()), (6, 2));
    let outcome = sink.send(run).wait(DEADLINE).await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Delivered {
            records: 8,
            attempts: 2
        },
        "one metrics and one trace request"
    );

    let lines = collector
        .wait_for("6 points and 2 spans", |lines| {
            gauge_points(lines).len() == 6 && spans(lines).len() == 2
        })
        .await;
    let mut points = gauge_points(&lines);
    points.sort();
    let point = |metric: &str, service: &str, key: &str, attr: &str, value: &str| {
        (
            metric.to_owned(),
            service.to_owned(),
            BTreeMap::from([(key.to_owned(), attr.to_owned())]),
            value.to_owned(),
        )
    };
    assert_eq!(
        points,
        vec![
            point("px.test.latency", "cart", "http.route", "/buy", "12.5"),
            point("px.test.latency", "cart", "http.route", "/list", "3.25"),
            point("px.test.requests", "cart", "http.method", "GET", "100"),
            point("px.test.requests", "cart", "http.method", "POST", "101"),
            point("px.test.requests", "cart", "http.method", "PUT", "103"),
            point("px.test.requests", "checkout", "http.method", "GET", "102"),
        ]
    );

    let mut spans = spans(&lines);
    spans.sort_by_key(|s| s["name"].as_str().unwrap().to_owned());
    let buy = &spans[0];
    assert_eq!(buy["name"], "/buy");
    // OTLP JSON writes IDs as hex and 64-bit numbers as strings.
    assert_eq!(buy["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(buy["spanId"], "b7ad6b7169203331");
    assert_eq!(buy["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(buy["endTimeUnixNano"], "1700000000012500000");
    assert_eq!(buy["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(spans[1]["name"], "/list");

    let stats = sink.stats();
    assert_eq!(
        (
            stats.delivered_records,
            stats.dropped_records,
            stats.failed_attempts,
            stats.queued_records
        ),
        (8, 0, 0, 0)
    );
    assert!(stats.last_success.is_some());
    let stats = sink.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.delivered_records, 8);
    collector.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_fills_the_queue_drops_the_oldest_and_gets_the_rest_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let collector = Collector::start(dir.path(), "first", port, None);
    let sink = OtlpSink::new(SinkConfig {
        max_queued_records: 8,
        ..quick_retries(format!("http://127.0.0.1:{port}"), TlsMode::Insecure)
    })
    .unwrap();

    assert!(sink.send(counts(1)).wait(DEADLINE).await.succeeded());
    collector
        .wait_for("the first batch", |l| {
            values_of(l, "px.test.requests") == marker_values(1)
        })
        .await;
    collector.kill();

    // The receiver is gone: the batch waits, retried with backoff.
    let mut second = sink.send(counts(2));
    wait_for_stats(&sink, "a failed attempt", |s| s.failed_attempts >= 1).await;
    let stats = sink.stats();
    assert!(stats.consecutive_failures >= 1);
    let error = stats.last_error.clone().unwrap();
    assert!(
        error.contains("navailable") || error.contains("connect"),
        "{error}"
    );
    match second.wait(Duration::from_millis(1)).await {
        DeliveryOutcome::Pending {
            queued: 4,
            last_error: Some(_),
            ..
        } => {}
        other => panic!("expected the second batch to be pending, got {other:?}"),
    }

    // 4 + 4 fit in the queue of 8; the fourth batch needs room, so the oldest waiting batch goes
    // (the third instead, if the second is in the middle of a request at that moment).
    let mut third = sink.send(counts(3));
    assert_eq!(sink.stats().dropped_records, 0);
    let mut fourth = sink.send(counts(4));
    let stats = sink.stats();
    assert_eq!(
        (stats.dropped_records, stats.queued_records),
        (4, 8),
        "{stats:?}"
    );

    let second_outcome = second.wait(Duration::from_millis(1)).await;
    let third_outcome = third.wait(Duration::from_millis(1)).await;
    let (dropped_marker, survivor_marker, mut survivor) = match (&second_outcome, &third_outcome) {
        (
            DeliveryOutcome::Dropped {
                dropped: 4,
                delivered: 0,
                ..
            },
            DeliveryOutcome::Pending { .. },
        ) => (2, 3, third),
        (DeliveryOutcome::Pending { .. }, DeliveryOutcome::Dropped { dropped: 4, .. }) => {
            (3, 2, second)
        }
        other => panic!("expected exactly one of two batches dropped, got {other:?}"),
    };

    // The collector comes back on the same port: what is queued arrives, oldest first.
    let collector = Collector::start(dir.path(), "second", port, None);
    assert!(
        sink.flush(DEADLINE).await,
        "the queue never emptied: {:?}",
        sink.stats()
    );
    assert!(survivor.wait(DEADLINE).await.succeeded());
    assert!(fourth.wait(DEADLINE).await.succeeded());
    let lines = collector
        .wait_for("the two queued batches", |l| {
            values_of(l, "px.test.requests").len() == 8
        })
        .await;
    let mut expected = [marker_values(survivor_marker), marker_values(4)].concat();
    expected.sort();
    assert_eq!(values_of(&lines, "px.test.requests"), expected);
    assert!(
        !values_of(&lines, "px.test.requests").contains(&marker_values(dropped_marker)[0]),
        "the dropped batch arrived after all"
    );

    let stats = sink.stats();
    assert_eq!(
        (
            stats.delivered_records,
            stats.dropped_records,
            stats.queued_records,
            stats.consecutive_failures
        ),
        (12, 4, 0, 0)
    );
    assert!(stats.failed_attempts >= 1);
    sink.shutdown(Duration::from_secs(5)).await;
}

fn server_tls(dir: &Path) -> ServerTls {
    let pki = pixie_tests::private_ca(&["otel.test"]);
    let tls = ServerTls {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca_pem: pki.ca_pem,
    };
    fs::write(&tls.cert, pki.cert_pem).unwrap();
    fs::write(&tls.key, pki.key_pem).unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_given_ca_and_server_name_or_skipped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let tls = server_tls(dir.path());
    let port = free_port();
    let collector = Collector::start(dir.path(), "tls", port, Some(&tls));
    let endpoint = format!("127.0.0.1:{port}");

    // The certificate names otel.test, not 127.0.0.1: serverName says what to expect.
    let verified = OtlpSink::new(quick_retries(
        endpoint.clone(),
        TlsMode::Tls {
            ca_pem: Some(tls.ca_pem.clone()),
            server_name: Some("otel.test".into()),
            insecure_skip_verify: false,
        },
    ))
    .unwrap();
    let outcome = verified.send(counts(5)).wait(DEADLINE).await;
    assert!(outcome.succeeded(), "{outcome:?}");

    let skipping = OtlpSink::new(quick_retries(
        format!("https://{endpoint}"),
        TlsMode::Tls {
            ca_pem: None,
            server_name: None,
            insecure_skip_verify: true,
        },
    ))
    .unwrap();
    let outcome = skipping.send(counts(6)).wait(DEADLINE).await;
    assert!(outcome.succeeded(), "{outcome:?}");

    collector
        .wait_for("both TLS batches", |l| {
            values_of(l, "px.test.requests").len() == 8
        })
        .await;

    // The right CA but the wrong name: the handshake fails, so nothing is delivered.
    let wrong_name = OtlpSink::new(quick_retries(
        endpoint,
        TlsMode::Tls {
            ca_pem: Some(tls.ca_pem.clone()),
            server_name: Some("elsewhere.test".into()),
            insecure_skip_verify: false,
        },
    ))
    .unwrap();
    let mut receipt = wrong_name.send(counts(7));
    wait_for_stats(&wrong_name, "a failed handshake", |s| {
        s.failed_attempts >= 1
    })
    .await;
    assert!(
        matches!(
            receipt.wait(Duration::from_millis(1)).await,
            DeliveryOutcome::Pending { .. }
        ),
        "delivered despite a certificate for another name"
    );
    let error = wrong_name.stats().last_error.unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // Shutting down drops what could not be delivered, and counts it.
    let stats = wrong_name.shutdown(Duration::from_millis(200)).await;
    assert_eq!((stats.dropped_records, stats.delivered_records), (4, 0));
    assert!(matches!(
        receipt.wait(DEADLINE).await,
        DeliveryOutcome::Dropped { dropped: 4, .. }
    ));
    drop(collector);
}
