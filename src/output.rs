//! Printing query results (shell, one-shot runs, JSON export): Arrow record batches from DuckDB to a table (comfy-table, fitted to
//! the terminal), CSV, JSON, JSON lines, Markdown, line or list output. Streaming modes write
//! row by row, so a large result never sits in memory; the display modes (table, line) stop
//! collecting at `maxrows` and only count the rest.

use std::io::Write;

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use duckdb::arrow::array::{Array, ArrayRef, AsArray};
use duckdb::arrow::datatypes::{DataType, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Boxed table fitted to the terminal width.
    Table,
    /// Comma-separated values (RFC 4180 quoting).
    Csv,
    /// One JSON array of objects per statement.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// GitHub-flavoured Markdown table.
    Markdown,
    /// One `column = value` line per field, rows separated by a blank line.
    Line,
    /// Values separated by `|`.
    List,
}

impl OutputMode {
    /// Modes for people (titles and summaries read well); the others are data formats.
    pub fn is_display(self) -> bool {
        matches!(self, OutputMode::Table | OutputMode::Line | OutputMode::Markdown)
    }
}

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub mode: OutputMode,
    pub headers: bool,
    /// Rows shown in table and line modes; 0 shows all.
    pub maxrows: usize,
    /// Terminal width to fit tables into; `None` when not printing to a terminal.
    pub width: Option<u16>,
}

fn out_err(e: std::io::Error) -> Error {
    Error::Output(e)
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// One batch's columns formatted as text.
struct Formatted<'a> {
    formatters: Vec<ArrayFormatter<'a>>,
    columns: &'a [ArrayRef],
    null: &'a str,
}

impl<'a> Formatted<'a> {
    fn new(batch: &'a RecordBatch, null: &'a str) -> Result<Self> {
        // DuckDB's own rendering of timestamps (space, not ISO 'T'); all netlens times are UTC.
        Self::with_timestamp_format(batch, null, "%Y-%m-%d %H:%M:%S%.f")
    }

    fn with_timestamp_format(batch: &'a RecordBatch, null: &'a str, timestamps: &'a str) -> Result<Self> {
        let options = FormatOptions::default()
            .with_null(null)
            .with_display_error(true)
            .with_timestamp_format(Some(timestamps));
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Sql {
                message: format!("cannot display result: {e}"),
            })?;
        Ok(Formatted {
            formatters,
            columns: batch.columns(),
            null,
        })
    }

    fn text(&self, col: usize, row: usize) -> String {
        if self.is_null(col, row) {
            return self.null.to_string();
        }
        self.formatters[col].value(row).to_string()
    }

    /// Arrow's Null type has no validity bitmap, so `is_null` alone misses it.
    fn is_null(&self, col: usize, row: usize) -> bool {
        let array = &self.columns[col];
        array.is_null(row) || array.data_type() == &DataType::Null
    }

    /// The cell as a JSON value: numbers and booleans bare, everything else a string.
    fn json(&self, col: usize, row: usize) -> serde_json::Value {
        let array = &self.columns[col];
        if self.is_null(col, row) {
            return serde_json::Value::Null;
        }
        match array.data_type() {
            DataType::Boolean => serde_json::Value::Bool(array.as_boolean().value(row)),
            t if is_numeric(t) => {
                let text = self.text(col, row);
                serde_json::from_str::<serde_json::Number>(&text)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::String(text))
            }
            _ => serde_json::Value::String(self.text(col, row)),
        }
    }
}

/// A result as one JSON document for a web page: column names and types, and rows as arrays
/// (numbers and booleans bare, times as ISO 8601 text without a zone: every netlens time is UTC).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JsonTable {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows than the limit: the rest were left out.
    pub truncated: bool,
}

