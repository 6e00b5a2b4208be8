//! Properties of the store under arbitrary sequences of appends, checked against a model that knows
//! which batches were accepted, in which order.

use std::collections::VecDeque;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use pixie_store::tables::{conn_stats, process_stats};
use pixie_store::{StoreBudget, StoreError, TableStore, TimeRange, Upid};
use proptest::prelude::*;

const TABLES: [&str; 2] = [process_stats::NAME, conn_stats::NAME];

fn batch(table: &str, times: &[i64]) -> RecordBatch {
    let upid = Upid::new(9, 42, 1000);
    if table == process_stats::NAME {
        let rows: Vec<_> = times
            .iter()
            .map(|&time_| process_stats::Row {
                time_,
                upid,
                major_faults: time_,
                minor_faults: 0,
                cpu_utime_ns: 0,
                cpu_ktime_ns: 0,
                num_threads: 1,
                vsize_bytes: 0,
                rss_bytes: 0,
                rchar_bytes: 0,
                wchar_bytes: 0,
                read_bytes: 0,
                write_bytes: 0,
            })
            .collect();
        process_stats::to_batch(&rows)
    } else {
        let rows: Vec<_> = times
            .iter()
            .map(|&time_| conn_stats::Row {
                time_,
                upid,
                remote_addr: format!("10.0.0.{}", time_.rem_euclid(256)),
                remote_port: 80,
                addr_family: 2,
                protocol: 1,
                role: 1,
                conn_open: 1,
                conn_close: 0,
                conn_active: 1,
                bytes_sent: time_,
                bytes_recv: 0,
            })
            .collect();
        conn_stats::to_batch(&rows)
    }
}

fn times_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<TimestampNanosecondType>()
                .values()
                .to_vec()
        })
        .collect()
}

/// What the model knows about one accepted batch.
struct Accepted {
    sorted_times: Vec<i64>,
    /// Learned from the store's byte total when the batch went in.
    bytes: usize,
}

#[derive(Default)]
struct Model {
    accepted: VecDeque<Accepted>,
    appended: u64,
    dropped: u64,
}

fn op() -> impl Strategy<Value = (usize, Vec<i64>)> {
    (
        0..TABLES.len(),
        prop::collection::vec(-5_000i64..5_000, 0..300),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn appends_keep_every_invariant(
        total_bytes in 10_000usize..200_000,
        http_events_percent in 0u8..=100,
        ops in prop::collection::vec(op(), 1..25),
        range in (-6_000i64..6_000, 0i64..6_000),
    ) {
        let store = TableStore::new(StoreBudget { total_bytes, http_events_percent });
        let mut models: Vec<Model> = TABLES.iter().map(|_| Model::default()).collect();
        let range = TimeRange::new(range.0, range.0 + range.1);

        for (t, times) in ops {
            let table = TABLES[t];
            let model = &mut models[t];
            let n = times.len() as u64;
            let result = store.append(table, batch(table, &times));
            let stats = store.stats(table).unwrap();

            if n > 0 {
                model.appended += n;
            }
            match result {
                Ok(()) if n > 0 => {
                    let mut sorted_times = times;
                    sorted_times.sort_unstable();
                    model.accepted.push_back(Accepted { sorted_times, bytes: 0 });
                }
                Ok(()) => {}
                Err(StoreError::BatchOverBudget { rows, batch_bytes, budget_bytes, .. }) => {
                    prop_assert_eq!(rows as u64, n);
                    prop_assert!(batch_bytes > budget_bytes);
                    model.dropped += n;
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
            }

            // The byte total never exceeds the budget.
            prop_assert!(stats.bytes <= stats.budget_bytes, "{:?}", stats);
            // Every appended row is held, evicted or dropped, exactly once.
            prop_assert_eq!(stats.rows_appended, model.appended);
            prop_assert_eq!(stats.rows_dropped, model.dropped);
            prop_assert_eq!(stats.rows as u64 + stats.rows_evicted, model.appended - model.dropped);

            // Eviction is oldest first: the held batches are the newest `stats.batches` accepted.
            prop_assert!(stats.batches <= model.accepted.len());
            let evicted = model.accepted.len() - stats.batches;
            let accepted_now = result.is_ok() && n > 0;
            if evicted > 0 {
                prop_assert!(accepted_now, "only an accepted batch may evict");
                // No more than needed: the newest evicted batch would not have fit beside the rest.
                let newest_evicted = model.accepted[evicted - 1].bytes;
                prop_assert!(stats.bytes + newest_evicted > stats.budget_bytes);
            }
            model.accepted.drain(..evicted);
            if accepted_now {
                prop_assert!(stats.batches >= 1, "the batch just appended is held");
                let older: usize = model.accepted.iter().rev().skip(1).map(|a| a.bytes).sum();
                model.accepted.back_mut().unwrap().bytes = stats.bytes - older;
            }
            let held: usize = model.accepted.iter().map(|a| a.bytes).sum();
            prop_assert_eq!(held, stats.bytes);
            prop_assert_eq!(
                model.accepted.iter().map(|a| a.sorted_times.len()).sum::<usize>(),
                stats.rows
            );

            // Snapshots hold exactly the held rows in range, sorted.
            let mut want_all: Vec<i64> =
                model.accepted.iter().flat_map(|a| a.sorted_times.iter().copied()).collect();
            want_all.sort_unstable();
            let all = times_of(&store.snapshot(table, TimeRange::all()).unwrap());
            prop_assert_eq!(&all, &want_all);
            let want_in_range: Vec<i64> =
                want_all.iter().copied().filter(|&t| range.contains(t)).collect();
            let in_range = times_of(&store.snapshot(table, range).unwrap());
            prop_assert_eq!(in_range, want_in_range);
            prop_assert_eq!(stats.min_time_ns, want_all.first().copied());
            prop_assert_eq!(stats.max_time_ns, want_all.last().copied());
        }
    }
}
