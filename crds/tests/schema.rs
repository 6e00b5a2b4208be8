//! Properties of the generated CRDs that the apiserver or `kubectl` rely on, checked without a
//! cluster: naming, structural schemas, bounded CEL inputs, list-map keys and descriptions.

use std::collections::BTreeSet;

use pixie_crds::all_crds;
use serde_json::Value;

/// Every schema node of a CRD's openAPIV3Schema, with its dotted path (`spec.pod.tolerations[]`).
fn schema_nodes(crd_schema: &Value) -> Vec<(String, Value)> {
    fn walk(path: String, node: &Value, out: &mut Vec<(String, Value)>) {
        out.push((path.clone(), node.clone()));
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(child_path, child, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(format!("{path}[]"), items, out);
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(format!("{path}{{}}"), values, out);
        }
    }
    let mut out = Vec::new();
    walk(String::new(), crd_schema, &mut out);
    out
}

fn crd_json() -> Vec<(String, Value)> {
    all_crds()
        .into_iter()
        .map(|crd| {
            (
                crd.spec.names.kind.clone(),
                serde_json::to_value(&crd).expect("CRD serialises"),
            )
        })
        .collect()
}

fn open_api_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

#[test]
fn every_kind_is_namespaced_in_px_dev_v1alpha1_with_status_and_the_pixie_category() {
    let kinds: Vec<String> = all_crds()
        .iter()
        .map(|crd| crd.spec.names.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        ["Vizier", "PxlScript", "CronScript", "DataExport", "Plugin"]
    );
    for crd in all_crds() {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, "px.dev", "{kind}");
        assert_eq!(crd.spec.scope, "Namespaced", "{kind}");
        assert_eq!(crd.spec.versions.len(), 1, "{kind}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1", "{kind}");
        assert!(version.served && version.storage, "{kind}");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind} has no status subresource"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["pixie".to_owned()][..]),
            "{kind}"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|names| !names.is_empty()),
            "{kind} has no short name"
        );
    }
}

#[test]
fn short_names_are_unique_and_shadow_no_builtin_resource() {
    // Short names and plurals of built-in and widely installed resources as of Kubernetes 1.37.
    let taken: BTreeSet<&str> = [
        "cm", "cs", "csr", "cj", "crd", "crds", "deploy", "ds", "ep", "eps", "ev", "hpa", "ing",
        "limits", "netpol", "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs",
        "sa", "sc", "sts", "svc", "vs", "vpa", "cert", "certs", "app", "apps", "pl", "px",
    ]
    .into();
    let mut seen = BTreeSet::new();
    for crd in all_crds() {
        for name in crd.spec.names.short_names.unwrap_or_default() {
            assert!(
                !taken.contains(name.as_str()),
                "{name} shadows a resource kubectl users already type"
            );
            assert!(seen.insert(name.clone()), "{name} is used twice");
        }
    }
}

#[test]
fn printer_columns_show_what_an_operator_looks_for() {
    for crd in all_crds() {
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|column| column.priority.unwrap_or(0) == 0)
            .map(|column| column.name.clone())
            .collect();
        let expected: &[&str] = match crd.spec.names.kind.as_str() {
            "Vizier" => &["Ready", "Version", "Phase", "Age"],
            "PxlScript" => &["Compiled", "Age"],
            "CronScript" => &[
                "Schedule",
                "Every",
                "Suspend",
                "Last run",
                "Last result",
                "Age",
            ],
            "DataExport" => &["Endpoint", "Ready", "Last delivery", "Age"],
            "Plugin" => &["Plugin", "Version", "Enabled", "Ready", "Age"],
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(columns, expected, "{}", crd.spec.names.kind);
    }
}

#[test]
fn schemas_are_structural() {
    for (kind, crd) in crd_json() {
        for (path, node) in schema_nodes(open_api_schema(&crd)) {
            for keyword in [
                "$ref",
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "definitions",
                "$defs",
            ] {
                assert!(
                    node.get(keyword).is_none(),
                    "{kind} {path}: `{keyword}` is not allowed in a structural schema"
                );
            }
            let typed = node.get("type").is_some()
                || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            assert!(typed, "{kind} {path}: every node needs a type");
        }
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for (kind, crd) in crd_json() {
        for (path, node) in schema_nodes(open_api_schema(&crd)) {
            if path.is_empty() || path.ends_with("[]") || path.ends_with("{}") {
                continue;
            }
            let description = node
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            assert!(
                !description.trim().is_empty(),
                "{kind} {path} has no description"
            );
        }
    }
}

/// The apiserver estimates each CEL rule's cost from the largest value it could see, and refuses a
/// CRD whose rules could exceed the budget; so everything a rule reads must have an upper bound.
#[test]
fn cel_rules_only_read_bounded_values() {
    fn bounded(node: &Value) -> bool {
        match node.get("type").and_then(Value::as_str) {
            Some("string") => node.get("maxLength").is_some() || node.get("enum").is_some(),
            Some("array") => node.get("maxItems").is_some(),
            Some("object") if node.get("additionalProperties").is_some() => {
                node.get("maxProperties").is_some()
            }
            _ => true,
        }
    }
    let mut rules_seen = 0;
    for (kind, crd) in crd_json() {
        let nodes = schema_nodes(open_api_schema(&crd));
        for (path, node) in &nodes {
            let Some(rules) = node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            else {
                continue;
            };
            rules_seen += rules.len();
            assert!(
                bounded(node),
                "{kind} {path} carries CEL rules but has no size bound"
            );
            for (child, child_node) in node
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                assert!(
                    bounded(child_node),
                    "{kind} {path}.{child} is read by CEL rules but has no size bound"
                );
            }
            // Rules inside list items run once per item.
            let mut ancestor = path.as_str();
            while let Some(index) = ancestor.rfind("[]") {
                ancestor = &ancestor[..index];
                let (_, list) = nodes
                    .iter()
                    .find(|(p, _)| p == ancestor)
                    .expect("ancestor list exists");
                assert!(
                    list.get("maxItems").is_some(),
                    "{kind} {ancestor} holds items with CEL rules but has no maxItems"
                );
            }
        }
    }
    assert!(
        rules_seen >= 20,
        "expected the CRDs to carry their CEL rules, found {rules_seen}"
    );
}

