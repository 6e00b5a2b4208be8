//! What `kubectl pixie deploy` prints while a Vizier rolls out, like `kubectl rollout status`: a
//! line for every condition and phase change the operator reports, then a verdict. Fed each version
//! of the Vizier as it is watched; pure, so that the wording and the stopping rules are tested
//! without a cluster.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::get::{at, condition, str_at};

/// Where a rollout stands after the latest version of the Vizier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Waiting,
    /// Ready; `warning` holds the Degraded condition when the Vizier works but misses data.
    Ready {
        warning: Option<String>,
    },
    /// The operator gave up on this spec (reconciliationPhase Failed): waiting longer cannot help.
    Failed(String),
}

/// Follows one Vizier's status.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// `vizier.px.dev/pixie`, the prefix of each line.
    object: String,
    /// type → (status, reason, message) last printed.
    seen: BTreeMap<String, (String, String, String)>,
    phase: Option<String>,
    said_waiting_for: Option<i64>,
}

fn field<'a>(condition: &'a Value, key: &str) -> &'a str {
    condition
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `Reason: message`, or whichever of the two there is.
fn reason_and_message(condition: &Value) -> String {
    match (field(condition, "reason"), field(condition, "message")) {
        ("", message) => message.to_owned(),
        (reason, "") => reason.to_owned(),
        (reason, message) => format!("{reason}: {message}"),
    }
}

/// Whether the status describes the Vizier's current spec.
fn status_is_current(vizier: &Value) -> bool {
    let generation = at(vizier, &["metadata", "generation"]).and_then(Value::as_i64);
    let observed = at(vizier, &["status", "observedGeneration"]).and_then(Value::as_i64);
    observed.is_some() && observed == generation
}

fn is(vizier: &Value, type_: &str, status: &str) -> bool {
    condition(vizier, type_).is_some_and(|c| field(c, "status") == status)
}

impl Rollout {
    pub fn new(object: impl Into<String>) -> Self {
        Rollout {
            object: object.into(),
            ..Default::default()
        }
    }

