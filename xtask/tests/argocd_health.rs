//! The Argo CD health checks in config/argocd, run by the Debian `lua5.4` interpreter: every case
//! of every `<Kind>/health_test.yaml` (Argo CD's own test layout), the samples, and the generated
//! argocd-cm patch against the scripts it embeds.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const KINDS: [&str; 5] = ["Vizier", "PxlScript", "CronScript", "Plugin", "DataExport"];
const STATUSES: [&str; 5] = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn argocd_dir() -> PathBuf {
    workspace_root().join("config/argocd")
}

fn read_yaml(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A Lua expression that builds the same value the way Argo CD hands objects to Lua: JSON null
/// becomes nil (a missing field and a null field read the same), and every number is a float, as
/// gopher-lua's numbers are float64 (so a script that prints `3.0` for a generation fails here).
fn to_lua(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => write!(out, "{b}").unwrap(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => write!(out, "{i}.0").unwrap(),
            (None, Some(f)) => write!(out, "{f:?}").unwrap(),
            (None, None) => panic!("number {n} fits neither i64 nor f64"),
        },
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for item in items {
                to_lua(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(fields) => {
            out.push('{');
            for (key, item) in fields {
                out.push('[');
                lua_string(key, out);
                out.push_str("] = ");
                to_lua(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for byte in s.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            // Decimal escapes for control bytes and non-ASCII keep the literal on one line and
            // byte-exact for UTF-8.
            _ => write!(out, "\\{byte:03}").unwrap(),
        }
    }
    out.push('"');
}

/// Runs the Lua `program` on stdin with `args`, failing the test with Lua's error when it fails.
fn lua(program: &str, args: &[&Path]) -> String {
    let mut child = Command::new("lua5.4")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running lua5.4 (`make deps` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "lua5.4 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The check Argo CD would run for `kind`: the script embedded in argocd-cm-patch.yaml (the
/// conditions.lua prelude plus `<Kind>/health.lua`), written out for lua5.4 to load.
fn embedded_script(kind: &str) -> TempScript {
    let patch = read_yaml(&argocd_dir().join("argocd-cm-patch.yaml"));
    let key = format!("resource.customizations.health.px.dev_{kind}");
    let script = patch["data"][&key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing from argocd-cm-patch.yaml: run `make argocd`"));
    // Tests run in parallel threads: each call gets a file of its own.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("px-argocd-{kind}-{}-{n}.lua", std::process::id()));
    fs::write(&path, script).unwrap();
    TempScript(path)
}

/// A script file that is removed when the test is done with it.
struct TempScript(PathBuf);

impl std::ops::Deref for TempScript {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs `script` the way Argo CD does (the object in the global `obj`, the script's return value
/// read as `hs`) and returns (hs.status, hs.message).
fn run_health_check(script: &Path, object: &Value) -> (String, String) {
    let mut driver = String::from("obj = ");
    to_lua(object, &mut driver);
    driver.push_str(
        "\nlocal hs = dofile(arg[1])\n\
         assert(type(hs) == 'table', 'health.lua returned ' .. type(hs))\n\
         assert(type(hs.status) == 'string', 'hs.status is ' .. type(hs.status))\n\
         assert(type(hs.message) == 'string', 'hs.message is ' .. type(hs.message))\n\
         io.write(hs.status, '\\n', hs.message)\n",
    );
    let stdout = lua(&driver, &[script]);
    let (status, message) = stdout.split_once('\n').expect("status and message");
    (status.to_owned(), message.to_owned())
}

#[test]
fn every_health_test_case_gets_its_expected_status_and_message() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for kind in KINDS {
        let dir = argocd_dir().join(kind);
        let tests = read_yaml(&dir.join("health_test.yaml"));
        let tests = tests["tests"].as_array().expect("tests: a list");
        assert!(
            tests.len() >= 4,
            "{kind} has {} cases, want at least 4",
            tests.len()
        );
        for case in tests {
            let input = case["inputPath"].as_str().expect("inputPath");
            let want_status = case["healthStatus"]["status"].as_str().expect("status");
            let want_message = case["healthStatus"]["message"].as_str().expect("message");
            assert!(
                STATUSES.contains(&want_status),
                "{kind}/{input}: {want_status}"
            );
            let object = read_yaml(&dir.join(input));
            assert_eq!(object["kind"], kind, "{kind}/{input} is another kind");
            let (status, message) = run_health_check(&embedded_script(kind), &object);
            if (status.as_str(), message.as_str()) != (want_status, want_message) {
                failures.push(format!(
                    "{kind}/{input}: got {status} {message:?}, want {want_status} {want_message:?}"
                ));
            }
            cases += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{cases} health check cases passed");
}

/// Every status a script can return is expected by at least one of its kind's cases.
#[test]
fn every_status_a_script_can_return_has_a_case() {
    for kind in KINDS {
        let dir = argocd_dir().join(kind);
        let script = fs::read_to_string(&*embedded_script(kind)).unwrap();
        let tests = fs::read_to_string(dir.join("health_test.yaml")).unwrap();
        for status in STATUSES {
            if script.contains(&format!("hs.status = \"{status}\"")) {
                assert!(
                    tests.contains(&format!("status: {status}")),
                    "{kind}/health.lua can return {status} but no case expects it"
                );
            }
        }
    }
}

#[test]
fn freshly_applied_samples_are_progressing() {
    let samples = workspace_root().join("config/samples");
    let mut seen = 0;
    for entry in fs::read_dir(&samples).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        let mut object = read_yaml(&path);
        let kind = object["kind"].as_str().unwrap().to_owned();
        let script = embedded_script(&kind);
        // As written (Argo CD's diff of the desired state) ...
        let (status, message) = run_health_check(&script, &object);
        assert_eq!(
            (status.as_str(), message.as_str()),
            ("Progressing", "waiting for the operator to report status"),
            "{}",
            path.display()
        );
        // ... and as the apiserver returns it before the operator has seen it.
        object["metadata"]["generation"] = 1.into();
        let (status, message) = run_health_check(&script, &object);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                "Progressing",
                "waiting for the operator to observe generation 1"
            ),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(
        seen >= KINDS.len(),
        "only {seen} samples in {}",
        samples.display()
    );
}

/// The patch users merge into argocd-cm carries the scripts byte for byte, and is up to date.
#[test]
fn argocd_cm_patch_embeds_each_health_lua_unchanged() {
    let patch = read_yaml(&argocd_dir().join("argocd-cm-patch.yaml"));
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    let data = patch["data"].as_object().expect("data");
    assert_eq!(
        data.len(),
        KINDS.len(),
        "keys: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    let prelude = fs::read_to_string(argocd_dir().join("conditions.lua")).unwrap();
    for kind in KINDS {
        let body = fs::read_to_string(argocd_dir().join(kind).join("health.lua")).unwrap();
        let key = format!("resource.customizations.health.px.dev_{kind}");
        assert!(
            data[&key].as_str() == Some(format!("{prelude}\n{body}").as_str()),
            "{key} in argocd-cm-patch.yaml is not conditions.lua + {kind}/health.lua: run `make argocd`"
        );
    }

    let check = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["argocd", "--check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn lua_literals_keep_strings_numbers_lists_and_nulls() {
    let value = serde_json::json!({
        "s": "quote \" backslash \\ newline \n tab \t é ✓",
        "n": -3, "f": 0.25, "b": false, "list": [1, "two"], "null": null
    });
    let mut literal = String::new();
    to_lua(&value, &mut literal);
    let program = format!(
        "local v = {literal}\n\
         assert(v.s == 'quote \" backslash \\\\ newline \\n tab \\t é ✓', v.s)\n\
         assert(math.type(v.n) == 'float' and string.format('%d', v.n) == '-3')\n\
         assert(v.f == 0.25 and v.b == false and v.null == nil)\n\
         assert(#v.list == 2 and v.list[1] == 1 and v.list[2] == 'two')\n\
         io.write('ok')\n"
    );
    assert_eq!(lua(&program, &[]), "ok");
}

/// kubectl from the pinned Kubernetes build the real-cluster tests use (`make test` passes its
/// directory in PIXIE_K8S_BIN; otherwise the cluster script builds or finds it in its cache).
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
                String::from_utf8_lossy(&output.stderr)
            );
            PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
        }
    };
    bin_dir.join("kubectl")
}

#[test]
fn kustomization_syncs_the_crds_in_wave_minus_one_before_the_samples_in_wave_one() {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(argocd_dir())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize config/argocd: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    let mut crd_kinds = Vec::new();
    let mut objects = 0;
    for document in rendered.split("\n---\n") {
        let object: Value = serde_saphyr::from_str(document).unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let wave = &object["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"];
        if object["kind"] == "CustomResourceDefinition" {
            assert_eq!(wave, "-1", "CRD {name}");
            crd_kinds.push(object["spec"]["names"]["kind"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(object["apiVersion"], "px.dev/v1alpha1", "{name}");
            assert_eq!(wave, "1", "{} {name}", object["kind"]);
            objects += 1;
        }
    }
    crd_kinds.sort();
    let mut kinds = KINDS.map(String::from).to_vec();
    kinds.sort();
    assert_eq!(crd_kinds, kinds);
    let samples = fs::read_dir(workspace_root().join("config/samples"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name() != "kustomization.yaml")
        .count();
    assert_eq!(objects, samples, "every sample is rendered once");
}
