//! End to end on this host (needs root, real kernel): `vizier standalone` as a child process, a
//! Python HTTP server and client making known requests, then the real `kubectl-pixie run
//! px/http_data -o json` must list those requests (method, path, status). A script with an error must
//! come back as `line:col: message` with a caret and exit code 1.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ChildGuard, describe, is_root, kubectl_pixie, text, vizier_binary};

const SERVER_PY: &str = r#"
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        # /e2e/<nonce>/<status>/<name>
        status = int(self.path.split("/")[3])
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

const CLIENT_PY: &str = r#"
import http.client, json, sys

port, requests = int(sys.argv[1]), json.loads(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for method, path in requests:
    body = b"x" * 5 if method in ("POST", "PUT") else None
    conn.request(method, path, body=body)
    conn.getresponse().read()
conn.close()
"#;

fn python() -> String {
    std::env::var("PIXIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The first stdout line of `child` within `timeout`, read on a thread so a silent child cannot hang
/// the test.
fn first_line(child: &mut std::process::Child, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).ok()
}

#[test]
fn kubectl_pixie_shows_the_requests_a_standalone_vizier_traced() {
    if !is_root() {
        eprintln!(
            "\n\n******** SKIPPED kubectl_pixie_shows_the_requests_a_standalone_vizier_traced: \
             vizier standalone loads eBPF programs, which needs root ********\n"
        );
        return;
    }
    let vizier = vizier_binary();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("vizier.log");
    let mut vizier = ChildGuard(
        Command::new(&vizier)
            .args(["standalone", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("starting vizier standalone"),
    );
    let vizier_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let line = first_line(&mut vizier.0, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("vizier printed no address\n{}", vizier_log()));
    let addr = line
        .trim()
        .strip_prefix("vizier standalone listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", vizier_log()))
        .to_owned();

    // Known requests, with a nonce so that other traffic on this host cannot match.
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let wanted: Vec<(&str, String, i64)> =
        [("GET", 200), ("POST", 201), ("PUT", 404), ("DELETE", 503)]
            .iter()
            .enumerate()
            .map(|(i, (method, status))| (*method, format!("/e2e/{nonce}/{status}/r{i}"), *status))
            .collect();
    std::fs::write(dir.path().join("server.py"), SERVER_PY).unwrap();
    std::fs::write(dir.path().join("client.py"), CLIENT_PY).unwrap();
    let mut server = ChildGuard(
        Command::new(python())
            .arg(dir.path().join("server.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the python server"),
    );
    let port: u16 = first_line(&mut server.0, Duration::from_secs(20))
        .and_then(|l| l.trim().parse().ok())
        .expect("the python server's port");
    let requests: Vec<(&str, &str)> = wanted.iter().map(|(m, p, _)| (*m, p.as_str())).collect();
    let client = Command::new(python())
        .arg(dir.path().join("client.py"))
        .arg(port.to_string())
        .arg(serde_json::to_string(&requests).unwrap())
        .output()
        .expect("running the python client");
    assert!(client.status.success(), "client: {}", describe(&client));

    // The collector pushes every 100 ms; give it a bounded while to show up.
    let want: BTreeSet<(String, String, i64)> = wanted
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.clone(), *s))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut seen, mut last) = (BTreeSet::new(), String::new());
    while Instant::now() < deadline {
        let output = kubectl_pixie()
            .args([
                "run",
                "px/http_data",
                "--addr",
                &addr,
                "-o",
                "json",
                "--max-rows",
                "100000",
            ])
            // The script shows 100 rows unless told otherwise; this host may have more traffic.
            .args(["--", "--start_time", "-2m", "--max_rows", "100000"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl-pixie: {}",
            describe(&output)
        );
        let stdout = text(&output.stdout);
        seen = stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .filter_map(|row| {
                let path = row["req_path"].as_str()?;
                path.contains(&nonce).then(|| {
                    (
                        row["req_method"].as_str().unwrap_or_default().to_owned(),
                        path.to_owned(),
                        row["resp_status"].as_i64().unwrap_or_default(),
                    )
                })
            })
            .collect();
        last = stdout;
        if want.is_subset(&seen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        want.is_subset(&seen),
        "want {want:?}\nseen {seen:?}\nlast output:\n{last}\nvizier log:\n{}",
        vizier_log()
    );
    // Every row names its output table.
    assert!(last.lines().all(|l| l.contains("\"_table\":")), "{last}");

    // A compile error: `line:col: message`, the line, a caret, exit code 1.
    let bad = dir.path().join("bad.pxl");
    std::fs::write(&bad, "import px\ndf = px.DataFrame(table='http_events')\ndf = df[df.no_such_column > 1]\npx.display(df)\n").unwrap();
    let output = kubectl_pixie()
        .args(["run", "-f", bad.to_str().unwrap(), "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    let mut lines = stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("3:") && first.contains("no_such_column"),
        "{stderr}"
    );
    assert_eq!(
        lines.next(),
        Some("3 | df = df[df.no_such_column > 1]"),
        "{stderr}"
    );
    assert!(
        lines.next().is_some_and(|l| l.trim_end().ends_with('^')),
        "{stderr}"
    );

    server.terminate();
    vizier.terminate();
    let status = vizier.0.wait().unwrap();
    assert!(
        status.success(),
        "vizier exited with {status}\n{}",
        vizier_log()
    );
}
