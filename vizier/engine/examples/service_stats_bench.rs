//! `make bench-pxl`: the service-stats aggregation (per service and 10 s window: p50/p99 latency,
//! error rate, request and byte throughput) over generated http_events rows, run by our engine
//! (PxL → DataFusion over the table store) and by DuckDB on the same rows, in the same run.
//!
//! Data: `ROWS` rows (10 million by default) spread over 30 minutes, from 32 server processes
//! (upids) of 8 services; the same seed gives the same rows. Services are not a column, as in Pixie:
//! PxL resolves `df.ctx['service']` from the upid through a fixed metadata resolver (a map from the
//! 32 upids), and DuckDB joins the same map as a table. The rows go into our table store in 100 000-row
//! batches, and once into a Parquet file that DuckDB loads into memory before its timed runs, so both
//! sides query data already in memory. Each side runs `RUNS` times (3); the best time counts.
//!
//! Prints one line: both times and their ratio. Exits non-zero if the two disagree on the number of
//! groups, requests or errors, so a broken query cannot produce a fast-looking number.
//!
//! Environment: `ROWS`, `RUNS`, `PYTHON` (default `python3`, which needs the `duckdb` package).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::parquet::arrow::ArrowWriter;
use pixie_engine::{Engine, EngineConfig, Query};
use pixie_pxl::{MetadataField, MetadataResolver};
use pixie_store::tables::http_events;
use pixie_store::{StoreBudget, TableStore, Upid};

const SERVICES: [&str; 8] = [
    "frontend", "cart", "checkout", "catalog", "payment", "shipping", "email", "ads",
];
const PODS_PER_SERVICE: u32 = 4;
/// The instant the data ends at, and what `px.now()` means in the script.
const NOW_NS: i64 = 1_764_000_000_000_000_000;
const SPAN_NS: i64 = 30 * 60 * 1_000_000_000;
const BATCH_ROWS: usize = 100_000;

const SCRIPT: &str = r#"
import px
df = px.DataFrame(table='http_events', start_time='-30m')
df.service = df.ctx['service']
df.timestamp = px.bin(df.time_, px.DurationNanos(10 * 1000 * 1000 * 1000))
df.failure = df.resp_status >= 400
df = df.groupby(['service', 'timestamp']).agg(
    latency_quantiles=('latency', px.quantiles),
    error_rate=('failure', px.mean),
    requests=('latency', px.count),
    resp_bytes=('resp_body_size', px.sum),
)
df.latency_p50 = px.pluck_float64(df.latency_quantiles, 'p50')
df.latency_p99 = px.pluck_float64(df.latency_quantiles, 'p99')
df.request_throughput = df.requests / 10.0
df.bytes_throughput = df.resp_bytes / 10.0
px.display(df[['service', 'timestamp', 'latency_p50', 'latency_p99', 'error_rate', 'requests', 'request_throughput', 'bytes_throughput']], 'service_stats')
"#;

/// DuckDB's side: load once, run the same aggregation `runs` times, report the best time and what
/// came out. `approx_quantile` is a t-digest, as our `px.quantiles`.
const DUCKDB_PY: &str = r#"
import json, sys, time
import duckdb

events, services, runs, start_ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
# Long queries draw a progress bar on stdout, which is where the JSON report goes.
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE http_events AS SELECT * FROM read_parquet('{events}')")
con.execute(f"CREATE TABLE services AS SELECT * FROM read_parquet('{services}')")
query = f"""
SELECT s.service,
       (epoch_ns(h.time_) // 10000000000) * 10000000000 AS timestamp,
       approx_quantile(h.latency, 0.5) AS latency_p50,
       approx_quantile(h.latency, 0.99) AS latency_p99,
       avg(CASE WHEN h.resp_status >= 400 THEN 1.0 ELSE 0.0 END) AS error_rate,
       count(*) AS requests,
       count(*) / 10.0 AS request_throughput,
       sum(h.resp_body_size) / 10.0 AS bytes_throughput
FROM http_events h JOIN services s ON h.upid = s.upid
WHERE epoch_ns(h.time_) >= {start_ns}
GROUP BY 1, 2
"""
best = None
for _ in range(runs):
    t = time.perf_counter()
    rows = con.execute(query).fetchall()
    elapsed = time.perf_counter() - t
    best = elapsed if best is None else min(best, elapsed)
errors = round(sum(float(r[4]) * r[5] for r in rows))
print(json.dumps({"seconds": best, "groups": len(rows), "rows": sum(r[5] for r in rows), "errors": errors}))
"#;

