//! `import csv`: a labelled (or unlabelled) dataset file becomes a table of its own, so the
//! analysis stages run on data from elsewhere (NSL-KDD, prototype 002's 10-feature format, any
//! export of another tool). DuckDB's own CSV reader does the parsing and type detection; this
//! module decides names, checks them against the file before anything is written, and records the
//! load in `datasets`. It writes only the target table and `datasets`, in one transaction.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;

use crate::error::{Error, Result};
use crate::store::{quote_ident, quote_literal, Store, IN_THIS_DATABASE};

/// An `import csv`: the file, the table and how to name its columns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CsvImport {
    pub file: PathBuf,
    /// Table to create [default: the file name without extension, made a valid identifier].
    pub table: Option<String>,
    /// Column names in file order; must name every column.
    pub columns: Vec<String>,
    /// A file holding the column names.
    pub columns_file: Option<PathBuf>,
    /// The first line is data.
    pub no_header: bool,
    /// Add the rows to an existing table.
    pub append: bool,
    /// Drop and recreate an existing table.
    pub replace: bool,
}

/// What one `import csv` did.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvReport {
    pub table: String,
    pub rows: u64,
    pub columns: usize,
    pub mode: &'static str,
}

/// Loads `args.file` into its table; nothing is written when any check or the load fails.
pub fn import_csv(store: &Store, args: &CsvImport) -> Result<CsvReport> {
    super::check_writable(store)?;
    let started = Instant::now();
    let path = &args.file;
    check_file(path)?;
    let table = match &args.table {
        Some(t) if t.trim().is_empty() => return Err(Error::Usage("--table needs a name".to_string())),
        Some(t) => t.trim().to_string(),
        None => table_name_from_path(path)?,
    };
    let names = match &args.columns_file {
        Some(f) => read_column_names(f)?,
        None => args.columns.iter().map(|c| c.trim().to_string()).collect(),
    };
    check_names(&names)?;

    let header = if args.no_header { Some(false) } else { None };
    let mut dialect = Dialect {
        header,
        delimiter: None,
    };
    let mut detected = sniffed_columns(store, path, &dialect)?;
    // DuckDB's sniffer falls back to one column per line when rows disagree on their number
    // of fields; a first line with a delimiter in it means the file is ragged, not one column.
    // Reading it again with that delimiter fixed makes DuckDB name the offending line.
    if detected.len() == 1 {
        if let Some(delimiter) = first_line(path)?.as_deref().and_then(likely_delimiter) {
            dialect.delimiter = Some(delimiter);
            detected = sniffed_columns(store, path, &dialect)?;
            check_rows(store, path, &dialect)?;
        }
    }
    if !names.is_empty() && names.len() != detected.len() {
        return Err(bad_file(
            path,
            format!(
                "{} column names were given but the file has {} columns ({})",
                names.len(),
                detected.len(),
                detected.join(", ")
            ),
        ));
    }
    let source = read_csv_call(path, &dialect, &names);
    let exists = store.relation_exists(&table)?;
    let mode = match (exists, args.append, args.replace) {
        (false, _, _) => "create",
        (true, true, _) => "append",
        (true, _, true) => "replace",
        (true, false, false) => {
            return Err(Error::Usage(format!(
                "table '{table}' already exists; nothing was imported\n  hint: add --append to add the rows, --replace to recreate it, or --table NAME for another table"
            )))
        }
    };
    if exists && is_netlens_table(&table) {
        return Err(Error::Usage(format!(
            "'{table}' is one of netlens's own tables; import csv never writes into them\n  hint: pick another name with --table NAME"
        )));
    }
    if exists && is_view(store, &table)? {
        return Err(Error::Usage(format!(
            "'{table}' is a view; import csv writes tables\n  hint: pick another name with --table NAME"
        )));
    }

    let target = quote_ident(&table);
    store.in_transaction(|conn| {
        let before: i64 = if mode == "append" {
            conn.query_row(&format!("SELECT count(*) FROM {target}"), [], |r| r.get(0))
                .map_err(Error::sql)?
        } else {
            0
        };
        let statement = match mode {
            "append" => format!("INSERT INTO {target} BY NAME SELECT * FROM {source}"),
            "replace" => format!("CREATE OR REPLACE TABLE {target} AS SELECT * FROM {source}"),
            _ => format!("CREATE TABLE {target} AS SELECT * FROM {source}"),
        };
        // Ctrl-C interrupts the statement (and the transaction rolls back: nothing stored).
        let _running = crate::interrupt::Running::new(conn.interrupt_handle());
        conn.execute_batch(&statement)
            .map_err(|e| unreadable(path, Error::sql(e)))?;
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        let after: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {target}"), [], |r| r.get(0))
            .map_err(Error::sql)?;
        let rows = u64::try_from(after - before).unwrap_or(0);
        let columns = column_summary(store, &table)?;
        let mut notes = match (args.no_header, names.is_empty()) {
            (true, true) => "no header line (--no-header); columns named by DuckDB".to_string(),
            (true, false) => "no header line (--no-header); column names given".to_string(),
            (false, true) => "header line or not decided by DuckDB's CSV sniffer".to_string(),
            (false, false) => "column names given; header line or not decided by DuckDB's CSV sniffer".to_string(),
        };
        if let Some(d) = dialect.delimiter {
            notes.push_str(&format!("; delimiter {d:?} fixed because the sniffer saw one column"));
        }
        conn.execute(
            "INSERT INTO datasets VALUES (?, 'csv', ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                table,
                path.to_string_lossy().into_owned(),
                Utc::now(),
                i64::try_from(rows).unwrap_or(i64::MAX),
                columns.join(", "),
                mode,
                started.elapsed().as_secs_f64(),
                notes
            ],
        )
        .map_err(Error::sql)?;
        Ok(CsvReport {
            table: table.clone(),
            rows,
            columns: columns.len(),
            mode,
        })
    })
}

