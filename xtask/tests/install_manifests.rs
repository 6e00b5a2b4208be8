//! The install manifests users apply: config/ (kustomize) and config/install.yaml, and the OLM
//! bundle. They must be exactly what `xtask manifests` and `xtask bundle` generate from the code,
//! agree with each other, and pass the operator-framework's validators with no error or warning.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pixie_operator::install::{self, InstallOptions};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("running xtask")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|document| serde_saphyr::from_str(document).expect("a YAML document"))
        .filter(|value: &Value| !value.is_null())
        .collect()
}

fn read_yaml(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

#[test]
fn checked_in_config_and_bundle_match_the_code() {
    for chore in ["manifests", "bundle"] {
        let check = xtask(&[chore, "--check"]);
        assert!(
            check.status.success(),
            "xtask {chore} --check: {}",
            stderr(&check)
        );
    }
}

#[test]
fn check_names_edited_missing_and_extra_files_and_writing_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for chore in ["manifests", "bundle"] {
        let written = xtask(&[chore, "--out-dir", out]);
        assert!(written.status.success(), "{}", stderr(&written));
        assert!(
            xtask(&[chore, "--check", "--out-dir", out])
                .status
                .success()
        );
    }

    fs::write(dir.path().join("config/rbac/role.yaml"), "edited\n").unwrap();
    fs::remove_file(dir.path().join("bundle/metadata/annotations.yaml")).unwrap();
    fs::write(dir.path().join("config/manager/old.yaml"), "left behind\n").unwrap();
    let manifests = xtask(&["manifests", "--check", "--out-dir", out]);
    assert!(!manifests.status.success());
    let message = stderr(&manifests);
    assert!(
        message.contains("config/rbac/role.yaml differs"),
        "{message}"
    );
    assert!(
        message.contains("config/manager/old.yaml is not generated any more"),
        "{message}"
    );
    assert!(message.contains("make manifests"), "{message}");
    let bundle = xtask(&["bundle", "--check", "--out-dir", out]);
    assert!(!bundle.status.success());
    assert!(
        stderr(&bundle).contains("bundle/metadata/annotations.yaml is missing"),
        "{}",
        stderr(&bundle)
    );

    for chore in ["manifests", "bundle"] {
        assert!(xtask(&[chore, "--out-dir", out]).status.success());
        assert!(
            xtask(&[chore, "--check", "--out-dir", out])
                .status
                .success(),
            "{chore}"
        );
    }
    assert!(!dir.path().join("config/manager/old.yaml").exists());
}

/// kubectl from the pinned Kubernetes build the real-cluster tests use.
fn kubectl() -> PathBuf {
    let bin_dir = match std::env::var_os("PIXIE_K8S_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let output = Command::new(workspace_root().join("tests/cluster/cluster.sh"))
                .arg("bin-dir")
                .output()
                .expect("running tests/cluster/cluster.sh bin-dir");
            assert!(
                output.status.success(),
                "cluster.sh bin-dir: {}",
                stderr(&output)
            );
            PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
        }
    };
    bin_dir.join("kubectl")
}

