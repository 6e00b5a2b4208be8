//! `kubectl-pixie` as a user runs it, without a Vizier: the script library, argument errors, and
//! the message when nothing listens at the address.

mod common;

use common::{closed_port, describe, kubectl_pixie, text};

#[test]
fn scripts_list_shows_every_bundled_script_with_its_description() {
    let output = kubectl_pixie().args(["scripts", "list"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    for (name, source) in pixie_pxl::bundled_scripts() {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from\n{stdout}"));
        let description = pixie_cli::script::description(source);
        assert!(!description.is_empty(), "{name} has no description comment");
        assert!(line.ends_with(&description), "{line:?}");
    }
    assert!(stdout.contains("px/http_data"), "{stdout}");
}

#[test]
fn an_unreachable_vizier_is_named_with_how_to_start_one() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = kubectl_pixie()
        .args(["run", "px/http_data", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        format!("error: no Vizier at {addr}: connection refused; start one with `make run`")
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn an_unknown_bundled_script_suggests_the_closest_one() {
    let output = kubectl_pixie()
        .args(["run", "px/http_dat", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no bundled script \"px/http_dat\" (did you mean px/http_data?)"),
        "{stderr}"
    );
}

#[test]
fn a_run_needs_exactly_one_source() {
    let none = kubectl_pixie().arg("run").output().unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", describe(&none));
    let two = kubectl_pixie()
        .args(["run", "px/http_data", "--sql", "select 1"])
        .output()
        .unwrap();
    assert_eq!(two.status.code(), Some(2), "{}", describe(&two));
}
