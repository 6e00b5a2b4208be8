//! The store's behaviour through its public API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{Field, Schema, TimestampNanosecondType};
use pixie_store::tables::{conn_stats, http_events, process_stats};
use pixie_store::{StoreBudget, StoreError, TableStore, TimeRange, Upid};

fn proc_row(time_: i64) -> process_stats::Row {
    process_stats::Row {
        time_,
        upid: Upid::new(1, 100, 5000),
        major_faults: 1,
        minor_faults: 2,
        cpu_utime_ns: 3,
        cpu_ktime_ns: 4,
        num_threads: 5,
        vsize_bytes: 6,
        rss_bytes: 7,
        rchar_bytes: 8,
        wchar_bytes: 9,
        read_bytes: 10,
        write_bytes: 11,
    }
}

fn proc_batch(times: impl IntoIterator<Item = i64>) -> RecordBatch {
    let rows: Vec<_> = times.into_iter().map(proc_row).collect();
    process_stats::to_batch(&rows)
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

/// A store whose `process_stats` budget holds `batches` batches of `rows` rows, and no more.
fn store_holding(batches: usize, rows: usize) -> TableStore {
    let one = proc_batch(0..rows as i64).get_array_memory_size();
    // process_stats gets a third of the rest after http_events' share; leave http_events at 0 %.
    let store = TableStore::new(StoreBudget {
        total_bytes: 2 * (one * batches + one / 2),
        http_events_percent: 0,
    });
    let budget = store.stats(process_stats::NAME).unwrap().budget_bytes;
    assert!(budget >= one * batches && budget < one * (batches + 1));
    store
}

#[test]
fn default_budget_is_pixies_split() {
    let store = TableStore::new(StoreBudget::default());
    assert_eq!(
        store.table_names(),
        ["conn_stats", "http_events", "process_stats"]
    );
    let mib = 1024 * 1024;
    let budget = |t| store.stats(t).unwrap().budget_bytes;
    assert_eq!(budget(http_events::NAME), 512 * mib);
    assert_eq!(budget(conn_stats::NAME), 384 * mib);
    assert_eq!(budget(process_stats::NAME), 384 * mib);
}

#[test]
fn per_table_budgets_never_sum_past_the_total() {
    for (total, percent) in [
        (0, 40),
        (1, 40),
        (1001, 33),
        (7, 100),
        (10_000, 250),
        (usize::MAX, 40),
    ] {
        let budget = StoreBudget {
            total_bytes: total,
            http_events_percent: percent,
        };
        let split = budget.per_table();
        let sum: u128 = split.iter().map(|(_, b)| *b as u128).sum();
        assert!(sum <= total as u128, "{budget:?} -> {split:?}");
        if percent >= 100 {
            assert!(
                split
                    .iter()
                    .all(|(name, b)| *name == "http_events" || *b == 0)
            );
        }
    }
}

#[test]
fn unknown_tables_are_errors_everywhere() {
    let store = TableStore::new(StoreBudget::default());
    let unknown = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::UnknownTable { ref table }) if table == "nope"))
    };
    unknown(store.append("nope", proc_batch([1])));
    unknown(store.snapshot("nope", TimeRange::all()).map(drop));
    unknown(store.schema("nope").map(drop));
    unknown(store.stats("nope").map(drop));
}

#[test]
fn a_batch_of_another_table_is_refused_and_not_stored() {
    let store = TableStore::new(StoreBudget::default());
    let err = store
        .append(conn_stats::NAME, proc_batch([1, 2]))
        .unwrap_err();
    assert_eq!(err.metric_label(), "schema_mismatch");
    let stats = store.stats(conn_stats::NAME).unwrap();
    assert_eq!((stats.rows, stats.rows_appended), (0, 0));
}

#[test]
fn a_writer_schema_marked_nullable_is_accepted_when_it_holds_no_nulls() {
    let store = TableStore::new(StoreBudget::default());
    let strict = proc_batch([5, 6]);
    let loose = Arc::new(Schema::new(
        process_stats::schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(loose.clone(), strict.columns().to_vec()).unwrap();
    store.append(process_stats::NAME, batch).unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::all())
        .unwrap();
    // Stored batches carry the table's schema, whatever the writer said.
    assert_eq!(snap[0].schema(), process_stats::schema());

    let mut columns = strict.columns().to_vec();
    columns[2] = Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef;
    let with_null = RecordBatch::try_new(loose, columns).unwrap();
    let err = store.append(process_stats::NAME, with_null).unwrap_err();
    assert!(matches!(err, StoreError::SchemaMismatch { .. }), "{err}");
    assert_eq!(store.stats(process_stats::NAME).unwrap().rows, 2);
}

#[test]
fn an_empty_batch_changes_nothing() {
    let store = TableStore::new(StoreBudget::default());
    store
        .append(process_stats::NAME, process_stats::to_batch(&[]))
        .unwrap();
    let stats = store.stats(process_stats::NAME).unwrap();
    assert_eq!((stats.batches, stats.rows_appended), (0, 0));
    assert_eq!(stats.min_time_ns, None);
}

#[test]
fn rows_appended_out_of_order_come_back_sorted() {
    let store = TableStore::new(StoreBudget::default());
    store
        .append(process_stats::NAME, proc_batch([30, 10, 20, 10]))
        .unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::all())
        .unwrap();
    assert_eq!(times_of(&snap), [10, 10, 20, 30]);
    let stats = store.stats(process_stats::NAME).unwrap();
    assert_eq!((stats.min_time_ns, stats.max_time_ns), (Some(10), Some(30)));
}

