//! The px.dev CRDs against a real apiserver: they install, `kubectl explain` and `kubectl get pixie`
//! work, every sample (including a manifest written for Pixie's own operator) applies unchanged, and
//! invalid objects are refused with a message that names the offending field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};
use pixie_tests::{REPO_ROOT, TestCluster};
use serde_json::{Value, json};

fn samples_dir() -> PathBuf {
    Path::new(REPO_ROOT).join("config/samples")
}

fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .expect("config/samples exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

fn read_sample(file: &str) -> Value {
    let text =
        std::fs::read_to_string(samples_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn api_resource(kind: &str) -> ApiResource {
    match kind {
        "Vizier" => ApiResource::erase::<Vizier>(&()),
        "PxlScript" => ApiResource::erase::<PxlScript>(&()),
        "CronScript" => ApiResource::erase::<CronScript>(&()),
        "DataExport" => ApiResource::erase::<DataExport>(&()),
        "Plugin" => ApiResource::erase::<Plugin>(&()),
        other => panic!("not a px.dev kind: {other}"),
    }
}

/// Retries `kubectl` until it succeeds: a CRD that has just become Established takes a moment to
/// appear in discovery and in the published OpenAPI.
async fn kubectl_eventually(cluster: &TestCluster, args: &[&str]) -> String {
    let mut last_error = String::new();
    for _ in 0..60 {
        let out = cluster.kubectl().args(args).output().expect("run kubectl");
        if out.status.success() {
            return String::from_utf8(out.stdout).expect("kubectl prints UTF-8");
        }
        last_error = String::from_utf8_lossy(&out.stderr).into_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("kubectl {} kept failing: {last_error}", args.join(" "));
}

async fn setup(prefix: &str) -> (&'static TestCluster, Client, String) {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let ns = cluster.fresh_namespace(&client, prefix).await;
    (cluster, client, ns)
}

#[tokio::test]
async fn kubectl_explain_prints_the_field_documentation() {
    let (cluster, _client, _ns) = setup("crds-explain").await;

    // kubectl wraps descriptions at its own width; compare with whitespace collapsed.
    let explain = |text: String| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let pod = explain(kubectl_eventually(cluster, &["explain", "vizier.spec.pod"]).await);
    assert!(pod.contains("GROUP: px.dev"), "{pod}");
    for text in [
        "Labels, annotations, resources, scheduling constraints and security context",
        "tolerations",
        "Tolerations that let Vizier pods",
        "securityContext",
        "Security context for the Vizier pods that do not need privileges",
    ] {
        assert!(
            pod.contains(text),
            "`kubectl explain vizier.spec.pod` lacks {text:?}:\n{pod}"
        );
    }

    let schedule =
        explain(kubectl_eventually(cluster, &["explain", "cronscript.spec.schedule"]).await);
    assert!(
        schedule.contains("five-field cron expression"),
        "{schedule}"
    );
    let endpoint = explain(
        kubectl_eventually(
            cluster,
            &["explain", "dataexport.spec.sink.otlpGrpc.endpoint"],
        )
        .await,
    );
    assert!(endpoint.contains("without a scheme"), "{endpoint}");
}

#[tokio::test]
async fn every_sample_applies_unchanged_and_kubectl_get_pixie_lists_every_kind() {
    let (cluster, client, ns) = setup("crds-samples").await;

    let mut applied = Vec::new();
    for file in sample_files() {
        let path = file.to_str().expect("UTF-8 path");
        cluster.kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=pixie-tests",
            "-n",
            &ns,
            "-f",
            path,
        ]);
        let sample: Value = read_sample(file.file_name().unwrap().to_str().unwrap());
        applied.push(sample);
    }

    // Nothing was pruned, defaulted or rewritten: the stored spec is the spec as written. This is
    // what "a Pixie manifest applies unchanged" means for pixie-style-vizier.yaml.
    for sample in &applied {
        let kind = sample["kind"].as_str().unwrap();
        let name = sample["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(kind));
        let stored = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get {kind}/{name}: {e}"));
        assert_eq!(
            stored.data["spec"], sample["spec"],
            "{kind}/{name} was changed by the apiserver"
        );
    }
    let names: Vec<&str> = applied
        .iter()
        .map(|sample| sample["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pixie-legacy"),
        "the Pixie-style manifest is among the samples"
    );

    let listing = kubectl_eventually(cluster, &["get", "pixie", "-A"]).await;
    for sample in &applied {
        let kind = sample["kind"].as_str().unwrap().to_lowercase();
        let name = sample["metadata"]["name"].as_str().unwrap();
        let object = format!("{kind}.px.dev/{name}");
        assert!(
            listing
                .lines()
                .any(|line| line.starts_with(&ns) && line.contains(&object)),
            "`kubectl get pixie -A` does not list {object} in {ns}:\n{listing}"
        );
    }

    let viziers = cluster.kubectl_ok(&["get", "viziers", "-n", &ns]);
    let header = viziers.lines().next().unwrap_or_default();
    for column in ["NAME", "READY", "VERSION", "PHASE", "AGE"] {
        assert!(
            header.contains(column),
            "vizier columns lack {column}: {header}"
        );
    }
    let cron_scripts = cluster.kubectl_ok(&["get", "pxcron", "-n", &ns]);
    let header = cron_scripts.lines().next().unwrap_or_default();
    for column in [
        "SCHEDULE",
        "EVERY",
        "SUSPEND",
        "LAST RUN",
        "LAST RESULT",
        "AGE",
    ] {
        assert!(
            header.contains(column),
            "cronscript columns lack {column}: {header}"
        );
    }
    assert!(
        cron_scripts.contains("* * * * *"),
        "the schedule column shows the schedule:\n{cron_scripts}"
    );
}

/// One change to a valid sample that must make the apiserver refuse it.
struct InvalidCase {
    what: &'static str,
    sample: &'static str,
    changes: Vec<Change>,
    /// The field path the apiserver's message must name.
    field: &'static str,
}

enum Change {
    Set(&'static str, Value),
    Remove(&'static str),
}

use Change::{Remove, Set};

fn case(
    what: &'static str,
    sample: &'static str,
    changes: Vec<Change>,
    field: &'static str,
) -> InvalidCase {
    InvalidCase {
        what,
        sample,
        changes,
        field,
    }
}

/// Sets the value at a JSON pointer, creating missing objects on the way.
fn set_pointer(document: &mut Value, pointer: &str, value: Value) {
    let mut node = document;
    let mut segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let last = segments.pop().expect("pointer has a last segment");
    for segment in segments {
        node = match node {
            Value::Array(items) => &mut items[segment.parse::<usize>().expect("array index")],
            _ => node
                .as_object_mut()
                .expect("object on the way")
                .entry(segment)
                .or_insert_with(|| json!({})),
        };
    }
    match node {
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => items[last.parse::<usize>().expect("array index")] = value,
        _ => {
            node.as_object_mut()
                .expect("object parent")
                .insert(last.to_owned(), value);
        }
    }
}

fn remove_pointer(document: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer has a parent");
    let parent = document
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{pointer}: no parent"));
    let removed = parent
        .as_object_mut()
        .and_then(|object| object.remove(last));
    assert!(
        removed.is_some(),
        "{pointer} is not in the sample, so removing it proves nothing"
    );
}

#[rustfmt::skip]
fn invalid_cases() -> Vec<InvalidCase> {
    const VIZIER: &str = "px_v1alpha1_vizier.yaml";
    const PXL: &str = "px_v1alpha1_pxlscript.yaml";
    const CRON: &str = "px_v1alpha1_cronscript.yaml";
    const EXPORT: &str = "px_v1alpha1_dataexport.yaml";
    const PLUGIN: &str = "px_v1alpha1_plugin.yaml";
    vec![
        // Vizier
        case("deploy key given twice", VIZIER, vec![Set("/spec/deployKey", json!("px-dep-1"))], "spec.customDeployKeySecret"),
        case("no deploy key at all", VIZIER, vec![Remove("/spec/customDeployKeySecret")], "spec.deployKey"),
        case("PEM request above limit", VIZIER, vec![Set("/spec/pemMemoryRequest", json!("4Gi"))], "spec.pemMemoryRequest"),
        case("PEM limit is not a quantity", VIZIER, vec![Set("/spec/pemMemoryLimit", json!("lots"))], "spec.pemMemoryLimit"),
        case("PEM limit is negative", VIZIER, vec![Set("/spec/pemMemoryLimit", json!("-2Gi"))], "spec.pemMemoryLimit"),
        case("unknown clock converter", VIZIER, vec![Set("/spec/clockConverter", json!("ntp"))], "spec.clockConverter"),
        case("unknown data access level", VIZIER, vec![Set("/spec/dataAccess", json!("Partial"))], "spec.dataAccess"),
        case("cloud address with a scheme", VIZIER, vec![Set("/spec/cloudAddr", json!("https://withpixie.ai:443"))], "spec.cloudAddr"),
        case("version is not a release", VIZIER, vec![Set("/spec/version", json!("latest"))], "spec.version"),
        case("deploy key Secret name invalid", VIZIER, vec![Set("/spec/customDeployKeySecret", json!("Deploy_Key"))], "spec.customDeployKeySecret"),
        case("dev cloud namespace invalid", VIZIER, vec![Set("/spec/devCloudNamespace", json!("plc.dev"))], "spec.devCloudNamespace"),
        case("negative runAsUser", VIZIER, vec![Set("/spec/pod/securityContext/runAsUser", json!(-1))], "spec.pod.securityContext.runAsUser"),
        case("toleration seconds not a number", VIZIER, vec![Set("/spec/pod/tolerations/0/tolerationSeconds", json!("soon"))], "spec.pod.tolerations[0].tolerationSeconds"),
        case("zero election period", VIZIER, vec![Set("/spec/leadershipElectionParams/electionPeriodMs", json!(0))], "spec.leadershipElectionParams.electionPeriodMs"),
        case("zero datastream buffer", VIZIER, vec![Set("/spec/dataCollectorParams/datastreamBufferSize", json!(0))], "spec.dataCollectorParams.datastreamBufferSize"),
        case("registry with a scheme", VIZIER, vec![Set("/spec/registry", json!("https://registry.example.com"))], "spec.registry"),
        // PxlScript
        case("empty source", PXL, vec![Set("/spec/source", json!(""))], "spec.source"),
        case("no source", PXL, vec![Remove("/spec/source")], "spec.source"),
        case("unknown argument type", PXL, vec![Set("/spec/args/0/type", json!("Text"))], "spec.args[0].type"),
        case("argument name not an identifier", PXL, vec![Set("/spec/args/0/name", json!("start-time"))], "spec.args[0].name"),
        case("Int64 default is not an integer", PXL, vec![Set("/spec/args/0/type", json!("Int64"))], "spec.args[0].default"),
        case("default outside validValues", PXL, vec![Set("/spec/args/0/validValues", json!(["-1m", "-1h"]))], "spec.args[0].default"),
        case("argument declared twice", PXL, vec![Set("/spec/args/1/name", json!("start_time"))], "spec.args[1]"),
        // CronScript
        case("schedule and frequency", CRON, vec![Set("/spec/frequency", json!("1m"))], "spec.frequency"),
        case("neither schedule nor frequency", CRON, vec![Remove("/spec/schedule")], "spec.schedule"),
        case("inline source and scriptRef", CRON, vec![Set("/spec/source", json!("import px"))], "spec.scriptRef"),
        case("neither source nor scriptRef", CRON, vec![Remove("/spec/scriptRef")], "spec.source"),
        case("schedule in words", CRON, vec![Set("/spec/schedule", json!("every minute"))], "spec.schedule"),
        case("schedule with seconds field", CRON, vec![Set("/spec/schedule", json!("0 * * * * *"))], "spec.schedule"),
        case("schedule minute out of range", CRON, vec![Set("/spec/schedule", json!("61 * * * *"))], "spec.schedule"),
        case("frequency in words", CRON, vec![Remove("/spec/schedule"), Set("/spec/frequency", json!("5 minutes"))], "spec.frequency"),
        case("frequency below a second", CRON, vec![Remove("/spec/schedule"), Set("/spec/frequency", json!("500ms"))], "spec.frequency"),
        case("unknown concurrency policy", CRON, vec![Set("/spec/concurrencyPolicy", json!("Sometimes"))], "spec.concurrencyPolicy"),
        case("zero starting deadline", CRON, vec![Set("/spec/startingDeadlineSeconds", json!(0))], "spec.startingDeadlineSeconds"),
        case("no target Vizier", CRON, vec![Remove("/spec/vizierRef")], "spec.vizierRef"),
        // DataExport
        case("endpoint with a scheme", EXPORT, vec![Set("/spec/sink/otlpGrpc/endpoint", json!("http://otel-collector:4317"))], "spec.sink.otlpGrpc.endpoint"),
        case("endpoint without a port", EXPORT, vec![Set("/spec/sink/otlpGrpc/endpoint", json!("otel-collector"))], "spec.sink.otlpGrpc.endpoint"),
        case("no sink type", EXPORT, vec![Set("/spec/sink", json!({}))], "spec.sink"),
        case("header with value and valueFrom", EXPORT, vec![Set("/spec/sink/otlpGrpc/headers/0/value", json!("inline"))], "spec.sink.otlpGrpc.headers[0].valueFrom"),
        case("upper-case header name", EXPORT, vec![Set("/spec/sink/otlpGrpc/headers/0/name", json!("X-Api-Key"))], "spec.sink.otlpGrpc.headers[0].name"),
        case("plaintext with a CA", EXPORT, vec![Set("/spec/sink/otlpGrpc/tls/insecure", json!(true))], "spec.sink.otlpGrpc.tls.insecure"),
        case("timeout in words", EXPORT, vec![Set("/spec/sink/otlpGrpc/timeout", json!("ten seconds"))], "spec.sink.otlpGrpc.timeout"),
        case("resource without service.name", EXPORT, vec![Set("/spec/otel/tables/0/resource", json!({"k8s.pod.name": "pod"}))], "spec.otel.tables[0].resource"),
        case("quantile above 1", EXPORT, vec![Set("/spec/otel/tables/0/summaries/0/quantiles/0/quantile", json!(1.5))], "spec.otel.tables[0].summaries[0].quantiles[0].quantile"),
        case("column name with a space", EXPORT, vec![Set("/spec/otel/tables/0/gauges/0/valueColumn", json!("request count"))], "spec.otel.tables[0].gauges[0].valueColumn"),
        case("table mapping with no signal", EXPORT, vec![Remove("/spec/otel/tables/0/gauges"), Remove("/spec/otel/tables/0/summaries")], "spec.otel.tables[0].gauges"),
        case("span named twice", EXPORT, vec![Set("/spec/otel/tables/0/spans", json!([{"name": "GET", "nameColumn": "req_path", "startTimeColumn": "start", "endTimeColumn": "end"}]))], "spec.otel.tables[0].spans[0].nameColumn"),
        // Plugin
        case("enabled without a Vizier", PLUGIN, vec![Remove("/spec/vizierRef")], "spec.vizierRef"),
        case("enabled without an export URL", PLUGIN, vec![Remove("/spec/defaultExportURL")], "spec.customExportURL"),
        case("custom URL not allowed", PLUGIN, vec![Set("/spec/allowCustomExportURL", json!(false)), Set("/spec/customExportURL", json!("collector.example.com:4317"))], "spec.customExportURL"),
        case("insecure TLS not allowed", PLUGIN, vec![Set("/spec/allowInsecureTLS", json!(false)), Set("/spec/insecureTLS", json!(true))], "spec.insecureTLS"),
        case("default export URL with a scheme", PLUGIN, vec![Set("/spec/defaultExportURL", json!("https://otlp.nr-data.net:4317"))], "spec.defaultExportURL"),
        case("preset frequency of zero", PLUGIN, vec![Set("/spec/presetScripts/0/defaultFrequency", json!("0s"))], "spec.presetScripts[0].defaultFrequency"),
        case("preset name with spaces", PLUGIN, vec![Set("/spec/presetScripts/0/name", json!("HTTP requests"))], "spec.presetScripts[0].name"),
        case("plugin version not a release", PLUGIN, vec![Set("/spec/version", json!("latest"))], "spec.version"),
    ]
}

/// Applies `changes` to a copy of `sample` and names it `name`.
fn mutated(sample: &str, name: &str, changes: &[Change]) -> DynamicObject {
    let mut object = read_sample(sample);
    object["metadata"]["name"] = json!(name);
    for change in changes {
        match change {
            Set(pointer, value) => set_pointer(&mut object, pointer, value.clone()),
            Remove(pointer) => remove_pointer(&mut object, pointer),
        }
    }
    serde_json::from_value(object).expect("a DynamicObject")
}

fn kind_of(object: &DynamicObject) -> String {
    object
        .types
        .as_ref()
        .expect("samples carry apiVersion and kind")
        .kind
        .clone()
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_naming_the_field() {
    let (_cluster, client, ns) = setup("crds-invalid").await;
    let cases = invalid_cases();
    assert!(
        cases.len() >= 25,
        "the table must hold at least 25 invalid objects"
    );

    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let name = format!("invalid-{index}");
        let object = mutated(case.sample, &name, &case.changes);
        let kind = kind_of(&object);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(&kind));
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("{}: {kind} was accepted", case.what)),
            Err(kube::Error::Api(status)) if status.code == 422 && status.reason == "Invalid" => {
                if !status.message.contains(case.field) {
                    failures.push(format!(
                        "{}: message does not name {}: {}",
                        case.what, case.field, status.message
                    ));
                }
            }
            Err(other) => {
                failures.push(format!("{}: expected 422 Invalid, got {other}", case.what))
            }
        }
        // Refused means nothing was stored.
        if api.get_opt(&name).await.expect("get").is_some() {
            failures.push(format!("{}: {kind}/{name} was stored", case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid objects misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn each_valid_sample_is_accepted_by_the_same_path_the_invalid_ones_take() {
    // The invalid table mutates these samples; this proves the unmutated ones pass, so that each
    // refusal above is caused by its one change.
    let (_cluster, client, ns) = setup("crds-valid").await;
    for file in sample_files() {
        let mut object = read_sample(file.file_name().unwrap().to_str().unwrap());
        let kind = object["kind"].as_str().unwrap().to_owned();
        let stem = file
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .replace('_', "-")
            .to_lowercase();
        object["metadata"]["name"] = json!(format!("valid-{stem}"));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(&kind));
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        if let Err(error) = api.create(&PostParams::default(), &object).await {
            panic!("{} was refused: {error}", file.display());
        }
    }
}

/// Values at the edges of what the rules allow, which must not be refused: the rules are meant to
/// catch mistakes, not to narrow what Pixie, cron or OTLP accept.
#[tokio::test]
async fn unusual_but_valid_values_are_accepted() {
    let (_cluster, client, ns) = setup("crds-edge").await;
    const VIZIER: &str = "px_v1alpha1_vizier.yaml";
    const PXL: &str = "px_v1alpha1_pxlscript.yaml";
    const CRON: &str = "px_v1alpha1_cronscript.yaml";
    const EXPORT: &str = "px_v1alpha1_dataexport.yaml";
    const PLUGIN: &str = "px_v1alpha1_plugin.yaml";
    #[rustfmt::skip]
    let variants: Vec<(&str, &str, Vec<Change>)> = vec![
        ("cloud address without a port", VIZIER, vec![Set("/spec/cloudAddr", json!("withpixie.ai"))]),
        ("cloud address as IPv6", VIZIER, vec![Set("/spec/cloudAddr", json!("[fd00::1]:443"))]),
        ("PEM request equal to the limit in other units", VIZIER, vec![Set("/spec/pemMemoryRequest", json!("2048Mi"))]),
        ("PEM limit in plain bytes", VIZIER, vec![Set("/spec/pemMemoryLimit", json!("4294967296"))]),
        ("pre-release version", VIZIER, vec![Set("/spec/version", json!("0.14.8-pre-main.0"))]),
        ("dev cloud namespace", VIZIER, vec![Set("/spec/devCloudNamespace", json!("plc-dev"))]),
        ("registry with port and path", VIZIER, vec![Set("/spec/registry", json!("registry.example.com:5000/mirror/pixie"))]),
        ("deploy key instead of a Secret", VIZIER, vec![Remove("/spec/customDeployKeySecret"), Set("/spec/deployKey", json!("px-dep-1"))]),
        ("negative Int64 default", PXL, vec![Set("/spec/args/0/type", json!("Int64")), Set("/spec/args/0/default", json!("-10"))]),
        ("Float64 default in exponent form", PXL, vec![Set("/spec/args/0/type", json!("Float64")), Set("/spec/args/0/default", json!("1e-3"))]),
        ("Boolean default", PXL, vec![Set("/spec/args/0/type", json!("Boolean")), Set("/spec/args/0/default", json!("true"))]),
        ("default among validValues", PXL, vec![Set("/spec/args/0/validValues", json!(["-5m", "-1h"]))]),
        ("step schedule", CRON, vec![Set("/spec/schedule", json!("*/5 * * * *"))]),
        ("weekday office hours", CRON, vec![Set("/spec/schedule", json!("0 9-17 * * 1-5"))]),
        ("lists, names and steps", CRON, vec![Set("/spec/schedule", json!("15,45 */2 1 jan,jul mon-fri"))]),
        ("question mark and upper-case day", CRON, vec![Set("/spec/schedule", json!("0 0 ? * SUN"))]),
        ("range with step", CRON, vec![Set("/spec/schedule", json!("30 2 1-7/2 * *"))]),
        ("macro", CRON, vec![Set("/spec/schedule", json!("@hourly"))]),
        ("compound frequency", CRON, vec![Remove("/spec/schedule"), Set("/spec/frequency", json!("1h30m"))]),
        ("one-second frequency", CRON, vec![Remove("/spec/schedule"), Set("/spec/frequency", json!("1s"))]),
        ("inline source", CRON, vec![Remove("/spec/scriptRef"), Set("/spec/source", json!("import px\npx.display(px.DataFrame('http_events'))"))]),
        ("endpoint as IPv4", EXPORT, vec![Set("/spec/sink/otlpGrpc/endpoint", json!("10.0.0.5:4317"))]),
        ("endpoint as IPv6", EXPORT, vec![Set("/spec/sink/otlpGrpc/endpoint", json!("[::1]:4317"))]),
        ("plaintext without TLS settings", EXPORT, vec![Set("/spec/sink/otlpGrpc/tls", json!({"insecure": true}))]),
        ("no column mapping", EXPORT, vec![Remove("/spec/otel")]),
        ("disabled plugin without a Vizier", PLUGIN, vec![Set("/spec/enabled", json!(false)), Remove("/spec/vizierRef")]),
        ("allowed custom export URL", PLUGIN, vec![Set("/spec/customExportURL", json!("collector.example.com:4317"))]),
        ("allowed insecure TLS", PLUGIN, vec![Set("/spec/insecureTLS", json!(true))]),
    ];

    let mut refused = Vec::new();
    for (index, (what, sample, changes)) in variants.iter().enumerate() {
        let object = mutated(sample, &format!("edge-{index}"), changes);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(&kind_of(&object)));
        if let Err(error) = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &object,
            )
            .await
        {
            refused.push(format!("{what}: {error}"));
        }
    }
    assert!(
        refused.is_empty(),
        "valid objects were refused:\n{}",
        refused.join("\n")
    );
}
