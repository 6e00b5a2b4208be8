//! One run of one CronScript: resolve the source, learn its `px.export` mappings by compiling it
//! locally, run it through the Vizier's query API over the run's window, and hand each DataExport
//! the OTLP data its mappings make of the results.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use pixie_crds::{CronScriptSpec, DataExport, PxlScript};
use pixie_engine::proto::{ExecuteScriptRequest, Language};
use pixie_engine::{ClientEvent, VizierClient};
use pixie_export::{DeliveryOutcome, OtlpBatch, map_table};
use pixie_pxl::{CompileOptions, ExportPlan};
use tokio::sync::mpsc;

use crate::delivery::{self, Sinks};
use crate::mapping;
use crate::schedule::Window;
use crate::status::{DeliveryReport, FailureStage, RunResult};

/// Rows kept per output table. A run whose output is longer fails instead of exporting a part
/// that would look like the whole (a sum over a cut table is silently wrong).
pub const MAX_ROWS_PER_OUTPUT: u64 = 100_000;

/// What every run shares.
pub struct Runner {
    pub client: kube::Client,
    pub namespace: String,
    /// The Vizier's query API, `HOST:PORT`.
    pub query_addr: String,
    /// Mutual TLS to the query API; plaintext when None.
    pub query_tls: Option<pixie_engine::ClientTls>,
    pub sinks: Arc<Sinks>,
    /// Records a DataExport's sink may hold while its endpoint is down.
    pub max_queued_records: u64,
    /// How long a run waits for its deliveries before reporting them as still retrying.
    pub delivery_wait: Duration,
    /// How long after its window ends a run queries, so that rows still on their way to the
    /// tables are in it.
    pub settle: Duration,
    /// Where delivery outcomes go (the scheduler writes DataExport status from them).
    pub deliveries: mpsc::UnboundedSender<(String, DeliveryReport)>,
}

/// One run to make.
#[derive(Debug, Clone)]
pub struct RunJob {
    pub script: String,
    pub spec: CronScriptSpec,
    pub window: Window,
}

#[derive(Debug)]
struct Failure {
    stage: FailureStage,
    error: String,
    rows: Option<u64>,
}

impl Failure {
    fn run(error: impl Into<String>) -> Self {
        Failure {
            stage: FailureStage::Run,
            error: error.into(),
            rows: None,
        }
    }
}

/// A query's output tables, in display order.
#[derive(Debug, Default)]
pub struct QueryOutput {
    pub tables: Vec<(String, Vec<RecordBatch>)>,
    pub rows: u64,
}

impl Runner {
    /// Runs `job` to the end and says how it went; DataExport deliveries are reported on
    /// [`Runner::deliveries`] as they settle.
    pub async fn run(&self, job: &RunJob) -> RunResult {
        match self.try_run(job).await {
            Ok(rows) => RunResult::Succeeded { rows },
            Err(Failure { stage, error, rows }) => RunResult::Failed { stage, error, rows },
        }
    }

