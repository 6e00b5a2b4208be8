//! The real `kubectl-pixie` binary against the real control plane (kube-apiserver, etcd,
//! controller-manager, kwok nodes): `deploy` with its progress until Ready, `get` of every kind with
//! status columns and `-o json|yaml|name`, `status`, `delete`, `run pxl/NAME` against an in-process
//! broker, and the one-line errors for an unreachable cluster and missing CRDs.
//!
//! The operator Deployment that `deploy` installs only gets a kwok-simulated pod, so each test that
//! needs reconciling runs the operator in-process, scoped to its own fresh namespace. The operator's
//! install objects (namespace px-operator, cluster-wide RBAC) are shared with other suites: they are
//! applied idempotently and never deleted here (`delete operator` runs only as a server dry run).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use pixie_cli::kinds::PxKind;
use pixie_crds::{PxlScript, Vizier};
use pixie_engine::server::{self, VizierApi};
use pixie_engine::{Engine, EngineConfig, ProcMetadata};
use pixie_operator::{Metrics, Settings};
use pixie_store::tables::http_events;
use pixie_store::{StoreBudget, TableStore, Upid};
use pixie_tests::{REPO_ROOT, TestCluster};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-pixie");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Runs `kubectl-pixie --kubeconfig <kubeconfig> <args>`, with no KUBECONFIG from the environment.
async fn pixie_with(kubeconfig: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("run kubectl-pixie")
}

async fn pixie(args: &[&str]) -> Output {
    pixie_with(TestCluster::shared().kubeconfig(), args).await
}

/// Runs and expects success; returns stdout.
async fn pixie_ok(args: &[&str]) -> String {
    let output = pixie(args).await;
    assert!(
        output.status.success(),
        "kubectl-pixie {}: {}",
        args.join(" "),
        describe(&output)
    );
    text(&output.stdout)
}

/// Runs and expects exit code 1; returns stderr.
async fn pixie_fails(args: &[&str]) -> String {
    let output = pixie(args).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "kubectl-pixie {}: {}",
        args.join(" "),
        describe(&output)
    );
    text(&output.stderr)
}

/// The cells of the row whose first column is `name`, keyed by header. Columns are cut at the
/// header's positions, so headers and values with spaces (`LAST RUN`, `* * * * *`) stay whole.
fn row(table: &str, headers: &[&str], first: &str) -> BTreeMap<String, String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_else(|| panic!("empty table"));
    let starts: Vec<usize> = headers
        .iter()
        .map(|h| {
            header
                .find(&format!("{h}   "))
                .or_else(|| header.ends_with(h).then(|| header.len() - h.len()))
                .unwrap_or_else(|| panic!("no column {h} in {header:?}"))
        })
        .collect();
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"));
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            let cell = line.get(starts[i].min(line.len())..end).unwrap_or_default();
            (h.to_string(), cell.trim().to_owned())
        })
        .collect()
}

struct Operator {
    task: tokio::task::JoinHandle<Result<(), pixie_operator::Error>>,
    stop: oneshot::Sender<()>,
}

