//! The checked-in `crds/yaml/` must be exactly what the types generate, so that what `kubectl apply`,
//! kustomize and the OLM bundle install is what the operator was compiled against.

use std::fs;
use std::path::Path;

#[test]
fn checked_in_crd_yaml_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(pixie_crds::YAML_DIR);
    let generated = pixie_crds::render_yaml().expect("CRDs render as YAML");

    let mut stale = Vec::new();
    for (name, contents) in &generated {
        match fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *contents => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(_) => stale.push(format!("{name} is missing")),
        }
    }
    for entry in fs::read_dir(&dir).expect("crds/yaml exists") {
        let name = entry
            .expect("readable directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") && !generated.contains_key(&name) {
            stale.push(format!("{name} is not generated any more"));
        }
    }
    assert!(
        stale.is_empty(),
        "crds/yaml is stale ({}): run `make crds` (cargo run -p xtask -- crds) and commit the result",
        stale.join(", ")
    );
}
