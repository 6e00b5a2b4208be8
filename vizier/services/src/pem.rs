//! `vizier pem`: the collector and the table store on this host, optionally printing every row as
//! it is pushed.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pixie_collector::{Collector, CollectorConfig, SocketTraceConfig};
use pixie_store::tables::{self, conn_stats, http_events, process_stats};
use pixie_store::{StoreBudget, TableStore};

use crate::print;

#[derive(Debug, Args)]
pub struct PemArgs {
    /// Print every captured row on stdout as it reaches the store, one line per row.
    #[arg(long)]
    print: bool,
    /// Tables to print (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    tables: Vec<String>,
    /// Stop after this long (e.g. 30s, 500ms, 2m); runs until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How often completed http_events rows are pushed to the store.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    push_period: Duration,
    /// How often conn_stats is sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    conn_stats_period: Duration,
    /// How often process_stats is sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    process_stats_period: Duration,
    /// This agent's short id, the first part of every upid.
    #[arg(long, default_value_t = 0)]
    asid: u32,
    /// Table store memory, in MiB (Pixie's PL_TABLE_STORE_DATA_LIMIT_MB).
    #[arg(long, default_value_t = 1280)]
    store_mb: usize,
}

pub fn run(args: PemArgs) -> anyhow::Result<()> {
    let known: Vec<&str> = tables::all().into_iter().map(|(name, _)| name).collect();
    let printed: HashSet<String> = if args.tables.is_empty() {
        known.iter().map(|t| t.to_string()).collect()
    } else {
        for t in &args.tables {
            if !known.contains(&t.as_str()) {
                bail!("unknown table {t:?}; known tables: {}", known.join(", "));
            }
        }
        args.tables.iter().cloned().collect()
    };

    let store = TableStore::new(StoreBudget {
        total_bytes: args.store_mb * 1024 * 1024,
        ..Default::default()
    });
    let config = CollectorConfig {
        push_period: args.push_period,
        conn_stats_period: args.conn_stats_period,
        process_stats_period: args.process_stats_period,
        socket_trace: SocketTraceConfig {
            asid: args.asid,
            ..Default::default()
        },
        ..Default::default()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let summary = runtime.block_on(async {
        let mut collector = Collector::start(config, store.clone())
            .context("starting the collector (root is needed to load eBPF programs)")?;
        if args.print {
            collector = collector.with_sink(Box::new(move |table, batch| {
                if printed.contains(table) {
                    print_batch(table, batch);
                }
            }));
        }
        let duration = args.duration;
        let shutdown = async move {
            match duration {
                Some(d) => tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => {}
                },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        collector.run(shutdown).await.context("collector stopped")
    })?;

    tracing::info!(
        events = summary.connector.events,
        http_records = summary.connector.http_records,
        lost_events = summary.kernel.lost_events,
        decode_errors = summary.decode_errors,
        append_errors = summary.append_errors,
        rows_pushed = ?summary.rows_pushed,
        "pem stopped"
    );
    for table in store.table_names() {
        if let Ok(stats) = store.stats(&table) {
            tracing::info!(table, ?stats, "table store");
        }
    }
    Ok(())
}

fn print_batch(table: &str, batch: &arrow::array::RecordBatch) {
    let lines: Vec<String> = match table {
        http_events::NAME => rows(http_events::from_batch(batch), print::http_event),
        conn_stats::NAME => rows(conn_stats::from_batch(batch), print::conn_stat),
        process_stats::NAME => rows(process_stats::from_batch(batch), print::process_stat),
        other => vec![format!("{other}: {} rows", batch.num_rows())],
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A closed stdout (e.g. `| head`) must not stop collection.
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

fn rows<R>(
    decoded: Result<Vec<R>, pixie_store::StoreError>,
    format: fn(&R) -> String,
) -> Vec<String> {
    match decoded {
        Ok(rows) => rows.iter().map(format).collect(),
        Err(e) => vec![format!("(undecodable batch: {e})")],
    }
}

/// `250ms`, `30s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
