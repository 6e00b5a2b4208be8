use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use pixie_crds::{ReconciliationPhase, Vizier, VizierPhase, VizierStatus};

use super::*;
use crate::observe::{Finding, Observation, WorkloadState};
use crate::resources::Kind;

fn t(text: &str) -> Time {
    Time(text.parse().unwrap())
}

fn cond(type_: &str, status: &str, reason: &str, time: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: t(time),
    }
}

#[test]
fn merging_keeps_the_transition_time_unless_the_status_flips() {
    let existing = vec![
        cond("Ready", "True", "Available", "2026-01-01T00:00:00Z"),
        cond("Degraded", "False", "AsExpected", "2026-01-01T00:00:00Z"),
        cond("Custom", "True", "Other", "2026-01-01T00:00:00Z"),
    ];
    let wanted = vec![
        Want::new("Ready", true, "Available", "still running"),
        Want::new("Degraded", true, "PEMsHighFailureRate", "2 of 3"),
        Want::new("Progressing", false, "RolloutComplete", ""),
    ];
    let merged = merge_conditions(&existing, &wanted, Some(2), t("2026-02-02T00:00:00Z"));
    let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded", "Custom"]);
    assert_eq!(merged[0].last_transition_time, t("2026-01-01T00:00:00Z"), "Ready stayed True");
    assert_eq!(merged[0].message, "still running");
    assert_eq!(merged[0].observed_generation, Some(2));
    assert_eq!(merged[1].last_transition_time, t("2026-02-02T00:00:00Z"), "new condition");
    assert_eq!(merged[2].last_transition_time, t("2026-02-02T00:00:00Z"), "Degraded flipped");
    assert_eq!(merged[2].reason, "PEMsHighFailureRate");
    assert_eq!(merged[3], existing[2], "conditions not wanted now are kept");
}

#[test]
fn a_reason_change_without_a_flip_keeps_the_time() {
    let existing = vec![cond("Degraded", "True", "PEMsHighFailureRate", "2026-01-01T00:00:00Z")];
    let merged = merge_conditions(&existing, &[Want::new("Degraded", true, "NATSPodFailed", "")], Some(1), t("2026-03-01T00:00:00Z"));
    assert_eq!(merged[0].last_transition_time, t("2026-01-01T00:00:00Z"));
    assert_eq!(transitions(&existing, &merged).len(), 1, "but it is still an event-worthy change");
}

#[test]
fn vizier_phase_follows_pixies_reason_mapping() {
    let ready = vec![cond("Ready", "True", "Available", "2026-01-01T00:00:00Z"),
        cond("Progressing", "False", "RolloutComplete", "2026-01-01T00:00:00Z")];
    assert_eq!(vizier_phase(&ready, None), VizierPhase::Healthy);
    assert_eq!(vizier_phase(&ready, Some("PEMsHighFailureRate")), VizierPhase::Degraded);
    assert_eq!(vizier_phase(&ready, Some("KernelVersionsIncompatible")), VizierPhase::Degraded);
    assert_eq!(vizier_phase(&ready, Some("CloudConnectorMissing")), VizierPhase::Disconnected);
    assert_eq!(vizier_phase(&ready, Some("NATSPodFailed")), VizierPhase::Unhealthy);
    let not_ready = vec![cond("Ready", "False", "ComponentsUnavailable", "2026-01-01T00:00:00Z")];
    assert_eq!(vizier_phase(&not_ready, None), VizierPhase::Unhealthy);
    let rolling = vec![cond("Progressing", "True", "Upgrading", "2026-01-01T00:00:00Z")];
    assert_eq!(vizier_phase(&rolling, Some("PEMsHighFailureRate")), VizierPhase::Updating);
}

#[test]
fn reconciliation_phase_fails_on_invalid_specs_and_slow_rollouts() {
    let now: Timestamp = "2026-01-01T00:40:00Z".parse().unwrap();
    let rolling_since = |time: &str| vec![cond("Ready", "False", "Upgrading", time), cond("Progressing", "True", "Upgrading", time)];
    assert_eq!(reconciliation_phase(&rolling_since("2026-01-01T00:30:00Z"), now), ReconciliationPhase::Updating);
    assert_eq!(reconciliation_phase(&rolling_since("2026-01-01T00:05:00Z"), now), ReconciliationPhase::Failed);
    let invalid = vec![cond("Ready", "False", "InvalidSpec", "2026-01-01T00:00:00Z")];
    assert_eq!(reconciliation_phase(&invalid, now), ReconciliationPhase::Failed);
    let done = vec![cond("Ready", "True", "Available", "2026-01-01T00:00:00Z"),
        cond("Progressing", "False", "RolloutComplete", "2026-01-01T00:00:00Z")];
    assert_eq!(reconciliation_phase(&done, now), ReconciliationPhase::Ready);
}

