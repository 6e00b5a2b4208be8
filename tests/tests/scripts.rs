//! The PxlScript, CronScript, DataExport and Plugin controllers against the real control plane.
//! Each test runs its own operator in-process, scoped to a fresh namespace, without leader
//! election, and counts the operator's writes through its own tower layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};
use pixie_operator::metrics::KindLabels;
use pixie_operator::{ApiWriteLayer, Metrics, Settings};
use pixie_tests::{REPO_ROOT, TestCluster, eventually};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PLUGIN_LABEL: &str = "px.dev/plugin";


/// An operator running in this process, watching one namespace.
struct Operator {
    task: JoinHandle<Result<(), pixie_operator::Error>>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
}

impl Operator {
    async fn start(cluster: &TestCluster, namespace: &str) -> Operator {
        let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        let metrics = Metrics::new();
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client builder")
            .with_layer(&ApiWriteLayer::new(metrics.clone()))
            .build();
        let settings = Settings {
            namespace: Some(namespace.to_owned()),
            ..Settings::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(pixie_operator::run(
            client,
            settings,
            metrics.clone(),
            shutdown,
        ));
        Operator {
            task,
            stop: Some(stop),
            metrics,
        }
    }

    fn reconciles(&self, kind: &str) -> u64 {
        self.metrics
            .script_reconciles
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .get()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops within 30 s")
            .expect("the operator task did not panic")
            .expect("the operator stops cleanly");
    }
}

async fn setup(prefix: &str) -> (&'static TestCluster, Client, String, Operator) {
    let cluster = TestCluster::shared();
    cluster.install_crds();
    let client = cluster.client().await;
    let namespace = cluster.fresh_namespace(&client, prefix).await;
    let operator = Operator::start(cluster, &namespace).await;
    (cluster, client, namespace, operator)
}

fn conditions<K: Serialize>(object: &K) -> Vec<Condition> {
    let value = serde_json::to_value(object).unwrap();
    value
        .pointer("/status/conditions")
        .map(|c| serde_json::from_value(c.clone()).unwrap())
        .unwrap_or_default()
}

fn condition<K: Serialize>(object: &K, type_: &str) -> Option<Condition> {
    conditions(object).into_iter().find(|c| c.type_ == type_)
}

/// The status describes the current spec.
fn current<K: Serialize + Resource>(object: &K) -> bool {
    let value = serde_json::to_value(object).unwrap();
    value
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        == object.meta().generation
}

fn summary<K: Serialize>(object: &K) -> String {
    let described: Vec<String> = conditions(object)
        .iter()
        .map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message))
        .collect();
    described.join("; ")
}

/// Waits until the object's `type_` condition, for its current generation, has this status and reason.
async fn wait_condition<K>(api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let what = format!("{name}: {type_}={status} {reason}");
    eventually(&what, Duration::from_secs(30), || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        let matches = condition(&object, type_)
            .is_some_and(|c| c.status == status && c.reason == reason)
            && current(&object);
        if matches {
            Ok(object)
        } else {
            Err(summary(&object))
        }
    })
    .await
}

fn message<K: Serialize>(object: &K, type_: &str) -> String {
    condition(object, type_)
        .map(|c| c.message)
        .unwrap_or_default()
}

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

async fn merge_patch<K>(api: &Api<K>, name: &str, patch: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch")
}

/// A Vizier the operator refuses to deploy (its patch is not an object), so that no data plane
/// starts: the scripts only need it to exist.
fn idle_vizier(name: &str) -> Value {
    json!({
        "apiVersion": "px.dev/v1alpha1",
        "kind": "Vizier",
        "metadata": {"name": name},
        "spec": {
            "version": "0.14.15",
            "deployKey": "px-dep-00000000-0000-0000-0000-000000000000",
            "clusterName": "test",
            "patches": {"vizier-pem": "[1, 2]"},
        },
    })
}

const STATS: &str = "import px\n\
    df = px.DataFrame(table='http_events', start_time='-1m')\n\
    df.service = df.ctx['service']\n\
    df = df.groupby('service').agg(requests=('latency', px.count))\n\
    px.display(df, 'per_service')\n";