    /// The lines to print for this version of the Vizier, and the verdict.
    pub fn observe(&mut self, vizier: &Value) -> (Vec<String>, Verdict) {
        let mut lines = Vec::new();
        if !status_is_current(vizier) {
            let generation = at(vizier, &["metadata", "generation"]).and_then(Value::as_i64);
            if self.said_waiting_for != Some(generation.unwrap_or_default()) {
                self.said_waiting_for = Some(generation.unwrap_or_default());
                lines.push(format!(
                    "Waiting for the operator to pick up {} (generation {})...",
                    self.object,
                    generation.map_or("?".to_owned(), |g| g.to_string())
                ));
            }
            return (lines, Verdict::Waiting);
        }

        let conditions = at(vizier, &["status", "conditions"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Changed conditions that say the same thing (Ready=False and Progressing=True while
        // rolling out) share one line: `Ready=False, Progressing=True Deploying: ...`.
        let mut changed: Vec<(Vec<String>, String)> = Vec::new();
        for c in &conditions {
            let type_ = field(c, "type").to_owned();
            let now = (
                field(c, "status").to_owned(),
                field(c, "reason").to_owned(),
                field(c, "message").to_owned(),
            );
            if self.seen.get(&type_) == Some(&now) {
                continue;
            }
            let said = reason_and_message(c);
            let state = format!("{type_}={}", now.0);
            match changed.iter_mut().find(|(_, s)| *s == said) {
                Some((states, _)) => states.push(state),
                None => changed.push((vec![state], said)),
            }
            self.seen.insert(type_, now);
        }
        for (states, said) in changed {
            lines.push(format!("{}: {} {said}", self.object, states.join(", ")));
        }
        let phase = str_at(vizier, &["status", "vizierPhase"]).map(str::to_owned);
        if phase.is_some() && phase != self.phase {
            lines.push(format!(
                "{}: phase {}",
                self.object,
                phase.as_deref().unwrap_or_default()
            ));
            self.phase = phase;
        }

        if str_at(vizier, &["status", "reconciliationPhase"]) == Some("Failed") {
            let why = condition(vizier, "Ready")
                .map(reason_and_message)
                .unwrap_or_else(|| "the operator marked the deployment Failed".to_owned());
            return (
                lines,
                Verdict::Failed(format!("{} failed: {why}", self.object)),
            );
        }
        if is(vizier, "Ready", "True") && !is(vizier, "Progressing", "True") {
            let warning = condition(vizier, "Degraded")
                .filter(|c| field(c, "status") == "True")
                .map(|c| format!("{} is Degraded: {}", self.object, reason_and_message(c)));
            return (lines, Verdict::Ready { warning });
        }
        (lines, Verdict::Waiting)
    }

    /// Why the wait ended without Ready: the last word of the operator, or that it never spoke.
    pub fn timeout_message(&self, vizier: Option<&Value>, waited: &str) -> String {
        let prefix = format!(
            "timed out after {waited} waiting for {} to be Ready",
            self.object
        );
        let Some(vizier) = vizier else {
            return format!("{prefix}: it does not exist");
        };
        if !status_is_current(vizier) {
            return format!(
                "{prefix}: the operator has not reported on its current spec; is the operator running? \
                 (kubectl get deployment -A -l app.kubernetes.io/name=pixie-operator)"
            );
        }
        let mut why: Vec<String> = ["Ready", "Degraded"]
            .iter()
            .filter_map(|t| {
                let c = condition(vizier, t)?;
                let bad = (*t == "Ready") != (field(c, "status") == "True");
                bad.then(|| format!("{t}={} {}", field(c, "status"), reason_and_message(c)))
            })
            .collect();
        if why.is_empty() {
            why.push("no Ready condition yet".to_owned());
        }
        format!("{prefix}: {}", why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vizier(generation: i64, observed: Option<i64>, status: Value) -> Value {
        let mut status = status;
        if let Some(observed) = observed {
            status["observedGeneration"] = json!(observed);
        }
        json!({"metadata": {"name": "pixie", "generation": generation}, "status": status})
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message})
    }

    fn rolling() -> Value {
        json!({"vizierPhase": "Updating", "conditions": [
            cond("Ready", "False", "Deploying", "rolling out 0.1.0: waiting for kelvin"),
            cond("Progressing", "True", "Deploying", "rolling out 0.1.0: waiting for kelvin"),
        ]})
    }

    #[test]
    fn a_rollout_prints_each_change_once_and_ends_when_ready() {
        let mut rollout = Rollout::new("vizier.px.dev/pixie");
        let (lines, verdict) = rollout.observe(&vizier(1, None, json!({})));
        assert_eq!(
            lines,
            ["Waiting for the operator to pick up vizier.px.dev/pixie (generation 1)..."]
        );
        assert_eq!(verdict, Verdict::Waiting);
        // The same stale state says nothing new.
        assert!(rollout.observe(&vizier(1, None, json!({}))).0.is_empty());

        let (lines, verdict) = rollout.observe(&vizier(1, Some(1), rolling()));
        assert_eq!(
            lines,
            [
                "vizier.px.dev/pixie: Ready=False, Progressing=True Deploying: rolling out 0.1.0: waiting for kelvin",
                "vizier.px.dev/pixie: phase Updating",
            ]
        );
        assert_eq!(verdict, Verdict::Waiting);
        assert!(rollout.observe(&vizier(1, Some(1), rolling())).0.is_empty());

        let ready = json!({"vizierPhase": "Healthy", "conditions": [
            cond("Ready", "True", "Available", "Vizier 0.1.0 is running"),
            cond("Progressing", "False", "RolloutComplete", "0.1.0 is rolled out"),
            cond("Degraded", "False", "AsExpected", "every health check passes"),
        ]});
        let (lines, verdict) = rollout.observe(&vizier(1, Some(1), ready));
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[3], "vizier.px.dev/pixie: phase Healthy");
        assert_eq!(verdict, Verdict::Ready { warning: None });
    }

    #[test]
    fn a_status_of_an_older_generation_is_not_believed() {
        let mut rollout = Rollout::new("vizier.px.dev/pixie");
        let ready_for_old_spec = json!({"conditions": [cond("Ready", "True", "Available", "")]});
        let (lines, verdict) = rollout.observe(&vizier(2, Some(1), ready_for_old_spec));
        assert_eq!(verdict, Verdict::Waiting);
        assert!(lines[0].contains("generation 2"), "{lines:?}");
    }

    #[test]
    fn ready_but_degraded_ends_with_a_warning() {
        let mut rollout = Rollout::new("vizier.px.dev/pixie");
        let status = json!({"conditions": [
            cond("Ready", "True", "Available", ""),
            cond("Degraded", "True", "KernelVersionsIncompatible", "2 of 3 nodes run kernels older than 4.14"),
        ]});
        let (_, verdict) = rollout.observe(&vizier(1, Some(1), status));
        assert_eq!(
            verdict,
            Verdict::Ready {
                warning: Some(
                    "vizier.px.dev/pixie is Degraded: KernelVersionsIncompatible: 2 of 3 nodes run kernels older than 4.14".into()
                )
            }
        );
    }

    #[test]
    fn a_failed_deployment_stops_the_wait_with_the_operators_message() {
        let mut rollout = Rollout::new("vizier.px.dev/pixie");
        let status = json!({"reconciliationPhase": "Failed", "conditions": [
            cond("Ready", "False", "InvalidSpec", "spec.patches[kelvin]: not a JSON or YAML object"),
        ]});
        let (_, verdict) = rollout.observe(&vizier(3, Some(3), status));
        assert_eq!(
            verdict,
            Verdict::Failed(
                "vizier.px.dev/pixie failed: InvalidSpec: spec.patches[kelvin]: not a JSON or YAML object".into()
            )
        );
    }

    #[test]
    fn a_timeout_says_what_the_vizier_was_waiting_for() {
        let rollout = Rollout::new("vizier.px.dev/pixie");
        let stuck = vizier(
            1,
            Some(1),
            json!({"conditions": [
                cond("Ready", "False", "ComponentsUnavailable", "not available: kelvin"),
                cond("Degraded", "True", "PEMsHighFailureRate", "2 of 3 PEMs crash"),
            ]}),
        );
        assert_eq!(
            rollout.timeout_message(Some(&stuck), "10m"),
            "timed out after 10m waiting for vizier.px.dev/pixie to be Ready: \
             Ready=False ComponentsUnavailable: not available: kelvin; \
             Degraded=True PEMsHighFailureRate: 2 of 3 PEMs crash"
        );
        let unseen = vizier(1, None, json!({}));
        assert!(
            rollout
                .timeout_message(Some(&unseen), "1s")
                .contains("is the operator running?")
        );
        assert!(
            rollout
                .timeout_message(None, "1s")
                .ends_with("it does not exist")
        );
    }
}
