//! The last step: turn what happened into `status`. Conditions Ready / Progressing / Degraded are
//! merged (lastTransitionTime moves only when a condition's status flips), Pixie's `vizierPhase`
//! and `reconciliationPhase` are derived from them, and the status is written through the
//! `/status` subresource with server-side apply, only when it changed. Every condition change
//! is also published as an Event.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use pixie_crds::common::{CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY};
use pixie_crds::{ReconciliationPhase, Vizier, VizierPhase, VizierStatus};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::observe::{Observation, Severity, severity};
use crate::{FIELD_MANAGER, OPERATOR_VERSION};

/// A condition as the reconciler wants it, before merging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Want {
    fn new(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Want { type_, status, reason: reason.to_owned(), message: message.into() }
    }
}

/// The status a reconcile wants to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub conditions: Vec<Want>,
    /// Set when a version finished rolling out; otherwise the previous value is kept.
    pub version: Option<String>,
    pub checksum: Option<String>,
    /// Pixie's `vizierReason` and `message`: the first failing health check.
    pub reason: Option<(String, String)>,
}

/// Ready=False reasons that mean the deployment itself failed (reconciliationPhase Failed).
pub const FAILED_REASONS: &[&str] = &["InvalidSpec", "ApplyFailed", "ArtifactTrackerUnavailable"];
/// Pixie marks a deployment Failed after it has been Updating this long.
pub const UPDATE_TIMEOUT: SignedDuration = SignedDuration::from_mins(30);

impl Assessment {
    /// Nothing can be deployed until the user changes the spec.
    pub fn failed(reason: &str, message: &str) -> Self {
        Assessment {
            conditions: vec![
                Want::new(CONDITION_READY, false, reason, message),
                Want::new(CONDITION_PROGRESSING, false, reason, message),
            ],
            version: None,
            checksum: None,
            reason: None,
        }
    }

    /// The data plane was applied and observed.
    pub fn deployed(
        version: &str,
        spec_checksum: &str,
        previous: Option<&VizierStatus>,
        observation: &Observation,
        notes: &[String],
    ) -> Self {
        let running = previous.and_then(|s| s.version.as_deref());
        let rolling = !observation.rolled_out();
        let rollout_reason = match running {
            None => "Deploying",
            Some(v) if v != version => "Upgrading",
            Some(_) => "Reconfiguring",
        };
        let mut conditions = Vec::new();
        if rolling {
            let message = format!("rolling out {version}: waiting for {}", observation.pending_rollouts().join(", "));
            conditions.push(Want::new(CONDITION_PROGRESSING, true, rollout_reason, message.clone()));
            conditions.push(Want::new(CONDITION_READY, false, rollout_reason, message));
        } else {
            conditions.push(Want::new(CONDITION_PROGRESSING, false, "RolloutComplete", format!("{version} is rolled out")));
            let unavailable = observation.unavailable_control_plane();
            let unhealthy = observation.findings.iter().find(|f| f.severity() != Severity::Degraded);
            conditions.push(if !unavailable.is_empty() {
                Want::new(CONDITION_READY, false, "ComponentsUnavailable", format!("not available: {}", unavailable.join(", ")))
            } else if let Some(finding) = unhealthy {
                Want::new(CONDITION_READY, false, finding.reason, finding.message.clone())
            } else {
                let mut message = format!("Vizier {version} is running");
                for note in notes {
                    message.push_str("; ");
                    message.push_str(note);
                }
                Want::new(CONDITION_READY, true, "Available", message)
            });
        }
        conditions.push(match observation.findings.first() {
            Some(first) => {
                let all: Vec<_> = observation.findings.iter().map(|f| format!("{}: {}", f.reason, f.message)).collect();
                Want::new(CONDITION_DEGRADED, true, first.reason, all.join("; "))
            }
            None => Want::new(CONDITION_DEGRADED, false, "AsExpected", "every health check passes"),
        });
        Assessment {
            conditions,
            version: (!rolling).then(|| version.to_owned()),
            checksum: (!rolling).then(|| spec_checksum.to_owned()),
            reason: observation.findings.first().map(|f| (f.reason.to_owned(), f.message.clone())),
        }
    }
}

/// SHA-256 of the spec as JSON (Pixie's `status.checksum`).
pub fn spec_checksum(vizier: &Vizier) -> String {
    let bytes = serde_json::to_vec(&vizier.spec).expect("the spec serializes");
    hex::encode(Sha256::digest(&bytes))
}