fn workload(rolled_out: bool, available: bool) -> WorkloadState {
    WorkloadState { kind: Kind::Deployment, name: "kelvin".into(), rolled_out, available, detail: "0/1 updated".into() }
}

fn assessed(previous: Option<&VizierStatus>, observation: &Observation) -> Assessment {
    Assessment::deployed("0.2.0", "sum", previous, observation, &[])
}

fn want<'a>(a: &'a Assessment, type_: &str) -> &'a Want {
    a.conditions.iter().find(|w| w.type_ == type_).unwrap()
}

#[test]
fn a_rollout_is_progressing_and_reports_the_old_version_until_done() {
    let running = VizierStatus { version: Some("0.1.0".into()), ..Default::default() };
    let rolling = Observation { workloads: vec![workload(false, true)], findings: vec![] };
    let a = assessed(Some(&running), &rolling);
    assert_eq!((want(&a, "Progressing").status, want(&a, "Progressing").reason.as_str()), (true, "Upgrading"));
    assert!(!want(&a, "Ready").status);
    assert_eq!(a.version, None, "status.version keeps what runs");
    assert!(want(&a, "Progressing").message.contains("Deployment/kelvin"));

    let done = Observation { workloads: vec![workload(true, true)], findings: vec![] };
    let a = assessed(Some(&running), &done);
    assert!(want(&a, "Ready").status && !want(&a, "Progressing").status && !want(&a, "Degraded").status);
    assert_eq!(a.version.as_deref(), Some("0.2.0"));
    assert_eq!(a.checksum.as_deref(), Some("sum"));
    assert_eq!(assessed(None, &rolling).conditions[0].reason, "Deploying");
}

#[test]
fn degraded_findings_keep_ready_and_unhealthy_ones_do_not() {
    let degraded = Observation {
        workloads: vec![workload(true, true)],
        findings: vec![Finding::new("PEMsHighFailureRate", "2 of 3 PEMs are failing")],
    };
    let a = assessed(None, &degraded);
    assert!(want(&a, "Ready").status);
    assert_eq!((want(&a, "Degraded").status, want(&a, "Degraded").reason.as_str()), (true, "PEMsHighFailureRate"));
    assert_eq!(a.reason.as_ref().map(|(r, _)| r.as_str()), Some("PEMsHighFailureRate"));

    let unhealthy = Observation {
        workloads: vec![workload(true, true)],
        findings: vec![Finding::new("PEMsAllFailing", "all 3 PEMs are failing")],
    };
    let a = assessed(None, &unhealthy);
    assert_eq!((want(&a, "Ready").status, want(&a, "Ready").reason.as_str()), (false, "PEMsAllFailing"));

    let unavailable = Observation { workloads: vec![workload(true, false)], findings: vec![] };
    assert_eq!(want(&assessed(None, &unavailable), "Ready").reason, "ComponentsUnavailable");
}

#[test]
fn next_status_is_stable_when_nothing_changed() {
    let mut vizier = Vizier::test().with_version("0.2.0");
    let done = Observation { workloads: vec![workload(true, true)], findings: vec![] };
    let assessment = assessed(None, &done);
    let first = next_status(&vizier, &assessment, "2026-01-01T00:00:00.123456Z".parse().unwrap());
    assert_eq!(first.vizier_phase, Some(VizierPhase::Healthy));
    assert_eq!(first.reconciliation_phase, Some(ReconciliationPhase::Ready));
    assert_eq!(first.observed_generation, Some(1));
    assert_eq!(first.conditions[0].last_transition_time, t("2026-01-01T00:00:00Z"), "whole seconds");
    vizier.status = Some(first.clone());
    let again = next_status(&vizier, &assessed(vizier.status.as_ref(), &done), "2026-01-01T01:00:00Z".parse().unwrap());
    assert_eq!(again, first, "an unchanged reconcile computes the same status, so nothing is written");
    assert!(transitions(&first.conditions, &again.conditions).is_empty());
}

#[test]
fn failures_set_ready_and_progressing_false_and_keep_the_rest() {
    let mut vizier = Vizier::test();
    vizier.status = Some(VizierStatus { version: Some("0.1.0".into()), ..Default::default() });
    let status = next_status(&vizier, &Assessment::failed("InvalidSpec", "bad patch"), "2026-01-01T00:00:00Z".parse().unwrap());
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert_eq!(status.reconciliation_phase, Some(ReconciliationPhase::Failed));
    assert_eq!(status.vizier_phase, Some(VizierPhase::Unhealthy));
    assert_eq!(status.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["Ready", "Progressing"]);
}
