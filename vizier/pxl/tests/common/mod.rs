//! The fixed world the golden tests compile and run scripts against: a minute of traffic between
//! four processes, as rows of pixie-store's own tables, and a metadata resolver that knows three of
//! the four processes (the fourth is a bare `curl`, as on a host without Kubernetes).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::TableSource;
use pixie_pxl::{MetadataField, MetadataResolver, TableCatalog};
use pixie_store::Upid;
use pixie_store::tables::{conn_stats, http_events, process_stats};

/// "Now" for every golden script: 2023-11-14T22:14:20Z, on a 10 s boundary.
pub const NOW_NS: i64 = 1_700_000_060_000_000_000;
const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

pub const FRONTEND: Upid = Upid {
    asid: 1,
    pid: 100,
    start_time_ticks: 1000,
};
pub const CART: Upid = Upid {
    asid: 1,
    pid: 200,
    start_time_ticks: 2000,
};
pub const PAYMENTS: Upid = Upid {
    asid: 2,
    pid: 300,
    start_time_ticks: 3000,
};
pub const CURL: Upid = Upid {
    asid: 2,
    pid: 400,
    start_time_ticks: 4000,
};

/// `(seconds before now, process, method, path, status, latency ms, request bytes, response bytes,
/// User-Agent)`; the curl rows are client-side, the others server-side.
type Request = (
    i64,
    Upid,
    &'static str,
    &'static str,
    i64,
    i64,
    i64,
    i64,
    &'static str,
);

const REQUESTS: [Request; 22] = [
    (90, FRONTEND, "GET", "/old", 200, 10, 0, 512, "Mozilla/5.0"),
    (58, FRONTEND, "GET", "/", 200, 12, 0, 1024, "Mozilla/5.0"),
    (
        56,
        CART,
        "GET",
        "/api/cart/7",
        200,
        20,
        0,
        256,
        "frontend/1.2",
    ),
    (
        55,
        FRONTEND,
        "GET",
        "/cart",
        200,
        35,
        0,
        2048,
        "Mozilla/5.0",
    ),
    (
        52,
        PAYMENTS,
        "POST",
        "/v1/charge",
        200,
        120,
        300,
        80,
        "cart/0.9",
    ),
    (
        51,
        FRONTEND,
        "GET",
        "/health",
        200,
        1,
        0,
        2,
        "kube-probe/1.29",
    ),
    (
        44,
        FRONTEND,
        "POST",
        "/checkout",
        500,
        250,
        512,
        64,
        "Mozilla/5.0",
    ),
    (
        43,
        CART,
        "POST",
        "/api/cart/7/items",
        201,
        45,
        128,
        256,
        "frontend/1.2",
    ),
    (
        41,
        PAYMENTS,
        "POST",
        "/v1/charge",
        402,
        80,
        300,
        40,
        "cart/0.9",
    ),
    (40, CURL, "GET", "/", 200, 14, 0, 1024, "curl/8.5.0"),
    (33, FRONTEND, "GET", "/", 200, 15, 0, 1024, "Mozilla/5.0"),
    (
        30,
        CART,
        "GET",
        "/api/cart/7",
        200,
        22,
        0,
        256,
        "frontend/1.2",
    ),
    (
        27,
        PAYMENTS,
        "POST",
        "/v1/charge",
        200,
        150,
        300,
        80,
        "cart/0.9",
    ),
    (
        25,
        CART,
        "DELETE",
        "/api/cart/7/items/3",
        204,
        30,
        0,
        0,
        "frontend/1.2",
    ),
    (
        21,
        FRONTEND,
        "GET",
        "/products/42",
        404,
        5,
        0,
        32,
        "Mozilla/5.0",
    ),
    (
        15,
        PAYMENTS,
        "GET",
        "/v1/status",
        200,
        8,
        0,
        16,
        "kube-probe/1.29",
    ),
    (
        14,
        CART,
        "GET",
        "/api/cart/9",
        503,
        400,
        0,
        19,
        "frontend/1.2",
    ),
    (12, FRONTEND, "GET", "/", 200, 18, 0, 1024, "Mozilla/5.0"),
    (8, CURL, "GET", "/cart", 200, 33, 0, 2048, "curl/8.5.0"),
    (
        5,
        PAYMENTS,
        "POST",
        "/v1/refund",
        500,
        300,
        200,
        48,
        "cart/0.9",
    ),
    (
        3,
        FRONTEND,
        "GET",
        "/readyz",
        200,
        1,
        0,
        2,
        "kube-probe/1.29",
    ),
    (2, CART, "GET", "/health", 200, 1, 0, 2, "kube-probe/1.29"),
];

