//! Render tests: golden files for a few representative objects (review them like code; regenerate
//! with `UPDATE_GOLDEN=1 cargo test -p pixie-operator`), and properties every render must have.

use std::collections::BTreeSet;

use pixie_crds::{DataAccess, DataCollectorParams, Vizier};
use serde_json::{Value, json};

use super::*;
use crate::resources::Kind;
use crate::validate::{BackendFacts, Outcome, validate};

const UID: &str = "6f1c2a3b-1111-2222-3333-444455556666";

fn sample(file: &str) -> Vizier {
    let path = format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut vizier: Vizier = serde_saphyr::from_str(&text).unwrap();
    vizier.metadata.namespace = Some("pl".into());
    vizier.metadata.uid = Some(UID.into());
    vizier
}

fn inputs_for(vizier: &Vizier, facts: BackendFacts) -> Inputs {
    match validate(vizier, facts, common::DEFAULT_REGISTRY, "0.1.0").unwrap() {
        Outcome::Deploy { inputs, .. } => *inputs,
        other => panic!("not deployable: {other:?}"),
    }
}

fn production() -> Inputs {
    inputs_for(&sample("px_v1alpha1_vizier.yaml"), BackendFacts::default())
}

fn minimal() -> Inputs {
    let mut vizier = Vizier::test().with_version("0.14.7");
    vizier.metadata.uid = Some(UID.into());
    inputs_for(&vizier, BackendFacts::default())
}

fn find<'a>(rendered: &'a Rendered, kind: Kind, name: &str) -> &'a Value {
    &rendered
        .objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
        .body
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    pod_spec(workload)["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name).map(|e| e.get("value").unwrap_or(&e["valueFrom"]))
}

/// Compares `value`, as YAML, with `tests/golden/<name>`.
fn golden(name: &str, value: &Value) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let yaml = serde_saphyr::to_string(value).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run with UPDATE_GOLDEN=1 to create it"));
    assert!(expected == yaml, "{path} differs from the render (UPDATE_GOLDEN=1 rewrites it):\n{yaml}");
}

#[test]
fn golden_pem_daemonset_of_the_production_sample() {
    golden("pem-daemonset.yaml", find(&render(&production()).unwrap(), Kind::DaemonSet, PEM));
}

#[test]
fn golden_query_broker_of_the_production_sample() {
    golden("query-broker-deployment.yaml", find(&render(&production()).unwrap(), Kind::Deployment, QUERY_BROKER));
}

#[test]
fn golden_settings_of_the_production_sample() {
    golden("settings-configmap.yaml", find(&render(&production()).unwrap(), Kind::ConfigMap, SETTINGS));
}

#[test]
fn golden_kelvin_patched_by_the_pixie_style_sample() {
    // Without a version and with a cloud, nothing is deployable (see version::resolve): pin one.
    let vizier = sample("pixie-style-vizier.yaml");
    let vizier = Vizier { spec: pixie_crds::VizierSpec { version: Some("0.14.15".into()), ..vizier.spec }, ..vizier };
    let inputs = inputs_for(&vizier, BackendFacts::default());
    golden("kelvin-deployment-patched.yaml", find(&render(&inputs).unwrap(), Kind::Deployment, KELVIN));
}

#[test]
fn golden_metadata_cluster_role() {
    golden("metadata-clusterrole.yaml", find(&render(&minimal()).unwrap(), Kind::ClusterRole, "pixie-pl-pixie-metadata"));
}

#[test]
fn golden_object_lists_for_both_metadata_backends() {
    let list = |inputs: &Inputs| -> Value {
        render(inputs).unwrap().objects.iter().map(|o| Value::String(format!("{} {}", o.kind, o.name))).collect()
    };
    let persistent = inputs_for(
        &sample("px_v1alpha1_vizier.yaml"),
        BackendFacts { default_storage_classes: 1, ..Default::default() },
    );
    let memory = minimal();
    golden("objects.yaml", &json!({"persistent-with-cloud": list(&persistent), "memory-without-cloud": list(&memory)}));
}

#[test]
fn render_is_deterministic() {
    assert_eq!(render(&production()).unwrap(), render(&production()).unwrap());
}

