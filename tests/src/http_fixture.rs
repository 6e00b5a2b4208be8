//! Known HTTP traffic on loopback for the eBPF tracing suites: a Python server and a Python client,
//! so that the requests are made by a process the tracer sees like any other. Each test puts a
//! nonce in its paths, so that other traffic on the host cannot match what it looks for.
//!
//! `PIXIE_TEST_PYTHON` names the interpreter (default `python3`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::{ChildGuard, first_line};

// argv: "fixed" STATUS, or "segment" N (the status is the Nth "/"-separated part of the path).
// Prints its port as its first line.
const SERVER_PY: &str = r#"
import http.server, sys

mode, number = sys.argv[1], int(sys.argv[2])

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status = int(self.path.split("/")[number]) if mode == "segment" else number
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

// argv: port, [[method, path], ...] of one burst, bursts, seconds to pause after each burst (none
// when 0), body bytes of each POST and PUT. "{burst}" in a path becomes the burst's number. Prints
// how many requests it made.
const CLIENT_PY: &str = r#"
import http.client, json, sys, time

port, requests, bursts, pause, body_len = int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
conn = http.client.HTTPConnection("127.0.0.1", port)
made = 0
for burst in range(bursts):
    for method, path in requests:
        body = b"x" * body_len if method in ("POST", "PUT") else None
        conn.request(method, path.replace("{burst}", str(burst)), body=body)
        conn.getresponse().read()
        made += 1
    if pause:
        time.sleep(pause)
conn.close()
print(made, flush=True)
"#;

/// The status the server answers every request with.
#[derive(Clone, Copy, Debug)]
pub enum ResponseStatus {
    /// Always this one.
    Fixed(u16),
    /// The number in this `/`-separated part of the request path: 3 for `/e2e/<nonce>/<status>/…`
    /// (part 0 is the empty string before the first `/`).
    FromPathPart(usize),
}

/// What a client sends: `burst` in order, `bursts` times over one connection.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// (method, path) of each request of a burst; `{burst}` in a path becomes the burst's number
    /// (from 0).
    pub burst: Vec<(String, String)>,
    pub bursts: u64,
    /// Slept after every burst, the last one too; nothing when zero.
    pub pause: Duration,
    /// Bytes in the body of every POST and PUT; other methods send none.
    pub body_len: usize,
}

impl Traffic {
    /// These requests once, without pausing.
    pub fn once(requests: &[(&str, String)], body_len: usize) -> Traffic {
        Traffic {
            burst: requests.iter().map(|(m, p)| (m.to_string(), p.clone())).collect(),
            bursts: 1,
            pause: Duration::ZERO,
            body_len,
        }
    }
}

/// A Python HTTP server on 127.0.0.1, stopped (SIGTERM) when dropped.
pub struct PythonHttpServer {
    child: ChildGuard,
    port: u16,
    client_py: PathBuf,
}

fn python() -> String {
    std::env::var("PIXIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl PythonHttpServer {
    /// Writes the server and client scripts into `dir`, starts the server and reads its port from
    /// its first line (within 20 s).
    pub fn start(dir: &Path, status: ResponseStatus) -> PythonHttpServer {
        let (server_py, client_py) = (dir.join("server.py"), dir.join("client.py"));
        std::fs::write(&server_py, SERVER_PY).expect("writing server.py");
        std::fs::write(&client_py, CLIENT_PY).expect("writing client.py");
        let (mode, number) = match status {
            ResponseStatus::Fixed(code) => ("fixed", code.to_string()),
            ResponseStatus::FromPathPart(index) => ("segment", index.to_string()),
        };
        let mut child = ChildGuard(
            Command::new(python())
                .arg(&server_py)
                .args([mode, &number])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("starting the python server ({}): {e}", python())),
        );
        let port = first_line(&mut child.0, Duration::from_secs(20))
            .and_then(|l| l.trim().parse().ok())
            .expect("the python server printed no port");
        PythonHttpServer { child, port, client_py }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client that sends `traffic` to this server, not yet run; it prints how many requests it
    /// made.
    pub fn client(&self, traffic: &Traffic) -> Command {
        let mut command = Command::new(python());
        command.arg(&self.client_py).args([
            self.port.to_string(),
            serde_json::to_string(&traffic.burst).expect("requests as JSON"),
            traffic.bursts.to_string(),
            traffic.pause.as_secs_f64().to_string(),
            traffic.body_len.to_string(),
        ]);
        command
    }

    /// Sends `traffic` and returns how many requests were made; panics with the client's output
    /// when it fails.
    pub fn send(&self, traffic: &Traffic) -> u64 {
        let output = self.client(traffic).output().expect("running the python client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the python client: exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout.trim().parse().unwrap_or_else(|_| panic!("the python client printed {stdout:?}"))
    }

    /// Stops the server now rather than on drop.
    pub fn terminate(&mut self) {
        self.child.terminate();
    }
}
