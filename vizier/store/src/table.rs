//! One table: a ring of immutable, time-sorted batches under a byte budget.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use parking_lot::RwLock;

use crate::{StoreError, TIME_COLUMN, TimeRange, tables};

/// A table's counters at one instant.
///
/// `rows + rows_evicted == rows_appended - rows_dropped` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Rows held now.
    pub rows: usize,
    /// Arrow memory of the batches held now (`RecordBatch::get_array_memory_size`).
    pub bytes: usize,
    pub budget_bytes: usize,
    /// Batches held now.
    pub batches: usize,
    /// Rows of every non-empty batch that passed the schema check, including dropped ones.
    pub rows_appended: u64,
    /// Rows removed, oldest batch first, to make room for newer ones.
    pub rows_evicted: u64,
    /// Rows of batches refused because one batch alone was larger than the budget.
    pub rows_dropped: u64,
    /// The smallest and largest `time_` held, `None` when the table is empty.
    pub min_time_ns: Option<i64>,
    pub max_time_ns: Option<i64>,
}

/// A batch as stored: sorted by `time_`, carrying the table's schema, with its bounds and size
/// computed once at append time so that scans and eviction never touch the data.
struct StoredBatch {
    batch: RecordBatch,
    min_ns: i64,
    max_ns: i64,
    bytes: usize,
}

#[derive(Default)]
struct TableState {
    /// Oldest first: eviction pops the front, appends push the back.
    batches: VecDeque<Arc<StoredBatch>>,
    bytes: usize,
    rows: usize,
    rows_appended: u64,
    rows_evicted: u64,
    rows_dropped: u64,
}

pub(crate) struct Table {
    name: String,
    schema: SchemaRef,
    time_index: usize,
    budget_bytes: usize,
    state: RwLock<TableState>,
}

impl Table {
    /// Panics when the schema has no `time_` column: table schemas are ours and static.
    pub(crate) fn new(name: &str, schema: SchemaRef, budget_bytes: usize) -> Self {
        let time_index = schema
            .index_of(TIME_COLUMN)
            .unwrap_or_else(|_| panic!("table {name} has no {TIME_COLUMN} column"));
        Table {
            name: name.to_owned(),
            schema,
            time_index,
            budget_bytes,
            state: RwLock::new(TableState::default()),
        }
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn append(&self, batch: RecordBatch) -> Result<(), StoreError> {
        tables::check_columns(&self.name, &self.schema, batch.schema_ref())?;
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        // Everything costly (null check, sort, sizing) happens before taking the lock.
        let batch =
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| {
                StoreError::SchemaMismatch {
                    table: self.name.clone(),
                    detail: e.to_string(),
                }
            })?;
        let batch = sort_by_time(batch, self.time_index)?;
        let times = time_values(&batch, self.time_index);
        let (min_ns, max_ns) = (times[0], times[rows - 1]);
        let bytes = batch.get_array_memory_size();

        if bytes > self.budget_bytes {
            let mut state = self.state.write();
            state.rows_appended += rows as u64;
            state.rows_dropped += rows as u64;
            return Err(StoreError::BatchOverBudget {
                table: self.name.clone(),
                rows,
                batch_bytes: bytes,
                budget_bytes: self.budget_bytes,
            });
        }

        let stored = Arc::new(StoredBatch {
            batch,
            min_ns,
            max_ns,
            bytes,
        });
        let mut evicted = Vec::new();
        {
            let mut state = self.state.write();
            state.rows_appended += rows as u64;
            state.rows += rows;
            state.bytes += bytes;
            state.batches.push_back(stored);
            // The batch just pushed fits the budget alone, so this stops before reaching it.
            while state.bytes > self.budget_bytes {
                let old = state
                    .batches
                    .pop_front()
                    .expect("bytes over budget implies a held batch");
                state.bytes -= old.bytes;
                state.rows -= old.batch.num_rows();
                state.rows_evicted += old.batch.num_rows() as u64;
                evicted.push(old);
            }
        }
        if !evicted.is_empty() {
            tracing::trace!(table = %self.name, batches = evicted.len(), "evicted oldest batches");
        }
        // `evicted` drops here, after the lock: freeing big buffers must not stall readers.
        Ok(())
    }

