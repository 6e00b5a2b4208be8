//! `df.ctx[...]` on a host without Kubernetes: what `/proc` says about a upid's process.
//!
//! The pid comes from the upid itself; the command line from `/proc/<pid>/cmdline`, but only while
//! `/proc/<pid>/stat` still shows the upid's start time (a reused pid is another process); the node is
//! the given node name, else this host's name. Pods, services, namespaces and containers do not exist here and resolve to
//! nothing.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use parking_lot::Mutex;
use pixie_pxl::{MetadataField, MetadataResolver};
use pixie_store::Upid;

/// Resolved command lines kept, so that a process that has exited since it was traced still shows
/// its command line; the cache is cleared when full (simple, and bounded).
const CMDLINE_CACHE_ENTRIES: usize = 16_384;

pub struct ProcMetadata {
    proc_root: PathBuf,
    hostname: Option<String>,
    node_name: Option<String>,
    cmdlines: Mutex<HashMap<Upid, Option<String>>>,
}

impl ProcMetadata {
    /// Reads the real `/proc` of this host.
    pub fn new() -> Self {
        Self::with_proc_root("/proc")
    }

    /// Reads a `/proc`-shaped tree somewhere else (tests).
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Self {
        let proc_root = root.into();
        let hostname = std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        ProcMetadata {
            proc_root,
            hostname,
            node_name: None,
            cmdlines: Mutex::new(HashMap::new()),
        }
    }

    /// Answers `node` with `name` (the Kubernetes node's, which need not be the host name).
    pub fn with_node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into()).filter(|n| !n.is_empty());
        self
    }

    fn cmdline(&self, upid: Upid) -> Option<String> {
        if let Some(hit) = self.cmdlines.lock().get(&upid) {
            return hit.clone();
        }
        let found = self.read_cmdline(upid);
        let mut cache = self.cmdlines.lock();
        if cache.len() >= CMDLINE_CACHE_ENTRIES {
            cache.clear();
        }
        // A miss is cached too: a upid names one process forever, so a gone process stays gone.
        cache.insert(upid, found.clone());
        found
    }

    fn read_cmdline(&self, upid: Upid) -> Option<String> {
        let dir = self.proc_root.join(upid.pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        if start_time_ticks(&stat)? != upid.start_time_ticks {
            return None;
        }
        let raw = std::fs::read(dir.join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        // Kernel threads have an empty cmdline; their name is in `comm`.
        if args.is_empty() {
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            return Some(format!("[{}]", comm.trim()));
        }
        Some(args.join(" "))
    }
}

impl Default for ProcMetadata {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ProcMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcMetadata")
            .field("proc_root", &self.proc_root)
            .field("hostname", &self.hostname)
            .field("node_name", &self.node_name)
            .field("cached_cmdlines", &self.cmdlines.lock().len())
            .finish()
    }
}

