//! Where the terminated-pod history lives across restarts (`PL_METADATA_STORE`): nowhere
//! (`memory`), or `<dir>/terminated-pods.json` (`file:<dir>`, the metadata StatefulSet's volume).
//! Files are replaced whole (temp file + rename), so a crash mid-write leaves the previous one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::history::{StoredState, TerminatedPods};

/// The history file's name inside the store directory.
pub const HISTORY_FILE: &str = "terminated-pods.json";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HistoryStore {
    /// Kept in memory only: a restart starts with an empty history.
    #[default]
    Memory,
    /// Kept in this directory.
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "PL_METADATA_STORE (--store) {value:?}: {reason}; use `memory` or `file:<dir>` (e.g. file:/metadata)"
)]
pub struct StoreSpecError {
    value: String,
    reason: &'static str,
}

impl FromStr for HistoryStore {
    type Err = StoreSpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| StoreSpecError {
            value: value.to_owned(),
            reason,
        };
        match value.trim() {
            "memory" => Ok(HistoryStore::Memory),
            other => match other.strip_prefix("file:") {
                Some("") => Err(error("no directory after `file:`")),
                Some(dir) => Ok(HistoryStore::File(PathBuf::from(dir))),
                None => Err(error("unknown store")),
            },
        }
    }
}

impl std::fmt::Display for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryStore::Memory => f.write_str("memory"),
            HistoryStore::File(dir) => write!(f, "file:{}", dir.display()),
        }
    }
}

impl HistoryStore {
    /// The history file, for a file store.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            HistoryStore::Memory => None,
            HistoryStore::File(dir) => Some(dir.join(HISTORY_FILE)),
        }
    }

    /// The stored history, its pods past `retain` at `now_ms` dropped. A missing file is an empty
    /// history; an unreadable or corrupt one is too, with a warning naming it: losing the history
    /// beats a metadata service that never starts.
    pub fn load(&self, retain: Duration, now_ms: u64) -> StoredState {
        let Some(path) = self.path() else {
            return StoredState::empty(retain);
        };
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => {
                TerminatedPods::from_json(&bytes, retain, now_ms).map_err(|e| e.to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no terminated-pod history yet");
                return StoredState::empty(retain);
            }
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(stored) => {
                tracing::info!(
                    path = %path.display(),
                    pods = stored.terminated.len(),
                    running = stored.running.len(),
                    "terminated-pod history loaded"
                );
                stored
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring the terminated-pod history {}: {e}; starting with none",
                    path.display()
                );
                StoredState::empty(retain)
            }
        }
    }

    /// Replaces the stored history with `json` (nothing to do in memory).
    pub fn save(&self, json: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.path() else {
            return Ok(());
        };
        write_replacing(&path, json)
    }
}

/// Writes `path` through a temp file beside it, synced, then renamed over it: readers see the old
/// file or the new one, never half of one.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // One writer per service (the caller serializes saves), so a fixed name; one left by a crash
    // is overwritten by the next save.
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::PodInfo;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn pod(uid: &str) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: "shop".into(),
            node_name: "node-a".into(),
            pod_ip: String::new(),
            containers: Vec::new(),
            services: Vec::new(),
            terminated: false,
            stopped_at_unix_ms: None,
        }
    }

    #[test]
    fn store_specs_parse_and_a_bad_one_names_the_variable() {
        assert_eq!(
            "memory".parse::<HistoryStore>().unwrap(),
            HistoryStore::Memory
        );
        assert_eq!(
            "file:/metadata".parse::<HistoryStore>().unwrap(),
            HistoryStore::File("/metadata".into())
        );
        assert_eq!(
            HistoryStore::File("/metadata".into()).path().unwrap(),
            Path::new("/metadata/terminated-pods.json")
        );
        for bad in ["etcd", "file:", "", "File:/x"] {
            let err = bad.parse::<HistoryStore>().unwrap_err().to_string();
            assert!(err.contains("PL_METADATA_STORE"), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn a_saved_history_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        // A directory the volume does not have yet is made.
        let store = HistoryStore::File(dir.path().join("sub"));
        let mut history = TerminatedPods::new(DAY);
        history.record(pod("a"), 1_000);
        history.record(pod("b"), 2_000);
        store.save(&history.to_json(vec![pod("r")])).unwrap();
        let loaded = store.load(DAY, 3_000);
        assert_eq!(loaded.terminated.to_json(vec![]), history.to_json(vec![]));
        assert_eq!(loaded.running, [pod("r")]);
        // Saving again replaces the file, leaving no temp file behind.
        history.expire(1_000 + DAY.as_millis() as u64);
        store.save(&history.to_json(vec![])).unwrap();
        assert_eq!(store.load(DAY, 3_000).terminated.len(), 1);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [HISTORY_FILE]);
    }

    #[test]
    fn a_missing_or_corrupt_file_starts_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = HistoryStore::File(dir.path().to_owned());
        assert!(store.load(DAY, 0).terminated.is_empty());
        std::fs::write(store.path().unwrap(), b"{\"version\":1,\"pods\":[{\"ui").unwrap();
        assert!(store.load(DAY, 0).terminated.is_empty());
        // A directory where the file should be: unreadable, not fatal either.
        std::fs::remove_file(store.path().unwrap()).unwrap();
        std::fs::create_dir(store.path().unwrap()).unwrap();
        assert!(store.load(DAY, 0).terminated.is_empty());
    }

    #[test]
    fn the_memory_store_keeps_nothing() {
        HistoryStore::Memory.save(b"ignored").unwrap();
        assert!(HistoryStore::Memory.load(DAY, 0).terminated.is_empty());
        assert_eq!(HistoryStore::Memory.path(), None);
    }
}
