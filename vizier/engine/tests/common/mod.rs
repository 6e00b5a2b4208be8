//! Fixtures shared by the engine's integration tests: a store with known http_events rows.

#![allow(dead_code)] // each test binary uses its own part

use pixie_store::tables::http_events;
use pixie_store::{StoreBudget, TableStore, Upid};

/// 2023-11-14T22:13:20Z: "new" rows are at or after this instant.
pub const NEW_NS: i64 = 1_700_000_000_000_000_000;
/// A day earlier: "old" rows.
pub const OLD_NS: i64 = NEW_NS - 86_400_000_000_000;

pub fn row(time_ns: i64, pid: u32, method: &str, path: &str, status: i64) -> http_events::Row {
    http_events::Row {
        time_: time_ns,
        upid: Upid::new(0, pid, 100),
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        local_addr: "127.0.0.1".into(),
        local_port: 8080,
        trace_role: 2,
        major_version: 1,
        minor_version: 1,
        content_type: 0,
        req_headers: "{}".into(),
        req_method: method.into(),
        req_path: path.into(),
        req_body: String::new(),
        req_body_size: 0,
        resp_headers: "{}".into(),
        resp_status: status,
        resp_message: "OK".into(),
        resp_body: String::new(),
        resp_body_size: 10,
        latency: 1_000_000,
    }
}

/// `old_batches` batches of `rows_per_batch` rows a day before [`NEW_NS`], then `new_batches` from
/// [`NEW_NS`] on; paths are `/old/<i>` and `/new/<i>`, one row per microsecond.
pub fn store_with_old_and_new(
    old_batches: usize,
    new_batches: usize,
    rows_per_batch: usize,
) -> TableStore {
    let store = TableStore::new(StoreBudget::default());
    let mut i = 0i64;
    for (start, count, prefix) in [(OLD_NS, old_batches, "old"), (NEW_NS, new_batches, "new")] {
        for b in 0..count {
            let rows: Vec<http_events::Row> = (0..rows_per_batch)
                .map(|r| {
                    i += 1;
                    let t = start + ((b * rows_per_batch + r) as i64) * 1_000;
                    row(t, 4242, "GET", &format!("/{prefix}/{i}"), 200)
                })
                .collect();
            store
                .append(http_events::NAME, http_events::to_batch(&rows))
                .unwrap();
        }
    }
    store
}
