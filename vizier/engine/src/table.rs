//! A DataFusion [`TableProvider`] over one table of the [`TableStore`].
//!
//! Filters that bound `time_` by a constant are accepted as `Inexact`: DataFusion still applies them
//! row by row above the scan, but the scan turns them into a [`TimeRange`] for
//! [`TableStore::snapshot`], which skips whole batches outside the range and trims the rest. That is
//! what makes `start_time='-5m'` cheap on a store holding hours of data.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use pixie_store::{TIME_COLUMN, TableStore, TimeRange};

/// What scans of one table read from the store, summed since the provider was made. Lets tests (and
/// logs) see that pruning happened: rows outside the pushed-down time range are never returned.
#[derive(Debug, Default)]
pub struct ScanCounters {
    scans: AtomicU64,
    batches: AtomicU64,
    rows: AtomicU64,
}

/// A copy of [`ScanCounters`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanStats {
    pub scans: u64,
    /// Batches the store handed out (after its own pruning and trimming).
    pub batches: u64,
    pub rows: u64,
}

impl ScanCounters {
    pub fn snapshot(&self) -> ScanStats {
        ScanStats {
            scans: self.scans.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
        }
    }

    fn record(&self, batches: &[RecordBatch]) {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.batches
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

/// One store table as a DataFusion table. Scans take a snapshot at planning time, so one query sees
/// one consistent view even while the collector keeps appending.
pub struct StoreTable {
    store: TableStore,
    name: String,
    schema: SchemaRef,
    counters: Arc<ScanCounters>,
}

impl StoreTable {
    /// `None` when the store has no such table.
    pub fn new(store: TableStore, name: &str) -> Option<Self> {
        let schema = store.schema(name).ok()?;
        Some(StoreTable {
            store,
            name: name.to_owned(),
            schema,
            counters: Arc::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn scan_stats(&self) -> ScanStats {
        self.counters.snapshot()
    }
}

impl fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTable")
            .field("name", &self.name)
            .field("scans", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(time_filters_pushdown(filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let range = time_range(filters);
        let mut batches = self
            .store
            .snapshot(&self.name, range)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // DataFusion passes a limit only when nothing above the scan can drop rows.
        if let Some(limit) = limit {
            batches = take_rows(batches, limit);
        }
        self.counters.record(&batches);
        tracing::debug!(table = %self.name, ?range, batches = batches.len(), "scan");
        let config = state.config();
        let partitions = partition(batches, config.target_partitions(), config.batch_size());
        let exec = MemorySourceConfig::try_new_exec(
            &partitions,
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

/// The intersection of every `time_` bound among `filters`; filters that are not such bounds are
/// ignored (DataFusion applies them above the scan).
pub fn time_range(filters: &[Expr]) -> TimeRange {
    filters
        .iter()
        .filter_map(time_bound)
        .fold(TimeRange::all(), intersect)
}

/// What a time-pruning scan does with each filter: `time_` bounds narrow it, `Inexact` (DataFusion
/// still applies them row by row); the rest are not its business.
pub(crate) fn time_filters_pushdown(filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    filters
        .iter()
        .map(|f| {
            if time_bound(f).is_some() {
                TableProviderFilterPushDown::Inexact
            } else {
                TableProviderFilterPushDown::Unsupported
            }
        })
        .collect()
}

fn intersect(a: TimeRange, b: TimeRange) -> TimeRange {
    TimeRange::new(a.start_ns.max(b.start_ns), a.end_ns.min(b.end_ns))
}

/// The time range a filter keeps, when the filter compares `time_` with a constant (either side),
/// is a `BETWEEN` on `time_`, or an `AND` with at least one such part.
fn time_bound(filter: &Expr) -> Option<TimeRange> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => match (time_bound(left), time_bound(right)) {
            (Some(a), Some(b)) => Some(intersect(a, b)),
            (one, other) => one.or(other),
        },
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if is_time_column(left) {
                comparison(*op, timestamp_ns(right)?)
            } else if is_time_column(right) {
                comparison(op.swap()?, timestamp_ns(left)?)
            } else {
                None
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time_column(expr) => {
            let (low, high) = (timestamp_ns(low)?, timestamp_ns(high)?);
            Some(TimeRange::new(low, high.saturating_add(1)))
        }
        _ => None,
    }
}

/// The range of `time_ <op> value`.
fn comparison(op: Operator, value: i64) -> Option<TimeRange> {
    let range = match op {
        Operator::Eq => TimeRange::new(value, value.saturating_add(1)),
        Operator::Gt => TimeRange::since(value.saturating_add(1)),
        Operator::GtEq => TimeRange::since(value),
        Operator::Lt => TimeRange::new(i64::MIN, value),
        Operator::LtEq => TimeRange::new(i64::MIN, value.saturating_add(1)),
        _ => return None,
    };
    Some(range)
}

fn is_time_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Column(Column { name, .. }) if name == TIME_COLUMN)
}

/// A constant timestamp in nanoseconds. Coarser units are scaled exactly; a literal too large for
/// nanoseconds is not a bound we can use.
fn timestamp_ns(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The first `limit` rows, in order.
fn take_rows(batches: Vec<RecordBatch>, limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut out = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let n = batch.num_rows().min(left);
        out.push(batch.slice(0, n));
        left -= n;
    }
    out
}

/// Splits time-ordered batches into `target` partitions of contiguous rows, cutting batches into
/// slices of at most `batch_size` rows (zero-copy) so that a few large store batches still spread
/// over every core.
fn partition(batches: Vec<RecordBatch>, target: usize, batch_size: usize) -> Vec<Vec<RecordBatch>> {
    let batch_size = batch_size.max(1);
    let slices: Vec<RecordBatch> = batches
        .into_iter()
        .flat_map(|b| {
            let rows = b.num_rows();
            (0..rows)
                .step_by(batch_size)
                .map(move |start| b.slice(start, batch_size.min(rows - start)))
        })
        .collect();
    let total: usize = slices.iter().map(RecordBatch::num_rows).sum();
    let target = target.max(1);
    let per_partition = total.div_ceil(target).max(1);
    let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut filled = 0;
    for slice in slices {
        if filled >= per_partition && partitions.len() < target {
            partitions.push(Vec::new());
            filled = 0;
        }
        filled += slice.num_rows();
        partitions.last_mut().expect("one partition").push(slice);
    }
    partitions
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(ns), None))
    }

    #[test]
    fn comparisons_on_time_become_half_open_ranges() {
        let t = || col(TIME_COLUMN);
        assert_eq!(time_bound(&t().gt_eq(ts(10))), Some(TimeRange::since(10)));
        assert_eq!(time_bound(&t().gt(ts(10))), Some(TimeRange::since(11)));
        assert_eq!(
            time_bound(&t().lt(ts(10))),
            Some(TimeRange::new(i64::MIN, 10))
        );
        assert_eq!(
            time_bound(&t().lt_eq(ts(10))),
            Some(TimeRange::new(i64::MIN, 11))
        );
        assert_eq!(time_bound(&t().eq(ts(10))), Some(TimeRange::new(10, 11)));
        // The literal on the left flips the comparison.
        assert_eq!(time_bound(&ts(10).lt(t())), Some(TimeRange::since(11)));
        assert_eq!(
            time_bound(&t().between(ts(5), ts(9))),
            Some(TimeRange::new(5, 10))
        );
    }

    #[test]
    fn coarser_timestamp_literals_are_scaled_to_nanoseconds() {
        let ms = lit(ScalarValue::TimestampMillisecond(Some(3), None));
        assert_eq!(
            time_bound(&col(TIME_COLUMN).gt_eq(ms)),
            Some(TimeRange::since(3_000_000))
        );
        let huge = lit(ScalarValue::TimestampSecond(Some(i64::MAX / 10), None));
        assert_eq!(time_bound(&col(TIME_COLUMN).gt_eq(huge)), None);
    }

    #[test]
    fn other_filters_are_not_time_bounds() {
        assert_eq!(time_bound(&col("latency").gt(lit(5i64))), None);
        assert_eq!(time_bound(&col(TIME_COLUMN).not_eq(ts(5))), None);
        assert_eq!(
            time_bound(&col(TIME_COLUMN).gt(ts(5)).or(col(TIME_COLUMN).lt(ts(1)))),
            None
        );
        let negated = Expr::Between(Between::new(
            Box::new(col(TIME_COLUMN)),
            true,
            Box::new(ts(1)),
            Box::new(ts(2)),
        ));
        assert_eq!(time_bound(&negated), None);
    }

    #[test]
    fn ranges_of_several_filters_intersect() {
        let filters = [
            col(TIME_COLUMN).gt_eq(ts(10)),
            col("latency").gt(lit(1i64)),
            col(TIME_COLUMN).lt(ts(20)).and(col("x").eq(lit(1i64))),
        ];
        assert_eq!(time_range(&filters), TimeRange::new(10, 20));
        assert_eq!(time_range(&[]), TimeRange::all());
    }

    #[test]
    fn partitions_keep_every_row_in_order_and_spread_large_batches() {
        use arrow::array::{AsArray, Int64Array};
        use arrow::datatypes::{DataType, Field, Int64Type, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = |range: std::ops::Range<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(range))],
            )
            .unwrap()
        };
        let parts = partition(vec![batch(0..100), batch(100..105)], 4, 16);
        assert_eq!(parts.len(), 4);
        let values: Vec<i64> = parts
            .iter()
            .flatten()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(values, (0..105).collect::<Vec<_>>());
        assert!(parts.iter().flatten().all(|b| b.num_rows() <= 16));

        assert_eq!(
            partition(Vec::new(), 4, 16),
            vec![Vec::<RecordBatch>::new()]
        );
        let limited = take_rows(vec![batch(0..10), batch(10..20)], 15);
        assert_eq!(
            limited
                .iter()
                .map(RecordBatch::num_rows)
                .collect::<Vec<_>>(),
            vec![10, 5]
        );
    }
}
