//! Observe: Pixie's monitor, as data. From the applied workloads, the Vizier's pods and the nodes,
//! work out whether the rollout is complete and which health checks fail. Pure; the status step
//! turns the result into conditions.

pub mod kernel;
pub mod rollout;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::render::common::{LABEL_COMPONENT, LABEL_PLANE};
use crate::render::{Component, METADATA_PVC, NATS};
use crate::resources::Kind;
use crate::validate::{Inputs, MetadataBackend};
pub use rollout::WorkloadState;

/// One failed health check, with Pixie's reason string (`status.vizierReason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub reason: &'static str,
    pub message: String,
}

/// How bad a finding is, following Pixie's mapping of reasons to `vizierPhase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Queryable, but data may be missing.
    Degraded,
    /// Cannot reach the cloud.
    Disconnected,
    /// Not queryable.
    Unhealthy,
}

impl Finding {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Finding { reason, message: message.into() }
    }

    pub fn severity(&self) -> Severity {
        severity(self.reason)
    }
}

/// Pixie: `CloudConnectorMissing` means Disconnected; a few reasons mean Degraded; every other
/// reason means Unhealthy.
pub fn severity(reason: &str) -> Severity {
    match reason {
        "CloudConnectorMissing" | "CloudConnectorNotRegistered" => Severity::Disconnected,
        "PEMsInsufficientMemory" | "KernelVersionsIncompatible" | "PEMsHighFailureRate" => Severity::Degraded,
        _ => Severity::Unhealthy,
    }
}

/// Everything observed in one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub workloads: Vec<WorkloadState>,
    /// Failed checks, in Pixie's order: the first one is the Vizier's reason.
    pub findings: Vec<Finding>,
}

impl Observation {
    pub fn rolled_out(&self) -> bool {
        self.workloads.iter().all(|w| w.rolled_out)
    }

    /// Workloads still rolling out, as "kind/name (detail)".
    pub fn pending_rollouts(&self) -> Vec<String> {
        self.workloads
            .iter()
            .filter(|w| !w.rolled_out)
            .map(|w| format!("{}/{} ({})", w.kind, w.name, w.detail))
            .collect()
    }

    /// Control-plane workloads (everything but the PEMs, whose failures are findings) not available.
    pub fn unavailable_control_plane(&self) -> Vec<String> {
        self.workloads
            .iter()
            .filter(|w| w.kind != Kind::DaemonSet && !w.available)
            .map(|w| format!("{}/{} ({})", w.kind, w.name, w.detail))
            .collect()
    }
}

/// The facts observation works from.
pub struct Facts<'a> {
    pub inputs: &'a Inputs,
    /// Every rendered object as it now stands.
    pub objects: &'a BTreeMap<(Kind, String), Value>,
    pub pods: &'a [Pod],
    pub nodes: &'a [Node],
    pub tls_not_after: Option<Timestamp>,
    pub deploy_key_secret_ok: Option<bool>,
    /// `pl-cluster-secrets` holds the cluster id the cloud connector got from the cloud.
    pub cluster_registered: bool,
    pub now: Timestamp,
}

/// Certificates expiring within this window are reported (Pixie checks 5 days ahead).
pub const CERT_WARNING: SignedDuration = SignedDuration::from_hours(5 * 24);
/// A pod Pending for longer than this after the rollout is reported.
pub const PENDING_GRACE: SignedDuration = SignedDuration::from_mins(2);