#[test]
fn every_namespaced_object_is_owned_and_every_cluster_object_is_labelled() {
    for object in render(&production()).unwrap().objects {
        let meta = &object.body["metadata"];
        if object.kind.is_namespaced() {
            assert_eq!(meta["namespace"], "pl", "{} {}", object.kind, object.name);
            let owner = &meta["ownerReferences"][0];
            assert_eq!((owner["kind"].as_str(), owner["uid"].as_str(), owner["controller"].as_bool()),
                (Some("Vizier"), Some(UID), Some(true)), "{} {}", object.kind, object.name);
        } else {
            assert!(meta.get("ownerReferences").is_none());
            assert_eq!(meta["labels"][common::LABEL_VIZIER_UID], UID);
            assert_eq!(meta["annotations"][common::ANNOTATION_VIZIER], "pl/pixie");
        }
        assert_eq!(meta["labels"][common::LABEL_MANAGED_BY], "pixie-operator");
        object.kind.check(&object.body).unwrap();
    }
}

#[test]
fn rbac_rules_name_every_verb_and_resource() {
    let rendered = render(&production()).unwrap();
    let mut roles = 0;
    for object in rendered.objects.iter().filter(|o| matches!(o.kind, Kind::Role | Kind::ClusterRole)) {
        roles += 1;
        for rule in object.body["rules"].as_array().unwrap() {
            for field in ["verbs", "resources", "apiGroups"] {
                for item in rule[field].as_array().unwrap() {
                    assert_ne!(item, "*", "{} {} grants a wildcard {field}", object.kind, object.name);
                }
            }
        }
    }
    assert_eq!(roles, 5, "metadata, query broker and cloud connector roles plus two cluster roles");
}

#[test]
fn the_query_broker_role_grants_what_the_cronscript_runner_uses_and_no_more() {
    let rendered = render(&minimal()).unwrap();
    let role = find(&rendered, Kind::Role, "pl-query-broker-role");
    let rules: Vec<String> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let names = r.get("resourceNames").map(|n| format!(" {n}")).unwrap_or_default();
            format!("{} {} {}{names}", r["apiGroups"], r["resources"], r["verbs"])
        })
        .collect();
    assert_eq!(
        rules,
        [
            r#"[""] ["configmaps"] ["get","list","watch"]"#,
            r#"["px.dev"] ["cronscripts","pxlscripts","dataexports"] ["get","list","watch"]"#,
            r#"["px.dev"] ["viziers"] ["get"] ["pixie"]"#,
            r#"["px.dev"] ["cronscripts/status","dataexports/status"] ["patch"]"#,
            r#"[""] ["secrets"] ["get"]"#,
            r#"["events.k8s.io"] ["events"] ["create","patch"]"#,
            r#"["coordination.k8s.io"] ["leases"] ["create"]"#,
            r#"["coordination.k8s.io"] ["leases"] ["get","patch"] ["pixie-broker-pixie"]"#,
        ]
    );
}

#[test]
fn the_pem_runs_privileged_on_the_host_with_the_spec_memory() {
    let rendered = render(&production()).unwrap();
    let pem = find(&rendered, Kind::DaemonSet, PEM);
    let spec = pod_spec(pem);
    assert_eq!((spec["hostPID"].as_bool(), spec["hostNetwork"].as_bool()), (Some(true), Some(true)));
    let c = container(pem, "pem");
    assert_eq!(c["command"], json!(["vizier", "pem"]));
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["resources"]["limits"]["memory"], "2Gi");
    assert_eq!(c["resources"]["requests"]["memory"], "1Gi");
    assert_eq!(c["resources"]["limits"]["cpu"], "2", "the pod policy's cpu reaches the PEM too");
    let mounts: BTreeSet<&str> = c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert!(mounts.contains("/host/proc") && mounts.contains("/sys"), "{mounts:?}");
    let host_paths: BTreeSet<&str> =
        spec["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    assert_eq!(host_paths, BTreeSet::from(["/proc", "/sys"]));
    // The policy's security context is for unprivileged pods only.
    assert!(spec.get("securityContext").is_none());
    assert_eq!(c["image"], "registry.example.com/pixie-mirror/vizier-pem:0.14.15");
}

