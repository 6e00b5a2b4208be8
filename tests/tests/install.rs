//! The install paths against the real control plane: `kubectl apply -k config/default` installs the
//! CRDs and the operator, and the operator binary, run with nothing but its ServiceAccount's token,
//! turns the sample Vizier Ready (so the generated RBAC is enough); and the GitOps round trip:
//! after `kubectl apply --server-side` of the samples and a reconcile, `kubectl diff --server-side`
//! of the same files shows nothing (status and defaulting do not leak into what users own).
//!
//! The install objects (namespace px-operator, cluster-wide RBAC) are shared with other suites, so
//! they are applied idempotently and never deleted; everything else lives in a fresh namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};
use pixie_operator::install::{LEADER_ELECTION_ROLE, OPERATOR_NAME};
use pixie_operator::{Metrics, Settings};
use pixie_tests::{REPO_ROOT, TestCluster, eventually};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const OPERATOR_NAMESPACE: &str = "px-operator";


fn sample(file: &str) -> String {
    format!("{REPO_ROOT}/config/samples/{file}")
}

/// The Secrets the samples refer to: the Vizier's deploy key and the OTLP collector's credentials.
async fn sample_secrets(client: &Client, ns: &str) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    for (name, key, value) in [
        ("pixie-deploy-key", "deploy-key", "px-dep-sample"),
        ("otel-collector-credentials", "api-key", "sample-api-key"),
        ("otel-collector-ca", "ca.crt", "not checked before a run"),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
}

fn ready_summary(object: &Value) -> Result<(), String> {
    let generation = &object["metadata"]["generation"];
    let status = &object["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if ready && status["observedGeneration"] == *generation {
        Ok(())
    } else {
        Err(format!("generation {generation}, status {status}"))
    }
}

/// Waits until the object's status was written for its current generation (and, with
/// `ready`, says Ready=True).
async fn wait_reconciled<K>(client: &Client, ns: &str, name: &str, ready: bool)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let what = format!("{} {ns}/{name} reconciled", K::kind(&()));
    eventually(&what, Duration::from_secs(120), || async {
        let object = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if ready {
            return ready_summary(&object);
        }
        let current = object["status"]["observedGeneration"] == object["metadata"]["generation"];
        if current {
            Ok(())
        } else {
            Err(format!("status {}", object["status"]))
        }
    })
    .await;
}

/// `kubectl apply --server-side -k config/default`, as the README says, then waits for the CRDs.
fn install_operator(cluster: &TestCluster) -> String {
    let applied = cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        &format!("{REPO_ROOT}/config/default"),
        "-o",
        "name",
    ]);
    let crds: Vec<&str> = applied
        .lines()
        .filter(|l| l.starts_with("customresourcedefinition"))
        .collect();
    assert_eq!(crds.len(), 5, "{applied}");
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(crds);
    cluster.kubectl_ok(&wait);
    applied
}

/// The operator binary of the same build as this test, made up to date by cargo first (a
/// no-op after `make test`'s workspace build).
fn operator_binary() -> PathBuf {
    // This test runs as <target>/<profile>/deps/install-<hash>.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut build = Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "pixie-operator",
            "--bin",
            "pixie-operator",
        ])
        .arg("--manifest-path")
        .arg(format!("{REPO_ROOT}/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    if profile != "debug" {
        build.args(["--profile", &profile]);
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "cargo build -p pixie-operator failed");
    profile_dir.join("pixie-operator")
}

/// A kubeconfig for the test cluster that authenticates as the operator's ServiceAccount only.
fn service_account_kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    let token = cluster.kubectl_ok(&[
        "create",
        "token",
        OPERATOR_NAME,
        "-n",
        OPERATOR_NAMESPACE,
        "--duration=1h",
    ]);
    let admin: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]))
    .unwrap();
    let server = &admin["clusters"][0]["cluster"];
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server["server"],
            "certificate-authority-data": server["certificate-authority-data"],
        }}],
        "users": [{"name": OPERATOR_NAME, "user": {"token": token.trim()}}],
        "contexts": [{"name": OPERATOR_NAME, "context": {"cluster": "test", "user": OPERATOR_NAME}}],
        "current-context": OPERATOR_NAME,
    });
    let path = dir.join("operator.kubeconfig");
    fs::write(&path, serde_json::to_string_pretty(&kubeconfig).unwrap()).unwrap();
    path
}

