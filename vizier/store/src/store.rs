use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::table::{Table, TableStats};
use crate::{StoreError, TimeRange, tables};

/// How much memory the store may hold, split per table as Pixie's PEM splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreBudget {
    /// All tables together (Pixie's `PL_TABLE_STORE_DATA_LIMIT_MB`).
    pub total_bytes: usize,
    /// The share of `total_bytes` for `http_events` (`PL_TABLE_STORE_HTTP_EVENTS_PERCENT`), capped at
    /// 100; every other table gets an equal share of the rest.
    pub http_events_percent: u8,
}

impl Default for StoreBudget {
    /// Pixie's defaults: 1280 MiB, 40 % of it for `http_events`.
    fn default() -> Self {
        StoreBudget {
            total_bytes: 1280 * 1024 * 1024,
            http_events_percent: 40,
        }
    }
}

impl StoreBudget {
    /// Each table's byte budget, in the order of [`tables::all`]. The sum never exceeds `total_bytes`.
    pub fn per_table(&self) -> Vec<(&'static str, usize)> {
        let all = tables::all();
        let percent = u128::from(self.http_events_percent.min(100));
        let http = (self.total_bytes as u128 * percent / 100) as usize;
        let others = all.len() - 1;
        let share = (self.total_bytes - http) / others;
        all.into_iter()
            .map(|(name, _)| {
                let budget = if name == tables::http_events::NAME {
                    http
                } else {
                    share
                };
                (name, budget)
            })
            .collect()
    }
}

/// Pixie's tables in memory. Cheap to clone; every clone shares the same tables.
///
/// Writers and readers never wait on each other for long: a table's lock is held only to push or pop
/// `Arc`s, never while copying or sorting data.
#[derive(Debug, Clone)]
pub struct TableStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    budget: StoreBudget,
    /// Fixed at construction, so lookups need no lock.
    tables: BTreeMap<&'static str, Table>,
}

impl TableStore {
    /// Registers Pixie's tables (`http_events`, `conn_stats`, `process_stats`) with their budgets.
    pub fn new(budget: StoreBudget) -> Self {
        let schemas: BTreeMap<&str, SchemaRef> = tables::all().into_iter().collect();
        let tables = budget
            .per_table()
            .into_iter()
            .map(|(name, bytes)| (name, Table::new(name, schemas[name].clone(), bytes)))
            .collect();
        TableStore {
            inner: Arc::new(Inner { budget, tables }),
        }
    }

    pub fn budget(&self) -> StoreBudget {
        self.inner.budget
    }

    /// Adds a batch to `table`, evicting the table's oldest batches if it goes over budget.
    ///
    /// The batch must have the table's column names and types in order and no nulls. Rows may come in
    /// any `time_` order; the store sorts them. A batch larger than the table's whole budget is dropped
    /// (counted in `rows_dropped`) and reported as [`StoreError::BatchOverBudget`]: keeping part of it
    /// would need a copy at the worst moment, and Pixie refuses such batches too. An empty batch is a
    /// no-op.
    ///
    /// Bytes are the batch's Arrow memory: a batch sliced from a larger one is charged for the buffers
    /// it keeps alive, which is what it costs.
    pub fn append(&self, table: &str, batch: RecordBatch) -> Result<(), StoreError> {
        self.table(table)?.append(batch)
    }

    /// The rows of `table` with `time_` in `range`, as batches in `time_` order.
    ///
    /// Only batches whose time bounds overlap the range are touched, and rows outside it are trimmed.
    /// The result is a consistent view: it holds every row of each append that completed before the
    /// call and none of a later one, and later evictions do not change it.
    pub fn snapshot(&self, table: &str, range: TimeRange) -> Result<Vec<RecordBatch>, StoreError> {
        self.table(table)?.snapshot(range)
    }

    pub fn schema(&self, table: &str) -> Result<SchemaRef, StoreError> {
        Ok(self.table(table)?.schema())
    }

    /// Table names, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.inner
            .tables
            .keys()
            .map(|name| name.to_string())
            .collect()
    }

    pub fn stats(&self, table: &str) -> Result<TableStats, StoreError> {
        Ok(self.table(table)?.stats())
    }

    fn table(&self, table: &str) -> Result<&Table, StoreError> {
        self.inner
            .tables
            .get(table)
            .ok_or_else(|| StoreError::UnknownTable {
                table: table.to_owned(),
            })
    }
}
