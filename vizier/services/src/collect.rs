//! What `vizier pem` and `vizier standalone` share: the collector's flags, the table store they fill,
//! the runtime, starting the eBPF collector, and stopping on Ctrl-C, SIGTERM or a deadline.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_collector::{Collector, CollectorConfig, CollectorSummary, SocketTraceConfig};
use pixie_store::{StoreBudget, TableStore};

#[derive(Debug, Args)]
pub struct CollectorArgs {
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

impl CollectorArgs {
    pub fn store(&self) -> TableStore {
        TableStore::new(StoreBudget {
            total_bytes: self.store_mb * 1024 * 1024,
            ..Default::default()
        })
    }

    pub fn config(&self) -> CollectorConfig {
        CollectorConfig {
            push_period: self.push_period,
            conn_stats_period: self.conn_stats_period,
            process_stats_period: self.process_stats_period,
            socket_trace: SocketTraceConfig {
                asid: self.asid,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Two workers: the collector runs on the thread that blocks on it, queries on the workers.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Loads and attaches the eBPF programs; call inside the runtime.
pub fn start_collector(args: &CollectorArgs, store: &TableStore) -> anyhow::Result<Collector> {
    Collector::start(args.config(), store.clone())
        .context("starting the collector (root is needed to load eBPF programs)")
}

/// Completes on Ctrl-C, on SIGTERM (how service managers and tests stop us), or after `duration`.
pub async fn shutdown_signal(duration: Option<Duration>) {
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            // Without a SIGTERM handler Ctrl-C and the deadline still work.
            Err(_) => std::future::pending().await,
        }
    };
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
        _ = deadline => {}
    }
}

pub fn log_summary(role: &str, summary: &CollectorSummary, store: &TableStore) {
    tracing::info!(
        events = summary.connector.events,
        http_records = summary.connector.http_records,
        lost_events = summary.kernel.lost_events,
        decode_errors = summary.decode_errors,
        append_errors = summary.append_errors,
        rows_pushed = ?summary.rows_pushed,
        "{role} stopped"
    );
    for table in store.table_names() {
        if let Ok(stats) = store.stats(&table) {
            tracing::info!(table, ?stats, "table store");
        }
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
