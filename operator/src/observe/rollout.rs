//! Whether a workload runs what was last applied to it (its rollout is complete) and whether it is
//! available, read from the counts its controller reports.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use serde_json::Value;

use crate::resources::Kind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    pub kind: Kind,
    pub name: String,
    /// The controller has seen the latest spec and every pod runs it.
    pub rolled_out: bool,
    /// Every desired pod is available.
    pub available: bool,
    /// Counts, for messages: "2/3 updated, 1/3 available".
    pub detail: String,
}

pub fn state(kind: Kind, name: &str, body: &Value) -> Option<WorkloadState> {
    let generation = body.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let (observed, desired, updated, current, available, revisions_match) = match kind {
        Kind::Deployment => {
            let d: Deployment = serde_json::from_value(body.clone()).ok()?;
            let desired = d.spec.replicas.unwrap_or(1);
            let s = d.status.unwrap_or_default();
            let current = s.replicas.unwrap_or(0);
            (s.observed_generation, desired, s.updated_replicas.unwrap_or(0), current, s.available_replicas.unwrap_or(0), true)
        }
        Kind::StatefulSet => {
            let d: StatefulSet = serde_json::from_value(body.clone()).ok()?;
            let desired = d.spec.replicas.unwrap_or(1);
            let s = d.status.unwrap_or_default();
            let revisions = s.update_revision.is_some() && s.current_revision == s.update_revision;
            (s.observed_generation, desired, s.updated_replicas.unwrap_or(0), s.replicas, s.available_replicas.unwrap_or(0), revisions)
        }
        Kind::DaemonSet => {
            let d: DaemonSet = serde_json::from_value(body.clone()).ok()?;
            let s = d.status.unwrap_or_default();
            let desired = s.desired_number_scheduled;
            (
                s.observed_generation,
                desired,
                s.updated_number_scheduled.unwrap_or(0),
                s.current_number_scheduled,
                s.number_available.unwrap_or(0),
                true,
            )
        }
        _ => return None,
    };
    let observed = observed.unwrap_or(0) >= generation && generation > 0;
    let rolled_out = observed && updated >= desired && current == desired && revisions_match;
    Some(WorkloadState {
        kind,
        name: name.to_owned(),
        rolled_out,
        available: rolled_out && available >= desired,
        detail: if observed {
            format!("{updated}/{desired} updated, {available}/{desired} available")
        } else {
            "its controller has not seen the latest spec yet".to_owned()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deployment_is_rolled_out_when_every_replica_is_updated_and_old_ones_are_gone() {
        let body = |og: i64, updated: i32, replicas: i32, available: i32| {
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 2, "selector": {}, "template": {}},
                   "status": {"observedGeneration": og, "updatedReplicas": updated, "replicas": replicas,
                              "availableReplicas": available}})
        };
        let done = state(Kind::Deployment, "d", &body(2, 2, 2, 2)).unwrap();
        assert!(done.rolled_out && done.available, "{done:?}");
        assert!(!state(Kind::Deployment, "d", &body(1, 2, 2, 2)).unwrap().rolled_out, "old generation");
        assert!(!state(Kind::Deployment, "d", &body(2, 1, 3, 2)).unwrap().rolled_out, "surge pods remain");
        let unavailable = state(Kind::Deployment, "d", &body(2, 2, 2, 1)).unwrap();
        assert!(unavailable.rolled_out && !unavailable.available);
    }

    #[test]
    fn a_daemonset_is_rolled_out_when_every_node_runs_the_new_pod() {
        let body = |updated: i32, available: i32| {
            json!({"metadata": {"generation": 3}, "spec": {"selector": {}, "template": {}},
                   "status": {"observedGeneration": 3, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                              "numberMisscheduled": 0, "numberReady": available, "updatedNumberScheduled": updated,
                              "numberAvailable": available}})
        };
        assert!(state(Kind::DaemonSet, "pem", &body(3, 3)).unwrap().available);
        assert!(!state(Kind::DaemonSet, "pem", &body(2, 3)).unwrap().rolled_out);
        let failing = state(Kind::DaemonSet, "pem", &body(3, 1)).unwrap();
        assert!(failing.rolled_out && !failing.available);
    }

    #[test]
    fn a_statefulset_waits_for_its_revision() {
        let body = |current: &str| {
            json!({"metadata": {"generation": 1}, "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "s"},
                   "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                              "currentRevision": current, "updateRevision": "b"}})
        };
        assert!(state(Kind::StatefulSet, "s", &body("b")).unwrap().rolled_out);
        assert!(!state(Kind::StatefulSet, "s", &body("a")).unwrap().rolled_out);
    }

    #[test]
    fn other_kinds_are_not_workloads() {
        assert!(state(Kind::Service, "s", &json!({})).is_none());
    }
}
