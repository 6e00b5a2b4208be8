//! `process_stats`: one row per process per sample, from `/proc/<pid>/stat` and `/proc/<pid>/io`
//! (Pixie's `process_stats_table.h`). Counters are cumulative since the process started.

table! {
    name: "process_stats",
    columns: {
        /// Sample time, nanoseconds since the Unix epoch.
        time_: Time,
        upid: Upid,
        major_faults: Int64,
        minor_faults: Int64,
        /// User CPU time, nanoseconds.
        cpu_utime_ns: Int64,
        /// Kernel CPU time, nanoseconds.
        cpu_ktime_ns: Int64,
        num_threads: Int64,
        vsize_bytes: Int64,
        rss_bytes: Int64,
        /// Bytes passed to read-like syscalls (`rchar` in `/proc/<pid>/io`).
        rchar_bytes: Int64,
        /// Bytes passed to write-like syscalls (`wchar`).
        wchar_bytes: Int64,
        /// Bytes fetched from storage (`read_bytes`).
        read_bytes: Int64,
        /// Bytes sent to storage (`write_bytes`).
        write_bytes: Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Upid;

    #[test]
    fn rows_survive_a_batch_round_trip() {
        let rows: Vec<Row> = (0..3)
            .map(|i| Row {
                time_: -5 + i,
                upid: Upid::new(0, 1, 0),
                major_faults: i,
                minor_faults: 2 * i,
                cpu_utime_ns: 10_000_000 * i,
                cpu_ktime_ns: 20_000_000 * i,
                num_threads: 1 + i,
                vsize_bytes: 1 << 20,
                rss_bytes: 1 << 16,
                rchar_bytes: 7,
                wchar_bytes: 8,
                read_bytes: 4096,
                write_bytes: 0,
            })
            .collect();
        let batch = to_batch(&rows);
        assert_eq!(batch.num_columns(), 13);
        assert_eq!(from_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn from_batch_reports_bad_upid_text() {
        use arrow::array::{ArrayRef, StringArray};
        let batch = to_batch(&[Row {
            time_: 0,
            upid: Upid::new(0, 1, 0),
            major_faults: 0,
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
        }]);
        let mut columns = batch.columns().to_vec();
        columns[1] = Arc::new(StringArray::from(vec!["not-a-upid"])) as ArrayRef;
        let bad = RecordBatch::try_new(schema(), columns).unwrap();
        let err = from_batch(&bad).unwrap_err();
        assert!(
            matches!(&err, crate::StoreError::InvalidValue { column, .. } if column == "upid"),
            "{err}"
        );
    }
}
