//! The PEM's in-memory table store: Arrow tables with Pixie's schemas, per-table byte budgets,
//! oldest-first eviction and time-range pruned snapshots for readers.
//!
//! Writers (the collector) build rows with [`tables`]`::<table>::to_batch` and [`TableStore::append`]
//! them; readers (the engine) call [`TableStore::snapshot`] and get whole, time-sorted batches that no
//! later append or eviction can change. Each table is a ring of batches: when an append pushes a table
//! past its byte budget the oldest batches go first, and a batch larger than the whole budget is
//! refused (counted in `rows_dropped`), as Pixie's table store refuses it.

mod error;
mod store;
mod table;
pub mod tables;
mod time_range;
mod upid;

pub use error::StoreError;
pub use store::{StoreBudget, TableStore};
pub use table::TableStats;
pub use time_range::TimeRange;
pub use upid::{Upid, UpidParseError};

/// The column every table is ordered, pruned and trimmed by: Arrow `Timestamp(Nanosecond, None)`,
/// nanoseconds since the Unix epoch.
pub const TIME_COLUMN: &str = "time_";
