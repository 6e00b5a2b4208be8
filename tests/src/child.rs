//! Child processes of a test: stopped when the test lets go of them, and read without hanging.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// Kills (SIGTERM first, so the child can detach its eBPF programs or flush its output) and reaps
/// a child on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGTERM, up to 5 s to exit, then SIGKILL; reaped either way.
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
                std::thread::sleep(Duration::from_millis(50));
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

/// The first stdout line of `child` (spawned with a piped stdout) within `timeout`, read on a
/// thread so that a silent child cannot hang the test.
pub fn first_line(child: &mut Child, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).ok()
}
