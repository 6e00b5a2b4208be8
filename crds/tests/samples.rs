//! The samples in `config/samples/` and the builder fixtures use exactly the fields the Rust types
//! know: every sample parses into its kind and serialises back to the same document, so a
//! misspelled or unknown field fails here before the apiserver sees it.

use std::fs;
use std::path::PathBuf;

use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

fn sample_documents() -> Vec<(String, Value)> {
    let mut documents = Vec::new();
    for entry in fs::read_dir(samples_dir()).expect("config/samples exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let document: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        documents.push((name, document));
    }
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    documents
}

fn assert_round_trips<K: DeserializeOwned + Serialize>(name: &str, document: &Value) {
    let typed: K =
        serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back,
        document,
        "{name} holds fields the {} type does not know",
        std::any::type_name::<K>()
    );
}

#[test]
fn every_sample_parses_into_its_kind_and_round_trips_unchanged() {
    let documents = sample_documents();
    let mut kinds: Vec<String> = Vec::new();
    for (name, document) in &documents {
        assert_eq!(document["apiVersion"], "px.dev/v1alpha1", "{name}");
        assert!(
            document["metadata"].get("namespace").is_none(),
            "{name}: samples apply to any namespace"
        );
        let kind = document["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no kind"));
        match kind {
            "Vizier" => assert_round_trips::<Vizier>(name, document),
            "PxlScript" => assert_round_trips::<PxlScript>(name, document),
            "CronScript" => assert_round_trips::<CronScript>(name, document),
            "DataExport" => assert_round_trips::<DataExport>(name, document),
            "Plugin" => assert_round_trips::<Plugin>(name, document),
            other => panic!("{name}: unknown kind {other}"),
        }
        kinds.push(kind.to_owned());
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["CronScript", "DataExport", "Plugin", "PxlScript", "Vizier"]
    );
}

#[test]
fn each_kind_has_its_px_v1alpha1_sample() {
    for kind in ["vizier", "pxlscript", "cronscript", "dataexport", "plugin"] {
        let path = samples_dir().join(format!("px_v1alpha1_{kind}.yaml"));
        assert!(path.exists(), "{} is missing", path.display());
    }
}

#[test]
fn pixie_style_manifest_uses_the_fields_pixie_users_write() {
    let text = fs::read_to_string(samples_dir().join("pixie-style-vizier.yaml")).unwrap();
    let vizier: Vizier = serde_saphyr::from_str(&text).unwrap();
    let spec = &vizier.spec;
    assert!(
        spec.deploy_key
            .as_deref()
            .is_some_and(|key| key.starts_with("px-dep-"))
    );
    assert!(spec.cluster_name.is_some());
    assert_eq!(spec.pem_memory_limit.as_deref(), Some("2Gi"));
    assert!(
        spec.patches
            .as_ref()
            .is_some_and(|patches| patches.contains_key("vizier-pem"))
    );
    assert_eq!(
        spec.data_access,
        Some(pixie_crds::DataAccess::PiiRestricted)
    );
    assert!(
        spec.pod
            .as_ref()
            .and_then(|pod| pod.tolerations.as_ref())
            .is_some_and(|t| !t.is_empty())
    );
}

#[test]
fn fixtures_round_trip_through_json() {
    fn check<K: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(object: K) {
        let json = serde_json::to_value(&object).unwrap();
        let back: K = serde_json::from_value(json).unwrap();
        assert_eq!(back, object);
    }
    check(
        Vizier::test()
            .with_version("0.14.15")
            .with_pem_memory("2Gi", "1Gi")
            .with_condition("Ready", true, "Deployed"),
    );
    check(PxlScript::test());
    check(
        CronScript::test()
            .with_schedule("*/5 * * * *")
            .with_script_ref("http-requests")
            .exporting_to("otel")
            .suspended(),
    );
    check(DataExport::test().with_secret_header("x-api-key", "otel-credentials", "api-key"));
    check(Plugin::test().enabled_on("pixie"));
}

#[test]
fn frequency_duration_reads_go_style_durations() {
    let every = |frequency: &str| CronScript {
        spec: {
            let mut s = CronScript::test().spec;
            s.frequency = Some(frequency.into());
            s
        },
        ..CronScript::test()
    };
    assert_eq!(
        every("1m30s").spec.frequency_duration(),
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(
        every("250ms").spec.frequency_duration(),
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(every("soon").spec.frequency_duration(), None);
    assert_eq!(
        CronScript::test()
            .with_schedule("@hourly")
            .spec
            .frequency_duration(),
        None
    );
}

#[test]
fn serialised_objects_carry_api_version_and_kind() {
    let json = serde_json::to_value(Vizier::test()).unwrap();
    assert_eq!(json["apiVersion"], "px.dev/v1alpha1");
    assert_eq!(json["kind"], "Vizier");
    assert!(
        json["spec"].get("pemMemoryLimit").is_none(),
        "unset fields are left out, not sent as null"
    );
}