fn check_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(bad_file(path, "is a directory".to_string()));
    }
    if meta.len() == 0 {
        return Err(bad_file(path, "the file is empty".to_string()));
    }
    Ok(())
}

/// DuckDB could not read the file, or Ctrl-C stopped it reading: the first names the file, the
/// second stays a Ctrl-C (exit status 130, not a complaint about the file). Regression: a
/// Ctrl-C while the sniffer read the file was reported as a bad file, with status 1.
fn unreadable(path: &Path, e: Error) -> Error {
    match e {
        Error::Interrupted => Error::Interrupted,
        // Not the file's fault: a server's settings keep DuckDB from reading it (its own hint).
        e if e.is_file_access_off() => e,
        other => bad_file(path, other.to_string()),
    }
}

fn bad_file(path: &Path, reason: String) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        reason,
    }
}

/// `KDDTrain+.txt` -> `kddtrain`: lower case, runs of other characters become one `_`, and a
/// leading digit gets a `t_` prefix, so the name needs no quoting in SQL.
pub fn table_name_from_path(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_').to_string();
    if name.is_empty() {
        return Err(Error::Usage(format!(
            "cannot make a table name from {}\n  hint: give one with --table NAME",
            path.display()
        )));
    }
    Ok(if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("t_{name}")
    } else {
        name
    })
}

/// Column names from a file: a single line is split at commas; otherwise each non-empty line
/// gives its first comma-separated field (so both NSL-KDD's `columns.txt` and its
/// `Field Names.csv`, `name,type` per line, work).
pub fn read_column_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_column_names(&text))
}

fn parse_column_names(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let names: Vec<&str> = match lines.as_slice() {
        [one] => one.split(',').collect(),
        many => many.iter().map(|l| l.split(',').next().unwrap_or_default()).collect(),
    };
    names
        .into_iter()
        .map(|n| n.trim().trim_matches('"').trim().to_string())
        .collect()
}

fn check_names(names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() {
            return Err(Error::Usage(
                "an empty column name was given\n  hint: name every column, in file order".to_string(),
            ));
        }
        if !seen.insert(n.to_lowercase()) {
            return Err(Error::Usage(format!(
                "column name '{n}' is given twice\n  hint: column names must be unique (case-insensitively)"
            )));
        }
    }
    Ok(())
}

/// What the reader is told instead of detecting it.
#[derive(Debug, Clone, Copy, Default)]
struct Dialect {
    header: Option<bool>,
    delimiter: Option<char>,
}

/// `path` as a glob pattern that matches exactly that file: DuckDB reads a file name as a glob
/// (`d[1].csv` would read `d1.csv`), so each of `*`, `?` and `[` becomes a class of itself.
fn literal_glob(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
}