/// The fixed upid → service map behind `df.ctx['service']`.
#[derive(Debug)]
struct FixedServices(HashMap<String, &'static str>);

impl MetadataResolver for FixedServices {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        let service = self.0.get(upid)?;
        match field {
            MetadataField::Service => Some(service.to_string()),
            MetadataField::Namespace => Some("bench".into()),
            _ => None,
        }
    }
}

fn upids() -> Vec<(String, &'static str)> {
    SERVICES
        .iter()
        .enumerate()
        .flat_map(|(s, name)| {
            (0..PODS_PER_SERVICE).map(move |p| {
                let pid = 1000 + s as u32 * 10 + p;
                (Upid::new(0, pid, 5000 + u64::from(pid)).to_string(), *name)
            })
        })
        .collect()
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Rows `[first, first + n)` of the generated table, in time order.
fn generate(
    first: usize,
    n: usize,
    total: usize,
    upids: &[(String, &str)],
    rng: &mut Rng,
) -> RecordBatch {
    let start = NOW_NS - SPAN_NS;
    let step = SPAN_NS as f64 / total as f64;
    let mut time = Vec::with_capacity(n);
    let mut upid = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut latency = Vec::with_capacity(n);
    let mut resp_size = Vec::with_capacity(n);
    let mut path = Vec::with_capacity(n);
    for i in first..first + n {
        time.push(start + (i as f64 * step) as i64);
        let u = (rng.next() % upids.len() as u64) as usize;
        upid.push(upids[u].0.as_str());
        let service = u / PODS_PER_SERVICE as usize;
        // Errors: 1 % to 8 % depending on the service.
        let r = rng.unit();
        let error_rate = 0.01 * (1 + service % 8) as f64;
        status.push(if r < error_rate * 0.7 {
            500
        } else if r < error_rate {
            404
        } else {
            200
        });
        // Long-tailed latency around a per-service base, 0.5 ms to a few hundred ms.
        let base = 500_000.0 * (1 + service) as f64;
        let tail = rng.unit().powi(8) * 200.0;
        latency.push((base * (0.5 + rng.unit() + tail)) as i64);
        resp_size.push((rng.next() % 16_384) as i64);
        path.push(["/", "/api/items", "/api/cart", "/healthz"][(rng.next() % 4) as usize]);
    }
    let constant =
        |v: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n))) as ArrayRef;
    let int =
        |v: i64| Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(v, n))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(time)),
        Arc::new(StringArray::from(upid)),
        constant("10.0.0.1"),
        int(43210),
        constant("10.0.0.2"),
        int(8080),
        int(2),
        int(1),
        int(1),
        int(1),
        constant("{}"),
        constant("GET"),
        Arc::new(StringArray::from(path)),
        constant(""),
        int(0),
        constant("{}"),
        Arc::new(Int64Array::from(status)),
        constant("OK"),
        constant(""),
        Arc::new(Int64Array::from(resp_size)),
        Arc::new(Int64Array::from(latency)),
    ];
    RecordBatch::try_new(http_events::schema(), columns).expect("columns follow the schema")
}

fn write_parquet(
    path: &Path,
    batches: impl Iterator<Item = RecordBatch>,
    schema: arrow::datatypes::SchemaRef,
) {
    let file = std::fs::File::create(path).expect("creating the parquet file");
    let mut writer = ArrowWriter::try_new(file, schema, None).expect("parquet writer");
    for batch in batches {
        writer.write(&batch).expect("writing parquet");
    }
    writer.close().expect("closing parquet");
}

