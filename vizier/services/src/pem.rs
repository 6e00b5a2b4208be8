//! `vizier pem`: the collector and the table store on this host, optionally printing every row as
//! it is pushed.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pixie_store::tables::{self, conn_stats, http_events, process_stats};

use crate::collect::{self, CollectorArgs, parse_duration};
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
    #[command(flatten)]
    collector: CollectorArgs,
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

    let store = args.collector.store();
    let summary = collect::runtime()?.block_on(async {
        let mut collector = collect::start_collector(&args.collector, &store)?;
        if args.print {
            collector = collector.with_sink(Box::new(move |table, batch| {
                if printed.contains(table) {
                    print_batch(table, batch);
                }
            }));
        }
        collector
            .run(collect::shutdown_signal(args.duration))
            .await
            .context("collector stopped")
    })?;
    collect::log_summary("pem", &summary, &store);
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
