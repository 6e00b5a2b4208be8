//! What `vizier pem` and `vizier standalone` share: the collector's flags, the table store they fill,
//! the runtime, starting the eBPF collector, and stopping on Ctrl-C, SIGTERM or a deadline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pixie_collector::{Collector, CollectorConfig, CollectorSummary, SocketTraceConfig};
use pixie_store::{StoreBudget, TableStore};

/// The collector's flags. The store, buffer, host and data-access ones also come from the `PL_*`
/// variables the operator sets on the PEM DaemonSet (a flag wins over its variable); a bad value is
/// refused with an error naming the variable.
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
    /// This agent's short id, the first part of every upid. 0 by default; `vizier pem --listen`
    /// derives one from the node name instead, so that Kelvin can tell the hosts' processes apart.
    #[arg(long)]
    asid: Option<u32>,
    /// Table store memory, in MiB.
    #[arg(long, env = "PL_TABLE_STORE_DATA_LIMIT_MB", default_value = "1280", value_parser = store_mib)]
    store_mb: usize,
    /// Share of the table store for http_events, in percent; the other tables split the rest.
    #[arg(long, env = "PL_TABLE_STORE_HTTP_EVENTS_PERCENT", default_value = "40", value_parser = http_events_percent)]
    http_events_percent: u8,
    /// Most bytes any one table may hold (Pixie's deprecated per-table limit); the store shrinks,
    /// keeping the tables' shares, until no table is over it.
    #[arg(long, env = "PL_TABLE_STORE_TABLE_SIZE_LIMIT", value_parser = table_size_limit)]
    table_size_limit: Option<usize>,
    /// Bytes buffered per connection direction while messages are reassembled.
    #[arg(long, env = "PL_DATASTREAM_BUFFER_SIZE", default_value = "1048576", value_parser = datastream_buffer_size)]
    datastream_buffer_size: usize,
    /// Most bytes a connection may hold for a moment: chunks that arrived out of order wait
    /// behind the missing one for up to the reorder wait, within this budget, before the gap is
    /// given up. Must not be below --datastream-buffer-size, which is the default.
    #[arg(long, env = "PL_DATASTREAM_BUFFER_SPIKE_SIZE", value_parser = datastream_buffer_spike_size)]
    datastream_buffer_spike_size: Option<usize>,
    /// Where the host's filesystem is mounted; its /proc is read from `<path>/proc`.
    #[arg(long, env = "PL_HOST_PATH", value_parser = host_path)]
    host_path: Option<PathBuf>,
    /// This node's name, for logs.
    #[arg(long, env = "PL_NODE_NAME")]
    node_name: Option<String>,
    /// How node-local timestamps become cluster-wide ones: only `default` (the built-in routine).
    #[arg(long, env = "PL_CLOCK_CONVERTER", default_value = "default", value_parser = clock_converter)]
    clock_converter: String,
    /// What may be captured: Full; Restricted or PIIRestricted capture no HTTP bodies.
    #[arg(long, env = "PL_DATA_ACCESS", default_value = "Full", value_parser = data_access)]
    data_access: DataAccess,
}

/// Pixie's data-access levels (the Vizier's `spec.dataAccess`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataAccess {
    Full,
    /// Columns that may hold sensitive data are not kept: HTTP bodies are not captured.
    Restricted,
    /// Personal data is not kept. Without in-place redaction here, bodies are not captured at all,
    /// which is at least as strict.
    PiiRestricted,
}

impl CollectorArgs {
    pub fn store(&self) -> TableStore {
        TableStore::new(store_budget(
            self.store_mb,
            self.http_events_percent,
            self.table_size_limit,
        ))
    }

    /// This node's name, when the flag or `PL_NODE_NAME` gives it.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// Uses `asid` unless `--asid` was given.
    pub fn default_asid(&mut self, asid: u32) {
        self.asid.get_or_insert(asid);
    }

    pub fn config(&self) -> anyhow::Result<CollectorConfig> {
        if let Some(spike) = self.datastream_buffer_spike_size
            && spike < self.datastream_buffer_size
        {
            anyhow::bail!(
                "PL_DATASTREAM_BUFFER_SPIKE_SIZE ({spike}) must not be below PL_DATASTREAM_BUFFER_SIZE ({})",
                self.datastream_buffer_size
            );
        }
        let mut socket_trace = SocketTraceConfig {
            asid: self.asid.unwrap_or(0),
            ..Default::default()
        };
        socket_trace.http_limits.max_buffered_bytes = self.datastream_buffer_size;
        socket_trace.spike_bytes = self.datastream_buffer_spike_size;
        if self.data_access != DataAccess::Full {
            socket_trace.http_limits.max_body_bytes = 0;
        }
        Ok(CollectorConfig {
            push_period: self.push_period,
            conn_stats_period: self.conn_stats_period,
            process_stats_period: self.process_stats_period,
            proc_root: self
                .host_path
                .as_ref()
                .map_or_else(|| PathBuf::from("/proc"), |host| host.join("proc")),
            socket_trace,
            ..Default::default()
        })
    }
}