impl MetadataResolver for ProcMetadata {
    fn resolve(&self, upid: &str, field: MetadataField) -> Option<String> {
        let upid: Upid = upid.parse().ok()?;
        match field {
            MetadataField::Pid => Some(upid.pid.to_string()),
            MetadataField::Cmdline => self.cmdline(upid),
            MetadataField::Hostname => self.hostname.clone(),
            MetadataField::Node => self.node_name.clone().or_else(|| self.hostname.clone()),
            MetadataField::Pod
            | MetadataField::Service
            | MetadataField::Namespace
            | MetadataField::Container => None,
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`. A upid carries it, so it tells a reused pid from the process.
pub fn start_time_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields 3, 4, ... follow; field 22 is the 20th of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: u32, comm: &str, start: u64) -> String {
        let mut fields = vec!["S".to_owned()];
        // Fields 4..=21 are zeros, then field 22 (start time), then a few more.
        fields.extend((4..=21).map(|_| "0".to_owned()));
        fields.push(start.to_string());
        fields.extend(["100", "200"].map(str::to_owned));
        format!("{pid} ({comm}) {}\n", fields.join(" "))
    }

    fn fake_proc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sys/kernel")).unwrap();
        std::fs::write(root.join("sys/kernel/hostname"), "node-7\n").unwrap();
        std::fs::create_dir_all(root.join("42")).unwrap();
        std::fs::write(root.join("42/stat"), stat_line(42, "py (x) y", 777)).unwrap();
        std::fs::write(root.join("42/cmdline"), b"python3\0-m\0http.server\0").unwrap();
        std::fs::create_dir_all(root.join("2")).unwrap();
        std::fs::write(root.join("2/stat"), stat_line(2, "kthreadd", 5)).unwrap();
        std::fs::write(root.join("2/cmdline"), b"").unwrap();
        std::fs::write(root.join("2/comm"), "kthreadd\n").unwrap();
        dir
    }

    #[test]
    fn start_time_is_read_after_a_command_name_with_parentheses() {
        assert_eq!(start_time_ticks(&stat_line(1, "a) (b", 123)), Some(123));
        assert_eq!(start_time_ticks("1 (x) S 0"), None);
    }

    #[test]
    fn pid_cmdline_and_hostname_come_from_proc() {
        let dir = fake_proc();
        let meta = ProcMetadata::with_proc_root(dir.path());
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Pid).as_deref(),
            Some("42")
        );
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Cmdline).as_deref(),
            Some("python3 -m http.server")
        );
        assert_eq!(
            meta.resolve("0:2:5", MetadataField::Cmdline).as_deref(),
            Some("[kthreadd]")
        );
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Hostname).as_deref(),
            Some("node-7")
        );
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Node).as_deref(),
            Some("node-7")
        );
        assert_eq!(meta.resolve("0:42:777", MetadataField::Pod), None);
        assert_eq!(meta.resolve("0:42:777", MetadataField::Service), None);
        assert_eq!(meta.resolve("0:42:777", MetadataField::Namespace), None);
    }

    #[test]
    fn a_given_node_name_answers_node_and_the_host_name_hostname() {
        let dir = fake_proc();
        let meta = ProcMetadata::with_proc_root(dir.path()).with_node_name("kube-node-3");
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Node).as_deref(),
            Some("kube-node-3")
        );
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Hostname).as_deref(),
            Some("node-7")
        );
        let unnamed = ProcMetadata::with_proc_root(dir.path()).with_node_name("");
        assert_eq!(
            unnamed.resolve("0:42:777", MetadataField::Node).as_deref(),
            Some("node-7")
        );
    }

    #[test]
    fn a_reused_pid_or_a_bad_upid_resolves_to_nothing() {
        let dir = fake_proc();
        let meta = ProcMetadata::with_proc_root(dir.path());
        // Same pid, other start time: another process.
        assert_eq!(meta.resolve("0:42:778", MetadataField::Cmdline), None);
        assert_eq!(meta.resolve("0:43:777", MetadataField::Cmdline), None);
        assert_eq!(meta.resolve("not-a-upid", MetadataField::Pid), None);
    }

    #[test]
    fn a_command_line_outlives_its_process_once_resolved() {
        let dir = fake_proc();
        let meta = ProcMetadata::with_proc_root(dir.path());
        assert!(meta.resolve("0:42:777", MetadataField::Cmdline).is_some());
        std::fs::remove_dir_all(dir.path().join("42")).unwrap();
        assert_eq!(
            meta.resolve("0:42:777", MetadataField::Cmdline).as_deref(),
            Some("python3 -m http.server")
        );
    }

    #[test]
    fn this_hosts_own_process_resolves() {
        let meta = ProcMetadata::new();
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let upid = Upid::new(0, pid, start_time_ticks(&stat).unwrap()).to_string();
        let cmdline = meta.resolve(&upid, MetadataField::Cmdline).unwrap();
        assert!(!cmdline.is_empty());
    }
}
