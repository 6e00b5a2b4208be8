//! The scheduling loop of one leadership term: watches the namespace's CronScripts and
//! DataExports, starts each script's runs at its ticks (through [`Runner`]), and writes the
//! broker's part of their status. One task owns all per-script state, so status transitions are
//! sequential; runs and deliveries report back to it over channels.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use pixie_crds::{CronScript, CronScriptSpec, DataExport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runner::{RunJob, Runner};
use crate::schedule::{self, CatchUp, Schedule, TickAction};
use crate::status::{self, CronRunStatus, DeliveryReport, DeliveryStatus, RunReport, RunResult};

/// How often unwritten status is retried and sink queue counts are refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// Why a term ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TermEnd {
    Shutdown,
    LostLease,
}

struct Running {
    id: u64,
    start: Timestamp,
    task: JoinHandle<()>,
}

struct Script {
    uid: String,
    generation: Option<i64>,
    spec: CronScriptSpec,
    reference: ObjectReference,
    /// None while the schedule is invalid.
    schedule: Option<Schedule>,
    next_tick: Option<Timestamp>,
    /// Where the last started run's window ended.
    previous_end: Option<Timestamp>,
    running: Vec<Running>,
    status: CronRunStatus,
    /// What the API server holds, as far as this broker knows.
    written: CronRunStatus,
}

struct Export {
    uid: String,
    generation: Option<i64>,
    reference: ObjectReference,
    status: DeliveryStatus,
    written: DeliveryStatus,
}

struct Finished {
    script: String,
    uid: String,
    id: u64,
    report: RunReport,
}

pub struct Scheduler {
    client: Client,
    namespace: String,
    vizier: String,
    recorder: Recorder,
    runner: Arc<Runner>,
    scripts: HashMap<String, Script>,
    exports: HashMap<String, Export>,
    next_run_id: u64,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
}