/// The store's budget: `store_mb` split with `http_events_percent` for http_events, then shrunk
/// (shares kept) until no table's budget is over `table_limit` bytes.
pub fn store_budget(
    store_mb: usize,
    http_events_percent: u8,
    table_limit: Option<usize>,
) -> StoreBudget {
    let mut budget = StoreBudget {
        total_bytes: store_mb.saturating_mul(1024 * 1024),
        http_events_percent,
    };
    let Some(limit) = table_limit else {
        return budget;
    };
    let largest = |b: &StoreBudget| {
        b.per_table()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .max()
            .unwrap_or(0)
    };
    let over = largest(&budget);
    if over > limit {
        // Scale down in one step, then trim the rounding.
        budget.total_bytes = (budget.total_bytes as u128 * limit as u128 / over as u128) as usize;
        while largest(&budget) > limit {
            budget.total_bytes -= 1;
        }
    }
    budget
}

fn positive(var: &str, text: &str, what: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{var}: {text:?} is not {what} greater than 0")),
    }
}

fn store_mib(text: &str) -> Result<usize, String> {
    positive(
        "PL_TABLE_STORE_DATA_LIMIT_MB",
        text,
        "a whole number of MiB",
    )
}

fn table_size_limit(text: &str) -> Result<usize, String> {
    positive(
        "PL_TABLE_STORE_TABLE_SIZE_LIMIT",
        text,
        "a whole number of bytes",
    )
}

fn datastream_buffer_size(text: &str) -> Result<usize, String> {
    positive("PL_DATASTREAM_BUFFER_SIZE", text, "a whole number of bytes")
}

fn datastream_buffer_spike_size(text: &str) -> Result<usize, String> {
    positive(
        "PL_DATASTREAM_BUFFER_SPIKE_SIZE",
        text,
        "a whole number of bytes",
    )
}

fn http_events_percent(text: &str) -> Result<u8, String> {
    match text.trim().parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!(
            "PL_TABLE_STORE_HTTP_EVENTS_PERCENT: {text:?} is not a percentage from 0 to 100"
        )),
    }
}

fn host_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("PL_HOST_PATH: {text:?} is not an absolute path"))
    }
}

fn clock_converter(text: &str) -> Result<String, String> {
    match text {
        "default" => Ok(text.to_owned()),
        "grpc" => Err("PL_CLOCK_CONVERTER: \"grpc\" (the gRPC clock-sync integration) is not supported by this PEM; \
                       use \"default\" (leave spec.clockConverter unset)"
            .to_owned()),
        other => Err(format!("PL_CLOCK_CONVERTER: {other:?} is not a clock converter; use \"default\"")),
    }
}

fn data_access(text: &str) -> Result<DataAccess, String> {
    match text {
        "Full" => Ok(DataAccess::Full),
        "Restricted" => Ok(DataAccess::Restricted),
        "PIIRestricted" => Ok(DataAccess::PiiRestricted),
        other => Err(format!(
            "PL_DATA_ACCESS: {other:?} is not a data-access level; use Full, Restricted or PIIRestricted"
        )),
    }
}