/// kustomize writes `86400.0` back as `86400`: compare numbers by value.
fn numbers_as_floats(value: &mut Value) {
    match value {
        Value::Number(n) => *value = serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => items.iter_mut().for_each(numbers_as_floats),
        Value::Object(fields) => fields.values_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

fn identity(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

/// `kubectl apply -k config/default` and `kubectl apply -f config/install.yaml` install the same
/// objects, CRDs first in install.yaml.
#[test]
fn kustomize_config_default_and_install_yaml_hold_the_same_objects() {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(workspace_root().join("config/default"))
        .output()
        .expect("running kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize config/default: {}",
        stderr(&output)
    );
    let mut kustomized = documents(&String::from_utf8(output.stdout).unwrap());
    let flat =
        documents(&fs::read_to_string(workspace_root().join("config/install.yaml")).unwrap());

    let kinds: Vec<&str> = flat.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    let crds = kinds
        .iter()
        .take_while(|k| **k == "CustomResourceDefinition")
        .count();
    assert_eq!(
        crds,
        pixie_crds::all_crds().len(),
        "CRDs come first: {kinds:?}"
    );
    assert_eq!(kinds[crds], "Namespace", "then the namespace: {kinds:?}");

    kustomized.sort_by_key(identity);
    let mut flat_sorted = flat.clone();
    flat_sorted.sort_by_key(identity);
    kustomized.iter_mut().chain(flat_sorted.iter_mut()).for_each(numbers_as_floats);
    assert_eq!(kustomized.len(), flat_sorted.len());
    for (k, f) in kustomized.iter().zip(&flat_sorted) {
        assert_eq!(
            k,
            f,
            "{} differs between config/default and config/install.yaml",
            identity(f)
        );
    }
    for object in &flat {
        if let Some(namespace) = object["metadata"]["namespace"].as_str() {
            assert_eq!(
                namespace,
                install::DEFAULT_NAMESPACE,
                "{}",
                identity(object)
            );
        }
    }
}

fn csv() -> Value {
    read_yaml(&workspace_root().join("bundle/manifests/pixie-operator.clusterserviceversion.yaml"))
}

#[test]
fn the_csv_installs_the_same_deployment_and_permissions_as_config() {
    let csv = csv();
    let strategy = &csv["spec"]["install"]["spec"];
    let deployment = serde_json::to_value(install::deployment(&InstallOptions::default())).unwrap();
    let mut from_csv = strategy["deployments"][0]["spec"].clone();
    // The one difference: OLM hands the target namespaces to WATCH_NAMESPACE.
    let env = from_csv["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    let watch = env.pop().unwrap();
    assert_eq!(watch["name"], "WATCH_NAMESPACE");
    assert_eq!(
        watch["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['olm.targetNamespaces']"
    );
    assert_eq!(from_csv, deployment["spec"]);

    let rules = |value: &Value| -> Value { value["rules"].clone() };
    assert_eq!(
        rules(&strategy["clusterPermissions"][0]),
        serde_json::to_value(install::cluster_rules()).unwrap()
    );
    assert_eq!(
        rules(&strategy["permissions"][0]),
        serde_json::to_value(install::leader_election_rules()).unwrap()
    );
    assert_eq!(
        strategy["clusterPermissions"][0]["serviceAccountName"],
        install::OPERATOR_NAME
    );
}

#[test]
fn the_csv_owns_every_crd_with_descriptors_and_an_example() {
    let csv = csv();
    let owned = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap();
    let examples: Vec<Value> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let manifests = workspace_root().join("bundle/manifests");
    for crd in pixie_crds::all_crds() {
        let kind = &crd.spec.names.kind;
        let entry = owned
            .iter()
            .find(|o| o["kind"] == *kind)
            .unwrap_or_else(|| panic!("{kind} not owned"));
        assert_eq!(entry["name"], crd.metadata.name.clone().unwrap());
        assert!(!entry["description"].as_str().unwrap().is_empty(), "{kind}");
        for descriptors in ["specDescriptors", "statusDescriptors"] {
            assert!(
                !entry[descriptors].as_array().unwrap().is_empty(),
                "{kind} has no {descriptors}"
            );
        }
        let has_conditions = entry["statusDescriptors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["x-descriptors"][0] == "urn:alm:descriptor:io.kubernetes.conditions");
        assert!(has_conditions, "{kind}: conditions descriptor");
        assert!(
            examples.iter().any(|e| e["kind"] == *kind),
            "alm-examples has no {kind}"
        );
        let file = manifests.join(format!("px.dev_{}.yaml", crd.spec.names.plural));
        assert_eq!(
            read_yaml(&file),
            serde_json::to_value(&crd).unwrap(),
            "{}",
            file.display()
        );
    }
    let modes: BTreeSet<String> = csv["spec"]["installModes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["supported"] == true)
        .map(|m| m["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        modes.contains("AllNamespaces") && modes.contains("OwnNamespace"),
        "{modes:?}"
    );
}

/// bundle.Dockerfile labels the image with exactly the annotations of metadata/annotations.yaml.
#[test]
fn bundle_dockerfile_labels_match_annotations_yaml() {
    let bundle = workspace_root().join("bundle");
    let annotations = read_yaml(&bundle.join("metadata/annotations.yaml"));
    let annotations: BTreeSet<(String, String)> = annotations["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let dockerfile = fs::read_to_string(bundle.join("bundle.Dockerfile")).unwrap();
    let labels: BTreeSet<(String, String)> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("LABEL "))
        .map(|label| {
            let (k, v) = label.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(labels, annotations);
    assert!(annotations.contains(&(
        "operators.operatorframework.io.bundle.mediatype.v1".to_owned(),
        "registry+v1".to_owned()
    )));
}

/// The operator-framework's own validators (bundle/verify.sh installs the pinned operator-verify
/// and builds bundle/validate on first use): no error and no warning.
#[test]
fn operator_verify_finds_no_error_or_warning_in_the_bundle() {
    let output = Command::new("bash")
        .arg(workspace_root().join("bundle/verify.sh"))
        .output()
        .expect("running bundle/verify.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bundle/verify.sh failed:\n{stdout}{}",
        stderr(&output)
    );
    assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}");
    println!("{stdout}");
}
