use arrow::error::ArrowError;

/// Everything the store can refuse. An `Err` from [`crate::TableStore::append`] always means the batch
/// was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown table {table:?}")]
    UnknownTable { table: String },

    #[error("batch does not match the schema of table {table:?}: {detail}")]
    SchemaMismatch { table: String, detail: String },

    /// Keeping the batch would mean evicting the whole table and still being over budget.
    #[error(
        "batch of {rows} rows ({batch_bytes} bytes) is larger than the {budget_bytes}-byte budget of table {table:?}; dropped"
    )]
    BatchOverBudget {
        table: String,
        rows: usize,
        batch_bytes: usize,
        budget_bytes: usize,
    },

    #[error("table {table:?}, column {column:?}: {detail}")]
    InvalidValue {
        table: String,
        column: String,
        detail: String,
    },

    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

impl StoreError {
    /// A short, fixed label per cause so that failures can be counted in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::UnknownTable { .. } => "unknown_table",
            StoreError::SchemaMismatch { .. } => "schema_mismatch",
            StoreError::BatchOverBudget { .. } => "batch_over_budget",
            StoreError::InvalidValue { .. } => "invalid_value",
            StoreError::Arrow(_) => "arrow",
        }
    }
}