pub fn http_rows() -> Vec<http_events::Row> {
    REQUESTS
        .iter()
        .enumerate()
        .map(|(i, &(ago, upid, method, path, status, latency_ms, req_size, resp_size, agent))| {
            let client = upid == CURL;
            http_events::Row {
                time_: NOW_NS - ago * S,
                upid,
                remote_addr: if client { "127.0.0.1".into() } else { format!("10.0.0.{}", 1 + i % 3) },
                remote_port: if client { 8080 } else { 40000 + i as i64 },
                local_addr: if client { "127.0.0.1".into() } else { "10.0.1.10".into() },
                local_port: if client { 51000 + i as i64 } else { 8080 },
                trace_role: if client { 1 } else { 2 },
                major_version: 1,
                minor_version: 1,
                content_type: if path.starts_with("/api") || path.starts_with("/v1") { 1 } else { 0 },
                req_headers: format!(
                    r#"{{"Host":"shop.local","User-Agent":"{agent}","X-Request-Id":"req-{i:02}"}}"#
                ),
                req_method: method.into(),
                req_path: path.into(),
                req_body: if req_size > 0 { r#"{"qty":1}"#.into() } else { String::new() },
                req_body_size: req_size,
                resp_headers: r#"{"Content-Type":"application/json"}"#.into(),
                resp_status: status,
                resp_message: reason(status).into(),
                resp_body: String::new(),
                resp_body_size: resp_size,
                latency: latency_ms * MS,
            }
        })
        .collect()
}

fn reason(status: i64) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        402 => "Payment Required",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// `(seconds before now, process, remote address, remote port, role, open, close, active, sent, received)`
type ConnSample = (i64, Upid, &'static str, i64, i64, i64, i64, i64, i64, i64);

const CONNECTIONS: [ConnSample; 11] = [
    (50, FRONTEND, "10.0.2.5", 6379, 1, 1, 0, 1, 1000, 5000),
    (30, FRONTEND, "10.0.2.5", 6379, 1, 2, 1, 1, 3000, 9000),
    (10, FRONTEND, "10.0.2.5", 6379, 1, 3, 2, 1, 7000, 20000),
    (50, FRONTEND, "10.0.0.1", 0, 2, 4, 2, 2, 10000, 2000),
    (30, FRONTEND, "10.0.0.1", 0, 2, 6, 4, 2, 20000, 4000),
    (10, FRONTEND, "10.0.0.1", 0, 2, 9, 6, 3, 35000, 6500),
    (40, CART, "10.0.2.7", 5432, 1, 1, 0, 1, 500, 800),
    (10, CART, "10.0.2.7", 5432, 1, 1, 0, 1, 1500, 4000),
    (20, PAYMENTS, "10.0.3.9", 443, 1, 1, 1, 0, 700, 900),
    (40, CURL, "127.0.0.1", 8080, 1, 1, 1, 0, 100, 3000),
    (8, CURL, "127.0.0.1", 8080, 1, 2, 2, 0, 200, 6000),
];

pub fn conn_rows() -> Vec<conn_stats::Row> {
    CONNECTIONS
        .iter()
        .map(
            |&(ago, upid, addr, port, role, open, close, active, sent, recv)| conn_stats::Row {
                time_: NOW_NS - ago * S,
                upid,
                remote_addr: addr.into(),
                remote_port: port,
                addr_family: 2,
                protocol: if port == 8080 || port == 0 { 1 } else { 0 },
                role,
                conn_open: open,
                conn_close: close,
                conn_active: active,
                bytes_sent: sent,
                bytes_recv: recv,
            },
        )
        .collect()
}

/// `(seconds before now, process, user CPU ms, kernel CPU ms, threads, rss MiB, read KiB, written KiB)`
type ProcSample = (i64, Upid, i64, i64, i64, i64, i64, i64);

const PROCESSES: [ProcSample; 10] = [
    (50, FRONTEND, 1000, 200, 8, 50, 100, 10),
    (30, FRONTEND, 1500, 300, 8, 52, 100, 30),
    (10, FRONTEND, 2300, 500, 9, 55, 200, 40),
    (50, CART, 400, 100, 4, 30, 0, 0),
    (30, CART, 500, 150, 4, 30, 0, 0),
    (10, CART, 700, 200, 4, 31, 10, 5),
    (50, PAYMENTS, 5000, 1000, 40, 400, 1000, 500),
    (30, PAYMENTS, 6000, 1500, 40, 410, 1200, 700),
    (10, PAYMENTS, 8000, 2000, 42, 420, 1500, 900),
    (40, CURL, 20, 10, 1, 8, 0, 0),
];

pub fn process_rows() -> Vec<process_stats::Row> {
    PROCESSES
        .iter()
        .map(
            |&(ago, upid, user_ms, kernel_ms, threads, rss_mib, read_kib, write_kib)| {
                process_stats::Row {
                    time_: NOW_NS - ago * S,
                    upid,
                    major_faults: 0,
                    minor_faults: threads * 100,
                    cpu_utime_ns: user_ms * MS,
                    cpu_ktime_ns: kernel_ms * MS,
                    num_threads: threads,
                    vsize_bytes: (rss_mib * 4) << 20,
                    rss_bytes: rss_mib << 20,
                    rchar_bytes: read_kib * 2048,
                    wchar_bytes: write_kib * 2048,
                    read_bytes: read_kib << 10,
                    write_bytes: write_kib << 10,
                }
            },
        )
        .collect()
}

/// The three tables as DataFusion `MemTable`s (one partition, so runs are deterministic).
pub struct Catalog {
    tables: Vec<(&'static str, Arc<dyn TableSource>)>,
}

impl Catalog {
    pub fn fixture() -> Self {
        let table = |schema, batch| -> Arc<dyn TableSource> {
            provider_as_source(Arc::new(
                MemTable::try_new(schema, vec![vec![batch]]).unwrap(),
            ))
        };
        Catalog {
            tables: vec![
                (
                    http_events::NAME,
                    table(http_events::schema(), http_events::to_batch(&http_rows())),
                ),
                (
                    conn_stats::NAME,
                    table(conn_stats::schema(), conn_stats::to_batch(&conn_rows())),
                ),
                (
                    process_stats::NAME,
                    table(
                        process_stats::schema(),
                        process_stats::to_batch(&process_rows()),
                    ),
                ),
            ],
        }
    }
}

impl TableCatalog for Catalog {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|(n, _)| n.to_string()).collect()
    }

    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        self.tables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    }
}