impl Scheduler {
    pub fn new(
        client: Client,
        namespace: String,
        vizier: String,
        recorder: Recorder,
        runner: Arc<Runner>,
    ) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Scheduler {
            client,
            namespace,
            vizier,
            recorder,
            runner,
            scripts: HashMap::new(),
            exports: HashMap::new(),
            next_run_id: 0,
            finished_tx,
            finished_rx,
        }
    }

    /// Schedules until `shutdown` or `lost` resolves; runs still going are cancelled then (a new
    /// leader re-runs their ticks under the missed-run rule).
    pub async fn run(
        mut self,
        mut deliveries: mpsc::UnboundedReceiver<(String, DeliveryReport)>,
        lost: impl Future<Output = ()>,
        shutdown: impl Future<Output = ()>,
    ) -> TermEnd {
        let (cron_store, cron_writer) = reflector::store::<CronScript>();
        let (export_store, export_writer) = reflector::store::<DataExport>();
        let crons = watcher(
            Api::<CronScript>::namespaced(self.client.clone(), &self.namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(cron_writer)
        .touched_objects()
        .boxed();
        let exports = watcher(
            Api::<DataExport>::namespaced(self.client.clone(), &self.namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(export_writer)
        .touched_objects()
        .boxed();
        let mut changes =
            futures::stream::select(crons.map(|r| r.map(|_| ())), exports.map(|r| r.map(|_| ())));
        tokio::pin!(lost, shutdown);

        // Decisions after a takeover rest on status as listed now, not on an older cache.
        let ready = async {
            let _ = tokio::join!(
                cron_store.wait_until_ready(),
                export_store.wait_until_ready()
            );
        };
        tokio::pin!(ready);
        loop {
            tokio::select! {
                _ = &mut ready => break,
                change = changes.next() => if let Some(Err(e)) = change {
                    tracing::warn!(error = %e, "watching CronScripts and DataExports");
                },
                _ = &mut lost => return self.stop(TermEnd::LostLease),
                _ = &mut shutdown => return self.stop(TermEnd::Shutdown),
            }
        }
        tracing::info!(namespace = %self.namespace, vizier = %self.vizier, "scheduling CronScripts");
        self.sync(&cron_store, &export_store).await;

        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                _ = sleep_until(wake) => self.ticks().await,
                change = changes.next() => {
                    match change {
                        Some(Err(e)) => tracing::warn!(error = %e, "watching CronScripts and DataExports"),
                        Some(Ok(())) => self.sync(&cron_store, &export_store).await,
                        None => return self.stop(TermEnd::Shutdown),
                    }
                }
                Some(finished) = self.finished_rx.recv() => self.finished(finished).await,
                Some((export, report)) = deliveries.recv() => self.delivered(&export, &report, &export_store).await,
                _ = housekeeping.tick() => self.housekeeping(&export_store).await,
                _ = &mut lost => return self.stop(TermEnd::LostLease),
                _ = &mut shutdown => return self.stop(TermEnd::Shutdown),
            }
        }
    }

    fn stop(self, end: TermEnd) -> TermEnd {
        tracing::info!(?end, "stopped scheduling");
        end
    }

    fn next_wake(&self) -> Option<Timestamp> {
        self.scripts.values().filter_map(|s| s.next_tick).min()
    }

    /// Brings the scripts in hand in line with the watched objects.
    async fn sync(&mut self, crons: &Store<CronScript>, exports: &Store<DataExport>) {
        let now = Timestamp::now();
        let mine: HashMap<String, Arc<CronScript>> = crons
            .state()
            .into_iter()
            .filter(|c| {
                c.spec.vizier_ref.name == self.vizier && c.meta().deletion_timestamp.is_none()
            })
            .map(|c| (c.name_any(), c))
            .collect();
        let gone: Vec<String> = self
            .scripts
            .iter()
            .filter(|(name, s)| {
                mine.get(*name)
                    .is_none_or(|c| c.uid().as_deref() != Some(s.uid.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(script) = self.scripts.remove(&name) {
                tracing::info!(cronscript = %name, "no longer scheduled here");
                script.running.iter().for_each(|r| r.task.abort());
            }
        }
        for (name, object) in mine {
            let changed = match self.scripts.get(&name) {
                None => true,
                Some(script) => script.generation != object.meta().generation,
            };
            if changed {
                self.adopt(&name, &object, now).await;
            }
        }
        // Sinks of deleted DataExports stop retrying.
        let names: Vec<String> = exports.state().iter().map(|e| e.name_any()).collect();
        self.runner
            .sinks
            .retain(|name| names.iter().any(|n| n == name));
        self.exports.retain(|name, _| names.contains(name));
    }

    /// Takes a new or changed CronScript: its schedule, and what to do about ticks missed while
    /// nobody (or an older spec) scheduled it.
    async fn adopt(&mut self, name: &str, object: &CronScript, now: Timestamp) {
        let existing = self.scripts.remove(name);
        let (status, written, running, previous_end) = match existing {
            Some(s) => (s.status, s.written, s.running, s.previous_end),
            None => {
                let stored = CronRunStatus::from_status(object.status.as_ref());
                let previous_end = stored.previous_window_end();
                (stored.clone(), stored, Vec::new(), previous_end)
            }
        };
        let mut script = Script {
            uid: object.uid().unwrap_or_default(),
            generation: object.meta().generation,
            spec: object.spec.clone(),
            reference: object.object_ref(&()),
            schedule: None,
            next_tick: None,
            previous_end,
            running,
            status,
            written,
        };
        match Schedule::from_spec(&object.spec) {
            Err(error) => {
                tracing::warn!(cronscript = name, %error, "cannot schedule");
                script
                    .status
                    .record_invalid_schedule(&error.to_string(), script.generation, now);
            }
            Ok(schedule) => {
                script.schedule = Some(schedule);
                if object.spec.suspend != Some(true) {
                    let created = object
                        .meta()
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(now);
                    // Ticks up to the last run started here (it may still be going) or recorded
                    // in status were handled.
                    let handled_until = [script.status.last_tick_handled(), script.previous_end]
                        .into_iter()
                        .flatten()
                        .fold(created, Timestamp::max);
                    let deadline = schedule::starting_deadline(&object.spec);
                    let schedule = script.schedule.as_ref().expect("set above");
                    let catch_up = schedule::catch_up(schedule, handled_until, now, deadline);
                    script.next_tick = schedule.next_after(now);
                    self.scripts.insert(name.to_owned(), script);
                    self.catch_up(name, catch_up, now).await;
                    let script = self.scripts.get_mut(name).expect("inserted above");
                    script.status.set_next_run(script.next_tick);
                    self.write_script(name).await;
                    return;
                }
            }
        }
        script.status.set_next_run(None);
        self.scripts.insert(name.to_owned(), script);
        self.write_script(name).await;
    }

    async fn catch_up(&mut self, name: &str, catch_up: CatchUp, now: Timestamp) {
        match catch_up {
            CatchUp::Nothing => {}
            CatchUp::Run { tick, older } => {
                if older > 0 {
                    let note = format!(
                        "{older} earlier scheduled run(s) were missed while no broker ran this script; running only the latest, due at {tick}"
                    );
                    self.event(name, EventType::Warning, "MissedRuns", &note)
                        .await;
                }
                self.tick(name, tick, now).await;
            }
            CatchUp::Skip {
                tick,
                missed,
                late_by,
            } => {
                let reason = format!(
                    "{missed} scheduled run(s) were missed while no broker ran this script; the latest, due at {tick}, is {} late, past startingDeadlineSeconds",
                    round_secs(late_by)
                );
                self.skip(name, now, reason).await;
            }
        }
    }

    /// Every script whose tick has come.
    async fn ticks(&mut self) {
        let now = Timestamp::now();
        let due: Vec<(String, Timestamp)> = self
            .scripts
            .iter()
            .filter_map(|(name, s)| s.next_tick.filter(|t| *t <= now).map(|t| (name.clone(), t)))
            .collect();
        for (name, tick) in due {
            self.tick(&name, tick, now).await;
            if let Some(script) = self.scripts.get_mut(&name) {
                // From now, not from the tick: a loop that fell behind does not replay ticks.
                script.next_tick = script
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(now.max(tick)));
                script.status.set_next_run(script.next_tick);
            }
            self.write_script(&name).await;
        }
    }

    async fn tick(&mut self, name: &str, tick: Timestamp, now: Timestamp) {
        let Some(script) = self.scripts.get_mut(name) else {
            return;
        };
        if schedule::is_past_deadline(tick, now, schedule::starting_deadline(&script.spec)) {
            let reason = format!(
                "the run due at {tick} could not start within startingDeadlineSeconds ({} late)",
                round_secs(now.duration_since(tick))
            );
            self.skip(name, now, reason).await;
            return;
        }
        script.running.retain(|r| !r.task.is_finished());
        let oldest = script.running.iter().map(|r| r.start).min();
        match schedule::on_tick(script.spec.concurrency_policy, oldest) {
            TickAction::Start => self.start(name, tick, now),
            TickAction::Replace => {
                let replaced = script.running.len();
                script.running.drain(..).for_each(|r| r.task.abort());
                let note = format!(
                    "cancelled {replaced} run(s) still going to start the run due at {tick} (concurrencyPolicy Replace)"
                );
                self.event(name, EventType::Normal, "RunReplaced", &note)
                    .await;
                self.start(name, tick, now);
            }
            TickAction::Skip(reason) => self.skip(name, now, reason).await,
        }
    }

    fn start(&mut self, name: &str, tick: Timestamp, now: Timestamp) {
        let Some(script) = self.scripts.get_mut(name) else {
            return;
        };
        let Some(schedule) = &script.schedule else {
            return;
        };
        let window = schedule::window(schedule, tick, script.previous_end);
        script.previous_end = Some(window.end);
        let job = RunJob {
            script: name.to_owned(),
            spec: script.spec.clone(),
            window,
        };
        let id = self.next_run_id;
        self.next_run_id += 1;
        let (runner, finished, uid) = (
            self.runner.clone(),
            self.finished_tx.clone(),
            script.uid.clone(),
        );
        tracing::info!(cronscript = name, %tick, window_start = %window.start, "starting a run");
        let settle = self.runner.settle;
        let task = tokio::spawn(async move {
            // Rows reach the tables a moment after they happen; querying at once would miss the
            // window's last rows for good, as the next window starts where this one ends.
            let ready = window
                .end
                .checked_add(SignedDuration::try_from(settle).unwrap_or_default())
                .unwrap_or(window.end);
            sleep_until(Some(ready)).await;
            let started = Instant::now();
            let result = runner.run(&job).await;
            let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let report = RunReport {
                start: now,
                duration_ms: Some(duration_ms),
                result,
            };
            let _ = finished.send(Finished {
                script: job.script,
                uid,
                id,
                report,
            });
        });
        script.running.push(Running {
            id,
            start: now,
            task,
        });
    }

    async fn skip(&mut self, name: &str, now: Timestamp, reason: String) {
        let Some(script) = self.scripts.get_mut(name) else {
            return;
        };
        tracing::warn!(cronscript = name, %reason, "skipped a run");
        let report = RunReport {
            start: now,
            duration_ms: None,
            result: RunResult::Skipped {
                reason: reason.clone(),
            },
        };
        script.status.record(&report, script.generation, now);
        self.event(name, EventType::Warning, "RunSkipped", &reason)
            .await;
    }

    async fn finished(&mut self, finished: Finished) {
        let Some(script) = self.scripts.get_mut(&finished.script) else {
            return;
        };
        if script.uid != finished.uid {
            return;
        }
        script.running.retain(|r| r.id != finished.id);
        let before = script.status.degraded().cloned();
        script
            .status
            .record(&finished.report, script.generation, Timestamp::now());
        let recovered = status::degraded_transition(before.as_ref(), script.status.degraded())
            && script
                .status
                .degraded()
                .is_some_and(|c| c.status == "False");
        match &finished.report.result {
            RunResult::Succeeded { rows } => {
                tracing::info!(cronscript = %finished.script, rows, "run succeeded")
            }
            RunResult::Failed { stage, error, .. } => {
                tracing::warn!(cronscript = %finished.script, %error, "run failed");
                self.event(&finished.script, EventType::Warning, stage.reason(), error)
                    .await;
            }
            RunResult::Skipped { .. } => {}
        }
        if recovered {
            self.event(
                &finished.script,
                EventType::Normal,
                status::REASON_LAST_RUN_SUCCEEDED,
                "runs succeed again",
            )
            .await;
        }
        self.write_script(&finished.script).await;
    }

    async fn delivered(&mut self, name: &str, report: &DeliveryReport, store: &Store<DataExport>) {
        let counts = self.runner.sinks.counts_of(name);
        let Some(export) = self.export(name, store) else {
            return;
        };
        let before = export.status.degraded().cloned();
        export.status.record(report, counts, export.generation);
        let after = export.status.degraded().cloned();
        if status::degraded_transition(before.as_ref(), after.as_ref()) {
            let after = after.expect("a transition has an after");
            let (type_, note) = match after.status.as_str() {
                "True" => (EventType::Warning, after.message.clone()),
                _ => (EventType::Normal, after.message.clone()),
            };
            let event = Event {
                type_,
                reason: after.reason.clone(),
                note: Some(note),
                action: "Deliver".into(),
                secondary: None,
            };
            let reference = export.reference.clone();
            self.publish(&event, &reference).await;
        }
        self.write_export(name).await;
    }

    /// The DataExport's state, taken from the watched object on first use.
    fn export(&mut self, name: &str, store: &Store<DataExport>) -> Option<&mut Export> {
        let object = store.state().into_iter().find(|e| e.name_any() == name);
        let Some(object) = object else {
            self.exports.remove(name);
            return None;
        };
        let uid = object.uid().unwrap_or_default();
        if self.exports.get(name).is_none_or(|e| e.uid != uid) {
            let stored = DeliveryStatus::from_status(object.status.as_ref());
            self.exports.insert(
                name.to_owned(),
                Export {
                    uid,
                    generation: object.meta().generation,
                    reference: object.object_ref(&()),
                    status: stored.clone(),
                    written: stored,
                },
            );
        }
        let export = self.exports.get_mut(name).expect("present");
        export.generation = object.meta().generation;
        Some(export)
    }

    /// Retries status writes that failed, and shows queue changes (retries draining, drops) that
    /// happen between runs.
    async fn housekeeping(&mut self, store: &Store<DataExport>) {
        let now = Timestamp::now();
        for (name, counts) in self.runner.sinks.counts() {
            let Some(export) = self.export(&name, store) else {
                continue;
            };
            let shown = (export.status.dropped_records, export.status.queued_records);
            let counted = (Some(counts.dropped as i64), Some(counts.queued as i64));
            if shown != counted && export.status.last_delivery.is_some() {
                export.status.set_queue(counts, export.generation, now);
            }
        }
        let unwritten: Vec<String> = self
            .exports
            .iter()
            .filter(|(_, e)| e.status != e.written)
            .map(|(n, _)| n.clone())
            .collect();
        for name in unwritten {
            self.write_export(&name).await;
        }
        let unwritten: Vec<String> = self
            .scripts
            .iter()
            .filter(|(_, s)| s.status != s.written)
            .map(|(n, _)| n.clone())
            .collect();
        for name in unwritten {
            self.write_script(&name).await;
        }
    }

    async fn write_script(&mut self, name: &str) {
        if let Some(script) = self.scripts.get_mut(name) {
            let api = Api::<CronScript>::namespaced(self.client.clone(), &self.namespace);
            apply_status(&api, name, &script.status, &mut script.written).await;
        }
    }

    async fn write_export(&mut self, name: &str) {
        if let Some(export) = self.exports.get_mut(name) {
            let api = Api::<DataExport>::namespaced(self.client.clone(), &self.namespace);
            apply_status(&api, name, &export.status, &mut export.written).await;
        }
    }

    async fn event(&self, script: &str, type_: EventType, reason: &str, note: &str) {
        let Some(script) = self.scripts.get(script) else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: "Run".into(),
            secondary: None,
        };
        self.publish(&event, &script.reference).await;
    }

    async fn publish(&self, event: &Event, reference: &ObjectReference) {
        // An Event that cannot be written must not stop scheduling.
        if let Err(error) = self.recorder.publish(event, reference).await {
            tracing::warn!(%error, reason = %event.reason, "publishing an event");
        }
    }
}

impl Drop for Scheduler {
    /// Runs end with the term however it ends (even when the broker's future is dropped): a new
    /// leader may already be running the same scripts.
    fn drop(&mut self) {
        for script in self.scripts.values() {
            script.running.iter().for_each(|r| r.task.abort());
        }
    }
}

async fn sleep_until(wake: Option<Timestamp>) {
    match wake {
        Some(at) => {
            let wait = Timestamp::now().duration_until(at);
            if wait.is_positive() {
                tokio::time::sleep(wait.unsigned_abs()).await;
            }
        }
        None => std::future::pending().await,
    }
}

fn round_secs(d: SignedDuration) -> String {
    format!("{}s", d.as_secs())
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

/// Applies our part of an object's status unless it is what we last wrote; `written` follows a
/// successful write, so a failed one is retried on the next pass.
async fn apply_status<K, S>(api: &Api<K>, name: &str, current: &S, written: &mut S)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + Clone + PartialEq,
{
    if current == written {
        return;
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": current,
    });
    let params = PatchParams::apply(status::FIELD_MANAGER).force();
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(_) => *written = current.clone(),
        Err(error) => {
            tracing::warn!(kind = %K::kind(&()), name, %error, "writing status; retrying shortly")
        }
    }
}