impl JsonTable {
    /// Collects at most `limit` rows of `batches`; stops reading at the first row past it.
    pub fn collect(
        schema: &SchemaRef,
        batches: impl Iterator<Item = Result<RecordBatch>>,
        limit: usize,
    ) -> Result<JsonTable> {
        let mut table = JsonTable {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            types: schema.fields().iter().map(|f| sql_type_name(f.data_type())).collect(),
            ..JsonTable::default()
        };
        for batch in batches {
            let batch = batch?;
            let f = Formatted::with_timestamp_format(&batch, "", "%Y-%m-%dT%H:%M:%S%.f")?;
            for row in 0..batch.num_rows() {
                if table.rows.len() == limit {
                    table.truncated = true;
                    return Ok(table);
                }
                table
                    .rows
                    .push((0..table.columns.len()).map(|c| f.json(c, row)).collect());
            }
        }
        Ok(table)
    }
}

/// The SQL name of an Arrow type as DuckDB produces it (for a page to choose axes by).
fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "INTEGER".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(..) | DataType::Decimal256(..) => "DECIMAL".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "LIST".into(),
        DataType::Struct(_) => "STRUCT".into(),
        DataType::Map(..) => "MAP".into(),
        DataType::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Text for people: control characters (ESC, CR, BEL, backspace, C1; all but newline and tab)
/// written as `\xNN`, so a process name or a Zeek field cannot move the cursor, recolour or
/// retitle the terminal. Data formats (CSV, JSON) keep the bytes as they are.
pub fn visible(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                format!("\\x{:02x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn markdown_field(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Prints a result; returns the number of rows it had.
pub fn render(
    schema: &SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    opts: RenderOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if names.is_empty() {
        // DDL and other statements without a result: drain and print nothing.
        for b in batches {
            b?;
        }
        return Ok(0);
    }
    match opts.mode {
        OutputMode::Table | OutputMode::Line => render_display(schema, &names, batches, opts, out),
        _ => render_stream(&names, batches, opts, out),
    }
}

/// The keys of a JSON row: the column names in order, a repeated name numbered as DuckDB numbers
/// it when it names a result's columns (`a`, `a_1`, `a_2`, skipping names the result already
/// has), so that `SELECT s.id, k.id ...` keeps both values instead of one overwriting the other.
fn json_keys(names: &[String]) -> Vec<String> {
    // Every name of the result is reserved, so a numbered key never takes another column's name.
    let mut used: std::collections::HashSet<String> = names.iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::with_capacity(names.len());
    for name in names {
        if seen.insert(name.as_str()) {
            keys.push(name.clone());
            continue;
        }
        let key = (1..)
            .map(|n| format!("{name}_{n}"))
            .find(|k| !used.contains(k))
            .unwrap_or_default();
        used.insert(key.clone());
        keys.push(key);
    }
    keys
}

fn render_stream(
    names: &[String],
    batches: impl Iterator<Item = Result<RecordBatch>>,
    opts: RenderOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let mode = opts.mode;
    if opts.headers {
        match mode {
            OutputMode::Csv => writeln!(
                out,
                "{}",
                names.iter().map(|n| csv_field(n)).collect::<Vec<_>>().join(",")
            ),
            OutputMode::List => writeln!(out, "{}", names.join("|")),
            OutputMode::Markdown => writeln!(
                out,
                "| {} |\n|{}|",
                names.iter().map(|n| markdown_field(n)).collect::<Vec<_>>().join(" | "),
                names.iter().map(|_| "---").collect::<Vec<_>>().join("|")
            ),
            _ => Ok(()),
        }
        .map_err(out_err)?;
    }
    if mode == OutputMode::Json {
        out.write_all(b"[").map_err(out_err)?;
    }
    // Each column's key, quoted once: objects keep the columns' order, and every column its value.
    let keys: Vec<String> = json_keys(names)
        .iter()
        .map(|k| serde_json::Value::String(k.clone()).to_string())
        .collect();
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        let null = if matches!(mode, OutputMode::Markdown | OutputMode::List) {
            "NULL"
        } else {
            ""
        };
        let f = Formatted::new(&batch, null)?;
        for row in 0..batch.num_rows() {
            let line = match mode {
                OutputMode::Csv => (0..names.len())
                    .map(|c| csv_field(&f.text(c, row)))
                    .collect::<Vec<_>>()
                    .join(","),
                OutputMode::List => (0..names.len())
                    .map(|c| visible(&f.text(c, row)))
                    .collect::<Vec<_>>()
                    .join("|"),
                OutputMode::Markdown => format!(
                    "| {} |",
                    (0..names.len())
                        .map(|c| markdown_field(&visible(&f.text(c, row))))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
                _ => {
                    let fields: Vec<String> = keys
                        .iter()
                        .enumerate()
                        .map(|(c, key)| format!("{key}:{}", f.json(c, row)))
                        .collect();
                    let text = format!("{{{}}}", fields.join(","));
                    if mode == OutputMode::Json {
                        format!("{}\n{text}", if rows == 0 { "" } else { "," })
                    } else {
                        text
                    }
                }
            };
            if mode == OutputMode::Json {
                out.write_all(line.as_bytes()).map_err(out_err)?;
            } else {
                writeln!(out, "{line}").map_err(out_err)?;
            }
            rows += 1;
        }
    }
    if mode == OutputMode::Json {
        out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })
            .map_err(out_err)?;
    }
    Ok(rows)
}

