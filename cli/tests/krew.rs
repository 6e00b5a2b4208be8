//! The krew manifest (`cli/krew/pixie.yaml`): the fields krew requires, one platform per supported
//! OS and architecture, URLs that follow the release scheme for this crate's version, and sha256
//! values that are digests or the placeholder the release pipeline replaces.

use std::collections::BTreeSet;

use serde_json::Value;

const MANIFEST: &str = include_str!("../krew/pixie.yaml");
const REPOSITORY: &str = "https://example.invalid/pixie-rs";

fn manifest() -> Value {
    serde_saphyr::from_str(MANIFEST).expect("cli/krew/pixie.yaml is YAML")
}

fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    value
        .pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| panic!("{path} is missing or empty"))
}

#[test]
fn the_manifest_has_every_field_krew_requires() {
    let m = manifest();
    assert_eq!(
        text(&m, "/apiVersion"),
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(text(&m, "/kind"), "Plugin");
    // `kubectl pixie` is found as kubectl-<name>.
    assert_eq!(text(&m, "/metadata/name"), "pixie");
    assert_eq!(
        text(&m, "/spec/version"),
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(text(&m, "/spec/shortDescription").len() <= 255);
    text(&m, "/spec/description");
    text(&m, "/spec/homepage");
}

#[test]
fn each_platform_has_its_release_archive_digest_and_binary() {
    let m = manifest();
    let version = env!("CARGO_PKG_VERSION");
    let platforms = m["spec"]["platforms"]
        .as_array()
        .expect("spec.platforms is a list");
    let mut seen = BTreeSet::new();
    for platform in platforms {
        let os = text(platform, "/selector/matchLabels/os");
        let arch = text(platform, "/selector/matchLabels/arch");
        assert!(
            seen.insert((os.to_owned(), arch.to_owned())),
            "{os}/{arch} listed twice"
        );
        assert_eq!(
            text(platform, "/uri"),
            format!(
                "{REPOSITORY}/releases/download/v{version}/kubectl-pixie-v{version}-{os}-{arch}.tar.gz"
            )
        );
        let sha = text(platform, "/sha256");
        let digest = sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        assert!(
            digest || sha == format!("SHA256_OF_{os}_{arch}"),
            "{os}/{arch}: sha256 {sha:?} is neither a digest nor this archive's placeholder"
        );
        assert_eq!(text(platform, "/bin"), "kubectl-pixie");
        let files = platform["files"].as_array().expect("files is a list");
        assert!(
            files.iter().any(|f| f["from"] == "kubectl-pixie"),
            "{os}/{arch}: the binary is not among the files"
        );
    }
    let expected: BTreeSet<(String, String)> = ["linux", "darwin"]
        .iter()
        .flat_map(|os| ["amd64", "arm64"].map(|arch| (os.to_string(), arch.to_owned())))
        .collect();
    assert_eq!(seen, expected);
}
