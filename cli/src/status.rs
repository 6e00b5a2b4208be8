//! `kubectl pixie status`: one Vizier's health in one screen — phase, version, conditions with their
//! age, every workload the operator made for it (ready/desired), and the PEM pods that are not
//! running. Built from JSON values read by the command; pure.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::get::{at, str_at};
use crate::table::{NONE, Table, age_since};

/// `-o` of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub name: String,
    pub namespace: String,
    pub version: Option<String>,
    pub operator_version: Option<String>,
    pub phase: Option<String>,
    pub phase_reason: Option<String>,
    pub phase_message: Option<String>,
    pub reconciliation_phase: Option<String>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<ConditionLine>,
    pub workloads: Vec<WorkloadHealth>,
    /// PEM pods that are not Running with every container ready.
    pub unready_pems: Vec<PodHealth>,
    pub pems: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadHealth {
    pub kind: String,
    pub name: String,
    pub ready: i64,
    pub desired: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodHealth {
    pub name: String,
    pub node: Option<String>,
    pub phase: String,
    pub reason: String,
}

fn string(value: &Value, path: &[&str]) -> Option<String> {
    str_at(value, path).map(str::to_owned)
}

fn int(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path).and_then(Value::as_i64)
}

/// Ready and desired replicas of a Deployment, StatefulSet or DaemonSet.
pub fn workload_health(kind: &str, object: &Value) -> WorkloadHealth {
    let (ready, desired) = match kind {
        "DaemonSet" => (
            int(object, &["status", "numberReady"]).unwrap_or(0),
            int(object, &["status", "desiredNumberScheduled"]).unwrap_or(0),
        ),
        // Deployments and StatefulSets: spec.replicas defaults to 1.
        _ => (
            int(object, &["status", "readyReplicas"]).unwrap_or(0),
            int(object, &["spec", "replicas"]).unwrap_or(1),
        ),
    };
    WorkloadHealth {
        kind: kind.to_owned(),
        name: string(object, &["metadata", "name"]).unwrap_or_default(),
        ready,
        desired,
    }
}