fn read_csv_call(path: &Path, dialect: &Dialect, names: &[String]) -> String {
    let mut call = format!("read_csv({}", quote_literal(&literal_glob(path)));
    if let Some(h) = dialect.header {
        call.push_str(&format!(", header = {h}"));
    }
    if let Some(d) = dialect.delimiter {
        call.push_str(&format!(
            ", delim = {}, strict_mode = true, null_padding = false",
            quote_literal(&d.to_string())
        ));
    }
    if !names.is_empty() {
        let list: Vec<String> = names.iter().map(|n| quote_literal(n)).collect();
        call.push_str(&format!(", names = [{}]", list.join(", ")));
    }
    call.push(')');
    call
}

/// The columns DuckDB's sniffer finds, read before anything is written so a wrong name list is
/// refused up front.
fn sniffed_columns(store: &Store, path: &Path, dialect: &Dialect) -> Result<Vec<String>> {
    store
        .query_columns(&format!("SELECT * FROM {}", read_csv_call(path, dialect, &[])))
        .map_err(|e| unreadable(path, e))
}

/// Reads every row once with the dialect fixed, so a ragged line is refused with its number
/// before anything is written.
fn check_rows(store: &Store, path: &Path, dialect: &Dialect) -> Result<()> {
    let sql = format!("SELECT count(*) FROM {}", read_csv_call(path, dialect, &[]));
    store
        .conn()
        .query_row(&sql, [], |r| r.get::<_, i64>(0))
        .map(|_| ())
        .map_err(|e| unreadable(path, Error::sql(e)))
}

fn first_line(path: &Path) -> Result<Option<String>> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(file).take(64 * 1024);
    match reader.read_line(&mut line) {
        Ok(_) => Ok(Some(line)),
        // Not UTF-8: let DuckDB's own reader say what is wrong with it.
        Err(_) => Ok(None),
    }
}

/// The delimiter a first line most likely uses: the most frequent of `,` `;` tab `|`.
fn likely_delimiter(line: &str) -> Option<char> {
    [',', ';', '\t', '|']
        .into_iter()
        .map(|d| (line.matches(d).count(), d))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(_, d)| d)
}

/// Tables, views and macros the schema creates (captured history, flows, results, and the
/// schema's own `schema_migrations`): an import must not append to or replace them.
fn is_netlens_table(name: &str) -> bool {
    let schema = crate::store::migrations::schema_text(crate::store::migrations::MIGRATIONS);
    schema.lines().any(|line| {
        let upper = line.trim_start().to_ascii_uppercase();
        [
            "CREATE TABLE ",
            "CREATE VIEW ",
            "CREATE OR REPLACE VIEW ",
            "CREATE MACRO ",
            "CREATE OR REPLACE MACRO ",
        ]
        .iter()
        .find_map(|p| upper.starts_with(p).then(|| &line.trim_start()[p.len()..]))
        .map(|rest| rest.trim_start())
        .map(|rest| {
            if rest.to_ascii_uppercase().starts_with("IF NOT EXISTS ") {
                &rest["IF NOT EXISTS ".len()..]
            } else {
                rest
            }
        })
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '(').next())
        .is_some_and(|t| t.eq_ignore_ascii_case(name))
    })
}

fn is_view(store: &Store, name: &str) -> Result<bool> {
    store
        .conn()
        .query_row(
            &format!(
                "SELECT count(*) > 0 FROM duckdb_views() WHERE NOT internal AND lower(view_name) = lower(?) \
                 AND {IN_THIS_DATABASE}"
            ),
            [name],
            |r| r.get(0),
        )
        .map_err(Error::sql)
}

fn column_summary(store: &Store, table: &str) -> Result<Vec<String>> {
    let mut stmt = store
        .conn()
        .prepare(&format!(
            "SELECT column_name || ':' || data_type FROM duckdb_columns() \
             WHERE lower(table_name) = lower(?) AND schema_name = 'main' AND {IN_THIS_DATABASE} \
             ORDER BY column_index"
        ))
        .map_err(Error::sql)?;
    let rows = stmt.query_map([table], |r| r.get::<_, String>(0)).map_err(Error::sql)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().map_err(Error::sql)
}

