//! Prints a script's output tables as they stream in.
//!
//! - `table`: each output under its name, as an aligned text table (printed when the output ends,
//!   since column widths need every row; outputs are capped in rows by the server). Text longer than
//!   [`MAX_CELL_CHARS`] is cut with `…` so that one command line cannot push every other column off
//!   screen; `json` and `csv` keep full values.
//! - `json`: JSON Lines, one object per row with the output's name in `"_table"`, printed batch by
//!   batch, like `px run -o json`; pipe it to `jq 'select(._table == "http")'`.
//! - `csv`: each output as CSV with a header row; when a script has several outputs each block starts
//!   with a `# table: NAME` line and blocks are separated by a blank line.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::pretty::pretty_format_batches_with_schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// The widest text cell `-o table` prints, in characters.
pub const MAX_CELL_CHARS: usize = 80;

/// The column `-o json` adds to every row.
pub const TABLE_FIELD: &str = "_table";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("formatting output: {0}")]
    Arrow(#[from] ArrowError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Receives one query's events in stream order and writes them to `out`.
pub struct Printer<W: Write> {
    format: Format,
    out: W,
    outputs: usize,
    printed_tables: usize,
    current: Option<Current>,
}

struct Current {
    name: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// The CSV header is out (it goes with the first batch).
    csv_header_written: bool,
}

impl<W: Write> Printer<W> {
    pub fn new(format: Format, out: W) -> Self {
        Printer {
            format,
            out,
            outputs: 0,
            printed_tables: 0,
            current: None,
        }
    }

    /// The names of every output, announced before the first table.
    pub fn outputs(&mut self, names: &[String]) {
        self.outputs = names.len();
    }

    pub fn begin_table(&mut self, name: &str, schema: SchemaRef) -> Result<(), OutputError> {
        if self.format == Format::Csv {
            if self.printed_tables > 0 {
                writeln!(self.out)?;
            }
            if self.outputs > 1 {
                writeln!(self.out, "# table: {name}")?;
            }
        }
        self.current = Some(Current {
            name: name.to_owned(),
            schema,
            batches: Vec::new(),
            csv_header_written: false,
        });
        Ok(())
    }

    pub fn batch(&mut self, batch: RecordBatch) -> Result<(), OutputError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        match self.format {
            Format::Table => current.batches.push(batch),
            Format::Json => {
                let with_name = add_table_column(&current.name, &batch)?;
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut self.out);
                writer.write(&with_name)?;
                writer.finish()?;
            }
            Format::Csv => {
                write_csv(&mut self.out, &batch, !current.csv_header_written)?;
                current.csv_header_written = true;
            }
        }
        Ok(())
    }

    pub fn end_table(&mut self) -> Result<(), OutputError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        match self.format {
            Format::Table => {
                if self.printed_tables > 0 {
                    writeln!(self.out)?;
                }
                writeln!(self.out, "{}:", current.name)?;
                let batches: Vec<RecordBatch> = current
                    .batches
                    .iter()
                    .map(|b| shorten_text(b, MAX_CELL_CHARS))
                    .collect::<Result<_, _>>()?;
                let text = pretty_format_batches_with_schema(current.schema, &batches)?;
                writeln!(self.out, "{text}")?;
            }
            Format::Json => {}
            Format::Csv => {
                // An empty output still gets its header.
                if !current.csv_header_written {
                    write_csv(&mut self.out, &RecordBatch::new_empty(current.schema), true)?;
                }
            }
        }
        self.printed_tables += 1;
        self.out.flush()?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn write_csv(out: &mut impl Write, batch: &RecordBatch, header: bool) -> Result<(), ArrowError> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(out);
    writer.write(batch)
}