    async fn try_run(&self, job: &RunJob) -> Result<u64, Failure> {
        let source = self.source(&job.spec).await?;
        let options = CompileOptions {
            now_ns: job.window.end_ns(),
            args: job.spec.args.clone(),
            window: Some((job.window.start_ns(), job.window.end_ns())),
            ..Default::default()
        };
        // The script's own px.export mappings; a compile error stops the run here, with its
        // line:col (the Vizier would say the same).
        let summary =
            pixie_pxl::check(&source, &options).map_err(|e| Failure::run(e.to_string()))?;
        let exports = self.exports(&job.spec).await?;
        let output = self.query(job, &source).await?;
        let outputs: Vec<String> = output.tables.iter().map(|(name, _)| name.clone()).collect();

        let mut failures = Vec::new();
        let mut pending = Vec::new();
        for (name, export) in &exports {
            match self
                .deliver(job, name, export, &summary.exports, &output, &outputs)
                .await
            {
                Ok(Some(receipt)) => pending.push(receipt),
                Ok(None) => {}
                Err(error) => failures.push(format!("DataExport {name:?}: {error}")),
            }
        }
        // Wait for every delivery together, so that several slow endpoints do not add up.
        let waited =
            futures::future::join_all(pending.into_iter().map(|(name, mut receipt)| async move {
                let outcome = receipt.wait(self.delivery_wait).await;
                (name, receipt, outcome)
            }))
            .await;
        for (name, receipt, outcome) in waited {
            self.report_delivery(&job.script, &name, receipt.records(), &outcome);
            if let Some(error) = outcome.error() {
                failures.push(format!("DataExport {name:?}: {error}"));
            }
            if let DeliveryOutcome::Pending { .. } = outcome {
                // The sink goes on retrying; its final outcome updates the DataExport later.
                let deliveries = self.deliveries.clone();
                let script = job.script.clone();
                // Only a late success is news: this attempt already counted as failed, and a
                // later drop shows in the DataExport's droppedRecords.
                tokio::spawn(async move {
                    let records = receipt.records();
                    let outcome = receipt.outcome().await;
                    if outcome.succeeded() {
                        let _ =
                            deliveries.send((name, delivery_report(&script, records, &outcome)));
                    }
                });
            }
        }
        if failures.is_empty() {
            Ok(output.rows)
        } else {
            Err(Failure {
                stage: FailureStage::Export,
                error: failures.join("; "),
                rows: Some(output.rows),
            })
        }
    }

    fn report_delivery(&self, script: &str, export: &str, records: u64, outcome: &DeliveryOutcome) {
        let _ = self
            .deliveries
            .send((export.to_owned(), delivery_report(script, records, outcome)));
    }

    async fn source(&self, spec: &CronScriptSpec) -> Result<String, Failure> {
        match (&spec.source, &spec.script_ref) {
            (Some(source), _) => Ok(source.clone()),
            (None, Some(reference)) => {
                let api: Api<PxlScript> = Api::namespaced(self.client.clone(), &self.namespace);
                match api.get_opt(&reference.name).await {
                    Ok(Some(script)) => Ok(script.spec.source),
                    Ok(None) => Err(Failure::run(format!(
                        "spec.scriptRef: PxlScript {:?} does not exist in namespace {:?}",
                        reference.name, self.namespace
                    ))),
                    Err(e) => Err(Failure::run(format!(
                        "spec.scriptRef: reading PxlScript {:?}: {e}",
                        reference.name
                    ))),
                }
            }
            (None, None) => Err(Failure::run(
                "spec: one of source and scriptRef must be set",
            )),
        }
    }

    /// Every referenced DataExport, checked before the query runs so that a typo does not cost a
    /// query each tick.
    async fn exports(&self, spec: &CronScriptSpec) -> Result<Vec<(String, DataExport)>, Failure> {
        let api: Api<DataExport> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut exports = Vec::with_capacity(spec.export_refs.len());
        for (i, reference) in spec.export_refs.iter().enumerate() {
            let export = api.get_opt(&reference.name).await.map_err(|e| Failure {
                stage: FailureStage::Export,
                error: format!(
                    "spec.exportRefs[{i}]: reading DataExport {:?}: {e}",
                    reference.name
                ),
                rows: None,
            })?;
            let export = export.ok_or_else(|| Failure {
                stage: FailureStage::Export,
                error: format!(
                    "spec.exportRefs[{i}]: DataExport {:?} does not exist in namespace {:?}",
                    reference.name, self.namespace
                ),
                rows: None,
            })?;
            exports.push((reference.name.clone(), export));
        }
        Ok(exports)
    }