/// A one-line account for stderr.
pub fn summary(report: &CsvReport, path: &Path) -> String {
    let verb = match report.mode {
        "append" => "appended",
        "replace" => "replaced",
        _ => "created",
    };
    format!(
        "{}: {} rows into {} ({verb}, {} columns)",
        path.display(),
        report.rows,
        report.table,
        report.columns
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: Ctrl-C while DuckDB's sniffer read the file ended `import csv` as a bad
    /// file (status 1); it is a Ctrl-C (status 130). Other failures name the file.
    #[test]
    fn a_ctrl_c_while_reading_stays_a_ctrl_c() {
        let path = Path::new("big.csv");
        assert!(matches!(unreadable(path, Error::Interrupted), Error::Interrupted));
        let store = Store::open(&crate::store::Location::Memory, false).unwrap();
        let missing = sniffed_columns(
            &store,
            Path::new("/nonexistent/x.csv"),
            &Dialect {
                header: None,
                delimiter: None,
            },
        );
        assert!(matches!(missing, Err(Error::Dataset { .. })), "{missing:?}");
    }

    #[test]
    fn table_names_from_paths() {
        assert_eq!(table_name_from_path(Path::new("/d/KDDTrain+.txt")).unwrap(), "kddtrain");
        assert_eq!(
            table_name_from_path(Path::new("sample network-traffic.csv")).unwrap(),
            "sample_network_traffic"
        );
        assert_eq!(
            table_name_from_path(Path::new("2024 flows.csv")).unwrap(),
            "t_2024_flows"
        );
        assert!(table_name_from_path(Path::new("+++.csv")).is_err());
    }

    #[test]
    fn column_name_files() {
        assert_eq!(parse_column_names("a\nb\r\nc\n\n"), ["a", "b", "c"]);
        assert_eq!(parse_column_names("a, b,\"c\"\n"), ["a", "b", "c"]);
        assert_eq!(
            parse_column_names("duration,continuous\rservice,symbolic\r"),
            ["duration", "service"]
        );
        assert_eq!(parse_column_names("# names\nx\ny"), ["x", "y"]);
    }

    #[test]
    fn netlens_tables_are_recognised() {
        assert!(is_netlens_table("snapshots"));
        assert!(is_netlens_table("Verdicts"));
        assert!(is_netlens_table("flows"));
        assert!(!is_netlens_table("kdd_train"));
        // Regression (issue 22): the schema's own table, views and macros were not on the list.
        for owned in [
            "schema_migrations",
            "connections",
            "latest_feedback",
            "flow_features_by",
            "connection_rollups",
        ] {
            assert!(is_netlens_table(owned), "{owned}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names(&["a".into(), "A".into()]).is_err());
        assert!(check_names(&["a".into(), "".into()]).is_err());
        assert!(check_names(&["a".into(), "b".into()]).is_ok());
    }

    #[test]
    fn delimiters_of_first_lines() {
        assert_eq!(likely_delimiter("a,b,c\n"), Some(','));
        assert_eq!(likely_delimiter("a;b;c,d\n"), Some(';'));
        assert_eq!(likely_delimiter("a\tb\n"), Some('\t'));
        assert_eq!(likely_delimiter("single\n"), None);
    }

    #[test]
    fn paths_are_globs_of_themselves() {
        assert_eq!(literal_glob(Path::new("/t/d[1]*?.csv")), "/t/d[[]1][*][?].csv");
        assert_eq!(literal_glob(Path::new("/t/plain.csv")), "/t/plain.csv");
    }

    #[test]
    fn read_csv_call_quotes_everything() {
        let dialect = Dialect {
            header: Some(false),
            delimiter: None,
        };
        let call = read_csv_call(Path::new("/t/it's.csv"), &dialect, &["a'b".to_string()]);
        assert_eq!(call, "read_csv('/t/it''s.csv', header = false, names = ['a''b'])");
    }

    /// Issue 22 (fuzzing): damaged header lines and `--columns` files through netlens's own
    /// CSV checks (DuckDB reads the rows). None panics, and no more names come out than the
    /// text has separators and lines.
    #[test]
    fn damaged_headers_never_panic() {
        let header = "id,\"src ip\",dst_port;proto\tbytes|label\n# comment\nduration\r\n";
        for (_, case, damaged) in crate::mutate::cases(&[header.as_bytes()], 3000) {
            let text = String::from_utf8_lossy(&damaged);
            let names = parse_column_names(&text);
            assert!(names.len() <= text.len() + 1, "case {case}");
            let _ = check_names(&names);
            let _ = likely_delimiter(&text);
        }
    }
}
