//! The part of CronScript and DataExport status that the broker owns, and how each run or delivery
//! changes it. Pure: the scheduler applies what these functions return with server-side apply under
//! [`FIELD_MANAGER`], which owns exactly the fields serialised here. The operator owns `Ready` and
//! `observedGeneration` under its own manager; an apply that leaves them out keeps them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use pixie_crds::common::{CONDITION_DEGRADED, find_condition};
use pixie_crds::{CronScriptStatus, DataExportStatus, Delivery, RunOutcome, ScriptRun};
use serde::Serialize;

/// The field manager of every status write the broker makes.
pub const FIELD_MANAGER: &str = "pixie-broker";

/// Degraded=True on a CronScript: the script did not compile or the query failed.
pub const REASON_RUN_FAILED: &str = "RunFailed";
/// Degraded=True on a CronScript: the query ran but a DataExport did not take the results.
pub const REASON_EXPORT_FAILED: &str = "ExportFailed";
/// Degraded=True on a CronScript: spec.schedule or spec.frequency cannot be scheduled.
pub const REASON_INVALID_SCHEDULE: &str = "InvalidSchedule";
/// Degraded=False on a CronScript.
pub const REASON_LAST_RUN_SUCCEEDED: &str = "LastRunSucceeded";
/// Degraded=True on a DataExport: the endpoint refuses or does not answer.
pub const REASON_DELIVERY_FAILING: &str = "DeliveryFailing";
/// Degraded=False on a DataExport.
pub const REASON_DELIVERY_SUCCEEDED: &str = "DeliverySucceeded";

/// Longest error text kept in status; compile errors and gRPC messages can be long.
const MAX_ERROR_CHARS: usize = 1024;

/// Why a run failed: before results existed, or while delivering them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStage {
    Run,
    Export,
}

impl FailureStage {
    pub fn reason(self) -> &'static str {
        match self {
            FailureStage::Run => REASON_RUN_FAILED,
            FailureStage::Export => REASON_EXPORT_FAILED,
        }
    }
}

/// How one run (or one tick that did not run) ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    Succeeded {
        rows: u64,
    },
    Failed {
        stage: FailureStage,
        error: String,
        rows: Option<u64>,
    },
    Skipped {
        reason: String,
    },
}

/// One run as status records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub start: Timestamp,
    pub duration_ms: Option<i64>,
    pub result: RunResult,
}

/// The CronScript status fields the broker writes.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CronRunStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ScriptRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_run_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// Only the Degraded condition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl CronRunStatus {
    /// The broker's fields out of a stored status (after a restart or a change of leader).
    pub fn from_status(status: Option<&CronScriptStatus>) -> CronRunStatus {
        let Some(status) = status else {
            return CronRunStatus::default();
        };
        CronRunStatus {
            last_run: status.last_run.clone(),
            last_successful_run_time: status.last_successful_run_time.clone(),
            next_run_time: status.next_run_time.clone(),
            consecutive_failures: status.consecutive_failures,
            conditions: find_condition(&status.conditions, CONDITION_DEGRADED)
                .cloned()
                .into_iter()
                .collect(),
        }
    }

    /// Ticks at or before this were handled: the start of the last run (of any outcome).
    pub fn last_tick_handled(&self) -> Option<Timestamp> {
        self.last_run.as_ref().map(|run| run.start_time.0)
    }

    /// Where the previous run's window ended, as far as status tells (a run's window ends where it
    /// starts, within scheduling delay): the last run that ran, skipped ones aside.
    pub fn previous_window_end(&self) -> Option<Timestamp> {
        let last_ran = self
            .last_run
            .as_ref()
            .filter(|run| run.outcome != RunOutcome::Skipped)
            .map(|run| run.start_time.0);
        last_ran.max(self.last_successful_run_time.as_ref().map(|t| t.0))
    }

    pub fn set_next_run(&mut self, next: Option<Timestamp>) {
        self.next_run_time = next.map(Time);
    }

    /// Records a run: lastRun, the failure count, the success time and the Degraded condition.
    /// Skipped ticks change only lastRun.
    pub fn record(&mut self, report: &RunReport, generation: Option<i64>, now: Timestamp) {
        let (outcome, rows, error) = match &report.result {
            RunResult::Succeeded { rows } => (RunOutcome::Succeeded, Some(*rows), None),
            RunResult::Failed { error, rows, .. } => {
                (RunOutcome::Failed, *rows, Some(error.clone()))
            }
            RunResult::Skipped { reason } => (RunOutcome::Skipped, None, Some(reason.clone())),
        };
        self.last_run = Some(ScriptRun {
            start_time: Time(report.start),
            outcome,
            rows: rows.map(saturating_i64),
            duration_ms: report.duration_ms,
            error: error.map(|e| truncate(&e, MAX_ERROR_CHARS)),
        });
        match &report.result {
            RunResult::Succeeded { .. } => {
                self.last_successful_run_time = Some(Time(report.start));
                self.consecutive_failures = Some(0);
                self.set_degraded(
                    false,
                    REASON_LAST_RUN_SUCCEEDED,
                    "the last run succeeded".into(),
                    generation,
                    now,
                );
            }
            RunResult::Failed { stage, error, .. } => {
                let failures = self.consecutive_failures.unwrap_or(0).saturating_add(1);
                self.consecutive_failures = Some(failures);
                let message = format!(
                    "{failures} run(s) failed in a row; the last: {}",
                    truncate(error, MAX_ERROR_CHARS)
                );
                self.set_degraded(true, stage.reason(), message, generation, now);
            }
            RunResult::Skipped { .. } => {}
        }
    }

    /// The schedule itself is unusable: no run until the spec changes.
    pub fn record_invalid_schedule(
        &mut self,
        error: &str,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        self.next_run_time = None;
        self.set_degraded(
            true,
            REASON_INVALID_SCHEDULE,
            error.to_owned(),
            generation,
            now,
        );
    }

    fn set_degraded(
        &mut self,
        degraded: bool,
        reason: &str,
        message: String,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        let previous = self.conditions.first();
        self.conditions = vec![condition(
            previous, degraded, reason, message, generation, now,
        )];
    }

    pub fn degraded(&self) -> Option<&Condition> {
        self.conditions.first()
    }
}

