//! Pixie's tables, one module each: the only place that knows a table's name, columns and types.
//!
//! Each module has `NAME`, `schema()`, a `Row` with one field per column (named as the column),
//! `to_batch(&[Row])` for writers and `from_batch(&RecordBatch)` for readers and tests. Every column is
//! non-nullable, as in Pixie; Pixie's `INT64` columns are `i64`, `time_` is nanoseconds since the Unix
//! epoch and `upid` is stored as `"asid:pid:start_time_ticks"` text.

use arrow::datatypes::Schema;

use crate::StoreError;

/// Maps a column kind to its Rust field type.
macro_rules! rust_type {
    (Time) => {
        i64
    };
    (Upid) => {
        $crate::Upid
    };
    (Int64) => {
        i64
    };
    (Utf8) => {
        String
    };
}

/// Maps a column kind to its Arrow type.
macro_rules! data_type {
    (Time) => {
        ::arrow::datatypes::DataType::Timestamp(::arrow::datatypes::TimeUnit::Nanosecond, None)
    };
    (Upid) => {
        ::arrow::datatypes::DataType::Utf8
    };
    (Int64) => {
        ::arrow::datatypes::DataType::Int64
    };
    (Utf8) => {
        ::arrow::datatypes::DataType::Utf8
    };
}

/// Builds one Arrow column from a field of every row.
macro_rules! build_column {
    (Time, $rows:expr, $col:ident) => {
        ::std::sync::Arc::new(::arrow::array::TimestampNanosecondArray::from_iter_values(
            $rows.iter().map(|r| r.$col),
        )) as ::arrow::array::ArrayRef
    };
    (Int64, $rows:expr, $col:ident) => {
        ::std::sync::Arc::new(::arrow::array::Int64Array::from_iter_values(
            $rows.iter().map(|r| r.$col),
        )) as ::arrow::array::ArrayRef
    };
    (Utf8, $rows:expr, $col:ident) => {
        ::std::sync::Arc::new(::arrow::array::StringArray::from_iter_values(
            $rows.iter().map(|r| r.$col.as_str()),
        )) as ::arrow::array::ArrayRef
    };
    (Upid, $rows:expr, $col:ident) => {{
        use ::std::fmt::Write as _;
        // Format straight into the builder's value buffer: no String per row.
        let mut builder =
            ::arrow::array::StringBuilder::with_capacity($rows.len(), $rows.len() * 24);
        for r in $rows {
            write!(builder, "{}", r.$col).expect("writing to a StringBuilder cannot fail");
            builder.append_value("");
        }
        ::std::sync::Arc::new(builder.finish()) as ::arrow::array::ArrayRef
    }};
}

/// Borrows a column of a schema-checked batch as its concrete Arrow array.
macro_rules! typed_column {
    (Time, $batch:expr, $name:expr) => {
        ::arrow::array::AsArray::as_primitive::<::arrow::datatypes::TimestampNanosecondType>(
            $batch.column_by_name($name).expect("schema checked"),
        )
    };
    (Int64, $batch:expr, $name:expr) => {
        ::arrow::array::AsArray::as_primitive::<::arrow::datatypes::Int64Type>(
            $batch.column_by_name($name).expect("schema checked"),
        )
    };
    (Utf8, $batch:expr, $name:expr) => {
        ::arrow::array::AsArray::as_string::<i32>(
            $batch.column_by_name($name).expect("schema checked"),
        )
    };
    (Upid, $batch:expr, $name:expr) => {
        typed_column!(Utf8, $batch, $name)
    };
}

/// Reads row `$i` of a typed column as the Rust field value; `?` propagates bad upid text.
macro_rules! read_value {
    (Time, $array:expr, $i:expr, $col:ident) => {
        $array.value($i)
    };
    (Int64, $array:expr, $i:expr, $col:ident) => {
        $array.value($i)
    };
    (Utf8, $array:expr, $i:expr, $col:ident) => {
        $array.value($i).to_owned()
    };
    (Upid, $array:expr, $i:expr, $col:ident) => {
        $array
            .value($i)
            .parse::<$crate::Upid>()
            .map_err(|e| $crate::StoreError::InvalidValue {
                table: NAME.to_owned(),
                column: stringify!($col).to_owned(),
                detail: e.to_string(),
            })?
    };
}

