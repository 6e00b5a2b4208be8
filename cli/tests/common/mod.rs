//! Helpers for tests that run the real binaries.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::process::{Child, Command, Output};

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

/// Kills (SIGTERM first, so the child can detach its eBPF programs) and reaps a child on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn terminate(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill on our own child's pid; at worst the signal finds no process.
            unsafe {
                libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
            }
            for _ in 0..100 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}