    /// Whole, time-sorted batches holding exactly the rows in `range`.
    ///
    /// The lock is held only to clone the `Arc`s of the batches whose `[min, max]` overlaps the
    /// range; trimming (zero-copy slices, since stored batches are sorted) and merging happen after.
    pub(crate) fn snapshot(&self, range: TimeRange) -> Result<Vec<RecordBatch>, StoreError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let selected: Vec<Arc<StoredBatch>> = self
            .state
            .read()
            .batches
            .iter()
            .filter(|b| range.overlaps(b.min_ns, b.max_ns))
            .cloned()
            .collect();

        let mut trimmed: Vec<(i64, i64, RecordBatch)> = selected
            .iter()
            .filter_map(|b| self.trim(b, range))
            .collect();
        // Stable: batches with equal start keep append order.
        trimmed.sort_by_key(|(min, _, _)| *min);
        self.merge_overlapping(trimmed)
    }

    fn trim(&self, stored: &StoredBatch, range: TimeRange) -> Option<(i64, i64, RecordBatch)> {
        if range.contains(stored.min_ns) && range.contains(stored.max_ns) {
            return Some((stored.min_ns, stored.max_ns, stored.batch.clone()));
        }
        let times = time_values(&stored.batch, self.time_index);
        let lo = times.partition_point(|&t| t < range.start_ns);
        let hi = times.partition_point(|&t| t < range.end_ns);
        (lo < hi).then(|| (times[lo], times[hi - 1], stored.batch.slice(lo, hi - lo)))
    }

    /// Batches appended out of time order can overlap; each group of overlapping batches becomes one
    /// sorted batch so that the whole snapshot reads in `time_` order. In-order data is passed through.
    fn merge_overlapping(
        &self,
        sorted_by_min: Vec<(i64, i64, RecordBatch)>,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let mut out = Vec::with_capacity(sorted_by_min.len());
        let mut group: Vec<RecordBatch> = Vec::new();
        let mut group_max = i64::MIN;
        for (min, max, batch) in sorted_by_min {
            if !group.is_empty() && min >= group_max {
                out.push(self.flush(std::mem::take(&mut group))?);
            }
            group_max = if group.is_empty() {
                max
            } else {
                group_max.max(max)
            };
            group.push(batch);
        }
        if !group.is_empty() {
            out.push(self.flush(group)?);
        }
        Ok(out)
    }

    fn flush(&self, mut group: Vec<RecordBatch>) -> Result<RecordBatch, StoreError> {
        if group.len() == 1 {
            return Ok(group.pop().expect("one batch"));
        }
        let merged = concat_batches(&self.schema, &group)?;
        sort_by_time(merged, self.time_index)
    }

    pub(crate) fn stats(&self) -> TableStats {
        let state = self.state.read();
        TableStats {
            rows: state.rows,
            bytes: state.bytes,
            budget_bytes: self.budget_bytes,
            batches: state.batches.len(),
            rows_appended: state.rows_appended,
            rows_evicted: state.rows_evicted,
            rows_dropped: state.rows_dropped,
            min_time_ns: state.batches.iter().map(|b| b.min_ns).min(),
            max_time_ns: state.batches.iter().map(|b| b.max_ns).max(),
        }
    }
}

/// Counters only: printing a store must not dump its data.
impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn time_values(batch: &RecordBatch, time_index: usize) -> &[i64] {
    batch
        .column(time_index)
        .as_primitive::<TimestampNanosecondType>()
        .values()
}

fn sort_by_time(batch: RecordBatch, time_index: usize) -> Result<RecordBatch, StoreError> {
    if time_values(&batch, time_index).is_sorted() {
        return Ok(batch);
    }
    let indices = sort_to_indices(batch.column(time_index), None, None)?;
    Ok(take_record_batch(&batch, &indices)?)
}
