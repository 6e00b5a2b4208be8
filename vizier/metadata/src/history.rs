//! Pods gone from the cluster, kept for a retention window so that the rows their processes left in
//! the PEMs' tables still resolve to pod, namespace and service. Pure data: the caller passes the
//! clock, and [`crate::store`] reads and writes the JSON form.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::index::PodInfo;

/// At most this many pods are kept, the longest stopped dropped first: a churning cluster (a CronJob
/// every minute) must not grow the service without bound within the window.
pub const MAX_TERMINATED_PODS: usize = 50_000;

/// The history file's format version; a file of another version is refused (and the history
/// starts empty) rather than misread.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("not a terminated-pod history: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("terminated-pod history version {found}, this service reads version {FORMAT_VERSION}")]
    Version { found: u32 },
}

/// What a history file holds.
#[derive(Debug, Clone)]
pub struct StoredState {
    pub terminated: TerminatedPods,
    /// The pods in the cluster when it was written.
    pub running: Vec<PodInfo>,
}

impl StoredState {
    pub fn empty(retain: Duration) -> Self {
        StoredState {
            terminated: TerminatedPods::new(retain),
            running: Vec::new(),
        }
    }
}

/// Deleted pods by UID, each with [`PodInfo::terminated`] set and its stop time.
#[derive(Debug, Clone)]
pub struct TerminatedPods {
    retain_ms: u64,
    capacity: usize,
    by_uid: HashMap<String, PodInfo>,
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    version: u32,
    pods: Vec<PodInfo>,
    /// The pods in the cluster when the file was written (absent from older files).
    #[serde(default)]
    running: Vec<PodInfo>,
}

impl TerminatedPods {
    /// An empty history keeping each pod for `retain` after it stopped.
    pub fn new(retain: Duration) -> Self {
        Self::with_capacity(retain, MAX_TERMINATED_PODS)
    }