#[test]
fn the_query_path_runs_broker_to_kelvin_to_every_pem() {
    let inputs = minimal();
    let rendered = render(&inputs).unwrap();
    let ns = &inputs.namespace;
    // PEMs serve their store on the node's network and announce it on NATS; a headless Service
    // names them all.
    let pem = container(find(&rendered, Kind::DaemonSet, PEM), "pem");
    assert_eq!(pem["args"].as_array().unwrap()[..2], json!(["--listen", "0.0.0.0:50400"]).as_array().unwrap()[..]);
    assert_eq!(env_value(pem, "PL_POD_IP").unwrap()["fieldRef"]["fieldPath"], "status.podIP");
    assert_eq!(env_value(pem, "PL_ADVERTISE_ADDR").unwrap(), "$(PL_POD_IP):50400");
    let pod_ip = pem["env"].as_array().unwrap().iter().position(|v| v["name"] == "PL_POD_IP");
    let advertise = pem["env"].as_array().unwrap().iter().position(|v| v["name"] == "PL_ADVERTISE_ADDR");
    assert!(pod_ip < advertise, "$(PL_POD_IP) expands only if defined before");
    let service = find(&rendered, Kind::Service, PEM_SERVICE);
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["ports"][0]["port"], 50400);
    assert_eq!(service["spec"]["selector"]["app.kubernetes.io/component"], "pem");
    assert_eq!(service["metadata"]["ownerReferences"][0]["uid"], UID);
    // Kelvin asks every PEM whose heartbeats reach it on the Vizier's NATS, over TLS.
    let kelvin = container(find(&rendered, Kind::Deployment, KELVIN), "kelvin");
    assert_eq!(kelvin["args"], json!(["--listen", "0.0.0.0:59300"]));
    let settings = find(&rendered, Kind::ConfigMap, SETTINGS);
    assert_eq!(settings["data"]["PL_NATS_URL"], format!("tls://pl-nats.{ns}.svc:4222"));
    assert_eq!(kelvin["envFrom"][0]["configMapRef"]["name"], SETTINGS);
    // The broker forwards clients to Kelvin and runs this Vizier's CronScripts.
    let broker = container(find(&rendered, Kind::Deployment, QUERY_BROKER), "query-broker");
    assert_eq!(
        broker["args"],
        json!(["--listen", "0.0.0.0:50300", "--kelvin-addr", format!("kelvin-service.{ns}.svc:59300"), "--vizier", inputs.name])
    );
    assert_eq!(env_value(broker, "POD_NAMESPACE").unwrap()["fieldRef"]["fieldPath"], "metadata.namespace");
    assert_eq!(env_value(broker, "POD_NAME").unwrap()["fieldRef"]["fieldPath"], "metadata.name");
}

#[test]
fn data_collector_params_become_pem_environment_and_custom_flags_win() {
    let mut inputs = minimal();
    inputs.spec.pem_memory_limit = Some("4Gi".into());
    inputs.spec.data_collector_params = Some(DataCollectorParams {
        datastream_buffer_size: Some(2048),
        datastream_buffer_spike_size: Some(4096),
        custom_pem_flags: Some([("PL_TABLE_STORE_DATA_LIMIT_MB".to_owned(), "100".to_owned()),
            ("PL_EXTRA".to_owned(), "x".to_owned())].into()),
        ..Default::default()
    });
    let rendered = render(&inputs).unwrap();
    let pem = container(find(&rendered, Kind::DaemonSet, PEM), "pem");
    assert_eq!(env_value(pem, "PL_DATASTREAM_BUFFER_SIZE"), Some(&json!("2048")));
    assert_eq!(env_value(pem, "PL_DATASTREAM_BUFFER_SPIKE_SIZE"), Some(&json!("4096")));
    assert_eq!(env_value(pem, "PL_TABLE_STORE_DATA_LIMIT_MB"), Some(&json!("100")));
    assert_eq!(env_value(pem, "PL_EXTRA"), Some(&json!("x")));
    let names: Vec<_> = pem["env"].as_array().unwrap().iter().map(|e| e["name"].clone()).collect();
    let unique: BTreeSet<_> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names.len(), unique.len(), "env names must be unique for server-side apply");
    // Not on other components.
    let kelvin = container(find(&rendered, Kind::Deployment, KELVIN), "kelvin");
    assert_eq!(env_value(kelvin, "PL_EXTRA"), None);
    // Without flags the table store gets 60% of the limit.
    inputs.spec.data_collector_params = None;
    let rendered = render(&inputs).unwrap();
    let pem = container(find(&rendered, Kind::DaemonSet, PEM), "pem");
    assert_eq!(env_value(pem, "PL_TABLE_STORE_DATA_LIMIT_MB"), Some(&json!("2457")));
}

