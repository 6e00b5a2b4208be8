//! `conn_stats`: per-process, per-remote-endpoint connection counters, cumulative since tracing
//! started (Pixie's `conn_stats_table.h`).

table! {
    name: "conn_stats",
    columns: {
        /// Sample time, nanoseconds since the Unix epoch.
        time_: Time,
        upid: Upid,
        remote_addr: Utf8,
        remote_port: Int64,
        /// `AF_INET` (2), `AF_INET6` (10), `AF_UNIX` (1) or 0 when unknown.
        addr_family: Int64,
        /// [`super::Protocol`].
        protocol: Int64,
        /// [`super::TraceRole`].
        role: Int64,
        conn_open: Int64,
        conn_close: Int64,
        conn_active: Int64,
        bytes_sent: Int64,
        bytes_recv: Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Upid;
    use crate::tables::{Protocol, TraceRole};

    #[test]
    fn rows_survive_a_batch_round_trip() {
        let rows = vec![Row {
            time_: 42,
            upid: Upid::new(1, 2, 3),
            remote_addr: "::1".into(),
            remote_port: 443,
            addr_family: 10, // AF_INET6
            protocol: Protocol::Http.into(),
            role: TraceRole::Client.into(),
            conn_open: 3,
            conn_close: 1,
            conn_active: 2,
            bytes_sent: 1024,
            bytes_recv: 4096,
        }];
        let batch = to_batch(&rows);
        assert_eq!(batch.num_columns(), 12);
        assert_eq!(from_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn from_batch_refuses_another_tables_batch() {
        let other = crate::tables::process_stats::to_batch(&[]);
        assert!(matches!(
            from_batch(&other),
            Err(crate::StoreError::SchemaMismatch { .. })
        ));
    }
}