pub fn observe(facts: &Facts<'_>) -> Observation {
    let workloads: Vec<WorkloadState> = facts
        .objects
        .iter()
        .filter(|((kind, _), _)| kind.is_workload())
        .filter_map(|((kind, name), body)| rollout::state(*kind, name, body))
        .collect();
    let settled = workloads.iter().all(|w| w.rolled_out);
    let mut findings = Vec::new();
    let pods_of = |component: Component| -> Vec<&Pod> {
        facts
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| label(p, LABEL_COMPONENT) == Some(component.label()))
            .collect()
    };

    // 1. Certificates.
    if let Some(not_after) = facts.tls_not_after
        && not_after.duration_since(facts.now) < CERT_WARNING
    {
        findings.push(Finding::new("TLSCertsExpired", format!("the service TLS certificates expire at {not_after}")));
    }

    // 2. The metadata volume.
    if facts.inputs.backend == MetadataBackend::Persistent {
        let phase = facts
            .objects
            .get(&(Kind::PersistentVolumeClaim, METADATA_PVC.to_owned()))
            .and_then(|pvc| pvc.pointer("/status/phase"))
            .and_then(Value::as_str);
        match phase {
            None => findings.push(Finding::new("MetadataPVCMissing", format!("PVC {METADATA_PVC} does not exist"))),
            Some("Bound") => {}
            Some(phase) => findings.push(Finding::new(
                "MetadataPVCPendingBinding",
                format!("PVC {METADATA_PVC} is {phase}, not Bound: does the cluster provision volumes?"),
            )),
        }
    }

    // 3. Kernels.
    findings.extend(kernel::check(facts.nodes));

    // 4. Control-plane pods (NATS and the cloud connector have their own checks below).
    let control: Vec<&Pod> = facts
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && label(p, LABEL_PLANE) == Some("control"))
        .filter(|p| {
            let component = label(p, LABEL_COMPONENT).and_then(Component::from_label);
            matches!(component, Some(Component::Metadata | Component::QueryBroker | Component::Kelvin))
        })
        .collect();
    if let Some(finding) = control_plane_finding(&control, settled, facts.now) {
        findings.push(finding);
    }

    // 5. NATS.
    let nats = pods_of(Component::Nats);
    let nats_pod = nats.iter().find(|p| p.metadata.name.as_deref() == Some(&format!("{NATS}-0")));
    match nats_pod {
        None if settled => findings.push(Finding::new("NATSPodMissing", format!("pod {NATS}-0 does not exist"))),
        None => {}
        Some(pod) if failing(pod) => findings.push(Finding::new("NATSPodFailed", format!("pod {NATS}-0 is failing"))),
        Some(pod) if phase(pod) != "Running" && (settled || unschedulable(pod).is_some()) => {
            findings.push(Finding::new("NATSPodPending", format!("pod {NATS}-0 is {}", phase(pod))))
        }
        Some(_) => {}
    }

    // 6 and 7. PEMs: scheduling for memory, then crashes.
    let pems = pods_of(Component::Pem);
    let short_of_memory: Vec<_> =
        pems.iter().filter(|p| unschedulable(p).is_some_and(|m| m.contains("Insufficient memory"))).collect();
    if !short_of_memory.is_empty() {
        // Pixie has an "all" and a "some" reason; one reason whose message counts is as useful.
        let nodes: Vec<String> = short_of_memory
            .iter()
            .map(|p| intended_node(p).map_or_else(|| format!("pod {}", pod_name(p)), str::to_owned))
            .collect();
        findings.push(Finding::new(
            "PEMsInsufficientMemory",
            format!(
                "{} of {} PEMs cannot be scheduled: their nodes lack the memory spec.pemMemoryRequest asks for: {}",
                short_of_memory.len(),
                pems.len(),
                nodes.join(", ")
            ),
        ));
    }
    let failing_pems: Vec<_> = pems.iter().filter(|p| failing(p)).map(|p| pod_name(p)).collect();
    if !pems.is_empty() && failing_pems.len() == pems.len() {
        findings.push(Finding::new("PEMsAllFailing", format!("all {} PEMs are failing", pems.len())));
    } else if failing_pems.len() * 4 > pems.len() {
        findings.push(Finding::new(
            "PEMsHighFailureRate",
            format!("{} of {} PEMs are failing: {}", failing_pems.len(), pems.len(), failing_pems.join(", ")),
        ));
    }

    // 8. The cloud connector.
    if facts.inputs.cloud_enabled() {
        let (secret, _) = facts.inputs.deploy_key_secret();
        if facts.deploy_key_secret_ok == Some(false) {
            findings.push(Finding::new("InvalidDeployKey", format!("Secret {secret} has no key deploy-key")));
        }
        let connectors = pods_of(Component::CloudConnector);
        match connectors.first() {
            None if settled => findings.push(Finding::new("CloudConnectorMissing", "the cloud connector pod does not exist")),
            None => {}
            Some(pod) if failing(pod) => {
                findings.push(Finding::new("CloudConnectorPodFailed", format!("pod {} is failing", pod_name(pod))))
            }
            Some(pod) if phase(pod) == "Pending" && (settled || unschedulable(pod).is_some()) => {
                findings.push(Finding::new("CloudConnectorPodPending", format!("pod {} is Pending", pod_name(pod))))
            }
            // Running, but the cloud has not accepted the cluster yet (a wrong deploy key, or a
            // cloud it cannot reach): the connector's log says which.
            Some(pod) if settled && !facts.cluster_registered => findings.push(Finding::new(
                "CloudConnectorNotRegistered",
                format!("pod {} has not registered the cluster with the cloud yet", pod_name(pod)),
            )),
            Some(_) => {}
        }
    }
    Observation { workloads, findings }
}

fn control_plane_finding(pods: &[&Pod], settled: bool, now: Timestamp) -> Option<Finding> {
    if let Some(pod) = pods.iter().find(|p| failing(p)) {
        return Some(Finding::new("ControlPlanePodsFailed", format!("pod {} is failing", pod_name(pod))));
    }
    for pod in pods {
        if let Some(message) = unschedulable(pod) {
            let reason = if message.contains("taint") {
                "ControlPlaneFailedToScheduleBecauseOfTaints"
            } else {
                "ControlPlaneFailedToSchedule"
            };
            return Some(Finding::new(reason, format!("pod {} cannot be scheduled: {message}", pod_name(pod))));
        }
    }
    let stuck: Vec<_> = pods
        .iter()
        .filter(|p| phase(p) == "Pending")
        .filter(|p| {
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
            settled && now.duration_since(created) > PENDING_GRACE
        })
        .map(|p| pod_name(p))
        .collect();
    (!stuck.is_empty()).then(|| Finding::new("ControlPlanePodsPending", format!("pods pending: {}", stuck.join(", "))))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The node a pod runs on or, for an unscheduled DaemonSet pod, the one it is meant for (the
/// DaemonSet controller pins each pod to its node with a `metadata.name` node affinity).
fn intended_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_deref() {
        return Some(node);
    }
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().map(String::as_str))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// Pixie's crash test: the pod failed, or a container is in CrashLoopBackOff, or terminated with
/// an error.
pub fn failing(pod: &Pod) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().any(|c| {
        let state = c.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
        let terminated = state.and_then(|s| s.terminated.as_ref()).and_then(|t| t.reason.as_deref());
        waiting == Some("CrashLoopBackOff") || terminated == Some("Error")
    })
}

/// The scheduler's message when it could not place the pod.
pub fn unschedulable(pod: &Pod) -> Option<&str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .map(|c| c.message.as_deref().unwrap_or("unschedulable"))
}

#[cfg(test)]
mod tests;
