//! Helpers for tests that run the real binaries.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn kubectl_pixie() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-pixie"))
}

/// The `vizier` binary next to ours, built (or brought up to date) first: it belongs to another
/// package, which Cargo does not build for this one's tests.
pub fn vizier_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "pixie-vizier", "--bin", "vizier"])
        .status()
        .expect("running cargo build -p pixie-vizier");
    assert!(status.success(), "cargo build -p pixie-vizier failed");
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-pixie"));
    let path = ours.with_file_name("vizier");
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A port that was free a moment ago and has nothing listening now.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
