//! `CronScript`: a PxL script that the query broker runs on a schedule, sending its results to
//! DataExports.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::LocalObjectRef;
use crate::rules;

/// A PxL script that the Vizier's query broker runs on a schedule. Each run covers the time since the
/// previous run, and its result tables go to the DataExports listed in exportRefs.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "px.dev",
    version = "v1alpha1",
    kind = "CronScript",
    namespaced,
    status = "CronScriptStatus",
    derive = "PartialEq",
    shortname = "pxcron",
    category = "pixie",
    doc = "A PxL script that the Vizier's query broker runs on a schedule, sending its results to DataExports.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        description = "Cron schedule, when the script runs on one"
    ),
    printcolumn(
        name = "Every",
        type_ = "string",
        json_path = ".spec.frequency",
        description = "Fixed interval between runs, when the script runs on one"
    ),
    printcolumn(
        name = "Suspend",
        type_ = "boolean",
        json_path = ".spec.suspend",
        description = "Whether runs are paused"
    ),
    printcolumn(
        name = "Last run",
        type_ = "date",
        json_path = ".status.lastRun.startTime",
        description = "When the last run started"
    ),
    printcolumn(
        name = "Last result",
        type_ = "string",
        json_path = ".status.lastRun.outcome",
        description = "Outcome of the last run"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::one_of_required("source", "scriptRef", "spec"),
    validation = rules::mutually_exclusive("source", "scriptRef", "spec"),
    validation = rules::one_of_required("schedule", "frequency", "spec"),
    validation = rules::mutually_exclusive("schedule", "frequency", "spec"),
)]
pub struct CronScriptSpec {
    /// The PxL source to run, written inline. Exactly one of source and scriptRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::PXL_SOURCE_MAX_LENGTH))]
    pub source: Option<String>,

    /// A PxlScript in this namespace whose source to run. Exactly one of source and scriptRef must
    /// be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_ref: Option<LocalObjectRef>,

    /// Argument values passed to the script, by argument name. Values are text and are parsed as
    /// the argument's declared type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub args: BTreeMap<String, String>,

    /// When to run, as a five-field cron expression in UTC (minute hour day-of-month month
    /// day-of-week), such as "*/5 * * * *", or a macro such as @hourly. Exactly one of schedule and
    /// frequency must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::SCHEDULE_MAX_LENGTH))]
    #[x_kube(validation = rules::cron_schedule())]
    pub schedule: Option<String>,

    /// Fixed interval between runs, as a duration of at least 1s such as 10s, 5m or 1h30m. Exactly
    /// one of schedule and frequency must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = rules::DURATION_MAX_LENGTH))]
    #[x_kube(validation = rules::duration_at_least("1s"))]
    pub frequency: Option<String>,

    /// The Vizier in this namespace whose query broker runs the script.
    pub vizier_ref: LocalObjectRef,

    /// DataExports in this namespace that receive each run's results. With none, results are only
    /// summarised in status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub export_refs: Vec<LocalObjectRef>,

    /// When true, no new runs start; a run in progress finishes. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// What to do when a run is due while the previous one is still going: Allow (run both),
    /// Forbid (skip the new run, the default) or Replace (cancel the old run and start the new one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// A run that could not start within this many seconds of its scheduled time (the broker was
    /// down, for example) is skipped and counted as missed. Without it, a late run starts as soon
    /// as it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub starting_deadline_seconds: Option<i64>,
}

impl CronScriptSpec {
    /// The frequency as a duration, when the script runs at a fixed interval and the value parses.
    pub fn frequency_duration(&self) -> Option<std::time::Duration> {
        let frequency: kube::core::Duration = self.frequency.as_deref()?.parse().ok()?;
        (!frequency.is_negative()).then(|| frequency.into())
    }
}

/// What to do when a run is due while the previous one is still going.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new run alongside the old one.
    Allow,
    /// Skip the new run.
    #[default]
    Forbid,
    /// Cancel the old run and start the new one.
    Replace,
}

/// Observed state of a CronScript, written by the query broker and the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CronScriptStatus {
    /// Ready: the script compiles, its Vizier and DataExports exist, and it is scheduled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation of the spec that is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ScriptRun>,

    /// The most recent run that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_run_time: Option<Time>,

    /// When the next run is due (absent while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Time>,

    /// Runs that failed in a row since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
}

/// One run of a CronScript.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScriptRun {
    /// When the run started.
    pub start_time: Time,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Rows the script produced, over all output tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// How long the run took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Why the run failed or was skipped; for compile errors, the compiler's line:col: message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a run of a CronScript ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunOutcome {
    /// The script ran and every DataExport accepted its results.
    Succeeded,
    /// The script failed to compile or run, or a DataExport rejected its results.
    Failed,
    /// The run did not start: the previous run was still going (Forbid) or the starting deadline passed.
    Skipped,
}
