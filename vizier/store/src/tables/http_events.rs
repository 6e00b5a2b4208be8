//! `http_events`: one row per HTTP/1.x request/response pair seen by the socket tracer (Pixie's
//! `http_table.h`, plus the newer `local_addr`/`local_port`).

table! {
    name: "http_events",
    columns: {
        /// When the response completed, nanoseconds since the Unix epoch.
        time_: Time,
        upid: Upid,
        remote_addr: Utf8,
        remote_port: Int64,
        local_addr: Utf8,
        local_port: Int64,
        /// [`super::TraceRole`]: 1 client, 2 server.
        trace_role: Int64,
        major_version: Int64,
        minor_version: Int64,
        /// [`super::ContentType`]: 0 unknown, 1 JSON, 2 gRPC.
        content_type: Int64,
        /// Request headers as a JSON object text.
        req_headers: Utf8,
        req_method: Utf8,
        req_path: Utf8,
        req_body: Utf8,
        req_body_size: Int64,
        /// Response headers as a JSON object text.
        resp_headers: Utf8,
        resp_status: Int64,
        resp_message: Utf8,
        resp_body: Utf8,
        resp_body_size: Int64,
        /// Request start to response end, nanoseconds.
        latency: Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Upid;
    use crate::tables::{ContentType, TraceRole};

    fn row(i: i64) -> Row {
        Row {
            time_: 1_700_000_000_000_000_000 + i,
            upid: Upid::new(3, 4000 + i as u32, 12345),
            remote_addr: "127.0.0.1".into(),
            remote_port: 50000 + i,
            local_addr: "127.0.0.1".into(),
            local_port: 8080,
            trace_role: TraceRole::Server.into(),
            major_version: 1,
            minor_version: 1,
            content_type: ContentType::Json.into(),
            req_headers: r#"{"Host":"x"}"#.into(),
            req_method: "POST".into(),
            req_path: format!("/items/{i}"),
            req_body: "{}".into(),
            req_body_size: 2,
            resp_headers: r#"{"Content-Length":"5"}"#.into(),
            resp_status: 201,
            resp_message: "Created".into(),
            resp_body: "hello".into(),
            resp_body_size: 5,
            latency: 1_000 * i,
        }
    }

    #[test]
    fn rows_survive_a_batch_round_trip() {
        let rows: Vec<Row> = (0..5).map(row).collect();
        let batch = to_batch(&rows);
        assert_eq!(batch.num_columns(), 21);
        assert_eq!(batch.schema(), schema());
        assert_eq!(from_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn upid_is_stored_as_text() {
        let batch = to_batch(&[row(1)]);
        let upid = arrow::array::AsArray::as_string::<i32>(batch.column_by_name("upid").unwrap());
        assert_eq!(upid.value(0), "3:4001:12345");
    }

    #[test]
    fn an_empty_slice_gives_an_empty_batch_with_the_schema() {
        let batch = to_batch(&[]);
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.schema(), schema());
    }
}