#[test]
fn data_access_reaches_the_services_that_run_queries() {
    let mut inputs = minimal();
    assert_eq!(env_value(container(find(&render(&inputs).unwrap(), Kind::Deployment, KELVIN), "kelvin"), "PL_DATA_ACCESS"),
        Some(&json!("Full")));
    inputs.spec.data_access = Some(DataAccess::PiiRestricted);
    let rendered = render(&inputs).unwrap();
    for (name, c) in [(QUERY_BROKER, "query-broker"), (KELVIN, "kelvin")] {
        assert_eq!(env_value(container(find(&rendered, Kind::Deployment, name), c), "PL_DATA_ACCESS"),
            Some(&json!("PIIRestricted")));
    }
}

#[test]
fn pod_policy_reaches_every_pod_template() {
    let rendered = render(&production()).unwrap();
    for workload in rendered.objects.iter().filter(|o| o.kind.is_workload()) {
        let template = &workload.body["spec"]["template"];
        assert_eq!(template["metadata"]["labels"]["team"], "observability", "{}", workload.name);
        assert_eq!(template["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"], "false");
        assert_eq!(template["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
        let tolerations = template["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations.iter().any(|t| t["key"] == "dedicated" && t["value"] == "monitoring"), "{}", workload.name);
        if workload.name != PEM {
            assert_eq!(template["spec"]["securityContext"], json!({"fsGroup": 10100, "runAsUser": 10100, "runAsGroup": 10100}),
                "{}", workload.name);
        }
    }
}

#[test]
fn images_follow_the_registry_scheme() {
    let rendered = render(&minimal()).unwrap();
    assert_eq!(container(find(&rendered, Kind::Deployment, KELVIN), "kelvin")["image"], "ghcr.io/pixie-rs/vizier-kelvin:0.14.7");
    assert_eq!(container(find(&rendered, Kind::StatefulSet, NATS), "nats")["image"], common::NATS_IMAGE);
    let rendered = render(&production()).unwrap();
    assert_eq!(container(find(&rendered, Kind::StatefulSet, NATS), "nats")["image"],
        "registry.example.com/pixie-mirror/docker.io-library-nats:2.10.22-alpine");
}

#[test]
fn the_cloud_connector_exists_only_with_a_cloud() {
    let has = |inputs: &Inputs, kind, name: &str| render(inputs).unwrap().objects.iter().any(|o| o.kind == kind && o.name == name);
    let production = production();
    assert!(has(&production, Kind::Deployment, CLOUD_CONNECTOR));
    // The production sample keeps its key in its own Secret; nothing to write.
    assert!(!has(&production, Kind::Secret, DEPLOY_SECRET));
    let rendered = render(&production).unwrap();
    let connector = container(find(&rendered, Kind::Deployment, CLOUD_CONNECTOR), "cloud-connector");
    assert_eq!(env_value(connector, "PL_DEPLOY_KEY").unwrap()["secretKeyRef"]["name"], "pixie-deploy-key");
    // What `vizier connector` needs beyond the settings ConfigMap (PL_CLOUD_ADDR, PL_CLUSTER_NAME).
    assert_eq!(connector["args"], json!(["--vizier", production.name]));
    assert_eq!(env_value(connector, "POD_NAMESPACE").unwrap()["fieldRef"]["fieldPath"], "metadata.namespace");
    let settings = find(&rendered, Kind::ConfigMap, SETTINGS);
    assert!(settings["data"]["PL_CLOUD_ADDR"].is_string(), "{settings}");
    // Exactly what it calls (the connector test runs it under these grants).
    assert_eq!(
        find(&rendered, Kind::Role, "pl-cloud-connector-role")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["pl-cluster-secrets"], "verbs": ["get", "patch"]},
            {"apiGroups": ["px.dev"], "resources": ["viziers"], "resourceNames": [production.name], "verbs": ["get"]},
        ])
    );

    let minimal = minimal();
    assert!(!has(&minimal, Kind::Deployment, CLOUD_CONNECTOR));
    assert!(!has(&minimal, Kind::Secret, DEPLOY_SECRET));
    let mut inline = minimal.clone();
    inline.spec.cloud_addr = Some("withpixie.ai:443".into());
    assert!(has(&inline, Kind::Secret, DEPLOY_SECRET));
}