/// The operator process; killed if the test fails before stopping it.
struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet sends: the operator finishes, releases its lease and exits 0.
    fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the operator exited with {status}:\n{}",
                    self.log()
                );
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the operator did not stop within 30 s of SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn config_default_installs_an_operator_whose_rbac_is_enough_to_deploy_the_sample() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let applied = install_operator(cluster);
    for object in [
        format!("namespace/{OPERATOR_NAMESPACE}"),
        format!("serviceaccount/{OPERATOR_NAME}"),
        format!("clusterrole.rbac.authorization.k8s.io/{OPERATOR_NAME}"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{OPERATOR_NAME}"),
        format!("role.rbac.authorization.k8s.io/{LEADER_ELECTION_ROLE}"),
        format!("rolebinding.rbac.authorization.k8s.io/{LEADER_ELECTION_ROLE}"),
        format!("deployment.apps/{OPERATOR_NAME}"),
        "service/pixie-operator-metrics".to_owned(),
    ] {
        assert!(
            applied.lines().any(|l| l == object),
            "{object} not in:\n{applied}"
        );
    }
    // kwok runs the Deployment's pod (no container really starts): it schedules and rolls out.
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment",
        OPERATOR_NAME,
        "-n",
        OPERATOR_NAMESPACE,
        "--timeout=90s",
    ]);

    // Stand in for that pod: the real binary with the ServiceAccount's token and nothing else,
    // scoped to a namespace of its own, competing for a Lease no other test uses.
    let ns = cluster.fresh_namespace(&admin, "install").await;
    sample_secrets(&admin, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(cluster, dir.path());
    let log = dir.path().join("operator.log");
    let lease = format!("install-test-{}", std::process::id());
    let log_file = fs::File::create(&log).unwrap();
    let child = Command::new(operator_binary())
        .args([
            "--namespace",
            &ns,
            "--lease-namespace",
            OPERATOR_NAMESPACE,
            "--lease-name",
            &lease,
        ])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--pod-name",
            "install-test",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .env_remove("WATCH_NAMESPACE")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("starting pixie-operator");
    let operator = OperatorProcess { child, log };

    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "-n",
        &ns,
        "-f",
        &sample("px_v1alpha1_vizier.yaml"),
    ]);
    pixie_tests::register_cluster(&admin, &ns).await;
    let viziers = Api::<Vizier>::namespaced(admin.clone(), &ns);
    let ready = eventually(
        "the sample Vizier Ready=True",
        Duration::from_secs(120),
        || async {
            let vizier = viziers.get("pixie").await.map_err(|e| e.to_string())?;
            ready_summary(&serde_json::to_value(&vizier).unwrap())
                .map(|_| vizier)
                .map_err(|status| format!("{status}\noperator log:\n{}", operator.log()))
        },
    )
    .await;
    assert!(
        ready
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == pixie_operator::FINALIZER)
    );

    // Deleting it runs the finalizer, which deletes the cluster-scoped grants.
    viziers
        .delete("pixie", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Vizier is gone", Duration::from_secs(60), || async {
        match viziers.get_opt("pixie").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(v) => Err(format!(
                "finalizers {:?}\n{}",
                v.metadata.finalizers,
                operator.log()
            )),
        }
    })
    .await;

    let log = operator.stop();
    assert!(
        log.contains("leading"),
        "the operator never took its lease:\n{log}"
    );
    // A call the RBAC refuses (an Event, a watch) may only be logged; none is allowed.
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused an API call:\n{log}"
    );
}

#[tokio::test]
async fn applying_the_samples_again_after_a_reconcile_changes_nothing() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let ns = cluster.fresh_namespace(&client, "gitops").await;
    sample_secrets(&client, &ns).await;

    let (stop, stopped) = oneshot::channel::<()>();
    let settings = Settings {
        namespace: Some(ns.clone()),
        resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = tokio::spawn(pixie_operator::run(
        client.clone(),
        settings,
        Metrics::new(),
        async {
            let _ = stopped.await;
        },
    ));

    // Every sample of a kind the operator reconciles; not pixie-style-vizier.yaml, which has no
    // version and would ask the Pixie cloud for one.
    let files: Vec<String> = [
        "px_v1alpha1_vizier.yaml",
        "px_v1alpha1_pxlscript.yaml",
        "px_v1alpha1_cronscript.yaml",
        "px_v1alpha1_dataexport.yaml",
        "px_v1alpha1_plugin.yaml",
    ]
    .map(sample)
    .to_vec();
    let mut apply = vec!["apply", "--server-side", "-n", &ns];
    let mut diff = vec!["diff", "--server-side", "-n", &ns];
    for file in &files {
        apply.extend(["-f", file]);
        diff.extend(["-f", file]);
    }
    cluster.kubectl_ok(&apply);
    pixie_tests::register_cluster(&client, &ns).await;

    wait_reconciled::<Vizier>(&client, &ns, "pixie", true).await;
    wait_reconciled::<PxlScript>(&client, &ns, "http-service-stats", false).await;
    wait_reconciled::<CronScript>(&client, &ns, "http-service-stats-every-minute", false).await;
    wait_reconciled::<DataExport>(&client, &ns, "otel-collector", false).await;
    wait_reconciled::<Plugin>(&client, &ns, "opentelemetry", false).await;

    let output = cluster
        .kubectl()
        .args(&diff)
        .output()
        .expect("running kubectl diff");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.is_empty(),
        "kubectl diff --server-side after reconcile (exit {:?}):\n{stdout}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );

    // The same comparison sees a real change, so the empty diff above is not vacuous.
    let edited = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
    let vizier = fs::read_to_string(&files[0]).unwrap();
    assert!(vizier.contains("pemMemoryLimit: 2Gi"));
    fs::write(
        edited.path(),
        vizier.replace("pemMemoryLimit: 2Gi", "pemMemoryLimit: 3Gi"),
    )
    .unwrap();
    let edited_path = edited.path().to_str().unwrap();
    let output = cluster
        .kubectl()
        .args(["diff", "--server-side", "-n", &ns, "-f", edited_path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("+  pemMemoryLimit: 3Gi"), "{stdout}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("the operator stops within 30 s")
        .expect("the operator task did not panic")
        .expect("the operator stops cleanly");
}