/// Kubernetes metadata for three processes; the curl process only has a command line and host.
#[derive(Debug)]
pub struct Metadata(HashMap<(String, MetadataField), String>);

impl Metadata {
    pub fn fixture() -> Arc<Self> {
        use MetadataField::*;
        let mut m = HashMap::new();
        let mut add = |upid: Upid, field, value: &str| {
            m.insert((upid.to_string(), field), value.to_string());
        };
        for (upid, pod, service, ns, node, container, cmd) in [
            (
                FRONTEND,
                "shop/frontend-7d9f",
                "shop/frontend",
                "shop",
                "node-a",
                "frontend",
                "/app/frontend --port 8080",
            ),
            (
                CART,
                "shop/cart-5c4b",
                "shop/cart",
                "shop",
                "node-a",
                "cart",
                "python3 cart.py",
            ),
            (
                PAYMENTS,
                "billing/payments-0",
                "billing/payments",
                "billing",
                "node-b",
                "payments",
                "java -jar payments.jar",
            ),
        ] {
            add(upid, Pod, pod);
            add(upid, Service, service);
            add(upid, Namespace, ns);
            add(upid, Node, node);
            add(upid, Container, container);
            add(upid, Cmdline, cmd);
            add(upid, Hostname, node);
        }
        add(CURL, Cmdline, "curl -s http://127.0.0.1:8080/");
        add(CURL, Hostname, "node-b");
        Arc::new(Metadata(m))
    }
}

impl MetadataResolver for Metadata {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        self.0.get(&(upid.to_string(), field)).cloned()
    }
}