/// Declares a table module's `NAME`, `schema()`, `Row`, `to_batch` and `from_batch` from one column
/// list, so the four can never disagree.
macro_rules! table {
    (
        name: $name:literal,
        columns: { $( $(#[$doc:meta])* $col:ident : $kind:ident ),+ $(,)? }
    ) => {
        use ::std::sync::{Arc, OnceLock};

        use ::arrow::array::RecordBatch;
        use ::arrow::datatypes::{Field, Schema, SchemaRef};

        /// The table's name in the store and in PxL.
        pub const NAME: &str = $name;

        /// The table's Arrow schema; the same `Arc` on every call.
        pub fn schema() -> SchemaRef {
            static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
            SCHEMA
                .get_or_init(|| {
                    Arc::new(Schema::new(vec![
                        $( Field::new(stringify!($col), data_type!($kind), false) ),+
                    ]))
                })
                .clone()
        }

        /// One row of the table, one field per column.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Row {
            $( $(#[$doc])* pub $col: rust_type!($kind), )+
        }

        /// Builds a batch with [`schema()`] from rows, in the given order.
        pub fn to_batch(rows: &[Row]) -> RecordBatch {
            let columns = vec![ $( build_column!($kind, rows, $col) ),+ ];
            RecordBatch::try_new(schema(), columns)
                .expect("columns are built from the same list as the schema")
        }

        /// Reads rows back from a batch of this table (a snapshot, or a writer's batch in tests).
        pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Row>, $crate::StoreError> {
            $crate::tables::check_columns(NAME, &schema(), batch.schema_ref())?;
            $( let $col = typed_column!($kind, batch, stringify!($col)); )+
            (0..batch.num_rows())
                .map(|i| {
                    Ok(Row { $( $col: read_value!($kind, $col, i, $col), )+ })
                })
                .collect()
        }
    };
}

pub mod conn_stats;
pub mod http_events;
pub mod process_stats;

/// `trace_role` in `http_events` and `role` in `conn_stats`: which side of the connection the traced
/// process is (Pixie's `endpoint_role_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum TraceRole {
    Unknown = 0,
    Client = 1,
    Server = 2,
}

/// `content_type` in `http_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum ContentType {
    Unknown = 0,
    Json = 1,
    Grpc = 2,
}

/// `protocol` in `conn_stats` (Pixie's `traffic_protocol_t`; only the values we trace so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Protocol {
    Unknown = 0,
    Http = 1,
    Http2 = 2,
}

impl From<TraceRole> for i64 {
    fn from(v: TraceRole) -> i64 {
        v as i64
    }
}

impl From<ContentType> for i64 {
    fn from(v: ContentType) -> i64 {
        v as i64
    }
}

impl From<Protocol> for i64 {
    fn from(v: Protocol) -> i64 {
        v as i64
    }
}

/// The schema of every table the store registers, by name.
pub fn all() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    vec![
        (http_events::NAME, http_events::schema()),
        (conn_stats::NAME, conn_stats::schema()),
        (process_stats::NAME, process_stats::schema()),
    ]
}

/// Checks that `got` has the table's column names and types, in order. Nullability and metadata are
/// not compared here: a writer's batch that marks a column nullable but holds no nulls is fine, and
/// re-wrapping it in the table's schema (which `RecordBatch::try_new` validates) catches real nulls.
pub(crate) fn check_columns(
    table: &str,
    expected: &Schema,
    got: &Schema,
) -> Result<(), StoreError> {
    let mismatch = |detail: String| StoreError::SchemaMismatch {
        table: table.to_owned(),
        detail,
    };
    if expected.fields().len() != got.fields().len() {
        return Err(mismatch(format!(
            "want {} columns, got {}",
            expected.fields().len(),
            got.fields().len()
        )));
    }
    for (i, (want, have)) in expected
        .fields()
        .iter()
        .zip(got.fields().iter())
        .enumerate()
    {
        if want.name() != have.name() || want.data_type() != have.data_type() {
            return Err(mismatch(format!(
                "column {i}: want {} {}, got {} {}",
                want.name(),
                want.data_type(),
                have.name(),
                have.data_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn every_table_starts_with_a_nanosecond_time_column() {
        for (name, schema) in all() {
            let first = schema.field(0);
            assert_eq!(first.name(), crate::TIME_COLUMN, "{name}");
            assert_eq!(
                first.data_type(),
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
                "{name}"
            );
            assert_eq!(schema.field(1).name(), "upid", "{name}");
            assert_eq!(schema.field(1).data_type(), &DataType::Utf8, "{name}");
        }
    }

    #[test]
    fn check_columns_names_the_first_differing_column() {
        let want = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
        ]);
        let got = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, false),
        ]);
        let err = check_columns("t", &want, &got).unwrap_err().to_string();
        assert!(err.contains("column 1: want b Utf8, got b Int64"), "{err}");
        let short = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        assert!(check_columns("t", &want, &short).is_err());
        assert!(check_columns("t", &want, &want).is_ok());
    }

    #[test]
    fn enum_values_are_pixies() {
        assert_eq!(i64::from(TraceRole::Client), 1);
        assert_eq!(i64::from(TraceRole::Server), 2);
        assert_eq!(i64::from(ContentType::Json), 1);
        assert_eq!(i64::from(ContentType::Grpc), 2);
        assert_eq!(i64::from(Protocol::Http), 1);
    }
}