async fn start_operator(cluster: &TestCluster, ns: &str) -> Operator {
    let settings = Settings {
        namespace: Some(ns.to_owned()),
        resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(pixie_operator::run(
        cluster.client().await,
        settings,
        Metrics::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    Operator { task, stop }
}

impl Operator {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops")
            .expect("the operator did not panic")
            .expect("the operator stops cleanly");
    }
}

async fn setup(prefix: &str) -> (&'static TestCluster, kube::Client, String) {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let ns = cluster.fresh_namespace(&client, prefix).await;
    (cluster, client, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follows_the_rollout_to_ready_and_get_status_delete_show_the_vizier() {
    let (cluster, client, ns) = setup("cli-deploy").await;
    let operator = start_operator(cluster, &ns).await;

    let out = pixie_ok(&[
        "deploy",
        "-n",
        &ns,
        "--operator-namespace",
        "px-operator",
        "--timeout",
        "3m",
    ])
    .await;
    // Everything applied is reported as kubectl reports it.
    for applied in [
        "customresourcedefinition.apiextensions.k8s.io/viziers.px.dev ",
        "customresourcedefinition.apiextensions.k8s.io/plugins.px.dev ",
        "namespace/px-operator ",
        "clusterrole.rbac.authorization.k8s.io/pixie-operator ",
        "deployment.apps/pixie-operator ",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(applied))
            .unwrap_or_else(|| panic!("{applied} not reported:\n{out}"));
        let verb = line.rsplit(' ').next().unwrap();
        assert!(
            ["created", "configured", "unchanged"].contains(&verb),
            "{line}"
        );
    }
    assert!(out.contains("\nvizier.px.dev/pixie created\n"), "{out}");
    // Progress: the rollout as the operator reports it, then Ready.
    assert!(
        out.contains("vizier.px.dev/pixie: Ready=False, Progressing=True Deploying: rolling out"),
        "{out}"
    );
    assert!(
        out.contains("vizier.px.dev/pixie: Ready=True Available: Vizier"),
        "{out}"
    );
    assert!(out.contains("vizier.px.dev/pixie: phase Healthy"), "{out}");
    assert!(out.ends_with("vizier.px.dev/pixie is Ready\n"), "{out}");

    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    let vizier = viziers.get("pixie").await.unwrap();
    let key = vizier.spec.deploy_key.clone().expect("a local deploy key");
    assert!(key.starts_with("px-dep-"), "{key}");
    let version = vizier.status.as_ref().unwrap().version.clone().unwrap();

    // get: the table, one object as JSON and YAML, names.
    let table = pixie_ok(&["get", "viziers", "-n", &ns]).await;
    let headers = ["NAME", "VERSION", "PHASE", "READY", "DEGRADED", "AGE"];
    let cells = row(&table, &headers, "pixie");
    assert_eq!(cells["VERSION"], version, "{table}");
    assert_eq!(cells["PHASE"], "Healthy", "{table}");
    assert_eq!(cells["READY"], "True", "{table}");
    assert_eq!(cells["DEGRADED"], "False", "{table}");
    assert!(
        cells["AGE"].ends_with('s') || cells["AGE"].ends_with('m'),
        "{table}"
    );

    let json: Value =
        serde_json::from_str(&pixie_ok(&["get", "vz", "pixie", "-n", &ns, "-o", "json"]).await)
            .unwrap();
    assert_eq!(json["kind"], "Vizier");
    assert_eq!(json["metadata"]["namespace"], ns.as_str());
    assert_eq!(json["status"]["vizierPhase"], "Healthy");
    assert!(json["metadata"].get("managedFields").is_none());
    let yaml: Value =
        serde_saphyr::from_str(&pixie_ok(&["get", "vz", "-n", &ns, "-o", "yaml"]).await).unwrap();
    assert_eq!(yaml["kind"], "List");
    assert_eq!(yaml["items"][0]["metadata"]["name"], "pixie");
    assert_eq!(
        pixie_ok(&["get", "viziers", "-n", &ns, "-o", "name"]).await,
        "vizier.px.dev/pixie\n"
    );

    // status: phase, conditions, every workload ready, every PEM running.
    let status = pixie_ok(&["status", "-n", &ns]).await;
    assert!(
        status.starts_with(&format!("Vizier:      {ns}/pixie\n")),
        "{status}"
    );
    assert!(status.contains("Phase:       Healthy\n"), "{status}");
    assert!(status.contains("Deployment:  Ready\n"), "{status}");
    for (kind, name, ready) in [
        ("DaemonSet", "vizier-pem", "3/3"),
        ("Deployment", "kelvin", "1/1"),
        ("Deployment", "vizier-query-broker", "1/1"),
        ("StatefulSet", "pl-nats", "1/1"),
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [kind, name, ready]),
            "{kind} {name} {ready} missing:\n{status}"
        );
    }
    assert!(status.contains("PEMs: all 3 running"), "{status}");
    let report: Value =
        serde_json::from_str(&pixie_ok(&["status", "pixie", "-n", &ns, "-o", "json"]).await)
            .unwrap();
    assert_eq!(report["phase"], "Healthy");
    assert_eq!(report["conditions"][0]["type"], "Ready");
    assert_eq!(report["unreadyPems"], json!([]));

    // A second deploy with nothing new changes nothing; a new flag is an upgrade that keeps the key.
    let again = pixie_ok(&["deploy", "-n", &ns, "--skip-operator", "--wait=false"]).await;
    assert_eq!(again, "vizier.px.dev/pixie unchanged\n");
    let upgrade = pixie_ok(&[
        "deploy",
        "-n",
        &ns,
        "--skip-operator",
        "--pem-memory-limit",
        "1Gi",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(
        upgrade.starts_with("vizier.px.dev/pixie configured\n"),
        "{upgrade}"
    );
    assert!(
        upgrade.ends_with("vizier.px.dev/pixie is Ready\n"),
        "{upgrade}"
    );
    let vizier = viziers.get("pixie").await.unwrap();
    assert_eq!(vizier.spec.pem_memory_limit.as_deref(), Some("1Gi"));
    assert_eq!(vizier.spec.deploy_key.as_deref(), Some(key.as_str()));

    // delete --wait returns once the finalizer has run; then get says NotFound like kubectl.
    let deleted = pixie_ok(&[
        "delete",
        "vizier",
        "pixie",
        "-n",
        &ns,
        "--wait",
        "--timeout",
        "2m",
    ])
    .await;
    assert_eq!(deleted, "vizier.px.dev \"pixie\" deleted\n");
    assert!(viziers.get_opt("pixie").await.unwrap().is_none());
    let missing = pixie_fails(&["get", "vz", "pixie", "-n", &ns]).await;
    assert_eq!(
        missing,
        "Error from server (NotFound): viziers.px.dev \"pixie\" not found\n"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vizier_that_cannot_be_deployed_fails_the_deploy_with_the_operators_message() {
    let (cluster, _client, ns) = setup("cli-fail").await;
    let operator = start_operator(cluster, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let patches = dir.path().join("patches.yaml");
    // A patch that is not an object: the operator refuses the spec (InvalidSpec, Failed).
    std::fs::write(&patches, "kelvin: '[1, 2]'\n").unwrap();
    let output = pixie(&[
        "deploy",
        "-n",
        &ns,
        "--skip-operator",
        "--patches",
        patches.to_str().unwrap(),
        "--timeout",
        "2m",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    // After the note about the generated deploy key, the error.
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: vizier.px.dev/pixie failed: InvalidSpec: spec.patches[kelvin]"),
        "{}",
        describe(&output)
    );

    // Without an operator nothing reports: the wait ends at the timeout, saying why.
    operator.stop().await;
    let output = pixie(&[
        "deploy",
        "-n",
        &ns,
        "--name",
        "unwatched",
        "--skip-operator",
        "--timeout",
        "3s",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "error: timed out after 3s waiting for vizier.px.dev/unwatched to be Ready: the operator \
             has not reported on its current spec; is the operator running?"
        ),
        "{}",
        describe(&output)
    );
    assert!(
        text(&output.stdout)
            .contains("Waiting for the operator to pick up vizier.px.dev/unwatched"),
        "{}",
        describe(&output)
    );
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

async fn set_status(
    client: &kube::Client,
    ns: &str,
    kind: PxKind,
    name: &str,
    status: Value,
) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind.api_resource());
    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("status of {name}: {e}"));
    serde_json::to_value(patched).unwrap()
}

#[tokio::test]
async fn get_shows_each_kinds_status_columns_and_delete_reports_like_kubectl() {
    let (cluster, client, ns) = setup("cli-get").await;
    let samples = format!("{REPO_ROOT}/config/samples");
    cluster.kubectl_ok(&["apply", "--server-side", "-n", &ns, "-k", &samples]);
    let recent =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(30);
    let recent = recent.to_string();

    set_status(
        &client,
        &ns,
        PxKind::PxlScript,
        "http-service-stats",
        json!({"conditions": [condition("Compiled", "False", "CompileError", "3:5: unknown column 'x'\nmore")]}),
    )
    .await;
    set_status(
        &client,
        &ns,
        PxKind::CronScript,
        "http-service-stats-every-minute",
        json!({"lastRun": {"startTime": recent, "outcome": "Failed", "error": "boom"},
               "consecutiveFailures": 2}),
    )
    .await;
    let export = set_status(
        &client,
        &ns,
        PxKind::DataExport,
        "otel-collector",
        json!({"conditions": [condition("Ready", "False", "DeliveryFailed", "unavailable")],
               "lastDelivery": {"time": recent, "succeeded": false}, "droppedRecords": 7}),
    )
    .await;
    set_status(
        &client,
        &ns,
        PxKind::Plugin,
        "opentelemetry",
        json!({"conditions": [condition("Ready", "True", "Materialized", "ok")]}),
    )
    .await;

    let scripts = pixie_ok(&["get", "scripts", "-n", &ns]).await;
    let cells = row(
        &scripts,
        &["NAME", "COMPILED", "AGE", "MESSAGE"],
        "http-service-stats",
    );
    assert_eq!(cells["COMPILED"], "False", "{scripts}");
    assert_eq!(cells["MESSAGE"], "3:5: unknown column 'x'", "{scripts}");

    let crons = pixie_ok(&["get", "cronscripts", "-n", &ns]).await;
    let headers = [
        "NAME", "SCHEDULE", "SUSPEND", "LAST RUN", "OUTCOME", "FAILURES", "AGE",
    ];
    let cells = row(&crons, &headers, "http-service-stats-every-minute");
    assert_eq!(cells["SCHEDULE"], "* * * * *", "{crons}");
    assert_eq!(cells["SUSPEND"], "False", "{crons}");
    assert!(cells["LAST RUN"].ends_with('s'), "{crons}");
    assert_eq!(cells["OUTCOME"], "Failed", "{crons}");
    assert_eq!(cells["FAILURES"], "2", "{crons}");

    let exports = pixie_ok(&["get", "exports", "-n", &ns]).await;
    let headers = [
        "NAME",
        "ENDPOINT",
        "READY",
        "LAST DELIVERY",
        "DROPPED",
        "AGE",
    ];
    let cells = row(&exports, &headers, "otel-collector");
    assert_eq!(
        cells["ENDPOINT"],
        "otel-collector.observability.svc.cluster.local:4317"
    );
    assert_eq!(cells["READY"], "False", "{exports}");
    assert!(cells["LAST DELIVERY"].ends_with('s'), "{exports}");
    // droppedRecords shows when the CRD in the cluster keeps it (the apiserver prunes unknown fields).
    let dropped = export["status"]["droppedRecords"]
        .as_i64()
        .unwrap_or(0)
        .to_string();
    assert_eq!(cells["DROPPED"], dropped, "{exports}");

    let plugins = pixie_ok(&["get", "plugins", "-n", &ns]).await;
    let cells = row(
        &plugins,
        &["NAME", "VERSION", "ENABLED", "READY", "AGE"],
        "opentelemetry",
    );
    assert_eq!(
        (
            cells["VERSION"].as_str(),
            cells["ENABLED"].as_str(),
            cells["READY"].as_str()
        ),
        ("0.0.3", "True", "True"),
        "{plugins}"
    );

    // -A: a NAMESPACE column first, with both sample Viziers among every namespace's.
    let all = pixie_ok(&["get", "vz", "-A"]).await;
    assert!(all.starts_with("NAMESPACE "), "{all}");
    for name in ["pixie", "pixie-legacy"] {
        assert!(
            all.lines()
                .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == [ns.as_str(), name]),
            "{name} in {ns} missing:\n{all}"
        );
    }
    assert_eq!(
        pixie_ok(&["get", "plugins", "-n", &ns, "-o", "name"]).await,
        "plugin.px.dev/opentelemetry\n"
    );

    // Errors in kubectl's words.
    assert_eq!(
        pixie_fails(&["get", "exports", "nope", "-n", &ns]).await,
        "Error from server (NotFound): dataexports.px.dev \"nope\" not found\n"
    );
    assert!(
        pixie_fails(&["get", "pods"])
            .await
            .starts_with("error: unknown kind \"pods\"")
    );

    // delete goes on past a missing name, reports it, and exits 1.
    let output = pixie(&["delete", "export", "otel-collector", "nope", "-n", &ns]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        "dataexport.px.dev \"otel-collector\" deleted\n"
    );
    assert_eq!(
        text(&output.stderr),
        "Error from server (NotFound): dataexports.px.dev \"nope\" not found\n"
    );
    assert_eq!(
        pixie_ok(&[
            "delete",
            "cronscript",
            "http-service-stats-every-minute",
            "-n",
            &ns
        ])
        .await,
        "cronscript.px.dev \"http-service-stats-every-minute\" deleted\n"
    );
    let output = pixie(&["get", "cronscripts", "-n", &ns]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout.is_empty());
    assert_eq!(
        text(&output.stderr),
        format!("No resources found in {ns} namespace.\n")
    );
}

fn http_row(time_ns: i64, path: &str) -> http_events::Row {
    http_events::Row {
        time_: time_ns,
        upid: Upid::new(0, 4242, 100),
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        local_addr: "127.0.0.1".into(),
        local_port: 8080,
        trace_role: 2,
        major_version: 1,
        minor_version: 1,
        content_type: 0,
        req_headers: "{}".into(),
        req_method: "GET".into(),
        req_path: path.into(),
        req_body: String::new(),
        req_body_size: 0,
        resp_headers: "{}".into(),
        resp_status: 200,
        resp_message: "OK".into(),
        resp_body: String::new(),
        resp_body_size: 2,
        latency: 1_000_000,
    }
}

/// The query broker's API in this process, over a store holding three recent requests.
async fn start_broker() -> (String, oneshot::Sender<()>) {
    let store = TableStore::new(StoreBudget::default());
    let now = k8s_openapi::jiff::Timestamp::now().as_nanosecond() as i64;
    let rows: Vec<_> = ["/kept/1", "/kept/2", "/other/3"]
        .iter()
        .enumerate()
        .map(|(i, path)| http_row(now - 10_000_000_000 + i as i64, path))
        .collect();
    store
        .append(http_events::NAME, http_events::to_batch(&rows))
        .unwrap();
    let engine = Engine::new(
        &store,
        Arc::new(ProcMetadata::new()),
        EngineConfig::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(
        listener,
        VizierApi::new(Arc::new(engine), store),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

fn paths(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["req_path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pxl_runs_the_scripts_source_with_its_defaults_overridden_by_arguments() {
    let (_cluster, client, ns) = setup("cli-run").await;
    let script: PxlScript = serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1", "kind": "PxlScript",
        "metadata": {"name": "requests-under"},
        "spec": {
            "source": "import px\n\ndef requests(start_time: str, prefix: str):\n    \
                       df = px.DataFrame(table='http_events', start_time=start_time)\n    \
                       df = df[px.contains(df.req_path, prefix)]\n    \
                       return df[['req_method', 'req_path']]\n",
            "args": [
                {"name": "start_time", "type": "String", "default": "-5m"},
                {"name": "prefix", "type": "String", "default": "/other"},
            ],
        },
    }))
    .unwrap();
    Api::<PxlScript>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &script)
        .await
        .unwrap();
    let (addr, stop) = start_broker().await;

    let defaults = pixie_ok(&[
        "run",
        "pxl/requests-under",
        "-n",
        &ns,
        "--addr",
        &addr,
        "-o",
        "json",
    ])
    .await;
    assert_eq!(paths(&defaults), ["/other/3"], "{defaults}");
    let overridden = pixie_ok(&[
        "run",
        "pxl/requests-under",
        "-n",
        &ns,
        "--addr",
        &addr,
        "-o",
        "json",
        "--",
        "--prefix",
        "/kept",
    ])
    .await;
    assert_eq!(paths(&overridden), ["/kept/1", "/kept/2"], "{overridden}");

    let unknown = pixie_fails(&[
        "run",
        "pxl/requests-under",
        "-n",
        &ns,
        "--addr",
        &addr,
        "--",
        "--svc",
        "x",
    ])
    .await;
    assert_eq!(
        unknown,
        "error: pxl/requests-under has no argument --svc; it takes --start_time, --prefix\n"
    );
    assert_eq!(
        pixie_fails(&["run", "pxl/nope", "-n", &ns, "--addr", &addr]).await,
        "Error from server (NotFound): pxlscripts.px.dev \"nope\" not found\n"
    );
    let _ = stop.send(());
}

/// A copy of the test kubeconfig, changed by `edit`, in `dir`.
fn kubeconfig_copy(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let original = std::fs::read_to_string(TestCluster::shared().kubeconfig()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&original).unwrap();
    edit(&mut config);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP server that answers every request as an apiserver without the px.dev group does.
fn start_server_without_px_dev() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body = "404 page not found\n";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn unreachable_clusters_and_missing_crds_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let server = format!("https://127.0.0.1:{port}");
    let unreachable = kubeconfig_copy(dir.path(), "unreachable", |c| {
        c["clusters"][0]["cluster"]["server"] = json!(server);
    });
    let output = pixie_with(&unreachable, &["get", "viziers"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: cannot reach the Kubernetes API server at {server}: connection refused; \
             check --kubeconfig and --context\n"
        )
    );

    // KUBECONFIG is honoured when --kubeconfig is not given.
    let output = tokio::process::Command::new(BIN)
        .args(["status"])
        .env("KUBECONFIG", &unreachable)
        .output()
        .await
        .unwrap();
    assert!(
        text(&output.stderr).contains(&format!(
            "cannot reach the Kubernetes API server at {server}"
        )),
        "{}",
        describe(&output)
    );

    // --context picks a context other than the current one.
    let original: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(TestCluster::shared().kubeconfig()).unwrap(),
    )
    .unwrap();
    let real = original["current-context"].as_str().unwrap().to_owned();
    let two_contexts = kubeconfig_copy(dir.path(), "two-contexts", |c| {
        let mut bogus_cluster = c["clusters"][0].clone();
        bogus_cluster["name"] = json!("bogus");
        bogus_cluster["cluster"]["server"] = json!(server);
        c["clusters"].as_array_mut().unwrap().push(bogus_cluster);
        let mut bogus_context = c["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == real.as_str())
            .unwrap()
            .clone();
        bogus_context["name"] = json!("bogus");
        bogus_context["context"]["cluster"] = json!("bogus");
        c["contexts"].as_array_mut().unwrap().push(bogus_context);
        c["current-context"] = json!("bogus");
    });
    let output = pixie_with(&two_contexts, &["get", "vz", "-A"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let output = pixie_with(
        &two_contexts,
        &["--context", &real, "get", "vz", "-A", "-o", "json"],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));

    // An apiserver without the px.dev group.
    let port = start_server_without_px_dev();
    let no_crds = kubeconfig_copy(dir.path(), "no-crds", |c| {
        c["clusters"][0]["cluster"] = json!({"server": format!("http://127.0.0.1:{port}")});
    });
    for args in [
        &["get", "viziers"][..],
        &["status"],
        &["delete", "vizier", "pixie"],
    ] {
        let output = pixie_with(&no_crds, args).await;
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(
            text(&output.stderr),
            "error: the px.dev CRDs are not installed in this cluster; run `kubectl pixie deploy` \
             (or `kubectl apply -k config/default`)\n",
            "{args:?}"
        );
    }

    // A kubeconfig that is not there.
    let output = pixie_with(&dir.path().join("absent"), &["get", "vz"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot load the kubeconfig "),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("pass --kubeconfig FILE or set KUBECONFIG"),
        "{stderr}"
    );
}

#[tokio::test]
async fn delete_operator_names_what_deploy_installed_without_removing_it_in_a_dry_run() {
    let (cluster, _client, ns) = setup("cli-op").await;
    // Installs (or finds) the shared operator objects, and a Vizier no operator here reconciles.
    let out = pixie_ok(&["deploy", "-n", &ns, "--wait=false"]).await;
    assert!(out.contains("deployment.apps/pixie-operator "), "{out}");
    assert!(out.ends_with("vizier.px.dev/pixie created\n"), "{out}");

    let dry = pixie_ok(&["delete", "operator", "--dry-run"]).await;
    let lines: Vec<&str> = dry.lines().collect();
    assert_eq!(
        lines,
        [
            "service \"pixie-operator-metrics\" deleted (server dry run)",
            "deployment.apps \"pixie-operator\" deleted (server dry run)",
            "rolebinding.rbac.authorization.k8s.io \"pixie-operator-leader-election\" deleted (server dry run)",
            "role.rbac.authorization.k8s.io \"pixie-operator-leader-election\" deleted (server dry run)",
            "clusterrolebinding.rbac.authorization.k8s.io \"pixie-operator\" deleted (server dry run)",
            "clusterrole.rbac.authorization.k8s.io \"pixie-operator\" deleted (server dry run)",
            "serviceaccount \"pixie-operator\" deleted (server dry run)",
            "namespace \"px-operator\" deleted (server dry run)",
        ],
        "{dry}"
    );
    // With --crds, the CRDs go first, while the operator can still run the finalizers.
    let with_crds = pixie_ok(&["delete", "operator", "--crds", "--dry-run"]).await;
    let lines: Vec<&str> = with_crds.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "customresourcedefinition.apiextensions.k8s.io \"viziers.px.dev\" deleted (server dry run)",
            "customresourcedefinition.apiextensions.k8s.io \"pxlscripts.px.dev\" deleted (server dry run)",
            "customresourcedefinition.apiextensions.k8s.io \"cronscripts.px.dev\" deleted (server dry run)",
            "customresourcedefinition.apiextensions.k8s.io \"dataexports.px.dev\" deleted (server dry run)",
            "customresourcedefinition.apiextensions.k8s.io \"plugins.px.dev\" deleted (server dry run)",
        ],
        "{with_crds}"
    );
    assert_eq!(
        lines[5..],
        dry.lines().collect::<Vec<_>>()[..],
        "{with_crds}"
    );
    // Still there.
    cluster.kubectl_ok(&["get", "crd", "viziers.px.dev"]);
    cluster.kubectl_ok(&["get", "deployment", "pixie-operator", "-n", "px-operator"]);
    cluster.kubectl_ok(&["get", "clusterrole", "pixie-operator"]);

    let stderr = pixie_fails(&["delete", "operator", "extra"]).await;
    assert!(
        stderr.starts_with("error: `delete operator` takes no NAME"),
        "{stderr}"
    );
}