fn render_display(
    schema: &SchemaRef,
    names: &[String],
    batches: impl Iterator<Item = Result<RecordBatch>>,
    opts: RenderOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let limit = if opts.maxrows == 0 { usize::MAX } else { opts.maxrows };
    let mut shown: Vec<Vec<String>> = Vec::new();
    let mut total = 0u64;
    for batch in batches {
        let batch = batch?;
        if shown.len() < limit {
            let f = Formatted::new(&batch, "NULL")?;
            for row in 0..batch.num_rows().min(limit - shown.len()) {
                shown.push((0..names.len()).map(|c| visible(&f.text(c, row))).collect());
            }
        }
        total += batch.num_rows() as u64;
    }
    if opts.mode == OutputMode::Line {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (i, row) in shown.iter().enumerate() {
            if i > 0 {
                writeln!(out).map_err(out_err)?;
            }
            for (name, value) in names.iter().zip(row) {
                writeln!(out, "{name:>width$} = {value}").map_err(out_err)?;
            }
        }
    } else {
        let mut table = Table::new();
        table.load_style(presets::UTF8_FULL_CONDENSED);
        match opts.width {
            Some(w) => {
                table.set_content_arrangement(ContentArrangement::Dynamic);
                table.set_width(w);
            }
            None => {
                table.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        if opts.headers {
            table.set_header(names);
        }
        for row in shown.iter() {
            table.add_row(row);
        }
        for (i, field) in schema.fields().iter().enumerate() {
            if is_numeric(field.data_type()) {
                if let Some(column) = table.column_mut(i) {
                    column.set_cell_alignment(CellAlignment::Right);
                }
            }
        }
        writeln!(out, "{table}").map_err(out_err)?;
    }
    if (shown.len() as u64) < total {
        writeln!(
            out,
            "({total} rows, {} shown; .maxrows N changes the limit)",
            shown.len()
        )
        .map_err(out_err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use duckdb::arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};
    use duckdb::arrow::datatypes::{Field, Schema};

    fn sample() -> (SchemaRef, RecordBatch) {
        let batch = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a,\"b\""), Some("x|y")])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)])) as ArrayRef,
            ),
            ("b", Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef),
        ])
        .unwrap();
        (batch.schema(), batch)
    }

    fn run(mode: OutputMode, headers: bool, maxrows: usize) -> String {
        rendered(&sample().1, mode, headers, maxrows)
    }

    /// `batch` rendered in `mode`, as text.
    fn rendered(batch: &RecordBatch, mode: OutputMode, headers: bool, maxrows: usize) -> String {
        let mut out = Vec::new();
        let opts = RenderOptions {
            mode,
            headers,
            maxrows,
            width: None,
        };
        render(&batch.schema(), std::iter::once(Ok(batch.clone())), opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Regression (issue 22): untrusted text (a process name, a Zeek field) reached the terminal
    /// raw, so an ESC sequence could recolour, move the cursor or retitle it. Display modes show
    /// control characters as `\xNN`; data formats keep the bytes.
    #[test]
    fn control_characters_are_shown_not_sent_in_display_modes() {
        let batch = RecordBatch::try_from_iter(vec![(
            "name",
            Arc::new(StringArray::from(vec![Some("evil\x1b]0;owned\x07\x1b[31mred\rback")])) as ArrayRef,
        )])
        .unwrap();
        for mode in [
            OutputMode::Table,
            OutputMode::Line,
            OutputMode::Markdown,
            OutputMode::List,
        ] {
            let text = rendered(&batch, mode, true, 0);
            assert!(
                !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
                "{mode:?}: {text:?}"
            );
            assert!(
                text.contains("evil\\x1b]0;owned\\x07\\x1b[31mred\\x0dback"),
                "{mode:?}: {text}"
            );
        }
        assert!(
            rendered(&batch, OutputMode::Csv, false, 0).contains('\x1b'),
            "CSV keeps the bytes"
        );
    }

    #[test]
    fn csv_quotes_and_nulls() {
        assert_eq!(
            run(OutputMode::Csv, true, 0),
            "n,s,f,b\n1,\"a,\"\"b\"\"\",1.5,true\n,x|y,NaN,\n"
        );
        assert_eq!(run(OutputMode::Csv, false, 0).lines().count(), 2);
    }

    #[test]
    fn json_rows_keep_every_column_in_order_under_its_own_key() {
        let schema = Arc::new(Schema::new(
            ["a", "a", "z", "b", "a_1"]
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, false))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = (1..=5)
            .map(|v| Arc::new(Int64Array::from(vec![v])) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        for (mode, expected) in [
            (
                OutputMode::Json,
                "[\n{\"a\":1,\"a_2\":2,\"z\":3,\"b\":4,\"a_1\":5}\n]\n",
            ),
            (OutputMode::Jsonl, "{\"a\":1,\"a_2\":2,\"z\":3,\"b\":4,\"a_1\":5}\n"),
        ] {
            assert_eq!(rendered(&batch, mode, true, 0), expected, "{mode:?}");
        }
    }

    #[test]
    fn json_types_values() {
        let text = run(OutputMode::Json, true, 0);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["n"], serde_json::json!(1));
        assert_eq!(v[0]["f"], serde_json::json!(1.5));
        assert_eq!(v[0]["b"], serde_json::json!(true));
        assert_eq!(v[1]["n"], serde_json::Value::Null);
        assert_eq!(v[1]["f"], serde_json::json!("NaN"));
        let lines: Vec<serde_json::Value> = run(OutputMode::Jsonl, true, 0)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["s"], serde_json::json!("a,\"b\""));
    }

    #[test]
    fn markdown_list_line_and_table() {
        let md = run(OutputMode::Markdown, true, 0);
        assert!(md.starts_with("| n | s | f | b |\n|---|---|---|---|\n"), "{md}");
        assert!(md.contains("x\\|y"));
        assert_eq!(
            run(OutputMode::List, false, 0).lines().next().unwrap(),
            "1|a,\"b\"|1.5|true"
        );
        assert!(run(OutputMode::Line, true, 0).contains("n = NULL"));
        let table = run(OutputMode::Table, true, 1);
        assert!(table.contains("(2 rows, 1 shown"), "{table}");
        assert!(!table.contains("x|y"));
    }

    #[test]
    fn empty_json_is_an_empty_array() {
        let (schema, batch) = sample();
        let mut out = Vec::new();
        let opts = RenderOptions {
            mode: OutputMode::Json,
            headers: true,
            maxrows: 0,
            width: None,
        };
        render(&schema, std::iter::once(Ok(batch.slice(0, 0))), opts, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
    }
}
