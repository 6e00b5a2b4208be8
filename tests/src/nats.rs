//! A real `nats-server` (Debian's, installed by `make deps`) running the configuration the operator
//! renders for a Vizier, moved onto free loopback ports.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::ChildGuard;
use crate::free_port;

/// A NATS server for one test, stopped on drop.
pub struct NatsServer {
    /// `tls://localhost:PORT`: the server certificate names localhost.
    pub url: String,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` with `config` (the operator's `nats.conf`), its `/certs/` files read from
    /// `certs` and its client and monitoring ports replaced by free ones.
    pub fn start(config: &str, certs: &Path) -> NatsServer {
        let (port, monitor) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let config: String = config
            .lines()
            .map(
                |line| match line.split_once(':').map(|(key, _)| key.trim()) {
                    Some("port") => format!("listen: 127.0.0.1:{port}"),
                    Some("http") => format!("http: 127.0.0.1:{monitor}"),
                    Some("pid_file") => format!("pid_file: {:?}", dir.path().join("nats.pid")),
                    _ => line.replace("/certs/", &format!("{}/", certs.display())),
                },
            )
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            config.contains("verify: true"),
            "the Vizier's NATS checks client certificates:\n{config}"
        );
        let file = dir.path().join("nats.conf");
        std::fs::write(&file, config).unwrap();
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
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsServer {
            url: format!("tls://localhost:{port}"),
            _process: process,
            _dir: dir,
        }
    }
}