    async fn query(&self, job: &RunJob, source: &str) -> Result<QueryOutput, Failure> {
        let mut client = VizierClient::connect_over(&self.query_addr, self.query_tls.as_ref())
            .await
            .map_err(|e| Failure::run(e.to_string()))?;
        let request = ExecuteScriptRequest {
            query_str: source.to_owned(),
            language: Language::Pxl as i32,
            query_name: format!("cronscript/{}/{}", self.namespace, job.script),
            args: job.spec.args.clone().into_iter().collect(),
            max_rows_per_output: MAX_ROWS_PER_OUTPUT,
            window_start_ns: job.window.start_ns(),
            window_end_ns: job.window.end_ns(),
        };
        let mut stream = client
            .execute(request)
            .await
            .map_err(|e| Failure::run(format!("the Vizier refused the query: {e}")))?;
        let mut output = QueryOutput::default();
        let mut batches: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        let mut order = Vec::new();
        while let Some(event) = stream
            .next()
            .await
            .map_err(|e| Failure::run(format!("the query failed: {e}")))?
        {
            match event {
                ClientEvent::Outputs(names) => order = names,
                ClientEvent::Table { name, .. } => {
                    batches.entry(name).or_default();
                }
                ClientEvent::Batch { table, batch } => {
                    batches.entry(table).or_default().push(batch)
                }
                ClientEvent::TableEnd {
                    table,
                    rows,
                    truncated,
                } => {
                    if truncated {
                        return Err(Failure::run(format!(
                            "output {table:?} has more than {MAX_ROWS_PER_OUTPUT} rows; nothing was exported, as a cut table would export wrong totals: aggregate more in the script"
                        )));
                    }
                    output.rows += rows;
                }
                ClientEvent::CompileError { line, col, message } => {
                    return Err(Failure::run(format!("{line}:{col}: {message}")));
                }
                ClientEvent::Stats(_) => {}
            }
        }
        for name in order {
            let table = batches.remove(&name).unwrap_or_default();
            output.tables.push((name, table));
        }
        Ok(output)
    }

    /// Maps and queues the run's results for one DataExport; the receipt is `None` when there was
    /// nothing to send.
    async fn deliver(
        &self,
        job: &RunJob,
        name: &str,
        export: &DataExport,
        plans: &[ExportPlan],
        output: &QueryOutput,
        outputs: &[String],
    ) -> Result<Option<(String, pixie_export::DeliveryReceipt)>, String> {
        let mappings = mapping::mappings_for(name, &export.spec, plans, outputs)?;
        let refs = delivery::secret_refs(&export.spec);
        let secrets = delivery::read_secrets(&self.client, &self.namespace, &refs)
            .await
            .map_err(|e| format!("reading its Secrets: {e}"))?;
        let config = delivery::sink_config(&export.spec, &secrets, self.max_queued_records)?;
        let sink = self
            .sinks
            .sink(name, config)
            .map_err(|e| format!("spec.sink.otlpGrpc: {e}"))?;
        let end = SystemTime::from(job.window.end);
        let mut batch = OtlpBatch::default();
        for mapping in &mappings {
            let Some((_, batches)) = output
                .tables
                .iter()
                .find(|(table, _)| *table == mapping.table)
            else {
                continue;
            };
            for record_batch in batches.iter().filter(|b| b.num_rows() > 0) {
                let mapped = map_table(record_batch, mapping, end)
                    .map_err(|e| format!("spec.otel.tables[{:?}].{e}", mapping.table))?;
                batch.merge(mapped);
            }
        }
        if batch.skipped > 0 {
            tracing::warn!(
                dataexport = name,
                skipped = batch.skipped,
                "rows with null values made no data point"
            );
        }
        if batch.is_empty() {
            self.report_delivery(
                &job.script,
                name,
                0,
                &DeliveryOutcome::Delivered {
                    records: 0,
                    attempts: 0,
                },
            );
            return Ok(None);
        }
        Ok(Some((name.to_owned(), sink.send(batch))))
    }
}

fn delivery_report(script: &str, records: u64, outcome: &DeliveryOutcome) -> DeliveryReport {
    DeliveryReport {
        time: Timestamp::now(),
        cron_script: script.to_owned(),
        records,
        error: outcome.error(),
    }
}