/// A pod's trouble, or None when it is Running with every container ready. The reason is the
/// first container's waiting or terminated reason (CrashLoopBackOff, OOMKilled...), else the pod's.
pub fn pod_trouble(pod: &Value) -> Option<PodHealth> {
    let phase = string(pod, &["status", "phase"]).unwrap_or_else(|| "Unknown".to_owned());
    let containers = at(pod, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let all_ready = !containers.is_empty()
        && containers
            .iter()
            .all(|c| c.get("ready") == Some(&Value::Bool(true)));
    if phase == "Running" && all_ready && at(pod, &["metadata", "deletionTimestamp"]).is_none() {
        return None;
    }
    let container_reason = containers.iter().find_map(|c| {
        let state = c.get("state")?;
        str_at(state, &["waiting", "reason"])
            .or_else(|| str_at(state, &["terminated", "reason"]))
            .map(str::to_owned)
    });
    let reason = if at(pod, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating".to_owned()
    } else {
        container_reason
            .or_else(|| string(pod, &["status", "reason"]))
            .unwrap_or_else(|| {
                if phase == "Running" {
                    "NotReady".to_owned()
                } else {
                    phase.clone()
                }
            })
    };
    Some(PodHealth {
        name: string(pod, &["metadata", "name"]).unwrap_or_default(),
        node: string(pod, &["spec", "nodeName"]),
        phase,
        reason,
    })
}

/// The report of `vizier`, its workloads (`(kind, object)`) and its PEM pods.
pub fn report(vizier: &Value, workloads: &[(String, Value)], pem_pods: &[Value]) -> StatusReport {
    let conditions = at(vizier, &["status", "conditions"])
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| ConditionLine {
                    type_: string(c, &["type"]).unwrap_or_default(),
                    status: string(c, &["status"]).unwrap_or_default(),
                    reason: string(c, &["reason"]).unwrap_or_default(),
                    message: string(c, &["message"]).unwrap_or_default(),
                    last_transition_time: string(c, &["lastTransitionTime"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut workloads: Vec<WorkloadHealth> = workloads
        .iter()
        .map(|(kind, o)| workload_health(kind, o))
        .collect();
    workloads.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let mut unready_pems: Vec<PodHealth> = pem_pods.iter().filter_map(pod_trouble).collect();
    unready_pems.sort_by(|a, b| a.name.cmp(&b.name));
    StatusReport {
        name: string(vizier, &["metadata", "name"]).unwrap_or_default(),
        namespace: string(vizier, &["metadata", "namespace"]).unwrap_or_default(),
        version: string(vizier, &["status", "version"]),
        operator_version: string(vizier, &["status", "operatorVersion"]),
        phase: string(vizier, &["status", "vizierPhase"]),
        phase_reason: string(vizier, &["status", "vizierReason"]),
        phase_message: string(vizier, &["status", "message"]),
        reconciliation_phase: string(vizier, &["status", "reconciliationPhase"]),
        generation: int(vizier, &["metadata", "generation"]),
        observed_generation: int(vizier, &["status", "observedGeneration"]),
        conditions,
        workloads,
        unready_pems,
        pems: pem_pods.len(),
    }
}

fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or(NONE)
}

/// The report as text, ages measured at `now`.
pub fn render(report: &StatusReport, now: Timestamp) -> String {
    let mut out = format!("Vizier:      {}/{}\n", report.namespace, report.name);
    out.push_str(&format!("Version:     {}", or_none(&report.version)));
    if let Some(operator) = &report.operator_version {
        out.push_str(&format!(" (operator {operator})"));
    }
    out.push('\n');
    out.push_str(&format!("Phase:       {}", or_none(&report.phase)));
    match (&report.phase_reason, &report.phase_message) {
        (Some(reason), Some(message)) => out.push_str(&format!(" ({reason}: {message})")),
        (Some(reason), None) => out.push_str(&format!(" ({reason})")),
        _ => {}
    }
    out.push('\n');
    out.push_str(&format!(
        "Deployment:  {}\n",
        or_none(&report.reconciliation_phase)
    ));
    if report.observed_generation != report.generation {
        out.push_str(&format!(
            "Generation:  {} (the status describes generation {}; the operator has not caught up)\n",
            report.generation.map_or(NONE.to_owned(), |g| g.to_string()),
            report
                .observed_generation
                .map_or(NONE.to_owned(), |g| g.to_string()),
        ));
    }

    out.push_str("\nConditions:\n");
    if report.conditions.is_empty() {
        out.push_str("  none reported yet (is the operator running?)\n");
    } else {
        let mut table = Table::new(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]);
        for c in &report.conditions {
            table.push([
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age_since(c.last_transition_time.as_deref(), now),
                c.message.clone(),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }

    out.push_str("\nComponents:\n");
    if report.workloads.is_empty() {
        out.push_str("  none found\n");
    } else {
        let mut table = Table::new(["KIND", "NAME", "READY"]);
        for w in &report.workloads {
            table.push([
                w.kind.clone(),
                w.name.clone(),
                format!("{}/{}", w.ready, w.desired),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }

    if report.pems == 0 {
        out.push_str("\nPEMs: none found\n");
    } else if report.unready_pems.is_empty() {
        out.push_str(&format!("\nPEMs: all {} running\n", report.pems));
    } else {
        out.push_str(&format!(
            "\nPEMs not running ({} of {}):\n",
            report.unready_pems.len(),
            report.pems
        ));
        let mut table = Table::new(["NAME", "NODE", "PHASE", "REASON"]);
        for p in &report.unready_pems {
            table.push([
                p.name.clone(),
                or_none(&p.node).to_owned(),
                p.phase.clone(),
                p.reason.clone(),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, waiting: Option<&str>) -> Value {
        let state = match waiting {
            Some(reason) => json!({"waiting": {"reason": reason}}),
            None => json!({"running": {}}),
        };
        json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "kwok-node-0"},
            "status": {"phase": phase, "containerStatuses": [{"name": "pem", "ready": ready, "state": state}]},
        })
    }

    #[test]
    fn workloads_count_ready_against_desired() {
        let ds = json!({"metadata": {"name": "vizier-pem"},
                        "status": {"numberReady": 2, "desiredNumberScheduled": 3}});
        assert_eq!(
            workload_health("DaemonSet", &ds),
            WorkloadHealth {
                kind: "DaemonSet".into(),
                name: "vizier-pem".into(),
                ready: 2,
                desired: 3
            }
        );
        let deploy = json!({"metadata": {"name": "kelvin"}, "spec": {}, "status": {}});
        let health = workload_health("Deployment", &deploy);
        assert_eq!((health.ready, health.desired), (0, 1));
    }

    #[test]
    fn only_pods_that_are_not_running_and_ready_are_trouble() {
        assert_eq!(pod_trouble(&pod("a", "Running", true, None)), None);
        let crash = pod_trouble(&pod("b", "Running", false, Some("CrashLoopBackOff"))).unwrap();
        assert_eq!(crash.reason, "CrashLoopBackOff");
        assert_eq!(crash.node.as_deref(), Some("kwok-node-0"));
        let pending = json!({"metadata": {"name": "c"}, "status": {"phase": "Pending"}});
        assert_eq!(pod_trouble(&pending).unwrap().reason, "Pending");
        let not_ready = pod_trouble(&pod("d", "Running", false, None)).unwrap();
        assert_eq!(not_ready.reason, "NotReady");
    }

    #[test]
    fn the_report_reads_as_sections() {
        let vizier = json!({
            "metadata": {"name": "pixie", "namespace": "pl", "generation": 2},
            "status": {
                "observedGeneration": 2, "version": "0.1.0", "operatorVersion": "0.1.0",
                "vizierPhase": "Degraded", "vizierReason": "PEMsHighFailureRate",
                "message": "1 of 3 PEMs crash", "reconciliationPhase": "Ready",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                                "message": "Vizier 0.1.0 is running",
                                "lastTransitionTime": "2026-01-01T00:55:00Z"}],
            },
        });
        let workloads = vec![
            (
                "StatefulSet".to_owned(),
                json!({"metadata": {"name": "pl-nats"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}),
            ),
            (
                "DaemonSet".to_owned(),
                json!({"metadata": {"name": "vizier-pem"}, "status": {"numberReady": 2, "desiredNumberScheduled": 3}}),
            ),
        ];
        let pems = vec![
            pod("vizier-pem-a", "Running", true, None),
            pod("vizier-pem-b", "Running", false, Some("CrashLoopBackOff")),
        ];
        let report = report(&vizier, &workloads, &pems);
        let text = render(&report, "2026-01-01T01:00:00Z".parse().unwrap());
        assert_eq!(
            text,
            "Vizier:      pl/pixie\n\
             Version:     0.1.0 (operator 0.1.0)\n\
             Phase:       Degraded (PEMsHighFailureRate: 1 of 3 PEMs crash)\n\
             Deployment:  Ready\n\
             \n\
             Conditions:\n\
             \x20 TYPE    STATUS   REASON      AGE   MESSAGE\n\
             \x20 Ready   True     Available   5m    Vizier 0.1.0 is running\n\
             \n\
             Components:\n\
             \x20 KIND          NAME         READY\n\
             \x20 DaemonSet     vizier-pem   2/3\n\
             \x20 StatefulSet   pl-nats      1/1\n\
             \n\
             PEMs not running (1 of 2):\n\
             \x20 NAME           NODE          PHASE     REASON\n\
             \x20 vizier-pem-b   kwok-node-0   Running   CrashLoopBackOff\n"
        );
    }

    #[test]
    fn a_vizier_without_status_says_so() {
        let vizier = json!({"metadata": {"name": "pixie", "namespace": "pl", "generation": 1}});
        let text = render(&report(&vizier, &[], &[]), Timestamp::UNIX_EPOCH);
        assert!(text.contains("Phase:       <none>\n"), "{text}");
        assert!(text.contains("the operator has not caught up"), "{text}");
        assert!(
            text.contains("none reported yet (is the operator running?)"),
            "{text}"
        );
        assert!(text.ends_with("\nPEMs: none found\n"), "{text}");
    }
}