struct Outcome {
    seconds: f64,
    groups: usize,
    rows: i64,
    /// Requests with status >= 400, from each group's error rate times its requests.
    errors: i64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3} s ({} groups, {} rows, {} errors)",
            self.seconds, self.groups, self.rows, self.errors
        )
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let total = env_usize("ROWS", 10_000_000);
    let runs = env_usize("RUNS", 3).max(1);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let upids = upids();
    let dir = tempfile::tempdir().expect("temp dir");
    let events_path = dir.path().join("http_events.parquet");
    let services_path = dir.path().join("services.parquet");

    // Generate once, into the store and into Parquet.
    let generated = Instant::now();
    let store = TableStore::new(StoreBudget {
        total_bytes: 64 << 30,
        http_events_percent: 100,
    });
    let mut rng = Rng(0x5eed);
    let file = std::fs::File::create(&events_path).expect("creating the parquet file");
    let mut parquet =
        ArrowWriter::try_new(file, http_events::schema(), None).expect("parquet writer");
    let mut first = 0;
    while first < total {
        let n = BATCH_ROWS.min(total - first);
        let batch = generate(first, n, total, &upids, &mut rng);
        parquet.write(&batch).expect("writing parquet");
        store
            .append(http_events::NAME, batch)
            .expect("appending to the store");
        first += n;
    }
    parquet.close().expect("closing parquet");
    let services = RecordBatch::try_from_iter([
        (
            "upid",
            Arc::new(StringArray::from_iter_values(
                upids.iter().map(|(u, _)| u.as_str()),
            )) as ArrayRef,
        ),
        (
            "service",
            Arc::new(StringArray::from_iter_values(upids.iter().map(|(_, s)| *s))) as ArrayRef,
        ),
    ])
    .expect("services batch");
    write_parquet(
        &services_path,
        std::iter::once(services.clone()),
        services.schema(),
    );
    eprintln!(
        "generated {total} rows in {:.1} s ({} MiB in the store)",
        generated.elapsed().as_secs_f64(),
        store
            .stats(http_events::NAME)
            .map(|s| s.bytes >> 20)
            .unwrap_or(0)
    );

    let ours = run_engine(&store, &upids, runs);
    eprintln!("pixie-engine: {ours}");
    let duck = run_duckdb(&python, &events_path, &services_path, runs);
    eprintln!("duckdb:       {duck}");

    println!(
        "service_stats over {total} http_events rows ({} groups): pixie-engine {:.3} s, duckdb {:.3} s, ratio {:.2} (engine / duckdb; best of {runs})",
        ours.groups,
        ours.seconds,
        duck.seconds,
        ours.seconds / duck.seconds
    );
    if (ours.groups, ours.rows, ours.errors) != (duck.groups, duck.rows, duck.errors) {
        eprintln!("the two engines disagree: pixie-engine {ours}, duckdb {duck}");
        std::process::exit(1);
    }
}

fn run_engine(store: &TableStore, upids: &[(String, &'static str)], runs: usize) -> Outcome {
    let resolver = FixedServices(upids.iter().cloned().collect());
    let engine = Engine::new(store, Arc::new(resolver), EngineConfig::default())
        .expect("starting the engine");
    let mut query = Query::pxl(SCRIPT);
    query.now_ns = Some(NOW_NS);
    query.max_rows = Some(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut best: Option<Outcome> = None;
    for _ in 0..runs {
        let started = Instant::now();
        let (outputs, _) = runtime
            .block_on(engine.collect(&query))
            .unwrap_or_else(|e| panic!("service_stats failed: {e}"));
        let seconds = started.elapsed().as_secs_f64();
        let (_, batches) = outputs.into_iter().next().expect("one output");
        let outcome = summarize(&batches, seconds);
        if best.as_ref().is_none_or(|b| outcome.seconds < b.seconds) {
            best = Some(outcome);
        }
    }
    best.expect("at least one run")
}

/// Groups, requests and errors of the engine's output, to check against DuckDB's.
fn summarize(batches: &[RecordBatch], seconds: f64) -> Outcome {
    let Some(first) = batches.first() else {
        return Outcome {
            seconds,
            groups: 0,
            rows: 0,
            errors: 0,
        };
    };
    let all = concat_batches(&first.schema(), batches).expect("same schema");
    let column = |name: &str, ty: DataType| {
        let array = all
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no {name} column"));
        cast(array, &ty).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let requests = column("requests", DataType::Int64);
    let requests = requests.as_primitive::<Int64Type>();
    let error_rate = column("error_rate", DataType::Float64);
    let error_rate = error_rate.as_primitive::<Float64Type>();
    let errors: f64 = requests
        .values()
        .iter()
        .zip(error_rate.values().iter())
        .map(|(n, rate)| *n as f64 * rate)
        .sum();
    Outcome {
        seconds,
        groups: all.num_rows(),
        rows: requests.values().iter().sum(),
        errors: errors.round() as i64,
    }
}

fn run_duckdb(python: &str, events: &Path, services: &Path, runs: usize) -> Outcome {
    let start_ns = NOW_NS - SPAN_NS;
    let output = Command::new(python)
        .args(["-c", DUCKDB_PY])
        .arg(events)
        .arg(services)
        .arg(runs.to_string())
        .arg(start_ns.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    if !output.status.success() {
        panic!(
            "duckdb side failed ({}); `pip install duckdb`?\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("duckdb side should end with one JSON line ({e}):\n{stdout}"));
    Outcome {
        seconds: report["seconds"].as_f64().expect("seconds"),
        groups: report["groups"].as_u64().expect("groups") as usize,
        rows: report["rows"].as_i64().expect("rows"),
        errors: report["errors"].as_i64().expect("errors"),
    }
}