#[test]
fn overlapping_batches_are_merged_into_time_order() {
    let store = TableStore::new(StoreBudget::default());
    store
        .append(process_stats::NAME, proc_batch([10, 30, 50]))
        .unwrap();
    store
        .append(process_stats::NAME, proc_batch([20, 40]))
        .unwrap();
    store
        .append(process_stats::NAME, proc_batch([60, 70]))
        .unwrap();
    store
        .append(process_stats::NAME, proc_batch([1, 2]))
        .unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::all())
        .unwrap();
    assert_eq!(times_of(&snap), [1, 2, 10, 20, 30, 40, 50, 60, 70]);
    // Only the two overlapping batches needed merging.
    let sizes: Vec<_> = snap.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [2, 5, 2]);
}

#[test]
fn snapshots_trim_to_the_half_open_range_and_skip_other_batches() {
    let store = TableStore::new(StoreBudget::default());
    for start in [0, 10, 20, 30] {
        store
            .append(process_stats::NAME, proc_batch(start..start + 10))
            .unwrap();
    }
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::new(15, 25))
        .unwrap();
    assert_eq!(times_of(&snap), (15..25).collect::<Vec<_>>());
    assert_eq!(snap.len(), 2);

    let inside = store
        .snapshot(process_stats::NAME, TimeRange::new(10, 20))
        .unwrap();
    assert_eq!(inside.len(), 1);
    assert_eq!(times_of(&inside), (10..20).collect::<Vec<_>>());

    assert!(
        store
            .snapshot(process_stats::NAME, TimeRange::new(40, 50))
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .snapshot(process_stats::NAME, TimeRange::new(25, 25))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        times_of(
            &store
                .snapshot(process_stats::NAME, TimeRange::since(38))
                .unwrap()
        ),
        [38, 39]
    );
}

#[test]
fn a_batch_wholly_in_range_is_shared_not_copied() {
    let store = TableStore::new(StoreBudget::default());
    let batch = proc_batch(0..100);
    let data_ptr = batch.column(2).to_data().buffers()[0].as_ptr();
    store.append(process_stats::NAME, batch).unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::new(0, 50))
        .unwrap();
    assert_eq!(snap[0].num_rows(), 50);
    assert_eq!(snap[0].column(2).to_data().buffers()[0].as_ptr(), data_ptr);
}

#[test]
fn going_over_budget_evicts_the_oldest_batches() {
    let store = store_holding(3, 64);
    for i in 0..5 {
        store
            .append(process_stats::NAME, proc_batch(i * 100..i * 100 + 64))
            .unwrap();
    }
    let stats = store.stats(process_stats::NAME).unwrap();
    assert_eq!(stats.batches, 3);
    assert_eq!(stats.rows, 3 * 64);
    assert_eq!(stats.rows_evicted, 2 * 64);
    assert_eq!(stats.rows_appended, 5 * 64);
    assert!(stats.bytes <= stats.budget_bytes);
    assert_eq!(stats.min_time_ns, Some(200));
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::all())
        .unwrap();
    assert_eq!(times_of(&snap)[0], 200);
}

#[test]
fn a_batch_larger_than_the_budget_is_dropped_and_the_table_kept() {
    let store = store_holding(2, 64);
    store
        .append(process_stats::NAME, proc_batch(0..64))
        .unwrap();
    let err = store
        .append(process_stats::NAME, proc_batch(1000..1000 + 64 * 3))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::BatchOverBudget { rows: 192, .. }),
        "{err}"
    );
    let stats = store.stats(process_stats::NAME).unwrap();
    assert_eq!(stats.rows_dropped, 192);
    assert_eq!(stats.rows_evicted, 0);
    assert_eq!(stats.rows, 64);
    assert_eq!(
        times_of(
            &store
                .snapshot(process_stats::NAME, TimeRange::all())
                .unwrap()
        )
        .len(),
        64
    );
}