    pub fn with_capacity(retain: Duration, capacity: usize) -> Self {
        TerminatedPods {
            retain_ms: u64::try_from(retain.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            by_uid: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    fn stopped_at(pod: &PodInfo) -> u64 {
        pod.stopped_at_unix_ms.unwrap_or(0)
    }

    fn expired(&self, pod: &PodInfo, now_ms: u64) -> bool {
        Self::stopped_at(pod).saturating_add(self.retain_ms) <= now_ms
    }

    /// Records `pod` as deleted at `now_ms`, or when it stopped if it completed earlier. A pod
    /// already recorded keeps its first stop time; one that stopped longer than the window ago is
    /// not kept. True when the history changed.
    pub fn record(&mut self, mut pod: PodInfo, now_ms: u64) -> bool {
        if pod.uid.is_empty() {
            return false;
        }
        pod.terminated = true;
        let stopped = pod.stopped_at_unix_ms.map_or(now_ms, |t| t.min(now_ms));
        pod.stopped_at_unix_ms = Some(match self.by_uid.get(&pod.uid) {
            Some(known) => Self::stopped_at(known).min(stopped),
            None => stopped,
        });
        if self.expired(&pod, now_ms) {
            return self.by_uid.remove(&pod.uid).is_some();
        }
        if self.by_uid.get(&pod.uid) == Some(&pod) {
            return false;
        }
        if !self.by_uid.contains_key(&pod.uid) && self.by_uid.len() >= self.capacity {
            self.drop_oldest();
        }
        self.by_uid.insert(pod.uid.clone(), pod);
        true
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .by_uid
            .values()
            .min_by_key(|p| (Self::stopped_at(p), &p.uid))
            .map(|p| p.uid.clone());
        if let Some(uid) = oldest {
            self.by_uid.remove(&uid);
        }
    }

    /// Drops the pods whose window has passed; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.by_uid.len();
        let retain_ms = self.retain_ms;
        self.by_uid
            .retain(|_, p| Self::stopped_at(p).saturating_add(retain_ms) > now_ms);
        before - self.by_uid.len()
    }

    /// The pods of `node_name` still within their window, by UID.
    pub fn on_node<'a>(
        &'a self,
        node_name: &'a str,
        now_ms: u64,
    ) -> impl Iterator<Item = &'a PodInfo> + 'a {
        self.by_uid
            .values()
            .filter(move |p| p.node_name == node_name && !self.expired(p, now_ms))
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// The JSON form, with `running`: the pods in the cluster now, so that a restarted service can
    /// tell which of them went while it was down. Pods sorted by UID so that equal states write
    /// equal files.
    pub fn to_json(&self, mut running: Vec<PodInfo>) -> Vec<u8> {
        let mut pods: Vec<PodInfo> = self.by_uid.values().cloned().collect();
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        running.sort_by(|a, b| a.uid.cmp(&b.uid));
        let file = HistoryFile {
            version: FORMAT_VERSION,
            pods,
            running,
        };
        serde_json::to_vec(&file).expect("a PodInfo always serializes")
    }

    /// Reads [`TerminatedPods::to_json`]'s form, keeping the pods still within `retain` at `now_ms`
    /// (the window may have changed, and time passed, since it was written); also returns the pods
    /// that were running then.
    pub fn from_json(
        bytes: &[u8],
        retain: Duration,
        now_ms: u64,
    ) -> Result<StoredState, HistoryError> {
        let file: HistoryFile = serde_json::from_slice(bytes)?;
        if file.version != FORMAT_VERSION {
            return Err(HistoryError::Version {
                found: file.version,
            });
        }
        let mut history = Self::new(retain);
        for pod in file.pods {
            history.record(pod, now_ms);
        }
        Ok(StoredState {
            terminated: history,
            running: file.running,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ContainerInfo;

    const HOUR_MS: u64 = 3_600_000;
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn pod(uid: &str, node: &str) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: "shop".into(),
            node_name: node.into(),
            pod_ip: "10.0.0.7".into(),
            containers: vec![ContainerInfo {
                name: "nginx".into(),
                id: Some(format!("c-{uid}")),
            }],
            services: vec!["shop/web".into()],
            terminated: false,
            stopped_at_unix_ms: None,
        }
    }

    fn names(history: &TerminatedPods, node: &str, now_ms: u64) -> Vec<String> {
        let mut names: Vec<String> = history
            .on_node(node, now_ms)
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn deleted_pods_are_listed_on_their_node_as_terminated_until_the_window_passes() {
        let mut history = TerminatedPods::new(DAY);
        let t0 = 1_000 * HOUR_MS;
        assert!(history.record(pod("a", "node-a"), t0));
        assert!(history.record(pod("b", "node-b"), t0 + HOUR_MS));
        let listed: Vec<_> = history.on_node("node-a", t0 + 1).collect();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].terminated);
        assert_eq!(listed[0].stopped_at_unix_ms, Some(t0));
        assert_eq!(listed[0].containers[0].id.as_deref(), Some("c-a"));

        // Just before and at the end of a's window.
        assert_eq!(names(&history, "node-a", t0 + 24 * HOUR_MS - 1), ["pod-a"]);
        assert!(names(&history, "node-a", t0 + 24 * HOUR_MS).is_empty());
        assert_eq!(history.expire(t0 + 24 * HOUR_MS), 1);
        assert_eq!(history.len(), 1);
        assert!(history.contains("b"));
        assert_eq!(history.expire(t0 + 25 * HOUR_MS), 1);
        assert!(history.is_empty());
    }

    #[test]
    fn a_pod_keeps_its_first_stop_time_and_an_old_completion_is_not_kept() {
        let mut history = TerminatedPods::new(DAY);
        let t0 = 1_000 * HOUR_MS;
        assert!(history.record(pod("a", "n"), t0));
        // Seen deleted again (a re-list racing the delete event): same pod, no change.
        assert!(!history.record(pod("a", "n"), t0 + HOUR_MS));
        assert_eq!(
            history.on_node("n", t0).next().unwrap().stopped_at_unix_ms,
            Some(t0)
        );
        // A Job pod that finished two days ago and is deleted now is past its window already.
        let mut done = pod("job", "n");
        done.stopped_at_unix_ms = Some(t0 - 48 * HOUR_MS);
        assert!(!history.record(done, t0));
        assert!(!history.contains("job"));
        // One that finished an hour ago keeps that time, not the deletion's.
        let mut recent = pod("recent", "n");
        recent.stopped_at_unix_ms = Some(t0 - HOUR_MS);
        assert!(history.record(recent, t0));
        assert_eq!(
            names(&history, "n", t0 + 23 * HOUR_MS - 1),
            ["pod-a", "pod-recent"]
        );
        assert_eq!(names(&history, "n", t0 + 23 * HOUR_MS), ["pod-a"]);
        // A pod without a UID cannot be told apart from another: not kept.
        assert!(!history.record(pod("", "n"), t0));
    }

    #[test]
    fn a_full_history_drops_the_longest_stopped_pod() {
        let mut history = TerminatedPods::with_capacity(DAY, 2);
        history.record(pod("a", "n"), 10);
        history.record(pod("b", "n"), 5);
        history.record(pod("c", "n"), 20);
        assert_eq!(history.len(), 2);
        assert!(!history.contains("b"));
        assert!(history.contains("a") && history.contains("c"));
    }

    #[test]
    fn the_json_form_round_trips_and_drops_what_expired_meanwhile() {
        let mut history = TerminatedPods::new(DAY);
        let t0 = 1_000 * HOUR_MS;
        history.record(pod("a", "node-a"), t0);
        history.record(pod("b", "node-a"), t0 + 2 * HOUR_MS);
        let running = vec![pod("r2", "node-b"), pod("r1", "node-a")];
        let json = history.to_json(running.clone());
        assert_eq!(
            json,
            history.clone().to_json(running.into_iter().rev().collect()),
            "stable output"
        );

        let stored = TerminatedPods::from_json(&json, DAY, t0 + 3 * HOUR_MS).unwrap();
        let (loaded, was_running) = (stored.terminated, stored.running);
        assert_eq!(loaded.len(), 2);
        let mut want: Vec<_> = history.on_node("node-a", t0).cloned().collect();
        let mut got: Vec<_> = loaded.on_node("node-a", t0).cloned().collect();
        want.sort_by(|a, b| a.uid.cmp(&b.uid));
        got.sort_by(|a, b| a.uid.cmp(&b.uid));
        assert_eq!(got, want);
        let uids: Vec<_> = was_running.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(uids, ["r1", "r2"]);

        // Restarted a day later: a's window has passed, b's has not.
        let later = TerminatedPods::from_json(&json, DAY, t0 + 25 * HOUR_MS)
            .unwrap()
            .terminated;
        assert_eq!(names(&later, "node-a", t0 + 25 * HOUR_MS), ["pod-b"]);
        // With a shorter window, both are gone.
        let shorter = TerminatedPods::from_json(&json, Duration::from_secs(3600), t0 + 3 * HOUR_MS)
            .unwrap()
            .terminated;
        assert!(shorter.is_empty());
        // A file written before the running pods were kept still reads.
        let old = TerminatedPods::from_json(br#"{"version":1,"pods":[]}"#, DAY, t0).unwrap();
        assert!(old.terminated.is_empty() && old.running.is_empty());
    }

    #[test]
    fn corrupt_or_foreign_json_is_an_error() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"version":1,"pods":[{"uid":1}]}"#,
        ] {
            let err = TerminatedPods::from_json(bad, DAY, 0).unwrap_err();
            assert!(matches!(err, HistoryError::Parse(_)), "{err}");
        }
        let err = TerminatedPods::from_json(br#"{"version":2,"pods":[]}"#, DAY, 0).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