#[test]
fn the_connector_trusts_the_cloud_as_the_operator_does_and_dials_a_dev_cloud_in_cluster() {
    let mut inputs = production();
    let connector_of = |inputs: &Inputs| {
        let rendered = render(inputs).unwrap();
        let deployment = find(&rendered, Kind::Deployment, CLOUD_CONNECTOR).clone();
        (rendered, deployment)
    };
    // System roots: nothing to hand over.
    let (rendered, deployment) = connector_of(&inputs);
    let connector = container(&deployment, "cloud-connector");
    assert!(env_value(connector, "PL_CLOUD_CA_FILE").is_none() && env_value(connector, "PL_CLOUD_INSECURE").is_none());
    assert!(!rendered.objects.iter().any(|o| o.name == CLOUD_CA));

    // The operator's private CA: in a ConfigMap, mounted, and named by PL_CLOUD_CA_FILE.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    inputs.cloud_trust = pixie_cloud::Trust::Ca(pem.as_bytes().to_vec());
    let (rendered, deployment) = connector_of(&inputs);
    assert_eq!(find(&rendered, Kind::ConfigMap, CLOUD_CA)["data"][CLOUD_CA_KEY], pem);
    let connector = container(&deployment, "cloud-connector");
    assert_eq!(env_value(connector, "PL_CLOUD_CA_FILE"), Some(&json!("/cloud-ca/ca.crt")));
    let mounts = connector["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/cloud-ca" && m["name"] == "cloud-ca"), "{mounts:?}");
    let volumes = pod_spec(&deployment)["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == CLOUD_CA), "{volumes:?}");
    // Other pods do not get it.
    assert!(env_value(container(find(&rendered, Kind::Deployment, KELVIN), "kelvin"), "PL_CLOUD_CA_FILE").is_none());

    // A plaintext development cloud.
    inputs.cloud_trust = pixie_cloud::Trust::Plaintext;
    let (rendered, deployment) = connector_of(&inputs);
    assert_eq!(env_value(container(&deployment, "cloud-connector"), "PL_CLOUD_INSECURE"), Some(&json!("true")));
    assert!(!rendered.objects.iter().any(|o| o.name == CLOUD_CA));

    // A dev cloud is dialled in the cluster, where the operator asks for versions too.
    inputs.spec.dev_cloud_namespace = Some("plc-dev".into());
    let rendered = render(&inputs).unwrap();
    assert_eq!(
        find(&rendered, Kind::ConfigMap, SETTINGS)["data"]["PL_CLOUD_ADDR"],
        "api-service.plc-dev.svc.cluster.local:51200"
    );
}

#[test]
fn grpc_components_are_probed_over_plain_http_on_the_health_port() {
    let rendered = render(&production()).unwrap();
    assert_eq!(
        find(&rendered, Kind::ConfigMap, SETTINGS)["data"]["PL_HEALTH_LISTEN"],
        format!("0.0.0.0:{}", common::HEALTH_PORT)
    );
    for (kind, name, container_name) in [
        (Kind::DaemonSet, PEM, "pem"),
        (Kind::Deployment, KELVIN, "kelvin"),
        (Kind::Deployment, QUERY_BROKER, "query-broker"),
        (Kind::Deployment, METADATA, "metadata"),
    ] {
        let container = container(find(&rendered, kind, name), container_name);
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{name} {probe}");
            assert_eq!(container[probe]["httpGet"]["port"], common::HEALTH_PORT, "{name} {probe}");
        }
    }
}

#[test]
fn patches_apply_by_name_and_unknown_targets_are_reported() {
    let mut inputs = minimal();
    inputs.patches = [
        ("vizier-pem".to_owned(), json!({"spec": {"template": {"spec": {"containers": [
            {"name": "pem", "env": [{"name": "PL_HOST_PATH", "value": "/hostfs"}]}]}}}})),
        ("vizier-proxy".to_owned(), json!({"spec": {"replicas": 2}})),
    ]
    .into();
    let rendered = render(&inputs).unwrap();
    let pem = container(find(&rendered, Kind::DaemonSet, PEM), "pem");
    assert_eq!(env_value(pem, "PL_HOST_PATH"), Some(&json!("/hostfs")));
    assert_eq!(pem["command"], json!(["vizier", "pem"]), "the rest of the container is kept");
    assert_eq!(rendered.unknown_patch_targets, vec!["vizier-proxy".to_owned()]);
}

#[test]
fn patches_that_break_an_object_are_refused() {
    let mut inputs = minimal();
    inputs.patches = [("kelvin".to_owned(), json!({"metadata": {"name": "other"}}))].into();
    assert!(render(&inputs).unwrap_err().contains("must not change /metadata/name"));
    inputs.patches = [("kelvin".to_owned(), json!({"spec": {"replicas": "many"}}))].into();
    assert!(render(&inputs).unwrap_err().contains("not a valid Deployment"));
}

