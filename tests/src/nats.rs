//! A real `nats-server` (Debian's, installed by `make deps`) on a free loopback port.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::ChildGuard;

/// A NATS server for one test, stopped on drop.
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT`, or `tls://localhost:PORT` when it requires client certificates.
    pub url: String,
    _process: ChildGuard,
    _config: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server`; with `tls_dir` (ca.crt, server.crt, server.key) it admits only TLS
    /// clients with a certificate of that CA, as the operator's NATS does.
    pub fn start(tls_dir: Option<&Path>) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = tempfile::tempdir().unwrap();
        let mut text = format!("listen: 127.0.0.1:{port}\n");
        if let Some(dir) = tls_dir {
            text.push_str(&format!(
                "tls {{\n  ca_file: {:?}\n  cert_file: {:?}\n  key_file: {:?}\n  verify: true\n}}\n",
                dir.join("ca.crt"),
                dir.join("server.crt"),
                dir.join("server.key")
            ));
        }
        let file = config.path().join("nats.conf");
        std::fs::write(&file, text).unwrap();
        let process = Command::new("nats-server")
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server; `make deps` installs it)");
        let process = ChildGuard(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = match tls_dir {
            Some(_) => format!("tls://localhost:{port}"),
            None => format!("nats://127.0.0.1:{port}"),
        };
        NatsServer { url, _process: process, _config: config }
    }
}