/// `batch` with every text value longer than `max` characters cut to `max`, the last one `…`.
fn shorten_text(batch: &RecordBatch, max: usize) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| {
            let Some(text) = column.as_string_opt::<i32>() else {
                return column.clone();
            };
            if !text.iter().flatten().any(|v| v.chars().nth(max).is_some()) {
                return column.clone();
            }
            let short: StringArray = text
                .iter()
                .map(|v| {
                    v.map(|v| match v.char_indices().nth(max - 1) {
                        Some((cut, _)) if v.chars().nth(max).is_some() => format!("{}…", &v[..cut]),
                        _ => v.to_owned(),
                    })
                })
                .collect();
            Arc::new(short) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// `batch` with a first column holding the output's name on every row.
fn add_table_column(name: &str, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut fields = vec![Arc::new(Field::new(TABLE_FIELD, DataType::Utf8, false))];
    fields.extend(batch.schema().fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(name, batch.num_rows()),
    ))];
    columns.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::TimeUnit;

    use super::*;

    fn batch(n: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time_",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("status", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(n.clone())),
                Arc::new(Int64Array::from_iter(
                    n.map(|i| (i != 1).then_some(200 + i)),
                )),
            ],
        )
        .unwrap()
    }

    fn print(format: Format, tables: &[(&str, Vec<RecordBatch>)]) -> String {
        let mut p = Printer::new(format, Vec::new());
        let names: Vec<String> = tables.iter().map(|(n, _)| n.to_string()).collect();
        p.outputs(&names);
        for (name, batches) in tables {
            p.begin_table(name, batch(0..0).schema()).unwrap();
            for b in batches {
                p.batch(b.clone()).unwrap();
            }
            p.end_table().unwrap();
        }
        String::from_utf8(p.into_inner()).unwrap()
    }

    #[test]
    fn json_is_one_object_per_row_with_the_table_name() {
        let text = print(Format::Json, &[("http", vec![batch(0..2), batch(2..3)])]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with(r#"{"_table":"http","time_":"1970-01-01T00:00:00"#),
            "{text}"
        );
        assert!(lines[0].ends_with(r#""status":200}"#), "{text}");
        // Nulls are explicit, so every row has every key.
        assert!(lines[1].ends_with(r#""status":null}"#), "{text}");
    }

    #[test]
    fn csv_has_a_header_per_table_and_names_tables_when_there_are_several() {
        let one = print(Format::Csv, &[("t", vec![batch(0..1)])]);
        assert_eq!(one, "time_,status\n1970-01-01T00:00:00,200\n");
        let two = print(Format::Csv, &[("a", vec![batch(2..3)]), ("b", vec![])]);
        assert_eq!(
            two,
            "# table: a\ntime_,status\n1970-01-01T00:00:00.000000002,202\n\n# table: b\ntime_,status\n"
        );
    }

    #[test]
    fn table_cells_longer_than_the_limit_are_cut_and_marked() {
        let schema = Arc::new(Schema::new(vec![Field::new("cmd", DataType::Utf8, true)]));
        let long = "é".repeat(10);
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                Some(long.as_str()),
                Some("short"),
                None,
            ]))],
        )
        .unwrap();
        let short = shorten_text(&batch, 6).unwrap();
        let col = short.column(0).as_string::<i32>();
        assert_eq!(col.value(0), "ééééé…");
        assert_eq!(col.value(1), "short");
        assert!(arrow::array::Array::is_null(col, 2));
        // Exactly at the limit stays whole.
        assert_eq!(
            shorten_text(&batch, 10)
                .unwrap()
                .column(0)
                .as_string::<i32>()
                .value(0),
            long
        );
    }

    #[test]
    fn tables_print_under_their_names_even_when_empty() {
        let text = print(
            Format::Table,
            &[("first", vec![batch(0..1)]), ("empty", vec![])],
        );
        assert!(text.starts_with("first:\n+"), "{text}");
        assert!(text.contains("| 1970-01-01T00:00:00 | 200    |"), "{text}");
        assert!(
            text.contains("\nempty:\n+-------+--------+\n| time_ | status |"),
            "{text}"
        );
    }
}
