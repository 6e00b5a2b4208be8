//! End to end on this host (needs root, real kernel): `vizier standalone` as a child process, a
//! Python HTTP server and client making known requests, then the real `kubectl-pixie run
//! px/http_data -o json` must list those requests (method, path, status). A script with an error must
//! come back as `line:col: message` with a caret and exit code 1. The same requests must show
//! through the multi-node query path too: `vizier pem --listen` queried by `vizier kelvin --pem`,
//! every hop over mutual TLS with the certificates the operator generates for a Vizier.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{describe, is_root, kubectl_pixie, text, vizier_binary};
use pixie_tests::{ChildGuard, PythonHttpServer, ResponseStatus, Traffic, first_line};

/// A `vizier` child process and where its log goes.
struct Vizier {
    child: ChildGuard,
    addr: String,
    log_path: std::path::PathBuf,
}

impl Vizier {
    /// Starts `vizier <args>` and waits for its "vizier <role> listening on ADDR" line.
    fn start(args: &[&str], dir: &std::path::Path) -> Vizier {
        let role = args[0];
        let log_path = dir.join(format!("vizier-{role}.log"));
        let mut child = ChildGuard(
            Command::new(vizier_binary())
                .args(args)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting vizier {role}: {e}")),
        );
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let line = first_line(&mut child.0, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("vizier {role} printed no address\n{}", log()));
        let addr = line
            .trim()
            .strip_prefix(&format!("vizier {role} listening on "))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", log()))
            .to_owned();
        Vizier {
            child,
            addr,
            log_path,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops it with SIGTERM; it must exit cleanly.
    fn stop(mut self) {
        self.child.terminate();
        let status = self.child.0.wait().unwrap();
        assert!(
            status.success(),
            "vizier exited with {status}\n{}",
            self.log()
        );
    }
}

/// Known requests through a local Python server, with a nonce so that other traffic on this host
/// cannot match: (method, path, status), and the server (stopped on drop).
fn make_requests(
    dir: &std::path::Path,
) -> (String, BTreeSet<(String, String, i64)>, PythonHttpServer) {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let wanted: Vec<(&str, String, i64)> =
        [("GET", 200), ("POST", 201), ("PUT", 404), ("DELETE", 503)]
            .iter()
            .enumerate()
            .map(|(i, (method, status))| (*method, format!("/e2e/{nonce}/{status}/r{i}"), *status))
            .collect();
    // /e2e/<nonce>/<status>/<name>: the server answers with the status the path names.
    let server = PythonHttpServer::start(dir, ResponseStatus::FromPathPart(3));
    let requests: Vec<(&str, String)> = wanted.iter().map(|(m, p, _)| (*m, p.clone())).collect();
    server.send(&Traffic::once(&requests, 5));
    let want = wanted
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.clone(), *s))
        .collect();
    (nonce, want, server)
}

