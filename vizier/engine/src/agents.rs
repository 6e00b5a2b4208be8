//! PEMs found by their heartbeats: each PEM publishes an [`AgentHeartbeat`] on NATS every few
//! seconds ([`HEARTBEAT_SUBJECT`]), and Kelvin keeps an [`AgentDirectory`] of the ones it has
//! heard from recently. Pure: the NATS side lives in the `vizier` binary, and callers pass the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The NATS subject PEM heartbeats are published on.
pub const HEARTBEAT_SUBJECT: &str = "pixie.agents.heartbeat";

/// A PEM saying it is alive and where its API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHeartbeat {
    /// The node the PEM traces.
    pub node_name: String,
    /// `HOST:PORT` of its query API.
    pub addr: String,
    /// The PEM's build.
    pub version: String,
}

/// The PEMs heard from within `ttl`. Clones share it.
#[derive(Debug, Clone)]
pub struct AgentDirectory {
    ttl: Duration,
    by_addr: Arc<Mutex<HashMap<String, (AgentHeartbeat, Instant)>>>,
}

/// One directory is equal only to itself (or its clones).
impl PartialEq for AgentDirectory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.by_addr, &other.by_addr)
    }
}

impl Eq for AgentDirectory {}

impl AgentDirectory {
    /// A PEM missing its heartbeats for `ttl` is dropped (three intervals is the usual choice).
    pub fn new(ttl: Duration) -> Self {
        AgentDirectory {
            ttl,
            by_addr: Arc::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records a heartbeat received at `now`; true when the PEM was not known (or had expired).
    pub fn heard(&self, heartbeat: AgentHeartbeat, now: Instant) -> bool {
        let mut agents = self.by_addr.lock();
        let ttl = self.ttl;
        let new = agents
            .get(&heartbeat.addr)
            .is_none_or(|(_, seen)| now.saturating_duration_since(*seen) > ttl);
        agents.insert(heartbeat.addr.clone(), (heartbeat, now));
        new
    }

    /// The PEMs heard from within the TTL at `now`, by address; the others are forgotten.
    pub fn live(&self, now: Instant) -> Vec<AgentHeartbeat> {
        let mut agents = self.by_addr.lock();
        let ttl = self.ttl;
        agents.retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= ttl);
        let mut live: Vec<AgentHeartbeat> = agents.values().map(|(hb, _)| hb.clone()).collect();
        live.sort_by(|a, b| a.addr.cmp(&b.addr));
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(node: &str, addr: &str) -> AgentHeartbeat {
        AgentHeartbeat {
            node_name: node.into(),
            addr: addr.into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn agents_are_live_until_they_miss_their_heartbeats_for_the_ttl() {
        let directory = AgentDirectory::new(Duration::from_secs(15));
        let t0 = Instant::now();
        assert!(directory.heard(heartbeat("b", "10.0.0.2:50400"), t0));
        assert!(directory.heard(heartbeat("a", "10.0.0.1:50400"), t0));
        assert!(!directory.heard(
            heartbeat("a", "10.0.0.1:50400"),
            t0 + Duration::from_secs(10)
        ));
        let addrs =
            |at| -> Vec<String> { directory.live(at).into_iter().map(|h| h.addr).collect() };
        assert_eq!(
            addrs(t0 + Duration::from_secs(15)),
            ["10.0.0.1:50400", "10.0.0.2:50400"]
        );
        // b went quiet at t0; a was last heard at t0 + 10 s.
        assert_eq!(addrs(t0 + Duration::from_secs(16)), ["10.0.0.1:50400"]);
        assert!(addrs(t0 + Duration::from_secs(26)).is_empty());
        // Heard again after expiring: new again.
        assert!(directory.heard(
            heartbeat("b", "10.0.0.2:50400"),
            t0 + Duration::from_secs(30)
        ));
    }

    #[test]
    fn a_clone_shares_the_directory_and_heartbeats_round_trip_as_json() {
        let directory = AgentDirectory::new(Duration::from_secs(1));
        let clone = directory.clone();
        assert_eq!(directory, clone);
        assert_ne!(directory, AgentDirectory::new(Duration::from_secs(1)));
        let hb = heartbeat("n", "127.0.0.1:1");
        let json = serde_json::to_vec(&hb).unwrap();
        clone.heard(serde_json::from_slice(&json).unwrap(), Instant::now());
        assert_eq!(directory.live(Instant::now()), [hb]);
    }
}