#[test]
fn list_maps_are_keyed_on_required_fields() {
    let mut list_maps = 0;
    for (kind, crd) in crd_json() {
        for (path, node) in schema_nodes(open_api_schema(&crd)) {
            if node.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
                continue;
            }
            list_maps += 1;
            let required: Vec<&str> = node["items"]["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for key in node["x-kubernetes-list-map-keys"]
                .as_array()
                .expect("list-map keys")
                .iter()
            {
                let key = key.as_str().expect("key is a string");
                assert!(
                    required.contains(&key),
                    "{kind} {path}: list-map key {key} must be required"
                );
            }
        }
    }
    assert!(
        list_maps >= 10,
        "expected list maps for conditions, args, refs and headers, found {list_maps}"
    );
}

#[test]
fn every_status_has_conditions_merged_by_type_and_an_observed_generation() {
    for (kind, crd) in crd_json() {
        let status = &open_api_schema(&crd)["properties"]["status"]["properties"];
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(
                conditions["items"]["properties"][field].is_object(),
                "{kind} conditions lack {field}"
            );
        }
        assert_eq!(status["observedGeneration"]["type"], "integer", "{kind}");
    }
}

#[test]
fn vizier_spec_keeps_every_field_name_of_pixies_vizier() {
    let crd = serde_json::to_value(<pixie_crds::Vizier as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &open_api_schema(&crd)["properties"]["spec"];
    let field = |path: &str| {
        path.split('.')
            .fold(spec, |node, name| &node["properties"][name])
    };
    for path in [
        "version",
        "deployKey",
        "customDeployKeySecret",
        "disableAutoUpdate",
        "useEtcdOperator",
        "clusterName",
        "cloudAddr",
        "devCloudNamespace",
        "pemMemoryLimit",
        "pemMemoryRequest",
        "clockConverter",
        "pod.labels",
        "pod.annotations",
        "pod.resources.limits",
        "pod.resources.requests",
        "pod.nodeSelector",
        "pod.tolerations",
        "pod.securityContext.enabled",
        "pod.securityContext.fsGroup",
        "pod.securityContext.runAsUser",
        "pod.securityContext.runAsGroup",
        "patches",
        "dataAccess",
        "dataCollectorParams.datastreamBufferSize",
        "dataCollectorParams.datastreamBufferSpikeSize",
        "dataCollectorParams.customPEMFlags",
        "leadershipElectionParams.electionPeriodMs",
        "registry",
        "autopilot",
    ] {
        assert!(field(path).is_object(), "spec.{path} is missing");
    }
    assert_eq!(
        field("clockConverter")["enum"],
        serde_json::json!(["default", "grpc"])
    );
    assert_eq!(
        field("dataAccess")["enum"],
        serde_json::json!(["Full", "Restricted", "PIIRestricted"])
    );
    assert_eq!(
        field("pod.tolerations")["items"]["properties"]["effect"]["type"],
        "string"
    );
    let status = &open_api_schema(&crd)["properties"]["status"]["properties"];
    for name in [
        "version",
        "operatorVersion",
        "vizierPhase",
        "vizierReason",
        "reconciliationPhase",
        "lastReconciliationPhaseTime",
        "message",
        "checksum",
    ] {
        assert!(status[name].is_object(), "status.{name} is missing");
    }
}

#[test]
fn rendered_yaml_has_one_file_per_kind_and_a_kustomization_listing_them() {
    let files = pixie_crds::render_yaml().unwrap();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "cronscripts.px.dev.yaml",
            "dataexports.px.dev.yaml",
            "kustomization.yaml",
            "plugins.px.dev.yaml",
            "pxlscripts.px.dev.yaml",
            "viziers.px.dev.yaml",
        ]
    );
    let kustomization = &files["kustomization.yaml"];
    for name in names.iter().filter(|name| name.ends_with(".px.dev.yaml")) {
        assert!(
            kustomization.contains(&format!("- {name}\n")),
            "kustomization.yaml lacks {name}"
        );
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&files[*name]).expect("generated YAML parses back");
        assert_eq!(format!("{}.yaml", crd.metadata.name.unwrap()), *name);
    }
}
