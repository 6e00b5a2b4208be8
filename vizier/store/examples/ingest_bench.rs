//! Store ingest micro benchmark: appends `http_events` batches until the table has been filled
//! `--fill` times over (so eviction runs), then prints one line: rows per second, the store's bytes
//! against its budget, and the process's resident memory.
//!
//! `cargo run -p pixie-store --example ingest_bench -- [--total-mib 128] [--batch-rows 1024] [--fill 3]`

use std::time::{Duration, Instant};

use pixie_store::tables::{ContentType, TraceRole, http_events};
use pixie_store::{StoreBudget, TableStore, Upid};

struct Args {
    total_mib: usize,
    batch_rows: usize,
    fill: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        total_mib: 128,
        batch_rows: 1024,
        fill: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let value: usize = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--total-mib" => args.total_mib = value,
            "--batch-rows" => args.batch_rows = value.max(1),
            "--fill" => args.fill = value.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// A typical traced request: small JSON headers, short bodies, as the socket tracer emits them.
fn template_rows(n: usize) -> Vec<http_events::Row> {
    (0..n)
        .map(|i| http_events::Row {
            time_: 0,
            upid: Upid::new(1, 1000 + (i % 50) as u32, 123_456_789),
            remote_addr: format!("10.0.{}.{}", i % 8, i % 250),
            remote_port: 30_000 + (i % 20_000) as i64,
            local_addr: "10.1.0.7".into(),
            local_port: 8080,
            trace_role: TraceRole::Server.into(),
            major_version: 1,
            minor_version: 1,
            content_type: ContentType::Json.into(),
            req_headers:
                r#"{"Host":"svc.default.svc.cluster.local:8080","User-Agent":"wrk","Accept":"*/*"}"#
                    .into(),
            req_method: if i % 4 == 0 { "POST" } else { "GET" }.into(),
            req_path: format!("/api/v1/items/{}", i % 1000),
            req_body: if i % 4 == 0 {
                r#"{"name":"x","qty":1}"#.into()
            } else {
                String::new()
            },
            req_body_size: if i % 4 == 0 { 20 } else { 0 },
            resp_headers: r#"{"Content-Type":"application/json","Content-Length":"42"}"#.into(),
            resp_status: 200,
            resp_message: "OK".into(),
            resp_body: r#"{"id":123,"name":"x","qty":1,"ok":true}"#.into(),
            resp_body_size: 42,
            latency: 250_000 + (i as i64 % 1000) * 100,
        })
        .collect()
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ingest_bench: {e}");
            std::process::exit(2);
        }
    };
    let store = TableStore::new(StoreBudget {
        total_bytes: args.total_mib * 1024 * 1024,
        ..StoreBudget::default()
    });
    let budget = store
        .stats(http_events::NAME)
        .expect("registered")
        .budget_bytes;
    let mut rows = template_rows(args.batch_rows);
    let batch_bytes = http_events::to_batch(&rows).get_array_memory_size();
    let batches = (budget * args.fill).div_ceil(batch_bytes.max(1));

    let (mut build, mut append) = (Duration::ZERO, Duration::ZERO);
    let mut time_ns = 1_700_000_000_000_000_000i64;
    for _ in 0..batches {
        for row in &mut rows {
            row.time_ = time_ns;
            time_ns += 1_000;
        }
        let t0 = Instant::now();
        let batch = http_events::to_batch(&rows);
        let t1 = Instant::now();
        store
            .append(http_events::NAME, batch)
            .expect("batch fits the budget");
        append += t1.elapsed();
        build += t1 - t0;
    }

    let stats = store.stats(http_events::NAME).expect("registered");
    let total_rows = (batches * args.batch_rows) as f64;
    println!(
        "store_ingest table=http_events batch_rows={} rows={} append_rows_per_s={:.0} build_and_append_rows_per_s={:.0} store_bytes={} budget_bytes={} store_pct_of_budget={:.1} rows_held={} rows_evicted={} rss_bytes={}",
        args.batch_rows,
        total_rows as u64,
        total_rows / append.as_secs_f64(),
        total_rows / (build + append).as_secs_f64(),
        stats.bytes,
        stats.budget_bytes,
        100.0 * stats.bytes as f64 / stats.budget_bytes.max(1) as f64,
        stats.rows,
        stats.rows_evicted,
        rss_bytes().map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
    );
}