#[test]
fn a_snapshot_outlives_the_eviction_of_its_batches() {
    let store = store_holding(2, 32);
    store
        .append(process_stats::NAME, proc_batch(0..32))
        .unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::all())
        .unwrap();
    for i in 1..10 {
        store
            .append(process_stats::NAME, proc_batch(i * 100..i * 100 + 32))
            .unwrap();
    }
    assert_eq!(
        store.stats(process_stats::NAME).unwrap().min_time_ns,
        Some(800)
    );
    assert_eq!(times_of(&snap), (0..32).collect::<Vec<_>>());
    assert_eq!(process_stats::from_batch(&snap[0]).unwrap()[0], proc_row(0));
}

#[test]
fn clones_share_the_same_tables() {
    let store = TableStore::new(StoreBudget::default());
    let writer = store.clone();
    writer.append(process_stats::NAME, proc_batch([1])).unwrap();
    assert_eq!(store.stats(process_stats::NAME).unwrap().rows, 1);
}

#[test]
fn readers_never_see_half_an_append() {
    const ROWS: i64 = 50;
    let store = store_holding(8, ROWS as usize);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let start = (i * 2 + w) * 1000;
                    store
                        .append(process_stats::NAME, proc_batch(start..start + ROWS))
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) {
                    let snap = store
                        .snapshot(process_stats::NAME, TimeRange::all())
                        .unwrap();
                    let times = times_of(&snap);
                    assert_eq!(times.len() as i64 % ROWS, 0, "partial append visible");
                    assert!(times.is_sorted());
                    // Every batch is whole: its rows start at a multiple of 1000 and run on.
                    for chunk in times.chunks(ROWS as usize) {
                        assert_eq!(chunk[0] % 1000, 0);
                        assert_eq!(chunk[ROWS as usize - 1], chunk[0] + ROWS - 1);
                    }
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let stats = store.stats(process_stats::NAME).unwrap();
    assert_eq!(stats.rows_appended, 600 * ROWS as u64);
    assert_eq!(stats.rows as u64 + stats.rows_evicted, stats.rows_appended);
    // The last append of all was one writer's final batch; it is never evicted.
    let finals = [Some(598_000 + ROWS - 1), Some(599_000 + ROWS - 1)];
    assert!(finals.contains(&stats.max_time_ns), "{stats:?}");
}

#[test]
fn http_rows_round_trip_through_the_store() {
    let store = TableStore::new(StoreBudget::default());
    let row = http_events::Row {
        time_: 7,
        upid: Upid::new(2, 3, 4),
        remote_addr: "10.0.0.1".into(),
        remote_port: 1234,
        local_addr: "10.0.0.2".into(),
        local_port: 80,
        trace_role: 2,
        major_version: 1,
        minor_version: 1,
        content_type: 0,
        req_headers: "{}".into(),
        req_method: "GET".into(),
        req_path: "/".into(),
        req_body: String::new(),
        req_body_size: 0,
        resp_headers: "{}".into(),
        resp_status: 200,
        resp_message: "OK".into(),
        resp_body: "hi".into(),
        resp_body_size: 2,
        latency: 1500,
    };
    store
        .append(
            http_events::NAME,
            http_events::to_batch(std::slice::from_ref(&row)),
        )
        .unwrap();
    let snap = store.snapshot(http_events::NAME, TimeRange::all()).unwrap();
    assert_eq!(http_events::from_batch(&snap[0]).unwrap(), [row]);
    assert_eq!(
        store.schema(http_events::NAME).unwrap(),
        http_events::schema()
    );
}

#[test]
fn the_sliced_view_keeps_null_free_columns() {
    // Guards the zero-copy trim: slices keep offsets right for string columns too.
    let store = TableStore::new(StoreBudget::default());
    store
        .append(process_stats::NAME, proc_batch(0..10))
        .unwrap();
    let snap = store
        .snapshot(process_stats::NAME, TimeRange::new(3, 6))
        .unwrap();
    let upids = snap[0].column(1).as_string::<i32>();
    assert_eq!(upids.len(), 3);
    assert_eq!(upids.null_count(), 0);
    assert_eq!(upids.value(0), "1:100:5000");
}

#[test]
fn debug_output_shows_counters_not_data() {
    let store = TableStore::new(StoreBudget::default());
    store
        .append(process_stats::NAME, proc_batch([123_456_789]))
        .unwrap();
    let text = format!("{store:?}");
    assert!(text.contains("rows: 1"), "{text}");
    assert!(!text.contains("1:100:5000"), "{text}");
}