/// Merges wanted conditions into the existing ones: a condition keeps its lastTransitionTime
/// unless its status flips; condition types not wanted now are left as they are.
pub fn merge_conditions(existing: &[Condition], wanted: &[Want], generation: Option<i64>, now: Time) -> Vec<Condition> {
    let mut merged: Vec<Condition> = existing.to_vec();
    for want in wanted {
        let status = if want.status { "True" } else { "False" };
        let condition = Condition {
            type_: want.type_.to_owned(),
            status: status.to_owned(),
            reason: want.reason.clone(),
            message: want.message.clone(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        };
        match merged.iter_mut().find(|c| c.type_ == want.type_) {
            Some(old) => {
                let transition = if old.status == status { old.last_transition_time.clone() } else { now.clone() };
                *old = Condition { last_transition_time: transition, ..condition };
            }
            None => merged.push(condition),
        }
    }
    let order = |t: &str| [CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED].iter().position(|x| *x == t);
    merged.sort_by_key(|c| (order(&c.type_).unwrap_or(usize::MAX), c.type_.clone()));
    merged
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Pixie's one-word health: Updating while a rollout runs, else from the first failing check's
/// reason (Degraded, Disconnected or Unhealthy), else Unhealthy if not Ready, else Healthy.
pub fn vizier_phase(conditions: &[Condition], reason: Option<&str>) -> VizierPhase {
    if is_true(conditions, CONDITION_PROGRESSING) {
        return VizierPhase::Updating;
    }
    match reason.map(severity) {
        Some(Severity::Degraded) if is_true(conditions, CONDITION_READY) => VizierPhase::Degraded,
        Some(Severity::Disconnected) => VizierPhase::Disconnected,
        Some(_) => VizierPhase::Unhealthy,
        None if is_true(conditions, CONDITION_READY) => VizierPhase::Healthy,
        None => VizierPhase::Unhealthy,
    }
}

/// Pixie's deployment state: Failed when the deployment cannot proceed or has been Updating for
/// 30 minutes, Updating while a rollout runs, Ready otherwise.
pub fn reconciliation_phase(conditions: &[Condition], now: Timestamp) -> ReconciliationPhase {
    let ready = condition(conditions, CONDITION_READY);
    if ready.is_some_and(|c| c.status == "False" && FAILED_REASONS.contains(&c.reason.as_str())) {
        return ReconciliationPhase::Failed;
    }
    match condition(conditions, CONDITION_PROGRESSING) {
        Some(p) if p.status == "True" => {
            if now.duration_since(p.last_transition_time.0) >= UPDATE_TIMEOUT {
                ReconciliationPhase::Failed
            } else {
                ReconciliationPhase::Updating
            }
        }
        _ => ReconciliationPhase::Ready,
    }
}

/// The whole new status, from the previous one and this reconcile's assessment.
pub fn next_status(vizier: &Vizier, assessment: &Assessment, now: Timestamp) -> VizierStatus {
    // Stored times have whole seconds; so do ours, or every comparison would see a change.
    let now = Timestamp::from_second(now.as_second()).expect("now is a valid time");
    let previous = vizier.status.clone().unwrap_or_default();
    let generation = vizier.metadata.generation;
    let conditions = merge_conditions(&previous.conditions, &assessment.conditions, generation, Time(now));
    let reason = assessment.reason.clone();
    let vizier_phase = vizier_phase(&conditions, reason.as_ref().map(|(r, _)| r.as_str()));
    let phase = reconciliation_phase(&conditions, now);
    let phase_time = match (previous.reconciliation_phase, previous.last_reconciliation_phase_time.clone()) {
        (Some(old), Some(time)) if old == phase => time,
        _ => Time(now),
    };
    VizierStatus {
        conditions,
        observed_generation: generation,
        version: assessment.version.clone().or(previous.version),
        operator_version: Some(OPERATOR_VERSION.to_owned()),
        vizier_phase: Some(vizier_phase),
        vizier_reason: reason.as_ref().map(|(r, _)| r.clone()),
        message: reason.map(|(_, m)| m),
        reconciliation_phase: Some(phase),
        last_reconciliation_phase_time: Some(phase_time),
        checksum: assessment.checksum.clone().or(previous.checksum),
    }
}

/// Condition changes worth an Event: (type, status, reason, message) of each changed condition.
pub fn transitions<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|c| {
            condition(old, &c.type_).is_none_or(|o| o.status != c.status || o.reason != c.reason)
        })
        .collect()
}

fn event_type(condition: &Condition) -> EventType {
    let bad = match condition.type_.as_str() {
        CONDITION_DEGRADED => condition.status == "True",
        CONDITION_READY => {
            condition.status == "False" && !["Deploying", "Upgrading", "Reconfiguring"].contains(&condition.reason.as_str())
        }
        _ => false,
    };
    if bad { EventType::Warning } else { EventType::Normal }
}

/// Writes the new status if it differs from the stored one, and publishes an Event for every
/// condition that changed. Returns whether anything was written.
pub async fn write(api: &Api<Vizier>, recorder: &Recorder, vizier: &Vizier, assessment: &Assessment) -> Result<bool, Error> {
    let status = next_status(vizier, assessment, Timestamp::now());
    let previous = vizier.status.clone().unwrap_or_default();
    if status == previous {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": format!("{}/{}", pixie_crds::GROUP, pixie_crds::VERSION),
        "kind": "Vizier",
        "status": status,
    });
    api.patch_status(&vizier.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)?;
    let reference = vizier.object_ref(&());
    for changed in transitions(&previous.conditions, &status.conditions) {
        let event = Event {
            type_: event_type(changed),
            reason: changed.reason.clone(),
            note: Some(format!("{} is {}: {}", changed.type_, changed.status, truncate(&changed.message, 900))),
            // One action per condition type: the recorder folds events with the same action and
            // reason into one series, and Ready and Progressing often share a reason.
            action: format!("Set{}", changed.type_),
            secondary: None,
        };
        publish(recorder, &event, &reference).await;
    }
    Ok(true)
}

/// Publishes a Normal Event on the Vizier for something the operator did that no condition shows.
pub async fn announce(recorder: &Recorder, vizier: &Vizier, reason: &str, note: &str) {
    let event = Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: reason.to_owned(),
        secondary: None,
    };
    publish(recorder, &event, &vizier.object_ref(&())).await;
}

/// An Event that cannot be written must not fail the reconcile that already did what it reports.
async fn publish(recorder: &Recorder, event: &Event, reference: &ObjectReference) {
    if let Err(error) = recorder.publish(event, reference).await {
        tracing::warn!(%error, "publishing an event");
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests;