/// The DataExport status fields the broker writes.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_records: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_records: Option<i64>,
    /// Only the Degraded condition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One attempt to hand a run's results to a DataExport's endpoint, as it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    pub time: Timestamp,
    pub cron_script: String,
    pub records: u64,
    /// Why the endpoint did not take them; `None` when it did.
    pub error: Option<String>,
}

/// What the DataExport's sink says about its queue, read after each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Records dropped since this broker started (oldest first, when the queue was full).
    pub dropped: u64,
    /// Records waiting to be delivered.
    pub queued: u64,
}

impl DeliveryStatus {
    pub fn from_status(status: Option<&DataExportStatus>) -> DeliveryStatus {
        let Some(status) = status else {
            return DeliveryStatus::default();
        };
        DeliveryStatus {
            last_delivery: status.last_delivery.clone(),
            consecutive_failures: status.consecutive_failures,
            failure_count: status.failure_count,
            dropped_records: status.dropped_records,
            queued_records: status.queued_records,
            conditions: find_condition(&status.conditions, CONDITION_DEGRADED)
                .cloned()
                .into_iter()
                .collect(),
        }
    }

    /// Records a delivery attempt and sets Degraded from it.
    pub fn record(
        &mut self,
        delivery: &DeliveryReport,
        queue: QueueCounts,
        generation: Option<i64>,
    ) {
        self.last_delivery = Some(Delivery {
            time: Time(delivery.time),
            cron_script: Some(delivery.cron_script.clone()),
            succeeded: delivery.error.is_none(),
            records: Some(saturating_i64(delivery.records)),
            error: delivery
                .error
                .as_deref()
                .map(|e| truncate(e, MAX_ERROR_CHARS)),
        });
        match &delivery.error {
            None => self.consecutive_failures = Some(0),
            Some(_) => {
                self.consecutive_failures =
                    Some(self.consecutive_failures.unwrap_or(0).saturating_add(1));
                self.failure_count = Some(self.failure_count.unwrap_or(0).saturating_add(1));
            }
        }
        self.set_queue(queue, generation, delivery.time);
    }

    /// Updates the queue counts (the sink retries and drops between runs) and the condition.
    pub fn set_queue(&mut self, queue: QueueCounts, generation: Option<i64>, now: Timestamp) {
        self.dropped_records = Some(saturating_i64(queue.dropped));
        self.queued_records = Some(saturating_i64(queue.queued));
        let Some(last) = &self.last_delivery else {
            return;
        };
        let failures = self.consecutive_failures.unwrap_or(0);
        let previous = self.conditions.first();
        let (degraded, reason, message) = match &last.error {
            Some(error) => (
                true,
                REASON_DELIVERY_FAILING,
                format!(
                    "{failures} delivery attempt(s) failed in a row ({} since created); {} record(s) queued, {} dropped; the last error: {error}",
                    self.failure_count.unwrap_or(0),
                    queue.queued,
                    queue.dropped,
                ),
            ),
            None => (
                false,
                REASON_DELIVERY_SUCCEEDED,
                format!(
                    "the last delivery succeeded; {} record(s) queued, {} dropped",
                    queue.queued, queue.dropped
                ),
            ),
        };
        self.conditions = vec![condition(
            previous, degraded, reason, message, generation, now,
        )];
    }