/// Runs `px/http_data` against `addr` (with `kubectl pixie run` flags `flags`) until every wanted
/// request shows (the collector pushes every 100 ms; a bounded while), and returns the last output.
fn wait_for_requests(
    addr: &str,
    flags: &[&str],
    nonce: &str,
    want: &BTreeSet<(String, String, i64)>,
    logs: impl Fn() -> String,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut seen, mut last) = (BTreeSet::new(), String::new());
    while Instant::now() < deadline {
        let output = kubectl_pixie()
            .args([
                "run",
                "px/http_data",
                "--addr",
                addr,
                "-o",
                "json",
                "--max-rows",
                "100000",
            ])
            .args(flags)
            // The script shows 100 rows unless told otherwise; this host may have more traffic.
            .args(["--", "--start_time", "-2m", "--max_rows", "100000"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl-pixie: {}\n{}",
            describe(&output),
            logs()
        );
        let stdout = text(&output.stdout);
        seen = stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .filter_map(|row| {
                let path = row["req_path"].as_str()?;
                path.contains(nonce).then(|| {
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
        "want {want:?}\nseen {seen:?}\nlast output:\n{last}\nlogs:\n{}",
        logs()
    );
    last
}

fn skipped_without_root(test: &str) -> bool {
    if !is_root() {
        eprintln!(
            "\n\n******** SKIPPED {test}: vizier loads eBPF programs, which needs root ********\n"
        );
    }
    !is_root()
}

#[test]
fn kubectl_pixie_shows_the_requests_a_standalone_vizier_traced() {
    if skipped_without_root("kubectl_pixie_shows_the_requests_a_standalone_vizier_traced") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vizier = Vizier::start(&["standalone", "--listen", "127.0.0.1:0"], dir.path());
    let addr = vizier.addr.clone();
    let (nonce, want, mut server) = make_requests(dir.path());
    let last = wait_for_requests(&addr, &[], &nonce, &want, || vizier.log());
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
    vizier.stop();
}

#[test]
fn kubectl_pixie_shows_the_requests_a_pem_traced_through_kelvin() {
    if skipped_without_root("kubectl_pixie_shows_the_requests_a_pem_traced_through_kelvin") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    write_operator_certificates(&certs);
    // Kelvin finds the PEM by its heartbeats on NATS, configured as the operator configures it.
    let nats_config = pixie_operator::render::nats::config(&operator_inputs());
    let nats = pixie_tests::NatsServer::start(&nats_config.data.unwrap()["nats.conf"], &certs);
    let certs = certs.to_str().unwrap();
    let heartbeats = ["--nats-url", &nats.url, "--heartbeat-interval", "1s"];
    let pem = Vizier::start(
        &[
            &["pem", "--listen", "127.0.0.1:0", "--node-name", "e2e-node"][..],
            &heartbeats,
            &["--tls-dir", certs],
        ]
        .concat(),
        dir.path(),
    );
    let kelvin = Vizier::start(
        &[
            &["kelvin", "--listen", "127.0.0.1:0"][..],
            &heartbeats,
            &["--tls-dir", certs],
        ]
        .concat(),
        dir.path(),
    );
    // A Kelvin just started knows no PEM until the next heartbeat.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !kelvin.log().contains("PEM heard") {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat:\n{}",
            kelvin.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (nonce, want, mut server) = make_requests(dir.path());
    let logs = || format!("--- pem\n{}\n--- kelvin\n{}", pem.log(), kelvin.log());
    let tls = ["--tls-dir", certs];
    wait_for_requests(&kelvin.addr, &tls, &nonce, &want, logs);

    // `kubectl pixie run px/http_data` against `addr` fails, saying `why`.
    let refused = |addr: &str, tls: &[&str], why: &str| {
        let output = kubectl_pixie()
            .args(["run", "px/http_data", "--addr", addr])
            .args(tls)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{}", describe(&output));
        assert!(text(&output.stderr).contains(why), "{}", describe(&output));
    };
    // Without the client certificate, neither Kelvin nor the PEM answers.
    for addr in [&kelvin.addr, &pem.addr] {
        refused(addr, &[], "pass --tls-dir");
    }

    // df.ctx comes from the PEM: its node name.
    let script = dir.path().join("nodes.pxl");
    std::fs::write(
        &script,
        "import px\ndf = px.DataFrame(table='process_stats', start_time='-2m')\n\
         df.node = df.ctx['node']\npx.display(df.groupby('node').agg(n=('upid', px.count)))\n",
    )
    .unwrap();
    let output = kubectl_pixie()
        .args([
            "run",
            "-f",
            script.to_str().unwrap(),
            "--addr",
            &kelvin.addr,
            "-o",
            "json",
        ])
        .args(tls)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\n{}", describe(&output), logs());
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("\"node\":\"e2e-node\""),
        "{stdout}\n{}",
        logs()
    );

    // The PEM gone: Kelvin's queries fail and name it.
    server.terminate();
    let pem_addr = pem.addr.clone();
    pem.stop();
    refused(&kelvin.addr, &tls, &pem_addr);
    // Three missed heartbeats later Kelvin has forgotten it, and says there is no PEM at all.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    refused(
        &kelvin.addr,
        &tls,
        "no PEMs to query (PEMs heard on NATS within 3s)",
    );
    kelvin.stop();
}

/// What the operator renders a Vizier from.
fn operator_inputs() -> pixie_operator::validate::Inputs {
    pixie_operator::validate::Inputs {
        name: "pixie".into(),
        namespace: "pl".into(),
        uid: "uid".into(),
        version: "0.0.0".into(),
        cluster_name: "e2e".into(),
        backend: pixie_operator::validate::MetadataBackend::Memory,
        default_registry: "registry.invalid".into(),
        spec: Default::default(),
        patches: Default::default(),
        cloud_trust: pixie_cloud::Trust::SystemRoots,
        tls_not_after: None,
    }
}

/// The `service-tls-certs` Secret the operator generates, written out as the pods mount it.
fn write_operator_certificates(dir: &std::path::Path) {
    let inputs = operator_inputs();
    let secret =
        pixie_operator::secrets::tls_secret(&inputs, k8s_openapi::jiff::Timestamp::now()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (file, bytes) in secret.data.unwrap() {
        std::fs::write(dir.join(file), bytes.0).unwrap();
    }
}
