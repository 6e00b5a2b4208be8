//! `make bench`: loopback HTTP/1.1 throughput under wrk with and without the collector attached, and
//! the share of requests the collector captured. Run as root (it loads the eBPF programs).
//!
//! The server is this same binary re-executed with `serve`, so it is a separate process that the
//! collector traces (the collector skips its own process). Rounds alternate baseline and traced runs
//! so that a slow phase of the machine hits both sides.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pixie_collector::{Collector, CollectorConfig};
use pixie_store::tables::{TraceRole, http_events};
use pixie_store::{StoreBudget, TableStore};

const BODY: &[u8] = b"hello from the benchmark server\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args.get(2).expect("serve PORT").parse().expect("port"));
        return;
    }
    let seconds: u64 = env_or("BENCH_SECONDS", 8);
    let rounds: u64 = env_or("BENCH_ROUNDS", 2);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 16);

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = ServerProcess::start(port);
    let url = format!("http://127.0.0.1:{port}/bench");

    let (mut base_rps, mut traced_rps, mut requests, mut captured, mut lost) = (0.0, 0.0, 0u64, 0u64, 0u64);
    for _ in 0..rounds {
        base_rps += wrk(&url, seconds, connections).rps;

        let server_rows = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let counter = server_rows.clone();
        let server_pid = server.pid();
        let (summary, result) = runtime.block_on(async {
            let collector = Collector::start(CollectorConfig::default(), TableStore::new(StoreBudget::default()))
                .expect("start the collector (run as root)")
                .with_sink(Box::new(move |table, batch| {
                    if table == http_events::NAME {
                        let rows = http_events::from_batch(batch).expect("decode http_events");
                        let n = rows
                            .iter()
                            .filter(|r| r.upid.pid == server_pid && r.trace_role == i64::from(TraceRole::Server))
                            .count();
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }));
            let url = url.clone();
            let load = tokio::task::spawn_blocking(move || wrk(&url, seconds, connections));
            let run = collector.run(async {
                // Let the last responses reach a push before stopping.
                tokio::time::sleep(Duration::from_secs(seconds + 2)).await;
            });
            let (summary, result) = tokio::join!(run, load);
            (summary.expect("collector run"), result.expect("wrk"))
        });
        traced_rps += result.rps;
        requests += result.requests;
        captured += server_rows.load(Ordering::Relaxed);
        lost += summary.kernel.lost_events;
    }
    server.stop();

    let (base, traced) = (base_rps / rounds as f64, traced_rps / rounds as f64);
    println!(
        "http_overhead: baseline_rps={base:.0} traced_rps={traced:.0} throughput_ratio={:.3} \
         captured={captured}/{requests} ({:.1}%) lost_events={lost} rounds={rounds} seconds={seconds} connections={connections}",
        traced / base,
        100.0 * captured as f64 / requests.max(1) as f64,
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct WrkResult {
    rps: f64,
    requests: u64,
}

fn wrk(url: &str, seconds: u64, connections: u64) -> WrkResult {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), url])
        .output()
        .expect("run wrk (Debian package wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output: {text}"));
    // "  123456 requests in 8.00s, 12.34MB read"
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output: {text}"));
    WrkResult { rps, requests }
}

struct ServerProcess(Child);

impl ServerProcess {
    fn start(port: u16) -> Self {
        let mut server = ServerProcess(
            Command::new(std::env::current_exe().unwrap())
                .args(["serve", &port.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .expect("start the server process"),
        );
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server.stop();
        panic!("benchmark server did not listen on {port}");
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A keep-alive HTTP/1.1 server, a thread per connection: enough to saturate wrk on loopback.
fn serve(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = handle(stream);
        });
    }
}

fn handle(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // Reads and writes go through one fd: the tracer follows a connection by its fd, and a
    // try_clone()d stream would split each direction onto a different one.
    let mut reader = BufReader::new(&stream);
    let response = [
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", BODY.len()).as_bytes(),
        BODY,
    ]
    .concat();
    loop {
        let mut content_length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(&mut (&mut reader).take(content_length as u64), &mut std::io::sink())?;
        (&stream).write_all(&response)?;
    }
}