#[test]
fn pems_name_their_node_to_the_metadata_service_which_reads_only_pods_and_services() {
    let inputs = minimal();
    let ns = &inputs.namespace;
    let mut persistent = minimal();
    persistent.backend = crate::validate::MetadataBackend::Persistent;
    for (rendered, kind) in [(render(&inputs).unwrap(), Kind::Deployment), (render(&persistent).unwrap(), Kind::StatefulSet)] {
        let metadata = container(find(&rendered, kind, METADATA), "metadata");
        assert_eq!(metadata["command"], json!(["vizier", "metadata"]));
        assert_eq!(metadata["args"], json!(["--listen", "0.0.0.0:50400"]));
        let service = find(&rendered, Kind::Service, METADATA_SERVICE);
        assert_eq!(service["spec"]["ports"][0]["port"], 50400);
        let pem = container(find(&rendered, Kind::DaemonSet, PEM), "pem");
        assert_eq!(
            pem["args"].as_array().unwrap()[2..],
            json!(["--metadata-addr", format!("{METADATA_SERVICE}.{ns}.svc:50400")]).as_array().unwrap()[..]
        );
        assert_eq!(env_value(pem, "PL_NODE_NAME").unwrap()["fieldRef"]["fieldPath"], "spec.nodeName");
    }
    let rendered = render(&inputs).unwrap();
    let role = find(&rendered, Kind::ClusterRole, "pixie-pl-pixie-metadata");
    assert_eq!(role["rules"], json!([{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["list", "watch"]}]));
}

#[test]
fn nats_is_probed_for_liveness_and_readiness_on_its_monitor_port() {
    let rendered = render(&minimal()).unwrap();
    let nats = container(find(&rendered, Kind::StatefulSet, NATS), "nats");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(nats[probe]["httpGet"], json!({"path": "/healthz", "port": nats::MONITOR_PORT}), "{probe}");
    }
    assert_eq!(nats["readinessProbe"]["periodSeconds"], 5);
}

#[test]
fn metadata_backends_render_different_objects() {
    let memory = render(&minimal()).unwrap();
    let deployment = find(&memory, Kind::Deployment, METADATA);
    let metadata = container(deployment, "metadata");
    assert_eq!(env_value(metadata, "PL_METADATA_STORE"), Some(&json!("memory")));
    assert!(metadata["volumeMounts"].as_array().unwrap().iter().all(|m| m["mountPath"] != "/metadata"));
    assert!(!memory.objects.iter().any(|o| o.kind == Kind::PersistentVolumeClaim));
    // Nothing besides NATS is stateful: the memory backend needs no store of its own.
    let stateful: Vec<_> =
        memory.objects.iter().filter(|o| o.kind == Kind::StatefulSet).map(|o| o.name.as_str()).collect();
    assert_eq!(stateful, [NATS]);

    let mut persistent = minimal();
    persistent.backend = crate::validate::MetadataBackend::Persistent;
    let rendered = render(&persistent).unwrap();
    let metadata = find(&rendered, Kind::StatefulSet, METADATA);
    assert_eq!(pod_spec(metadata)["volumes"][1]["persistentVolumeClaim"]["claimName"], METADATA_PVC);
    assert_eq!(find(&rendered, Kind::PersistentVolumeClaim, METADATA_PVC)["spec"]["resources"]["requests"]["storage"], "16Gi");
    assert_eq!(env_value(container(metadata, "metadata"), "PL_METADATA_STORE"), Some(&json!("file:/metadata")));
    assert!(!rendered.objects.iter().any(|o| o.kind == Kind::Deployment && o.name == METADATA));
}

#[test]
fn a_settings_change_changes_every_pod_template() {
    let before = render(&minimal()).unwrap();
    let mut inputs = minimal();
    inputs.cluster_name = "renamed".into();
    let after = render(&inputs).unwrap();
    let hash = |r: &Rendered, kind, name| find(r, kind, name)["spec"]["template"]["metadata"]["annotations"]
        [common::ANNOTATION_SETTINGS_HASH].clone();
    assert_ne!(hash(&before, Kind::Deployment, KELVIN), hash(&after, Kind::Deployment, KELVIN));
    assert_ne!(hash(&before, Kind::DaemonSet, PEM), hash(&after, Kind::DaemonSet, PEM));
}