    pub fn degraded(&self) -> Option<&Condition> {
        self.conditions.first()
    }
}

/// A condition that keeps `lastTransitionTime` unless its status flips.
fn condition(
    previous: Option<&Condition>,
    degraded: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if degraded { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: CONDITION_DEGRADED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// True when the Degraded condition flipped or changed reason: worth an Event.
pub fn degraded_transition(before: Option<&Condition>, after: Option<&Condition>) -> bool {
    match (before, after) {
        (_, None) => false,
        (None, Some(after)) => after.status == "True",
        (Some(before), Some(after)) => {
            before.status != after.status || before.reason != after.reason
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn run(start: &str, result: RunResult) -> RunReport {
        RunReport {
            start: ts(start),
            duration_ms: Some(12),
            result,
        }
    }

    #[test]
    fn a_failed_run_counts_and_degrades_and_a_success_resets() {
        let mut status = CronRunStatus::default();
        let failed = RunResult::Failed {
            stage: FailureStage::Run,
            error: "3:5: no such column".into(),
            rows: None,
        };
        status.record(
            &run("2026-01-01T00:00:10Z", failed.clone()),
            Some(2),
            ts("2026-01-01T00:00:10Z"),
        );
        status.record(
            &run("2026-01-01T00:00:20Z", failed),
            Some(2),
            ts("2026-01-01T00:00:20Z"),
        );
        assert_eq!(status.consecutive_failures, Some(2));
        let degraded = status.degraded().unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", REASON_RUN_FAILED)
        );
        assert!(
            degraded.message.contains("2 run(s) failed")
                && degraded.message.contains("3:5: no such column")
        );
        assert_eq!(
            degraded.last_transition_time,
            Time(ts("2026-01-01T00:00:10Z")),
            "kept while still True"
        );
        assert_eq!(degraded.observed_generation, Some(2));
        assert_eq!(
            status.last_run.as_ref().unwrap().outcome,
            RunOutcome::Failed
        );

        status.record(
            &run("2026-01-01T00:00:30Z", RunResult::Succeeded { rows: 7 }),
            Some(2),
            ts("2026-01-01T00:00:31Z"),
        );
        assert_eq!(status.consecutive_failures, Some(0));
        assert_eq!(
            status.last_successful_run_time,
            Some(Time(ts("2026-01-01T00:00:30Z")))
        );
        let degraded = status.degraded().unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("False", REASON_LAST_RUN_SUCCEEDED)
        );
        assert_eq!(
            degraded.last_transition_time,
            Time(ts("2026-01-01T00:00:31Z"))
        );
        let last = status.last_run.as_ref().unwrap();
        assert_eq!(
            (last.rows, last.duration_ms, last.error.as_deref()),
            (Some(7), Some(12), None)
        );
    }

    #[test]
    fn a_skipped_tick_changes_only_the_last_run() {
        let mut status = CronRunStatus::default();
        status.record(
            &run("2026-01-01T00:00:10Z", RunResult::Succeeded { rows: 1 }),
            None,
            ts("2026-01-01T00:00:10Z"),
        );
        let before = status.clone();
        status.record(
            &run(
                "2026-01-01T00:00:20Z",
                RunResult::Skipped {
                    reason: "busy".into(),
                },
            ),
            None,
            ts("2026-01-01T00:00:20Z"),
        );
        assert_eq!(
            status.last_run.as_ref().unwrap().outcome,
            RunOutcome::Skipped
        );
        assert_eq!(
            status.last_run.as_ref().unwrap().error.as_deref(),
            Some("busy")
        );
        assert_eq!(
            (status.consecutive_failures, &status.conditions),
            (before.consecutive_failures, &before.conditions)
        );
        // A skipped tick covered no window: the next run starts where the last real one did.
        assert_eq!(
            status.previous_window_end(),
            Some(ts("2026-01-01T00:00:10Z"))
        );
        assert_eq!(status.last_tick_handled(), Some(ts("2026-01-01T00:00:20Z")));
    }

    #[test]
    fn the_apply_body_holds_only_the_brokers_fields() {
        let mut status = CronRunStatus::default();
        status.set_next_run(Some(ts("2026-01-01T00:00:20Z")));
        status.record(
            &run("2026-01-01T00:00:10Z", RunResult::Succeeded { rows: 3 }),
            Some(1),
            ts("2026-01-01T00:00:10Z"),
        );
        let body = serde_json::to_value(&status).unwrap();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "conditions",
                "consecutiveFailures",
                "lastRun",
                "lastSuccessfulRunTime",
                "nextRunTime"
            ]
        );
        assert_eq!(body["conditions"].as_array().unwrap().len(), 1);
        // Suspended: nextRunTime is left out, so the apply removes it.
        status.set_next_run(None);
        assert!(
            serde_json::to_value(&status)
                .unwrap()
                .get("nextRunTime")
                .is_none()
        );
    }

    #[test]
    fn stored_status_is_read_back_without_the_operators_condition() {
        let stored: CronScriptStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Scheduled", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Degraded", "status": "True", "reason": "RunFailed", "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "lastRun": {"startTime": "2026-01-01T00:00:10Z", "outcome": "Failed", "error": "x"},
            "consecutiveFailures": 4
        }))
        .unwrap();
        let status = CronRunStatus::from_status(Some(&stored));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].type_, "Degraded");
        assert_eq!(status.consecutive_failures, Some(4));
        assert_eq!(
            status.previous_window_end(),
            Some(ts("2026-01-01T00:00:10Z"))
        );
    }

    #[test]
    fn delivery_failures_accumulate_and_show_queue_and_drops() {
        let mut status = DeliveryStatus::default();
        let failed = DeliveryReport {
            time: ts("2026-01-01T00:00:10Z"),
            cron_script: "http-counts".into(),
            records: 4,
            error: Some("connection refused".into()),
        };
        status.record(
            &failed,
            QueueCounts {
                dropped: 0,
                queued: 4,
            },
            Some(1),
        );
        status.record(
            &DeliveryReport {
                time: ts("2026-01-01T00:00:20Z"),
                ..failed.clone()
            },
            QueueCounts {
                dropped: 2,
                queued: 6,
            },
            Some(1),
        );
        assert_eq!(
            (status.consecutive_failures, status.failure_count),
            (Some(2), Some(2))
        );
        assert_eq!(
            (status.dropped_records, status.queued_records),
            (Some(2), Some(6))
        );
        let degraded = status.degraded().unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", REASON_DELIVERY_FAILING)
        );
        assert!(
            degraded.message.contains("connection refused")
                && degraded.message.contains("2 dropped"),
            "{}",
            degraded.message
        );
        assert!(!status.last_delivery.as_ref().unwrap().succeeded);

        let ok = DeliveryReport {
            time: ts("2026-01-01T00:00:30Z"),
            error: None,
            ..failed
        };
        status.record(
            &ok,
            QueueCounts {
                dropped: 2,
                queued: 0,
            },
            Some(1),
        );
        assert_eq!(
            (status.consecutive_failures, status.failure_count),
            (Some(0), Some(2))
        );
        assert_eq!(
            status.dropped_records,
            Some(2),
            "drops stay visible after recovery"
        );
        assert_eq!(status.degraded().unwrap().status, "False");
    }

    #[test]
    fn events_follow_transitions_of_degraded() {
        let mut status = CronRunStatus::default();
        let failed = RunResult::Failed {
            stage: FailureStage::Export,
            error: "refused".into(),
            rows: Some(3),
        };
        let before = status.degraded().cloned();
        status.record(
            &run("2026-01-01T00:00:10Z", failed.clone()),
            None,
            ts("2026-01-01T00:00:10Z"),
        );
        assert!(degraded_transition(before.as_ref(), status.degraded()));
        let before = status.degraded().cloned();
        status.record(
            &run("2026-01-01T00:00:20Z", failed),
            None,
            ts("2026-01-01T00:00:20Z"),
        );
        assert!(!degraded_transition(before.as_ref(), status.degraded()));
        let before = status.degraded().cloned();
        status.record(
            &run("2026-01-01T00:00:30Z", RunResult::Succeeded { rows: 1 }),
            None,
            ts("2026-01-01T00:00:30Z"),
        );
        assert!(degraded_transition(before.as_ref(), status.degraded()));
    }

    #[test]
    fn long_errors_are_cut() {
        let mut status = CronRunStatus::default();
        let error = "x".repeat(5000);
        status.record(
            &run(
                "2026-01-01T00:00:10Z",
                RunResult::Failed {
                    stage: FailureStage::Run,
                    error,
                    rows: None,
                },
            ),
            None,
            ts("2026-01-01T00:00:10Z"),
        );
        assert!(status.last_run.unwrap().error.unwrap().chars().count() <= MAX_ERROR_CHARS + 1);
    }
}