/// The same script with `df.latnecy` on line 4, column 50.
const BROKEN_STATS: &str = "import px\n\
    df = px.DataFrame(table='http_events', start_time='-1m')\n\
    df.service = df.ctx['service']\n\
    df = df.groupby('service').agg(requests=('latency', px.count), worst=df.latnecy)\n\
    px.display(df, 'per_service')\n";

fn pxl_script(name: &str, source: &str) -> Value {
    json!({"apiVersion": "px.dev/v1alpha1", "kind": "PxlScript", "metadata": {"name": name}, "spec": {"source": source}})
}

fn data_export(name: &str) -> Value {
    json!({
        "apiVersion": "px.dev/v1alpha1",
        "kind": "DataExport",
        "metadata": {"name": name},
        "spec": {
            "sink": {"otlpGrpc": {"endpoint": "otel-collector.observability.svc:4317", "tls": {"insecure": true}}},
            "otel": {"tables": [{
                "table": "per_service",
                "resource": {"service.name": "service"},
                "gauges": [{"name": "http.server.request_count", "valueColumn": "requests"}],
            }]},
        },
    })
}

#[tokio::test]
async fn a_broken_pxl_script_reports_line_and_column_within_seconds_and_a_fix_reports_outputs() {
    let (_cluster, client, ns, operator) = setup("pxl").await;
    let scripts: Api<PxlScript> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    create(&scripts, pxl_script("stats", BROKEN_STATS)).await;
    let broken = wait_condition(&scripts, "stats", "Compiled", "False", "CompileError").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let error = message(&broken, "Compiled");
    assert!(error.starts_with("4:"), "line 4 first: {error}");
    assert!(error.contains("latnecy"), "{error}");
    assert!(broken.status.as_ref().unwrap().outputs.is_empty());

    merge_patch(&scripts, "stats", json!({"spec": {"source": STATS}})).await;
    let fixed = wait_condition(&scripts, "stats", "Compiled", "True", "Compiled").await;
    assert_eq!(
        message(&fixed, "Compiled"),
        "compiles; outputs: per_service"
    );
    let outputs = &fixed.status.as_ref().unwrap().outputs;
    let columns: Vec<(&str, String)> = outputs[0]
        .columns
        .iter()
        .map(|c| (c.name.as_str(), format!("{:?}", c.type_)))
        .collect();
    assert_eq!(outputs[0].name, "per_service");
    assert_eq!(
        columns,
        [
            ("service", "String".to_owned()),
            ("requests", "Int64".to_owned())
        ]
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_cron_script_names_what_is_missing_until_everything_exists() {
    let (_cluster, client, ns, operator) = setup("cron").await;
    let crons: Api<CronScript> = Api::namespaced(client.clone(), &ns);
    let scripts: Api<PxlScript> = Api::namespaced(client.clone(), &ns);
    create(
        &crons,
        json!({
            "apiVersion": "px.dev/v1alpha1",
            "kind": "CronScript",
            "metadata": {"name": "stats-every-10s"},
            "spec": {
                "scriptRef": {"name": "stats"},
                "frequency": "10s",
                "vizierRef": {"name": "pixie"},
                "exportRefs": [{"name": "otel"}, {"name": "backup"}],
            },
        }),
    )
    .await;
    let cron = wait_condition(
        &crons,
        "stats-every-10s",
        "Ready",
        "False",
        "VizierNotFound",
    )
    .await;
    let text = message(&cron, "Ready");
    assert!(
        text.contains(r#"spec.scriptRef: PxlScript "stats" does not exist"#),
        "{text}"
    );
    assert!(
        text.contains(r#"spec.exportRefs: DataExports "otel", "backup" do not exist"#),
        "{text}"
    );

    create(
        &Api::<Vizier>::namespaced(client.clone(), &ns),
        idle_vizier("pixie"),
    )
    .await;
    wait_condition(
        &crons,
        "stats-every-10s",
        "Ready",
        "False",
        "ScriptNotFound",
    )
    .await;

    create(&scripts, pxl_script("stats", BROKEN_STATS)).await;
    let cron = wait_condition(
        &crons,
        "stats-every-10s",
        "Ready",
        "False",
        "ScriptNotCompiled",
    )
    .await;
    assert!(
        message(&cron, "Ready").starts_with(r#"PxlScript "stats" does not compile: 4:"#),
        "{}",
        summary(&cron)
    );

    merge_patch(&scripts, "stats", json!({"spec": {"source": STATS}})).await;
    wait_condition(
        &crons,
        "stats-every-10s",
        "Ready",
        "False",
        "ExportNotFound",
    )
    .await;

    let exports: Api<DataExport> = Api::namespaced(client.clone(), &ns);
    create(&exports, data_export("otel")).await;
    create(&exports, data_export("backup")).await;
    let cron = wait_condition(&crons, "stats-every-10s", "Ready", "True", "Scheduled").await;
    assert_eq!(
        message(&cron, "Ready"),
        r#"runs every 10s on Vizier "pixie", exporting to otel, backup"#
    );

    // A mapping that names a column the script does not output.
    merge_patch(
        &exports,
        "backup",
        json!({"spec": {"otel": {"tables": [{"table": "per_service", "resource": {"service.name": "service"},
            "gauges": [{"name": "latency", "valueColumn": "latency_p99"}]}]}}}),
    )
    .await;
    let cron = wait_condition(&crons, "stats-every-10s", "Ready", "False", "MappingError").await;
    assert!(
        message(&cron, "Ready").contains("latency_p99"),
        "{}",
        summary(&cron)
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_data_export_waits_for_its_secret_and_key() {
    let (_cluster, client, ns, operator) = setup("export").await;
    let exports: Api<DataExport> = Api::namespaced(client.clone(), &ns);
    let mut export = data_export("otel");
    export["spec"]["sink"]["otlpGrpc"]["headers"] = json!([{"name": "x-api-key", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api-key"}}}]);
    create(&exports, export).await;
    let missing = wait_condition(&exports, "otel", "Ready", "False", "SecretNotFound").await;
    assert_eq!(
        message(&missing, "Ready"),
        r#"spec.sink.otlpGrpc.headers[0].valueFrom.secretKeyRef: secret "creds" does not exist in this namespace"#
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "x"}});
    create(&secrets, secret).await;
    let no_key = wait_condition(&exports, "otel", "Ready", "False", "SecretKeyNotFound").await;
    assert_eq!(
        message(&no_key, "Ready"),
        r#"spec.sink.otlpGrpc.headers[0].valueFrom.secretKeyRef: secret "creds" has no key "api-key" (keys: token)"#
    );

    merge_patch(
        &secrets,
        "creds",
        json!({"stringData": {"api-key": "s3cret"}}),
    )
    .await;
    wait_condition(&exports, "otel", "Ready", "True", "Valid").await;
    operator.stop().await;
}

fn sample_plugin() -> Value {
    let text = std::fs::read_to_string(format!(
        "{REPO_ROOT}/config/samples/px_v1alpha1_plugin.yaml"
    ))
    .unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

async fn names<K>(api: &Api<K>, selector: &str) -> Vec<String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}

/// Changes an annotation of the Plugin (no new generation) and waits until it has been reconciled.
async fn touch(plugins: &Api<Plugin>, operator: &Operator, value: &str) {
    let before = operator.reconciles("Plugin");
    merge_patch(
        plugins,
        "opentelemetry",
        json!({"metadata": {"annotations": {"test/touched": value}}}),
    )
    .await;
    eventually(
        "the Plugin is reconciled again",
        Duration::from_secs(20),
        || async {
            if operator.reconciles("Plugin") > before {
                Ok(())
            } else {
                Err("no reconcile yet".into())
            }
        },
    )
    .await;
    // The reconcile may still be applying; give it time to finish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn owned_by_operator(cron: &CronScript, field: &str) -> bool {
    cron.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some("pixie-operator")
            && entry.subresource.is_none()
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer(&format!("/f:spec/f:{field}")).is_some())
    })
}

#[tokio::test]
async fn the_sample_plugin_materialises_keeps_user_edits_and_cleans_up() {
    let (cluster, client, ns, operator) = setup("plugin").await;
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), &ns);
    let crons: Api<CronScript> = Api::namespaced(client.clone(), &ns);
    let exports: Api<DataExport> = Api::namespaced(client.clone(), &ns);
    let selector = format!("{PLUGIN_LABEL}=opentelemetry");
    create(
        &Api::<Vizier>::namespaced(client.clone(), &ns),
        idle_vizier("pixie"),
    )
    .await;

    let mut sample = sample_plugin();
    sample["spec"]["enabled"] = json!(false);
    create(&plugins, sample).await;
    wait_condition(&plugins, "opentelemetry", "Ready", "True", "Disabled").await;
    assert!(names(&crons, &selector).await.is_empty());

    merge_patch(
        &plugins,
        "opentelemetry",
        json!({"spec": {"enabled": true}}),
    )
    .await;
    let plugin = wait_condition(&plugins, "opentelemetry", "Ready", "True", "Materialized").await;
    let status = plugin.status.clone().unwrap();
    assert_eq!(status.data_export.as_deref(), Some("opentelemetry"));
    assert_eq!(status.cron_scripts.len(), 1);
    assert_eq!(
        status.cron_scripts[0].cron_script,
        "opentelemetry-http-requests"
    );
    assert_eq!(
        names(&crons, &selector).await,
        ["opentelemetry-http-requests"]
    );
    assert_eq!(names(&exports, &selector).await, ["opentelemetry"]);
    let cron = crons.get("opentelemetry-http-requests").await.unwrap();
    let owner = &cron.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Plugin", plugin.uid().unwrap().as_str(), Some(true))
    );
    assert_eq!(cron.spec.frequency.as_deref(), Some("10s"));
    assert_eq!(cron.spec.export_refs[0].name, "opentelemetry");
    let export = exports.get("opentelemetry").await.unwrap();
    assert_eq!(export.owner_references()[0].uid, plugin.uid().unwrap());
    // The CronScript is ready to run; the export still misses the sample's Secret, and the Plugin says so.
    wait_condition(
        &crons,
        "opentelemetry-http-requests",
        "Ready",
        "True",
        "Scheduled",
    )
    .await;
    wait_condition(
        &exports,
        "opentelemetry",
        "Ready",
        "False",
        "SecretNotFound",
    )
    .await;
    let plugin = wait_condition(
        &plugins,
        "opentelemetry",
        "Degraded",
        "True",
        "ObjectsFailing",
    )
    .await;
    assert!(
        message(&plugin, "Degraded")
            .starts_with("DataExport opentelemetry: Ready=False SecretNotFound")
    );

    // A user's kubectl patch of the frequency survives a reconcile of the Plugin.
    cluster.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "cronscript",
        "opentelemetry-http-requests",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"frequency":"30s"}}"#,
    ]);
    touch(&plugins, &operator, "1").await;
    let cron = crons.get("opentelemetry-http-requests").await.unwrap();
    assert_eq!(cron.spec.frequency.as_deref(), Some("30s"));
    assert!(
        !owned_by_operator(&cron, "frequency"),
        "the operator handed the frequency over"
    );
    assert!(owned_by_operator(&cron, "source"), "and kept the rest");

    // So does a server-side apply under the user's own field manager.
    let manifest = format!(
        "apiVersion: px.dev/v1alpha1\nkind: CronScript\nmetadata:\n  name: opentelemetry-http-requests\n  namespace: {ns}\n\
         spec:\n  frequency: 1m\n  suspend: true\n"
    );
    let path = std::env::temp_dir().join(format!("{ns}-cron.yaml"));
    std::fs::write(&path, manifest).unwrap();
    let applied = cluster
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager=user",
            "--force-conflicts",
            "-f",
        ])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    touch(&plugins, &operator, "2").await;
    let cron = crons.get("opentelemetry-http-requests").await.unwrap();
    assert_eq!(
        (cron.spec.frequency.as_deref(), cron.spec.suspend),
        (Some("1m"), Some(true))
    );
    wait_condition(
        &crons,
        "opentelemetry-http-requests",
        "Ready",
        "True",
        "Scheduled",
    )
    .await;

    // A preset removed from the spec takes its CronScript with it.
    merge_patch(
        &plugins,
        "opentelemetry",
        json!({"spec": {"presetScripts": null}}),
    )
    .await;
    eventually(
        "the preset's CronScript is deleted",
        Duration::from_secs(20),
        || async {
            let left = names(&crons, &selector).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    assert_eq!(names(&exports, &selector).await, ["opentelemetry"]);

    merge_patch(
        &plugins,
        "opentelemetry",
        json!({"spec": {"enabled": false}}),
    )
    .await;
    wait_condition(&plugins, "opentelemetry", "Ready", "True", "Disabled").await;
    eventually(
        "the DataExport is deleted",
        Duration::from_secs(20),
        || async {
            let left = names(&exports, &selector).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    let plugin = plugins.get("opentelemetry").await.unwrap();
    assert_eq!(plugin.status.unwrap().data_export, None);
    operator.stop().await;
}

/// Waits until the operator has written nothing for `quiet`, and returns its write count.
async fn settled(operator: &Operator, quiet: Duration) -> u64 {
    eventually("the operator settles", Duration::from_secs(60), || async {
        let before = operator.metrics.api_writes_total();
        tokio::time::sleep(quiet).await;
        let after = operator.metrics.api_writes_total();
        if before == after {
            Ok(after)
        } else {
            Err(format!("{} writes in {quiet:?}", after - before))
        }
    })
    .await
}

#[tokio::test]
async fn nothing_is_written_when_nothing_changes() {
    let (_cluster, client, ns, operator) = setup("steady").await;
    let scripts: Api<PxlScript> = Api::namespaced(client.clone(), &ns);
    let crons: Api<CronScript> = Api::namespaced(client.clone(), &ns);
    let exports: Api<DataExport> = Api::namespaced(client.clone(), &ns);
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), &ns);
    create(
        &Api::<Vizier>::namespaced(client.clone(), &ns),
        idle_vizier("pixie"),
    )
    .await;
    create(&scripts, pxl_script("stats", STATS)).await;
    create(&exports, data_export("otel")).await;
    create(
        &crons,
        json!({"apiVersion": "px.dev/v1alpha1", "kind": "CronScript", "metadata": {"name": "stats"},
               "spec": {"scriptRef": {"name": "stats"}, "schedule": "*/5 * * * *", "vizierRef": {"name": "pixie"},
                        "exportRefs": [{"name": "otel"}]}}),
    )
    .await;
    let mut plugin = sample_plugin();
    plugin["spec"]["configurations"] = json!([{"name": "x-api-key", "value": "inline"}]);
    create(&plugins, plugin).await;
    wait_condition(&scripts, "stats", "Compiled", "True", "Compiled").await;
    wait_condition(&crons, "stats", "Ready", "True", "Scheduled").await;
    wait_condition(&exports, "otel", "Ready", "True", "Valid").await;
    wait_condition(&plugins, "opentelemetry", "Ready", "True", "Materialized").await;
    wait_condition(&plugins, "opentelemetry", "Degraded", "False", "AsExpected").await;
    let writes = settled(&operator, Duration::from_secs(3)).await;

    // Touch every object without changing what it asks for: each is reconciled, nothing is written.
    let kinds = ["PxlScript", "CronScript", "DataExport", "Plugin"];
    let before: Vec<u64> = kinds.iter().map(|k| operator.reconciles(k)).collect();
    let touch = json!({"metadata": {"annotations": {"test/touched": "yes"}}});
    merge_patch(&scripts, "stats", touch.clone()).await;
    merge_patch(&crons, "stats", touch.clone()).await;
    merge_patch(&exports, "otel", touch.clone()).await;
    merge_patch(&plugins, "opentelemetry", touch.clone()).await;
    merge_patch(&crons, "opentelemetry-http-requests", touch.clone()).await;
    eventually(
        "every kind is reconciled again",
        Duration::from_secs(20),
        || async {
            let now: Vec<u64> = kinds.iter().map(|k| operator.reconciles(k)).collect();
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                Ok(())
            } else {
                Err(format!("{before:?} -> {now:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.metrics.api_writes_total(),
        writes,
        "{}",
        operator.metrics.encode()
    );
    operator.stop().await;
}