/// The settings worth a line in the log when collection starts.
fn log_settings(args: &CollectorArgs, config: &CollectorConfig, store: &TableStore) {
    let tables: Vec<String> = store
        .budget()
        .per_table()
        .into_iter()
        .map(|(name, bytes)| format!("{name}={}MiB", bytes >> 20))
        .collect();
    tracing::info!(
        node = args.node_name.as_deref().unwrap_or("(PL_NODE_NAME unset)"),
        tables = %tables.join(","),
        datastream_buffer_size = args.datastream_buffer_size,
        data_access = ?args.data_access,
        proc_root = %config.proc_root.display(),
        "starting the collector"
    );
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
    let config = args.config()?;
    log_settings(args, &config, store);
    Collector::start(config, store.clone())
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
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        collector: CollectorArgs,
    }

    fn parse(args: &[&str]) -> Result<CollectorArgs, String> {
        Cli::try_parse_from(std::iter::once("vizier").chain(args.iter().copied()))
            .map(|cli| cli.collector)
            .map_err(|e| e.to_string())
    }

    const PL_VARS: [&str; 9] = [
        "PL_TABLE_STORE_DATA_LIMIT_MB",
        "PL_TABLE_STORE_HTTP_EVENTS_PERCENT",
        "PL_TABLE_STORE_TABLE_SIZE_LIMIT",
        "PL_DATASTREAM_BUFFER_SIZE",
        "PL_DATASTREAM_BUFFER_SPIKE_SIZE",
        "PL_HOST_PATH",
        "PL_NODE_NAME",
        "PL_CLOCK_CONVERTER",
        "PL_DATA_ACCESS",
    ];

    /// The only test that touches the process environment: it sets what the operator sets on the
    /// PEM DaemonSet and checks each variable reaches the collector.
    #[test]
    fn the_operators_pl_variables_configure_the_collector() {
        let set = |vars: &[(&str, &str)]| {
            for name in PL_VARS {
                // SAFETY: no other test of this binary reads or writes these variables.
                unsafe { std::env::remove_var(name) };
            }
            for (name, value) in vars {
                // SAFETY: as above.
                unsafe { std::env::set_var(name, value) };
            }
        };
        set(&[
            ("PL_TABLE_STORE_DATA_LIMIT_MB", "1228"),
            ("PL_DATASTREAM_BUFFER_SIZE", "4194304"),
            ("PL_DATASTREAM_BUFFER_SPIKE_SIZE", "52428800"),
            ("PL_HOST_PATH", "/host"),
            ("PL_NODE_NAME", "kwok-node-0"),
            ("PL_CLOCK_CONVERTER", "default"),
            ("PL_DATA_ACCESS", "Restricted"),
        ]);
        let args = parse(&[]).unwrap();
        assert_eq!(args.store().budget().total_bytes, 1228 << 20);
        let config = args.config().unwrap();
        assert_eq!(config.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(config.socket_trace.http_limits.max_buffered_bytes, 4 << 20);
        assert_eq!(
            config.socket_trace.http_limits.max_body_bytes, 0,
            "Restricted captures no bodies"
        );
        assert_eq!(args.node_name.as_deref(), Some("kwok-node-0"));
        // A flag wins over its variable.
        assert_eq!(
            parse(&["--store-mb", "64"])
                .unwrap()
                .store()
                .budget()
                .total_bytes,
            64 << 20
        );

        for (name, value) in [
            ("PL_TABLE_STORE_DATA_LIMIT_MB", "lots"),
            ("PL_TABLE_STORE_DATA_LIMIT_MB", "0"),
            ("PL_TABLE_STORE_HTTP_EVENTS_PERCENT", "101"),
            ("PL_TABLE_STORE_TABLE_SIZE_LIMIT", "-5"),
            ("PL_DATASTREAM_BUFFER_SIZE", "1MB"),
            ("PL_HOST_PATH", "host"),
            ("PL_CLOCK_CONVERTER", "grpc"),
            ("PL_CLOCK_CONVERTER", "atomic"),
            ("PL_DATA_ACCESS", "full"),
        ] {
            set(&[(name, value)]);
            let err = parse(&[]).unwrap_err();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        set(&[
            ("PL_DATASTREAM_BUFFER_SIZE", "2000000"),
            ("PL_DATASTREAM_BUFFER_SPIKE_SIZE", "1000000"),
        ]);
        let err = parse(&[]).unwrap().config().unwrap_err().to_string();
        assert!(
            err.contains("PL_DATASTREAM_BUFFER_SPIKE_SIZE")
                && err.contains("PL_DATASTREAM_BUFFER_SIZE"),
            "{err}"
        );

        set(&[]);
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults.store().budget(), StoreBudget::default());
        let config = defaults.config().unwrap();
        assert_eq!(config.proc_root, PathBuf::from("/proc"));
        assert!(
            config.socket_trace.http_limits.max_body_bytes > 0,
            "Full captures bodies"
        );
    }

    #[test]
    fn a_per_table_limit_shrinks_the_store_keeping_the_shares() {
        let unlimited = store_budget(1280, 40, None);
        assert_eq!(unlimited, StoreBudget::default());
        let largest = |b: StoreBudget| {
            b.per_table()
                .into_iter()
                .map(|(_, bytes)| bytes)
                .max()
                .unwrap()
        };
        // http_events would get 512 MiB; capped at 100 MiB the store shrinks to 250 MiB.
        let capped = store_budget(1280, 40, Some(100 << 20));
        assert!(largest(capped) <= 100 << 20);
        assert!(largest(capped) > (100 << 20) - 16, "{capped:?}");
        assert_eq!(capped.http_events_percent, 40);
        assert!(
            capped.total_bytes <= 250 << 20 && capped.total_bytes > (250 << 20) - 64,
            "{capped:?}"
        );
        // A limit above every table's share changes nothing.
        assert_eq!(store_budget(1280, 40, Some(1 << 30)), unlimited);
        // With no http_events share the other tables are the largest.
        let others = store_budget(90, 0, Some(10 << 20));
        assert!(
            largest(others) <= 10 << 20 && largest(others) > (10 << 20) - 16,
            "{others:?}"
        );
    }

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
