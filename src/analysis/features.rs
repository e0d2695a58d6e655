//! Feature matrices from any table, view or query: which columns are features, how they are
//! encoded (one-hot categories, standard-scaled numbers, with the training statistics), and the
//! one Arrow pass that turns the source's rows into a row-major `f64` matrix.
//!
//! A run's rows are numbered ([`INPUT_ROW`], 0-based), so the rows a model sees, the ids and
//! labels written beside its results, the keys feedback finds them by and the rows `score
//! --into` copies are the same rows. A base table is read in place ([`Input`]): inside the
//! run's transaction its rows cannot change, and its `rowid`s are the row numbers when they run
//! 0..n-1 (no deleted rows), so the one Arrow pass reads the source's own scan, with no copy.
//! Anything else (a view, which may be non-deterministic such as a `LIMIT` without `ORDER BY`,
//! a query, or a table with gaps in its `rowid`s) is first materialised into a run-private TEMP
//! table with a row number, so a view of live data that changes between two reads still gives
//! one set of rows. May touch: the store (reads, and the run's own scratch table).

use std::collections::HashMap;

use duckdb::arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt64Array};
use duckdb::arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{quote_ident, Store};

/// Row-number column of a run's materialised input (0-based position in the source).
pub const INPUT_ROW: &str = "__netlens_row";

/// Columns that name or place a row rather than describe it: never picked as features unless
/// listed with `--features`. Also any column whose name ends in `_ip`, `_addr` or `_h`.
const KEY_COLUMNS: &[&str] = &[
    "id",
    "flow_id",
    "uid",
    "host",
    "connection_id",
    "snapshot_id",
    "import_id",
    "run_id",
    "row_id",
    "source_file",
];

/// Id columns looked for, in order, when `--id` is not given.
const DEFAULT_ID_COLUMNS: &[&str] = &["id", "flow_id", "uid", "connection_id"];

/// Label texts that mean "normal" (everything else is anomalous).
pub const NORMAL_LABELS: &[&str] = &["normal", "benign", "legit", "0", "false"];

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A table or view, by name.
    Relation(String),
    /// An SQL query.
    Query(String),
}

impl Source {
    /// `--on` text: a query when it starts like one (SELECT, WITH, FROM, VALUES, `(`), else a name.
    pub fn parse(text: &str) -> Source {
        let t = text.trim();
        let first = t
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if t.starts_with('(') || matches!(first.as_str(), "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE") {
            Source::Query(t.trim_end_matches(';').to_string())
        } else {
            Source::Relation(t.to_string())
        }
    }

    /// The text for messages and model_runs.input.
    pub fn describe(&self) -> String {
        match self {
            Source::Relation(name) => name.clone(),
            Source::Query(sql) => sql.clone(),
        }
    }

    pub(crate) fn select_sql(&self) -> String {
        match self {
            Source::Relation(name) => format!("SELECT * FROM {}", quote_ident(name)),
            Source::Query(sql) => format!("SELECT * FROM (\n{sql}\n) AS netlens_source"),
        }
    }
}

/// Which columns the user wants as features.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// `--features`: exactly these (in this order); empty means automatic.
    pub features: Vec<String>,
    /// `--exclude`: automatic choice minus these.
    pub exclude: Vec<String>,
    /// `--id`: the column copied into result rows; `None` picks a default.
    pub id: Option<String>,
    /// `--label`: ground truth, never a feature.
    pub label: Option<String>,
}

/// How a source column becomes model input. Stored as [`StoredColumn`]: a numeric column's
/// mean and standard deviation as decimal numbers to read, and as their exact bits to compute with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "StoredColumn", from = "StoredColumn")]
pub enum ColumnEncoding {
    /// A number, scaled to (x - mean) / std with the training statistics (std 0: always 0).
    /// With `log1p`, x is ln(1 + max(x, 0)) first and mean/std are of those values: counts,
    /// bytes and durations are heavy-tailed, and z-scores alone leave one huge transfer
    /// dominating the distances.
    Numeric {
        name: String,
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        log1p: bool,
        /// The column had missing (NULL or non-finite) values in training: a 0/1 column
        /// `<name>_missing` follows it, 1 where the value was missing and imputed by the mean,
        /// so that an imputed row is not mistaken for an average one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missing_flag: bool,
    },
    /// Text, boolean or enum: one 0/1 column per training category. NULL and categories not
    /// seen in training encode as all zeros.
    Categorical { name: String, categories: Vec<String> },
}

/// A [`ColumnEncoding`] as `models.encoding` holds it. `mean` and `std` are decimal numbers for
/// whoever reads the JSON; `mean_bits` and `std_bits` are the same doubles' IEEE-754 bits, which
/// are what a score run computes with: serde_json's decimal text does not always read back the
/// double it was written from (one unit in the last place off), and a scaled value one unit off
/// moved a member's score across a flat stretch of its percentile table, so that a stored
/// ensemble scored its own training rows differently from the run that fitted it
/// (`stored_encodings_read_back_bit_for_bit`). Encodings stored before the bits existed read
/// their decimals.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredColumn {
    Numeric {
        name: String,
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean_bits: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        std_bits: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        log1p: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missing_flag: bool,
    },
    Categorical {
        name: String,
        categories: Vec<String>,
    },
}

impl From<ColumnEncoding> for StoredColumn {
    fn from(c: ColumnEncoding) -> Self {
        match c {
            ColumnEncoding::Numeric {
                name,
                mean,
                std,
                log1p,
                missing_flag,
            } => StoredColumn::Numeric {
                name,
                mean,
                std,
                mean_bits: Some(mean.to_bits()),
                std_bits: Some(std.to_bits()),
                log1p,
                missing_flag,
            },
            ColumnEncoding::Categorical { name, categories } => StoredColumn::Categorical { name, categories },
        }
    }
}

impl From<StoredColumn> for ColumnEncoding {
    fn from(c: StoredColumn) -> Self {
        match c {
            StoredColumn::Numeric {
                name,
                mean,
                std,
                mean_bits,
                std_bits,
                log1p,
                missing_flag,
            } => ColumnEncoding::Numeric {
                name,
                mean: mean_bits.map_or(mean, f64::from_bits),
                std: std_bits.map_or(std, f64::from_bits),
                log1p,
                missing_flag,
            },
            StoredColumn::Categorical { name, categories } => ColumnEncoding::Categorical { name, categories },
        }
    }
}

impl ColumnEncoding {
    fn name(&self) -> &str {
        match self {
            ColumnEncoding::Numeric { name, .. } | ColumnEncoding::Categorical { name, .. } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            ColumnEncoding::Numeric { missing_flag, .. } => 1 + usize::from(*missing_flag),
            ColumnEncoding::Categorical { categories, .. } => categories.len(),
        }
    }
}

/// The input encoding of a model, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub columns: Vec<ColumnEncoding>,
}

impl Encoding {
    /// Encoded feature names in matrix order: numeric columns by name (and `col_missing` after a
    /// column with a missing flag), categories as `col=value`.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for c in &self.columns {
            match c {
                ColumnEncoding::Numeric { name, missing_flag, .. } => {
                    names.push(name.clone());
                    if *missing_flag {
                        names.push(format!("{name}_missing"));
                    }
                }
                ColumnEncoding::Categorical { name, categories } => {
                    names.extend(categories.iter().map(|v| format!("{name}={v}")))
                }
            }
        }
        names
    }

    /// Number of matrix columns.
    pub fn width(&self) -> usize {
        self.columns.iter().map(ColumnEncoding::width).sum()
    }

    /// Per matrix column: (mean, std) to turn a scaled value back into the encoded units
    /// (categories: share 0..1, so (0, 1)); see [`Encoding::log_columns`] for the columns whose
    /// encoded units are ln(1 + x).
    pub fn unscale(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnEncoding::Numeric {
                    mean,
                    std,
                    missing_flag,
                    ..
                } => {
                    out.push((*mean, if *std > 0.0 { *std } else { 1.0 }));
                    if *missing_flag {
                        out.push((0.0, 1.0));
                    }
                }
                ColumnEncoding::Categorical { categories, .. } => out.extend(categories.iter().map(|_| (0.0, 1.0))),
            }
        }
        out
    }

    /// Per matrix column: whether it holds ln(1 + x) (undo with `exp_m1`).
    pub fn log_columns(&self) -> Vec<bool> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnEncoding::Numeric {
                    log1p, missing_flag, ..
                } => {
                    out.push(*log1p);
                    if *missing_flag {
                        out.push(false);
                    }
                }
                ColumnEncoding::Categorical { categories, .. } => out.extend(categories.iter().map(|_| false)),
            }
        }
        out
    }
}

/// Options of the automatic feature choice.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Text columns with more distinct values than this are identifiers, not features.
    pub max_categories: usize,
    /// `--set log1p=true`: numeric columns that are never negative and exceed 1 (counts,
    /// bytes, durations) are log1p-transformed before scaling. Off here; the stages where it
    /// was measured to help turn it on by default (`analysis::LOG1P_BY_DEFAULT`).
    pub log1p: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_categories: 100,
            log1p: false,
        }
    }
}

/// A source read and encoded for one run.
#[derive(Debug)]
pub struct Loaded {
    /// Row-major matrix, one row per source row (in [`INPUT_ROW`] order).
    pub x: Array2<f64>,
    pub encoding: Encoding,
    /// NULL/NaN/infinite numeric cells replaced with the training mean.
    pub imputed: u64,
    /// The id column used, if any.
    pub id_column: Option<String>,
    /// Per row: Some(true) labelled anomalous, Some(false) normal, None unlabelled; empty without a label.
    pub labels: Vec<Option<bool>>,
    pub label_column: Option<String>,
    /// Where the rows are, for SQL that needs them again (ids, keys, `score --into`).
    pub input: Input,
    /// Per row: the id column as text (a `Utf8` array), read in the same pass; None without one.
    pub ids: Option<ArrayRef>,
    /// Per row: the key of its values ([`crate::analysis::marks::row_key_sql`]) when asked for
    /// and there is no id column.
    pub row_keys: Option<Vec<u64>>,
    /// Source columns (without the row number), for score --into.
    pub source_columns: Vec<String>,
    /// Columns the automatic choice skipped, and why (for messages).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Categorical,
    Other,
}

/// A feature column picked for a model: name, kind, and whether `--features` named it.
type Chosen = (String, Kind, bool);

fn kind_of(data_type: &str) -> Kind {
    let t = data_type.to_ascii_uppercase();
    let numeric = [
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
    ];
    if numeric.contains(&t.as_str()) || t.starts_with("DECIMAL") {
        Kind::Numeric
    } else if t == "VARCHAR" || t == "BOOLEAN" || t.starts_with("ENUM") {
        Kind::Categorical
    } else {
        Kind::Other
    }
}

fn is_key_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    KEY_COLUMNS.contains(&n.as_str()) || n.ends_with("_ip") || n.ends_with("_addr") || n.ends_with("_h")
}

/// A column holding port numbers (`dst_port`, `resp_p`, `remote_port_mean`, ...): a port is a
/// name, not a quantity (443 is not "near" 445), so it is never picked as a numeric feature
/// unless listed with `--features`; the feature views carry `service_port`, its category.
fn is_port_number_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "port"
        || n.ends_with("_port")
        || ["_port_min", "_port_max", "_port_mean", "_port_std", "_port_median"]
            .iter()
            .any(|s| n.ends_with(s))
        || ["orig_p", "resp_p", "src_p", "dst_p"].contains(&n.as_str())
}

/// A failure to read the source; a Ctrl-C stays what it is, so the command exits as interrupted.
fn read_error(source: &Source, e: duckdb::Error) -> Error {
    match Error::sql(e) {
        Error::Interrupted => Error::Interrupted,
        e => source_error(source, format!("cannot read it: {e}")),
    }
}

fn source_error(source: &Source, reason: impl Into<String>) -> Error {
    Error::FeatureSource {
        input: short(&source.describe()),
        reason: reason.into(),
    }
}

/// A query shortened for messages.
pub fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(77).collect::<String>())
    } else {
        one_line
    }
}

/// A run's rows as a relation with [`INPUT_ROW`] and every column of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    relation: String,
    /// The run's TEMP copy of the source; None when a base table is read in place.
    scratch: Option<String>,
    /// A base table read in place: its rows (`rowid`s 0..rows).
    rows: Option<u64>,
    /// The table read in place is a TEMP one, which no other connection sees.
    temporary: bool,
}

impl Input {
    /// SQL that can stand after FROM or JOIN (and take an alias).
    pub fn relation(&self) -> &str {
        &self.relation
    }

    /// Whether the source is read in place (no copy).
    pub fn in_place(&self) -> bool {
        self.scratch.is_none()
    }

    /// Drops the run's copy, if there is one (before the run commits).
    pub fn drop(&self, conn: &duckdb::Connection) -> Result<()> {
        match &self.scratch {
            Some(table) => conn
                .execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))
                .map_err(Error::sql),
            None => Ok(()),
        }
    }
}

/// A run's input and the source's columns (name, type).
pub type Opened = (Input, Vec<(String, String)>);

/// The source's rows for one run, with their columns: a base table in place when it can be
/// (module doc), else materialised into the TEMP table `scratch`. Call inside the run's
/// transaction: that is what keeps a base table's rows and `rowid`s fixed for the run, and a
/// copy disappears with a rollback (the caller drops it before commit).
pub fn open_input(store: &Store, source: &Source, scratch: &str) -> Result<Opened> {
    if let Source::Relation(name) = source {
        if let Some(found) = in_place(store, name)? {
            return Ok(found);
        }
    }
    let columns = materialise(store, source, scratch)?;
    let input = Input {
        relation: quote_ident(scratch),
        scratch: Some(scratch.to_string()),
        rows: None,
        temporary: true,
    };
    Ok((input, columns))
}

/// A base table whose `rowid`s are exactly 0..n-1, as an [`Input`] read in place; None for
/// anything else. Only catalog queries and statements that cannot fail on a base table run here:
/// a failed statement would end the run's transaction.
fn in_place(store: &Store, name: &str) -> Result<Option<Opened>> {
    let conn = store.conn();
    let in_this = crate::store::IN_THIS_DATABASE;
    let (tables, views, temporary): (i64, i64, bool) = conn
        .query_row(
            &format!(
                "SELECT t.n, (SELECT count(*) FROM duckdb_views() WHERE NOT internal AND {in_this} AND lower(view_name) = lower($1)), \
                        t.temporary \
                 FROM (SELECT count(*) AS n, count(*) FILTER (WHERE database_name = 'temp') > 0 AS temporary \
                       FROM duckdb_tables() WHERE NOT internal AND {in_this} AND lower(table_name) = lower($1)) t"
            ),
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(Error::sql)?;
    // One base table of that name (a TEMP one of the same name would make the name ambiguous).
    if tables != 1 || views != 0 {
        return Ok(None);
    }
    let table = quote_ident(name);
    let columns = describe(conn, &table)?;
    // A column of the table's own called rowid hides the row's; the row number must not clash.
    if columns
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("rowid") || n.eq_ignore_ascii_case(INPUT_ROW))
    {
        return Ok(None);
    }
    let (rows, last): (i64, Option<i64>) = conn
        .query_row(&format!("SELECT count(*), max(rowid) FROM {table}"), [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(Error::sql)?;
    // Distinct rowids whose largest is n-1 are 0..n-1. Deleted rows leave gaps (until DuckDB
    // rewrites the row groups): such a table is copied, as a view is.
    if last.map_or(rows != 0, |last| last + 1 != rows) {
        return Ok(None);
    }
    // `rowid < n` leaves out rows the run itself appends to its own source (a run reading a
    // result table): the rows of this transaction get rowids far above any stored row's.
    let relation = format!("(SELECT rowid AS {INPUT_ROW}, * FROM {table} WHERE rowid < {rows})");
    Ok(Some((
        Input {
            relation,
            scratch: None,
            rows: u64::try_from(rows).ok(),
            temporary,
        },
        columns,
    )))
}

/// Column names and types of a relation (`what`: SQL naming it).
fn describe(conn: &duckdb::Connection, what: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(&format!("SELECT column_name, column_type FROM (DESCRIBE {what})"))
        .map_err(Error::sql)?;
    let columns = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(Error::sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::sql)?;
    Ok(columns)
}

/// Materialises `source` into the temporary table `input_table` (with [`INPUT_ROW`]). Call inside
/// the run's transaction: the table then disappears with a rollback, and the caller drops it
/// before commit.
pub fn materialise(store: &Store, source: &Source, input_table: &str) -> Result<Vec<(String, String)>> {
    if let Source::Relation(name) = source {
        if !store.relation_exists(name)? {
            return Err(Error::UnknownTable { name: name.clone() });
        }
    }
    let conn = store.conn();
    // Exactly one statement: a source (given now, or stored in a model by whoever made the
    // database) that closed the parentheses below and went on with `; COPY ... TO` would
    // otherwise run what it likes at retrain. DuckDB refuses to prepare more than one.
    if let Source::Query(sql) = source {
        crate::store::statements::one(sql, "a feature source").map_err(|e| source_error(source, e.to_string()))?;
    }
    // A TEMP table: it lives in memory (spilling only under memory pressure) and never reaches
    // the database file, so its rows are not compressed and written out only to be dropped
    // before the commit.
    conn.execute(
        &format!(
            "CREATE TEMP TABLE {} AS SELECT (row_number() OVER ()) - 1 AS {INPUT_ROW}, * FROM (\n{}\n) AS netlens_rows",
            quote_ident(input_table),
            source.select_sql()
        ),
        [],
    )
    .map_err(|e| read_error(source, e))?;
    let columns = describe(conn, &quote_ident(input_table))?;
    Ok(columns.into_iter().filter(|(n, _)| n != INPUT_ROW).collect())
}

fn find_column<'a>(columns: &'a [(String, String)], name: &str) -> Option<&'a (String, String)> {
    columns
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
}

/// The id column: `--id` when given (must exist), else the first of the usual names present.
fn pick_id(source: &Source, columns: &[(String, String)], selection: &Selection) -> Result<Option<String>> {
    match &selection.id {
        Some(id) => find_column(columns, id)
            .map(|(n, _)| Some(n.clone()))
            .ok_or_else(|| source_error(source, format!("has no column '{id}' for --id"))),
        None => Ok(DEFAULT_ID_COLUMNS
            .iter()
            .find_map(|d| find_column(columns, d).map(|(n, _)| n.clone()))),
    }
}

/// Chooses the training features: `--features` exactly, or every numeric and categorical column
/// that is not the id, the label, an excluded or a key column.
fn choose_features(
    source: &Source,
    columns: &[(String, String)],
    selection: &Selection,
    id: Option<&str>,
    label: Option<&str>,
) -> Result<(Vec<Chosen>, Vec<String>)> {
    let mut skipped = Vec::new();
    let mut chosen = Vec::new();
    if !selection.features.is_empty() {
        for wanted in &selection.features {
            let (name, ty) = find_column(columns, wanted)
                .ok_or_else(|| source_error(source, format!("has no column '{wanted}' (named in --features)")))?;
            if Some(name.as_str()) == label {
                return Err(source_error(
                    source,
                    format!("'{name}' is the --label column and cannot also be a feature"),
                ));
            }
            match kind_of(ty) {
                Kind::Other => {
                    return Err(source_error(
                        source,
                        format!("column '{name}' has type {ty}, which is neither a number nor a category"),
                    ))
                }
                kind => chosen.push((name.clone(), kind, true)),
            }
        }
    } else {
        for wanted in &selection.exclude {
            if find_column(columns, wanted).is_none() {
                return Err(source_error(
                    source,
                    format!("has no column '{wanted}' (named in --exclude)"),
                ));
            }
        }
        for (name, ty) in columns {
            let excluded = selection.exclude.iter().any(|e| e.eq_ignore_ascii_case(name));
            if excluded || Some(name.as_str()) == id || Some(name.as_str()) == label {
                continue;
            }
            if is_key_name(name) {
                skipped.push(format!("{name} (a key, not a feature)"));
                continue;
            }
            if is_port_number_name(name) && kind_of(ty) == Kind::Numeric {
                skipped.push(format!(
                    "{name} (a port number, not a quantity; use a category such as service_port, or --features)"
                ));
                continue;
            }
            match kind_of(ty) {
                Kind::Other => skipped.push(format!("{name} ({ty})")),
                kind => chosen.push((name.clone(), kind, false)),
            }
        }
    }
    if !chosen.iter().any(|(_, k, _)| *k == Kind::Numeric) && chosen.iter().all(|(_, k, _)| *k != Kind::Categorical) {
        return Err(source_error(
            source,
            "has no numeric or categorical feature column\n  hint: name them with --features a,b (numbers, text, booleans)",
        ));
    }
    if !chosen.iter().any(|(_, k, _)| *k == Kind::Numeric) {
        return Err(source_error(
            source,
            "has no numeric feature column (only categories)\n  hint: add a numeric column, or name features with --features",
        ));
    }
    Ok((chosen, skipped))
}

/// SQL turning the label column into anomalous (true) / normal (false) / NULL.
fn label_expr(name: &str, data_type: &str) -> String {
    let col = quote_ident(name);
    let t = data_type.to_ascii_uppercase();
    if t == "BOOLEAN" {
        col
    } else if kind_of(&t) == Kind::Numeric {
        format!("({col} <> 0)")
    } else {
        let normal = NORMAL_LABELS
            .iter()
            .map(|l| format!("'{l}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("(lower(rtrim(trim(CAST({col} AS VARCHAR)), '.')) NOT IN ({normal}))")
    }
}

/// The rows a model reads from a run's input table, as a whole: how many, and an
/// order-independent 64-bit fingerprint of them (the sum, modulo 2^64, of DuckDB's `hash` of
/// each row's values in the model's source columns). Two reads give the same pair exactly when they hold
/// the same rows as a multiset (up to a 64-bit hash collision), in whatever order: this is how a
/// score run knows it re-reads the rows its model was fitted on, also through a live view that
/// gained, lost or changed rows since (then the pair differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFingerprint {
    pub rows: u64,
    pub fingerprint: u64,
}

impl RowFingerprint {
    /// Reads it from `loaded`'s input table over the columns of `encoding`; or, when the row keys
    /// were read with the features over exactly those columns in that order (a source whose
    /// columns are all features), sums the keys read: the same `hash` of the same values, so
    /// the same pair, without another pass over the source.
    pub fn of(conn: &duckdb::Connection, loaded: &Loaded, encoding: &Encoding) -> Result<RowFingerprint> {
        let names: Vec<&str> = encoding
            .columns
            .iter()
            .map(|c| {
                loaded
                    .source_columns
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(c.name()))
                    .map_or(c.name(), |s| s.as_str())
            })
            .collect();
        if let Some(keys) = &loaded.row_keys {
            if !names.is_empty() && names.iter().eq(loaded.source_columns.iter()) {
                return Ok(RowFingerprint {
                    rows: keys.len() as u64,
                    fingerprint: keys.iter().fold(0u64, |sum, k| sum.wrapping_add(*k)),
                });
            }
        }
        Self::read(conn, loaded, &names)
    }

    /// [`RowFingerprint::of`] as one query over the input (`names`: the source's columns).
    fn read(conn: &duckdb::Connection, loaded: &Loaded, names: &[&str]) -> Result<RowFingerprint> {
        let columns: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
        // DuckDB's hash of several values combines them in order (NULLs included). A row of
        // zeros hashes to 0 and adds nothing to the sum, but the row count still tells a set
        // with one more or fewer of them apart. (Hashing the row cast to text is 10x slower:
        // 1.4 s against 0.12 s on NSL-KDD's 125 973 training rows.)
        let row = if columns.is_empty() {
            "''".to_string()
        } else {
            columns.join(", ")
        };
        let (rows, fingerprint): (i64, String) = conn
            .query_row(
                &format!(
                    "SELECT count(*), CAST(CAST(coalesce(sum(hash({row})), 0) % 18446744073709551616 AS UBIGINT) AS VARCHAR) FROM {}",
                    loaded.input.relation()
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(Error::sql)?;
        Ok(RowFingerprint {
            rows: u64::try_from(rows).unwrap_or(0),
            fingerprint: fingerprint.parse().map_err(|_| Error::Sql {
                message: format!("row fingerprint '{fingerprint}' is not a 64-bit number"),
            })?,
        })
    }

    /// As stored in a training run's metrics: `training_rows` and `training_fingerprint` (hex).
    pub fn to_metrics(self, metrics: &mut serde_json::Map<String, serde_json::Value>) {
        metrics.insert("training_rows".into(), serde_json::json!(self.rows));
        metrics.insert(
            "training_fingerprint".into(),
            serde_json::json!(format!("{:016x}", self.fingerprint)),
        );
    }

    /// Read back from a training run's metrics; None for runs that did not store it (models
    /// fitted before it existed).
    pub fn from_metrics(metrics: &serde_json::Value) -> Option<RowFingerprint> {
        Some(RowFingerprint {
            rows: metrics.get("training_rows")?.as_u64()?,
            fingerprint: u64::from_str_radix(metrics.get("training_fingerprint")?.as_str()?, 16).ok()?,
        })
    }
}

/// Reads a training source: chooses and encodes features, learning the encoding. `scratch`
/// names the run's copy of the source when it needs one ([`open_input`]); with `keys`, a source
/// without an id column also gives each row's key of values ([`Loaded::row_keys`]).
pub fn load_training(
    store: &Store,
    source: &Source,
    selection: &Selection,
    limits: Limits,
    scratch: &str,
    keys: bool,
) -> Result<Loaded> {
    let (input, columns) = open_input(store, source, scratch)?;
    let id = pick_id(source, &columns, selection)?;
    let label = match &selection.label {
        Some(l) => Some(
            find_column(&columns, l)
                .map(|(n, _)| n.clone())
                .ok_or_else(|| source_error(source, format!("has no column '{l}' for --label")))?,
        ),
        None => None,
    };
    let (chosen, mut skipped) = choose_features(source, &columns, selection, id.as_deref(), label.as_deref())?;
    let extra = Extra {
        id: id.as_deref(),
        keys: keys && id.is_none(),
    };
    let mut raw = read_raw(
        store,
        source,
        &input,
        &columns,
        &chosen,
        label.as_deref(),
        extra,
        None,
        split_point(store, &input),
        true,
    )?;
    if raw.rows == 0 {
        return Err(source_error(source, "has no rows to learn from"));
    }
    // Every feature a number and the raw values already in the matrix: the encoding is learnt
    // from it and applied in place. Otherwise it is learnt from the columns read.
    let (x, encoding, imputed) = match raw.x.take() {
        Some((x, _)) => learn_in_place(x, &chosen, raw.rows, limits.log1p),
        None => learn_from_columns(source, &raw, &chosen, limits, &mut skipped)?,
    };
    Ok(Loaded {
        x,
        encoding,
        imputed,
        id_column: id,
        labels: raw.labels,
        label_column: label,
        input,
        ids: raw.ids,
        row_keys: raw.keys,
        source_columns: columns.into_iter().map(|(n, _)| n).collect(),
        skipped,
    })
}

/// The encoding of a matrix of raw numbers (one column per feature in `chosen`, NaN for
/// missing), learnt from it ([`column_stats`]) and applied in place: the matrix, encoding and
/// imputed count the same values read into columns give. A column with some values missing
/// needs a flag cell beside it, which this layout has no room for: then the columns are taken
/// out of the matrix and encoded as any other read's, to the same bits.
fn learn_in_place(mut x: Array2<f64>, chosen: &[Chosen], rows: usize, log1p: bool) -> (Array2<f64>, Encoding, u64) {
    let width = x.ncols();
    let stats = column_stats(x.as_slice().expect("a new matrix is contiguous"), width, log1p);
    let encoding = Encoding {
        columns: chosen
            .iter()
            .zip(&stats)
            .map(|((name, _, _), s)| ColumnEncoding::Numeric {
                name: name.clone(),
                mean: s.mean,
                std: s.std,
                log1p: s.log1p,
                missing_flag: s.missing > 0 && s.missing < rows,
            })
            .collect(),
    };
    let imputed = if encoding.width() == width {
        let cells: Vec<NumericCell> = stats
            .iter()
            .map(|s| NumericCell::new(s.mean, s.std, s.log1p, false))
            .collect();
        scale_in_place(&mut x, &cells)
    } else {
        let columns: Vec<RawColumn> = (0..width).map(|j| RawColumn::Numbers(x.column(j).to_vec())).collect();
        // The raw matrix goes before the encoded one is made: two at once would be one too many.
        drop(std::mem::take(&mut x));
        let refs: Vec<&RawColumn> = columns.iter().collect();
        let (encoded, imputed) = encode(&encoding, &refs, rows);
        x = encoded;
        imputed
    };
    (x, encoding, imputed)
}

/// The encoding learnt from the columns read (numbers and categories), and the matrix encoded
/// with it. A category column with too many values is an error when it was asked for, else
/// left out (`skipped` says so).
fn learn_from_columns(
    source: &Source,
    raw: &Raw,
    chosen: &[Chosen],
    limits: Limits,
    skipped: &mut Vec<String>,
) -> Result<(Array2<f64>, Encoding, u64)> {
    // Learn the encoding. Each numeric column's statistics are its own: computed in parallel.
    let stats: Vec<Option<NumericStats>> = {
        use rayon::prelude::*;
        raw.columns
            .par_iter()
            .map(|column| match column {
                RawColumn::Numbers(values) => Some(numeric_stats(values, limits.log1p)),
                RawColumn::Codes { .. } => None,
            })
            .collect()
    };
    let mut encodings = Vec::new();
    let mut kept_columns = Vec::new();
    for (i, (name, kind, explicit)) in chosen.iter().enumerate() {
        match (kind, &raw.columns[i]) {
            (Kind::Numeric, RawColumn::Numbers(values)) => {
                let Some(NumericStats {
                    log1p,
                    mean,
                    std,
                    missing,
                }) = stats[i]
                else {
                    return Err(source_error(source, format!("column '{name}' could not be read")));
                };
                encodings.push(ColumnEncoding::Numeric {
                    name: name.clone(),
                    mean,
                    std,
                    log1p,
                    missing_flag: missing > 0 && missing < values.len(),
                });
                kept_columns.push(i);
            }
            (_, RawColumn::Codes { dictionary, .. }) => {
                if dictionary.len() > limits.max_categories {
                    let why = format!(
                        "column '{name}' has {} distinct values, more than max_categories={} (an identifier rather than a category?)",
                        dictionary.len(),
                        limits.max_categories
                    );
                    if *explicit {
                        return Err(source_error(
                            source,
                            format!("{why}\n  hint: leave it out, or raise the limit with --set max_categories=N"),
                        ));
                    }
                    skipped.push(format!("{name} ({} categories)", dictionary.len()));
                    continue;
                }
                let mut categories = dictionary.clone();
                categories.sort();
                encodings.push(ColumnEncoding::Categorical {
                    name: name.clone(),
                    categories,
                });
                kept_columns.push(i);
            }
            _ => return Err(source_error(source, format!("column '{name}' could not be read"))),
        }
    }
    if !encodings.iter().any(|e| matches!(e, ColumnEncoding::Numeric { .. })) {
        return Err(source_error(
            source,
            "has no numeric feature column left after skipping identifiers",
        ));
    }
    let encoding = Encoding { columns: encodings };
    let kept: Vec<&RawColumn> = kept_columns.iter().map(|&i| &raw.columns[i]).collect();
    let (x, imputed) = encode(&encoding, &kept, raw.rows);
    Ok((x, encoding, imputed))
}

/// Reads a source to score with a stored encoding. Every model column must be there with a
/// compatible type; extra columns are ignored (and copied by score --into). `scratch` and
/// `keys` as for [`load_training`].
pub fn load_for_model(
    store: &Store,
    source: &Source,
    encoding: &Encoding,
    selection: &Selection,
    scratch: &str,
    keys: bool,
) -> Result<Loaded> {
    let (input, columns) = open_input(store, source, scratch)?;
    let id = pick_id(source, &columns, selection)?;
    let label = match &selection.label {
        Some(l) => find_column(&columns, l).map(|(n, _)| n.clone()),
        None => None,
    };
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for c in &encoding.columns {
        let want = match c {
            ColumnEncoding::Numeric { .. } => Kind::Numeric,
            ColumnEncoding::Categorical { .. } => Kind::Categorical,
        };
        match find_column(&columns, c.name()) {
            None => missing.push(c.name().to_string()),
            Some((name, ty)) => {
                let kind = kind_of(ty);
                if want == Kind::Numeric && kind != Kind::Numeric {
                    return Err(source_error(
                        source,
                        format!("column '{name}' is {ty} here but the model was trained on it as a number"),
                    ));
                }
                if kind == Kind::Other {
                    return Err(source_error(
                        source,
                        format!("column '{name}' is {ty} here but the model was trained on it as a category"),
                    ));
                }
                chosen.push((name.clone(), want, true));
            }
        }
    }
    if !missing.is_empty() {
        return Err(source_error(
            source,
            format!(
                "lacks column(s) the model was trained on: {}\n  hint: the model reads {}",
                missing.join(", "),
                encoding.columns.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let extra = Extra {
        id: id.as_deref(),
        keys: keys && id.is_none(),
    };
    let raw = read_raw(
        store,
        source,
        &input,
        &columns,
        &chosen,
        label.as_deref(),
        extra,
        Some(encoding),
        split_point(store, &input),
        true,
    )?;
    let (x, imputed) = match raw.x {
        Some(filled) => filled,
        None => {
            let refs: Vec<&RawColumn> = raw.columns.iter().collect();
            encode(encoding, &refs, raw.rows)
        }
    };
    Ok(Loaded {
        x,
        encoding: encoding.clone(),
        imputed,
        id_column: id,
        labels: raw.labels,
        label_column: label,
        input,
        ids: raw.ids,
        row_keys: raw.keys,
        source_columns: columns.into_iter().map(|(n, _)| n).collect(),
        skipped: Vec::new(),
    })
}

/// One source column as read.
enum RawColumn {
    /// NaN stands for NULL (and NaN); infinities are kept until encoding.
    Numbers(Vec<f64>),
    /// Index into `dictionary` per row; `u32::MAX` for NULL or (scoring) an unseen category.
    Codes { codes: Vec<u32>, dictionary: Vec<String> },
}

struct Raw {
    rows: usize,
    /// Each left empty when the matrix was filled as the rows were read (`x`).
    columns: Vec<RawColumn>,
    /// The matrix and its imputed cells, when filled as the rows were read: encoded with the
    /// stored encoding, or without one the raw values (NaN for missing; no cell imputed yet).
    x: Option<(Array2<f64>, u64)>,
    labels: Vec<Option<bool>>,
    ids: Option<ArrayRef>,
    keys: Option<Vec<u64>>,
}

/// What the read pass brings along besides features and label.
#[derive(Debug, Clone, Copy)]
struct Extra<'a> {
    /// The id column, read as text.
    id: Option<&'a str>,
    /// Each row's key of values (over every source column).
    keys: bool,
}

/// Rows below which a source is read by one reader: a second connection and thread cost more
/// than they save on a small read.
const SPLIT_MIN_ROWS: u64 = 256 * 1024;

/// Where [`read_raw`] splits the input between two readers: the first row of the second
/// reader's range, or None to read it in one pass. Only a base table read in place
/// ([`Input::rows`]) is split: its rows are the same to any connection that reads them, as
/// long as no other connection of this process can commit between the run's transaction and
/// the second reader's (a store that shares its database, as a server's does, is read by one
/// reader); another process cannot write to a database this one has open. It also assumes
/// that the run has not changed the table in its own transaction before reading it (the second
/// reader sees only committed rows): no caller does. A TEMP table is not split (no other
/// connection sees it). The split is rounded up to a multiple of the row group size new files
/// are written with, so that each reader's `rowid` range mostly skips the other's row groups.
fn split_point(store: &Store, input: &Input) -> Option<u64> {
    let rows = input.rows?;
    if store.is_shared() || input.temporary || rows < SPLIT_MIN_ROWS {
        return None;
    }
    let group = crate::store::ROW_GROUP_SIZE as u64;
    Some((rows / 2).div_ceil(group) * group).filter(|&m| m > 0 && m < rows)
}

/// What one pass of [`read_raw`] reads, and where each part sits in its rows.
struct Query<'a> {
    source: &'a Source,
    /// SELECT ... FROM the input, without a WHERE.
    sql: String,
    chosen: &'a [Chosen],
    label: bool,
    id_column: Option<usize>,
    key_column: Option<usize>,
    row_column: usize,
    known: Option<&'a Encoding>,
    /// The input's rows, when known before the read ([`Input::rows`]).
    rows: Option<u64>,
}

/// The rows one reader took over, in the order it read them.
struct Part {
    rows: usize,
    columns: Vec<RawColumn>,
    /// Cells imputed while filling the matrix.
    imputed: u64,
    labels: Vec<Option<bool>>,
    id_chunks: Vec<ArrayRef>,
    keys: Vec<u64>,
    positions: Vec<i64>,
}

/// One Arrow pass over the run's input: numbers as DOUBLE, categories as VARCHAR, the label
/// as a boolean, and what `extra` asks for. With `known`, categories map to the stored ones.
/// With `split` ([`split_point`]), rows below it are read on this connection and the rest on a
/// second connection in a thread of its own, at the same time, so that taking DuckDB's chunks
/// over (the Arrow hand-over, most of a large read) runs on two cores; the parts are joined in
/// row order, and every value, code and dictionary comes out as one pass would give it.
/// With `fill` and a base table read in place (its rows known before the read), the chunks go
/// straight into the matrix ([`Raw::x`]) at their row numbers, without the columns in between:
/// encoded cell for cell as [`encode`] computes them with a stored encoding (`known`), or as raw
/// values when every feature is a number (training learns its encoding from them). Both callers
/// fill; the columns alone (`fill` false) are what the tests compare the matrix with.
#[allow(clippy::too_many_arguments)]
fn read_raw(
    store: &Store,
    source: &Source,
    input: &Input,
    columns: &[(String, String)],
    chosen: &[Chosen],
    label: Option<&str>,
    extra: Extra<'_>,
    known: Option<&Encoding>,
    split: Option<u64>,
    fill: bool,
) -> Result<Raw> {
    let mut select: Vec<String> = chosen
        .iter()
        .map(|(name, kind, _)| match kind {
            Kind::Numeric => format!("CAST({} AS DOUBLE)", quote_ident(name)),
            _ => format!("CAST({} AS VARCHAR)", quote_ident(name)),
        })
        .collect();
    if let Some(l) = label {
        let ty = find_column(columns, l).map(|(_, t)| t.as_str()).unwrap_or("VARCHAR");
        select.push(label_expr(l, ty));
    }
    let id_column = extra.id.map(|id| {
        select.push(format!("CAST({} AS VARCHAR)", quote_ident(id)));
        select.len() - 1
    });
    let key_column = extra.keys.then(|| {
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        select.push(crate::analysis::marks::row_key_sql("", &names));
        select.len() - 1
    });
    // The row number comes along instead of an ORDER BY: a scan returns it in order anyway, and
    // when it does not, placing rows by number is cheaper than sorting them.
    select.push(INPUT_ROW.to_string());
    let query = Query {
        source,
        sql: format!("SELECT {} FROM {}", select.join(", "), input.relation()),
        chosen,
        label: label.is_some(),
        id_column,
        key_column,
        row_column: select.len() - 1,
        known,
        rows: input.rows,
    };
    let conn = store.conn();
    // The second reader's connection; a connection that cannot be made or set to this one's
    // catalog only means one reader (nothing failed on the run's own connection).
    let second = split.and_then(|m| second_reader(conn).map(|c| (m, c)));
    // The matrix's width: the stored encoding's, or one cell per feature column for raw values
    // (only when every feature is a number: a category's cells are known only after the read).
    let width = match known {
        Some(encoding) => Some(encoding.width()),
        None if !chosen.is_empty() && chosen.iter().all(|(_, kind, _)| *kind == Kind::Numeric) => Some(chosen.len()),
        None => None,
    };
    let direct = match (fill, width, input.rows) {
        (true, Some(width), Some(rows)) => usize::try_from(rows).ok().map(|rows| (width, rows)),
        _ => None,
    };
    let mut matrix = direct.map(|(width, rows)| Array2::<f64>::zeros((rows, width)));
    let mut cells: &mut [f64] = match &mut matrix {
        Some(x) => x.as_slice_mut().expect("a new matrix is contiguous"),
        None => &mut [],
    };
    let part = match second {
        None => read_part(conn, &query, None, Fill::from_row(direct, known, cells, 0).as_mut())?,
        Some((m, other)) => {
            let at = direct.map_or(0, |(width, rows)| {
                usize::try_from(m).unwrap_or(usize::MAX).min(rows) * width
            });
            let (first_cells, rest_cells) = std::mem::take(&mut cells).split_at_mut(at);
            // A server's client cancelling stops the second reader too.
            let call = crate::interrupt::carry();
            let (first, rest) = std::thread::scope(|scope| {
                let query = &query;
                let mut rest_fill = Fill::from_row(direct, known, rest_cells, m);
                let rest = scope.spawn(move || {
                    let _call = call.enter();
                    let part = read_part(&other, query, Some((m, None)), rest_fill.as_mut());
                    (part, rest_fill)
                });
                let mut first_fill = Fill::from_row(direct, known, first_cells, 0);
                let first = read_part(conn, query, Some((0, Some(m))), first_fill.as_mut());
                (first, rest.join())
            });
            // A panic of the second reader's thread is raised before the first reader's error
            // is returned, so that it is never dropped unseen.
            let (rest, mut rest_fill) = match rest {
                Ok(rest) => rest,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            let first = first?;
            // The second reader failing is not the run's failure (its connection may resolve
            // the name otherwise, say): its range is read again on the run's own connection,
            // where an error of the read itself shows as it would have with one reader.
            let rest = match rest {
                Ok(rest) => rest,
                Err(_) => {
                    if let Some(fill) = &mut rest_fill {
                        fill.cells.fill(0.0);
                    }
                    read_part(conn, &query, Some((m, None)), rest_fill.as_mut())?
                }
            };
            join_parts(first, rest)
        }
    };
    let Part {
        rows,
        columns: mut out,
        imputed,
        mut labels,
        id_chunks,
        mut keys,
        positions,
    } = part;
    if matrix.as_ref().is_some_and(|x| x.nrows() != rows) {
        return Err(source_error(source, "the rows read do not match the rows numbered"));
    }
    let mut ids = match id_column {
        None => None,
        Some(_) => Some(text_column(source, &id_chunks)?),
    };
    if positions.iter().enumerate().any(|(i, p)| *p != i as i64) {
        let target = placement(&positions)
            .ok_or_else(|| source_error(source, "the rows read do not match the rows numbered"))?;
        reorder(&target, &mut out, &mut labels, &mut keys);
        if let Some(a) = &mut ids {
            let indices = UInt64Array::from_iter_values(target.iter().map(|&i| i as u64));
            *a = duckdb::arrow::compute::take(a.as_ref(), &indices, None)
                .map_err(|e| source_error(source, format!("cannot place the ids read: {e}")))?;
        }
    }
    // Training dictionaries are sorted, so codes must follow.
    if known.is_none() {
        for column in out.iter_mut() {
            if let RawColumn::Codes { codes, dictionary } = column {
                let mut order: Vec<u32> = (0..dictionary.len() as u32).collect();
                order.sort_by(|a, b| dictionary[*a as usize].cmp(&dictionary[*b as usize]));
                let mut remap = vec![0u32; dictionary.len()];
                for (new, old) in order.iter().enumerate() {
                    remap[*old as usize] = new as u32;
                }
                for c in codes.iter_mut() {
                    if *c != u32::MAX {
                        *c = remap[*c as usize];
                    }
                }
                dictionary.sort();
            }
        }
    }
    Ok(Raw {
        rows,
        columns: out,
        x: matrix.map(|x| (x, imputed)),
        labels,
        ids,
        keys: key_column.map(|_| keys),
    })
}

/// Another connection to `conn`'s database, in its current catalog, schema and search path
/// (where the input's table name resolves); None when it cannot be had.
fn second_reader(conn: &duckdb::Connection) -> Option<duckdb::Connection> {
    let (catalog, schema, path): (String, String, String) = conn
        .query_row(
            "SELECT current_database(), current_schema(), current_setting('search_path')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()?;
    let other = conn.try_clone().ok()?;
    other
        .execute_batch(&format!(
            "USE {}.{}; SET search_path = {}",
            quote_ident(&catalog),
            quote_ident(&schema),
            crate::store::quote_literal(&path)
        ))
        .ok()?;
    Some(other)
}

/// The rows of `query` whose row numbers are in `range` (from, before; None: all of them),
/// taken over chunk by chunk as DuckDB's scan produces them.
fn read_part(
    conn: &duckdb::Connection,
    query: &Query<'_>,
    range: Option<(u64, Option<u64>)>,
    mut fill: Option<&mut Fill<'_>>,
) -> Result<Part> {
    let Query {
        source, chosen, known, ..
    } = *query;
    let sql = match range {
        None => query.sql.clone(),
        Some((from, None)) => format!("{} WHERE {INPUT_ROW} >= {from}", query.sql),
        Some((from, Some(before))) => format!("{} WHERE {INPUT_ROW} >= {from} AND {INPUT_ROW} < {before}", query.sql),
    };
    // A base table's rows are known: every vector is allocated once instead of growing (and
    // being copied) as the chunks come, for the rows from the range's start to the end of the
    // input, so that the first part takes the rest's rows in without growing either. With
    // `fill` the features go into the matrix and their columns stay empty.
    let from = range.map_or(0, |(from, _)| from);
    let expected = query
        .rows
        .map_or(0, |rows| usize::try_from(rows.saturating_sub(from)).unwrap_or(0));
    let columns = if fill.is_some() { 0 } else { expected };
    let mut positions: Vec<i64> = Vec::with_capacity(expected);
    let mut id_chunks: Vec<ArrayRef> = Vec::new();
    let mut keys: Vec<u64> = Vec::with_capacity(if query.key_column.is_some() { expected } else { 0 });
    let mut out: Vec<RawColumn> = chosen
        .iter()
        .enumerate()
        .map(|(i, (_, kind, _))| match kind {
            Kind::Numeric => RawColumn::Numbers(Vec::with_capacity(columns)),
            _ => RawColumn::Codes {
                codes: Vec::with_capacity(columns),
                dictionary: match known.map(|e| &e.columns[i]) {
                    Some(ColumnEncoding::Categorical { categories, .. }) => categories.clone(),
                    _ => Vec::new(),
                },
            },
        })
        .collect();
    let mut lookups: Vec<HashMap<String, u32>> = out
        .iter()
        .map(|c| match c {
            RawColumn::Codes { dictionary, .. } => dictionary
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i as u32))
                .collect(),
            RawColumn::Numbers(_) => HashMap::new(),
        })
        .collect();
    let mut imputed = 0u64;
    let mut labels = Vec::with_capacity(if query.label { expected } else { 0 });
    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
    // Streamed: DuckDB hands over each chunk as its scan produces it, instead of first collecting
    // the whole result on its side (a materialised result, tried, used fewer instructions but
    // no less wall time on two cores, and holds a second copy of the columns until read).
    let batches = stmt.stream_arrow([]).map_err(|e| read_error(source, e))?;
    let mut rows = 0usize;
    for batch in batches {
        // Ctrl-C interrupts the run's connection; a second reader's stops here.
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        let batch = batch.map_err(|e| read_error(source, e))?;
        rows += batch.num_rows();
        let numbers = batch
            .column(query.row_column)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| source_error(source, "the row number did not read as a number"))?;
        if let Some(fill) = &mut fill {
            imputed += fill.rows(query, &batch, numbers, &lookups)?;
        }
        for (i, column) in out.iter_mut().enumerate().filter(|_| fill.is_none()) {
            let array = batch.column(i);
            match column {
                RawColumn::Numbers(values) => {
                    let a = array.as_primitive_opt::<Float64Type>().ok_or_else(|| {
                        source_error(source, format!("column '{}' did not read as numbers", chosen[i].0))
                    })?;
                    if a.null_count() == 0 {
                        values.extend_from_slice(a.values());
                    } else {
                        values.extend(a.iter().map(|v| v.unwrap_or(f64::NAN)));
                    }
                }
                RawColumn::Codes { codes, dictionary } => {
                    let a = array.as_string_opt::<i32>().ok_or_else(|| {
                        source_error(source, format!("column '{}' did not read as text", chosen[i].0))
                    })?;
                    let lookup = &mut lookups[i];
                    for v in a.iter() {
                        let code = match v {
                            None => u32::MAX,
                            Some(text) => match lookup.get(text) {
                                Some(&c) => c,
                                None if known.is_some() => u32::MAX,
                                None => {
                                    let c = dictionary.len() as u32;
                                    dictionary.push(text.to_string());
                                    lookup.insert(text.to_string(), c);
                                    c
                                }
                            },
                        };
                        codes.push(code);
                    }
                }
            }
        }
        if query.label {
            let a = batch.column(chosen.len());
            let a = a
                .as_boolean_opt()
                .ok_or_else(|| source_error(source, "the label column did not read as a class"))?;
            labels.extend(a.iter());
        }
        if let Some(c) = query.id_column {
            id_chunks.push(batch.column(c).clone());
        }
        if let Some(c) = query.key_column {
            let a = batch
                .column(c)
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| source_error(source, "the key of a row's values did not read as a number"))?;
            keys.extend(a.iter().map(|v| v.unwrap_or(0)));
        }
        positions.extend(numbers.iter().map(|v| v.unwrap_or(-1)));
    }
    Ok(Part {
        rows,
        columns: out,
        imputed,
        labels,
        id_chunks,
        keys,
        positions,
    })
}

/// The rows of the matrix one reader puts its chunks into.
struct Fill<'m> {
    /// Rows `first..` of the matrix (row-major, `width` cells a row).
    cells: &'m mut [f64],
    first: u64,
    width: usize,
    /// Encoded with a stored encoding; None: every feature is a number and its raw value is
    /// its cell (NaN for NULL), for training to learn the encoding from and scale in place.
    encoding: Option<&'m Encoding>,
}

impl<'m> Fill<'m> {
    /// The rows of the matrix from row `first` on (`cells`), for one reader to fill; None when
    /// the read fills no matrix (`direct`: the matrix's width and rows, as [`read_raw`] has it).
    fn from_row(
        direct: Option<(usize, usize)>,
        encoding: Option<&'m Encoding>,
        cells: &'m mut [f64],
        first: u64,
    ) -> Option<Fill<'m>> {
        direct.map(|(width, _)| Fill {
            cells,
            first,
            width,
            encoding,
        })
    }

    /// Puts one chunk's rows into the matrix, each at its row number (`numbers`): encoded cell
    /// for cell as [`encode`] computes it, or raw ([`Fill::encoding`]); returns the cells
    /// imputed. `lookups`: each categorical column's stored categories.
    fn rows(
        &mut self,
        query: &Query<'_>,
        batch: &duckdb::arrow::record_batch::RecordBatch,
        numbers: &duckdb::arrow::array::Int64Array,
        lookups: &[HashMap<String, u32>],
    ) -> Result<u64> {
        let source = query.source;
        let width = self.width;
        let placed = |p: Option<i64>| -> Result<usize> {
            p.and_then(|p| u64::try_from(p).ok())
                .and_then(|p| p.checked_sub(self.first))
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| (i + 1) * width <= self.cells.len())
                .ok_or_else(|| source_error(source, "the rows read do not match the rows numbered"))
        };
        let at: Vec<usize> = numbers.iter().map(placed).collect::<Result<_>>()?;
        let Some(encoding) = self.encoding else {
            let mut columns = Vec::with_capacity(query.chosen.len());
            for (i, (name, _, _)) in query.chosen.iter().enumerate() {
                let a = batch
                    .column(i)
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| source_error(source, format!("column '{name}' did not read as numbers")))?;
                columns.push((a.values().as_ref(), a.nulls().filter(|n| n.null_count() > 0)));
            }
            // The rows of a chunk are almost always consecutive: then they are written row after
            // row, each row's cells side by side, instead of a column at a time across the rows.
            let consecutive = at.windows(2).all(|w| w[1] == w[0] + 1);
            if let (true, Some(&start)) = (consecutive && columns.iter().all(|(_, n)| n.is_none()), at.first()) {
                let rows = &mut self.cells[start * width..(start + at.len()) * width];
                for (k, row) in rows.chunks_exact_mut(width).enumerate() {
                    for (cell, (values, _)) in row.iter_mut().zip(&columns) {
                        *cell = values[k];
                    }
                }
                return Ok(0);
            }
            for (i, (values, nulls)) in columns.iter().enumerate() {
                for (k, (&row, &v)) in at.iter().zip(values.iter()).enumerate() {
                    self.cells[row * width + i] = if nulls.is_some_and(|n| n.is_null(k)) {
                        f64::NAN
                    } else {
                        v
                    };
                }
            }
            return Ok(0);
        };
        let mut imputed = 0u64;
        let mut offset = 0usize;
        for (i, enc) in encoding.columns.iter().enumerate() {
            let array = batch.column(i);
            match enc {
                ColumnEncoding::Numeric {
                    mean,
                    std,
                    log1p,
                    missing_flag,
                    ..
                } => {
                    let a = array.as_primitive_opt::<Float64Type>().ok_or_else(|| {
                        source_error(
                            source,
                            format!("column '{}' did not read as numbers", query.chosen[i].0),
                        )
                    })?;
                    let cell = NumericCell::new(*mean, *std, *log1p, *missing_flag);
                    let nulls = a.nulls().filter(|n| n.null_count() > 0);
                    for (k, (&row, &v)) in at.iter().zip(a.values().iter()).enumerate() {
                        let v = if nulls.is_some_and(|n| n.is_null(k)) {
                            f64::NAN
                        } else {
                            v
                        };
                        let row = &mut self.cells[row * width..(row + 1) * width];
                        imputed += u64::from(cell.put(row, offset, v));
                    }
                }
                ColumnEncoding::Categorical { categories, .. } => {
                    let a = array.as_string_opt::<i32>().ok_or_else(|| {
                        source_error(source, format!("column '{}' did not read as text", query.chosen[i].0))
                    })?;
                    for (&row, v) in at.iter().zip(a.iter()) {
                        if let Some(&c) = v.and_then(|text| lookups[i].get(text)) {
                            if (c as usize) < categories.len() {
                                self.cells[row * width + offset + c as usize] = 1.0;
                            }
                        }
                    }
                }
            }
            offset += enc.width();
        }
        Ok(imputed)
    }
}

/// `first`'s rows followed by `rest`'s. A category `rest` met that `first` did not gets the next
/// code of `first`'s dictionary, as one pass reading `rest`'s rows after `first`'s would have
/// given it (the codes are renumbered in sorted order afterwards either way); with a stored
/// encoding both dictionaries are its categories and the codes stay as read.
fn join_parts(mut first: Part, rest: Part) -> Part {
    for (column, more) in first.columns.iter_mut().zip(rest.columns) {
        match (column, more) {
            (RawColumn::Numbers(values), RawColumn::Numbers(more)) => values.extend_from_slice(&more),
            (
                RawColumn::Codes { codes, dictionary },
                RawColumn::Codes {
                    codes: more,
                    dictionary: theirs,
                },
            ) => {
                if *dictionary == theirs {
                    codes.extend_from_slice(&more);
                    continue;
                }
                let mut lookup: HashMap<String, u32> = dictionary
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as u32))
                    .collect();
                let remap: Vec<u32> = theirs
                    .into_iter()
                    .map(|text| match lookup.get(&text) {
                        Some(&c) => c,
                        None => {
                            let c = dictionary.len() as u32;
                            lookup.insert(text.clone(), c);
                            dictionary.push(text);
                            c
                        }
                    })
                    .collect();
                codes.extend(more.iter().map(|&c| if c == u32::MAX { c } else { remap[c as usize] }));
            }
            // Both parts read the same columns of the same types.
            _ => unreachable!("the parts of one read have the same columns"),
        }
    }
    first.rows += rest.rows;
    first.imputed += rest.imputed;
    first.labels.extend(rest.labels);
    first.id_chunks.extend(rest.id_chunks);
    first.keys.extend(rest.keys);
    first.positions.extend(rest.positions);
    first
}

/// The text chunks of one column read, as one `Utf8` array.
fn text_column(source: &Source, chunks: &[ArrayRef]) -> Result<ArrayRef> {
    if chunks.is_empty() {
        return Ok(std::sync::Arc::new(StringArray::from(Vec::<Option<&str>>::new())));
    }
    let parts: Vec<&dyn Array> = chunks.iter().map(|a| a.as_ref()).collect();
    let whole = duckdb::arrow::compute::concat(&parts)
        .map_err(|e| source_error(source, format!("cannot join the ids read: {e}")))?;
    if whole.as_string_opt::<i32>().is_none() {
        return Err(source_error(source, "the id column did not read as text"));
    }
    Ok(whole)
}

/// For each row number, the index of the row read with it (`positions[i]` is the number of the
/// i-th row read); None unless the numbers are exactly 0..n-1.
fn placement(positions: &[i64]) -> Option<Vec<usize>> {
    let n = positions.len();
    let mut target = vec![usize::MAX; n];
    for (i, &p) in positions.iter().enumerate() {
        let p = usize::try_from(p).ok().filter(|p| *p < n)?;
        if target[p] != usize::MAX {
            return None;
        }
        target[p] = i;
    }
    Some(target)
}

/// Puts every row at its row number (`target` from [`placement`]).
fn reorder(target: &[usize], columns: &mut [RawColumn], labels: &mut Vec<Option<bool>>, keys: &mut Vec<u64>) {
    fn permute<T: Copy>(values: &[T], target: &[usize]) -> Vec<T> {
        target.iter().map(|&i| values[i]).collect()
    }
    // A column is empty when the matrix was filled as the rows were read (at their numbers,
    // so in place already): only columns that hold the rows are put in order.
    for column in columns.iter_mut() {
        match column {
            RawColumn::Numbers(values) if !values.is_empty() => *values = permute(values, target),
            RawColumn::Codes { codes, .. } if !codes.is_empty() => *codes = permute(codes, target),
            _ => {}
        }
    }
    if !labels.is_empty() {
        *labels = permute(labels, target);
    }
    if !keys.is_empty() {
        *keys = permute(keys, target);
    }
}

/// What training learns of one numeric column.
#[derive(Debug, Clone, Copy)]
struct NumericStats {
    log1p: bool,
    mean: f64,
    std: f64,
    /// Non-finite (NULL, NaN, infinite) values.
    missing: usize,
}

/// The column's statistics; with `log1p` allowed, the column is log1p-transformed when it is
/// never negative and exceeds 1, and mean and std are of the transformed values.
fn numeric_stats(values: &[f64], log1p: bool) -> NumericStats {
    column_stats(values, 1, log1p)[0]
}

/// [`numeric_stats`] of each column of a row-major matrix `width` cells wide, to the same bits
/// as of the column taken out on its own. Mean and population standard deviation are of the
/// finite values (0, 0 when there are none), in two passes (the sum, then the squared
/// deviations from the mean), each summed in [`SUM_LANES`] interleaved lanes (row i in lane
/// i mod 8) added up in a fixed order: vectorised, and the same values always give the same
/// bits whatever the layout. What decides log1p and the missing count is taken in the first
/// pass, without branches; a log1p column's sum is then taken again of the transformed values.
/// The lanes are shared out between rayon's threads ([`lane_pass`]).
fn column_stats(cells: &[f64], width: usize, log1p: bool) -> Vec<NumericStats> {
    if width == 0 {
        return Vec::new();
    }
    let rows = cells.len() / width;
    let first = lane_pass::<FIRST>(cells, width, |_, v| v);
    let takes_log: Vec<bool> = first.iter().map(|p| log1p && p.low >= 0.0 && p.high > 1.0).collect();
    let any_log = takes_log.iter().any(|&t| t);
    let counts: Vec<usize> = first.iter().map(|p| rows - p.missing).collect();
    let logged = match any_log {
        true => lane_pass::<LATER>(cells, width, |j, v| if takes_log[j] { log1p_of(v) } else { v }),
        false => Vec::new(),
    };
    let means: Vec<f64> = (0..width)
        .map(|j| {
            let count = counts[j];
            let sum = if takes_log[j] {
                logged[j].total()
            } else {
                first[j].total()
            };
            if count == 0 {
                0.0
            } else {
                sum / count as f64
            }
        })
        .collect();
    // Without a log1p column the pass has no call in it.
    let squares = if any_log {
        lane_pass::<LATER>(cells, width, |j, v| {
            let v = if takes_log[j] { log1p_of(v) } else { v };
            (v - means[j]) * (v - means[j])
        })
    } else {
        let means = means.as_slice();
        lane_pass::<LATER>(cells, width, move |j, v| {
            let d = v - means[j];
            d * d
        })
    };
    (0..width)
        .map(|j| {
            let count = counts[j];
            NumericStats {
                log1p: takes_log[j],
                mean: means[j],
                std: if count == 0 {
                    0.0
                } else {
                    (squares[j].total() / count as f64).sqrt()
                },
                missing: first[j].missing,
            }
        })
        .collect()
}

/// Lanes of [`lane_pass`].
const SUM_LANES: usize = 8;

/// [`lane_pass`]'s first pass over a matrix, which also counts what is missing and finds the
/// range of the finite values; a later pass takes only the sums.
const FIRST: bool = true;
const LATER: bool = false;

/// What one pass of [`lane_pass`] takes of one column.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// The sum in each lane, of the finite values (or of `f` of them).
    sums: [f64; SUM_LANES],
    /// Non-finite values (NULL, NaN, infinite).
    missing: usize,
    /// The smallest and largest finite value (+inf and -inf when there is none).
    low: f64,
    high: f64,
}

impl Default for Pass {
    fn default() -> Self {
        Pass {
            sums: [0.0; SUM_LANES],
            missing: 0,
            low: f64::INFINITY,
            high: f64::NEG_INFINITY,
        }
    }
}

impl Pass {
    /// The lanes added up in order.
    fn total(&self) -> f64 {
        self.sums.iter().sum()
    }
}

/// One pass over the rows of a row-major matrix `width` cells wide: for each column j, the sum
/// of `f(j, v)` over its finite values `v`, in lanes, and (in the [`FIRST`] pass) how many values are
/// missing and the range of the finite ones. The lanes are shared out between rayon's threads
/// (row i belongs to lane i mod [`SUM_LANES`]); each lane is still summed in row order, so the
/// bits do not depend on how many threads there are.
fn lane_pass<const FIRST_PASS: bool>(cells: &[f64], width: usize, f: impl Fn(usize, f64) -> f64 + Sync) -> Vec<Pass> {
    use rayon::prelude::*;
    // A single column is one of several taken in parallel already ([`load_training`]); a matrix
    // is shared out, every group with at least one lane.
    let threads = if width == 1 { 1 } else { rayon::current_num_threads() };
    let per = SUM_LANES.div_ceil(threads.clamp(1, SUM_LANES));
    let groups = SUM_LANES.div_ceil(per);
    let parts: Vec<(std::ops::Range<usize>, Vec<Pass>)> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let lanes = (g * per).min(SUM_LANES)..((g + 1) * per).min(SUM_LANES);
            (lanes.clone(), lane_pass_of::<FIRST_PASS>(cells, width, lanes, &f))
        })
        .collect();
    let mut out = vec![Pass::default(); width];
    for (lanes, part) in parts {
        for (column, theirs) in out.iter_mut().zip(part) {
            for lane in lanes.clone() {
                column.sums[lane] = theirs.sums[lane];
            }
            column.missing += theirs.missing;
            column.low = column.low.min(theirs.low);
            column.high = column.high.max(theirs.high);
        }
    }
    out
}

/// [`lane_pass`] over the rows of `lanes` only. The sums are kept lane by lane, each lane's for
/// every column side by side, so that a row is taken in with one loop over its cells.
fn lane_pass_of<const FIRST_PASS: bool>(
    cells: &[f64],
    width: usize,
    lanes: std::ops::Range<usize>,
    f: &impl Fn(usize, f64) -> f64,
) -> Vec<Pass> {
    let mut sums = vec![0.0f64; SUM_LANES * width];
    let mut missing = vec![0usize; width];
    let mut low = vec![f64::INFINITY; width];
    let mut high = vec![f64::NEG_INFINITY; width];
    let mut take = |lane: usize, row: &[f64]| {
        let lane_sums = &mut sums[lane * width..(lane + 1) * width];
        if !FIRST_PASS {
            for (j, (&v, sum)) in row.iter().zip(lane_sums).enumerate() {
                *sum += if v.abs() < f64::INFINITY { f(j, v) } else { 0.0 };
            }
            return;
        }
        // Iterators over slices of one length, and selects instead of branches: the loop
        // stays free of bounds checks and jumps.
        let range = low.iter_mut().zip(high.iter_mut());
        for (j, (((&v, sum), missing), (low, high))) in
            row.iter().zip(lane_sums).zip(missing.iter_mut()).zip(range).enumerate()
        {
            let finite = v.abs() < f64::INFINITY;
            *sum += if finite { f(j, v) } else { 0.0 };
            *missing += usize::from(!finite);
            let (below, above) = if finite {
                (v, v)
            } else {
                (f64::INFINITY, f64::NEG_INFINITY)
            };
            *low = if below < *low { below } else { *low };
            *high = if above > *high { above } else { *high };
        }
    };
    let mut blocks = cells.chunks_exact(SUM_LANES * width);
    for rows in &mut blocks {
        for lane in lanes.clone() {
            take(lane, &rows[lane * width..(lane + 1) * width]);
        }
    }
    for (lane, row) in blocks.remainder().chunks_exact(width).enumerate() {
        if lanes.contains(&lane) {
            take(lane, row);
        }
    }
    (0..width)
        .map(|j| {
            let mut pass = Pass {
                missing: missing[j],
                low: low[j],
                high: high[j],
                ..Pass::default()
            };
            for lane in 0..SUM_LANES {
                pass.sums[lane] = sums[lane * width + j];
            }
            pass
        })
        .collect()
}

/// Encodes a matrix of raw numbers in place, column j by `cells[j]` (none of them with a flag
/// cell, so that a row's cells stay where they are); returns the cells imputed. Cell for cell
/// as [`encode`] computes it.
fn scale_in_place(x: &mut Array2<f64>, cells: &[NumericCell]) -> u64 {
    use rayon::prelude::*;
    let width = x.ncols();
    let fits = cells.len() == width && !cells.iter().any(|c| c.missing_flag);
    debug_assert!(fits, "only a matrix of numbers without flag cells is scaled in place");
    if width == 0 || !fits {
        return 0;
    }
    const BLOCK: usize = 16 * 1024;
    x.as_slice_mut()
        .expect("a new matrix is contiguous")
        .par_chunks_mut(BLOCK * width)
        .map(|block| {
            let mut imputed = 0u64;
            for row in block.chunks_exact_mut(width) {
                for (j, cell) in cells.iter().enumerate() {
                    imputed += u64::from(cell.put(row, j, row[j]));
                }
            }
            imputed
        })
        .sum()
}

/// How a numeric column's raw value becomes its cells in an encoded row: the one rule [`encode`]
/// and a matrix filled as the rows are read ([`Fill`]) share, so both give the same bits.
struct NumericCell {
    mean: f64,
    /// 1 / std, or 0 for a column without spread.
    scale: f64,
    log1p: bool,
    missing_flag: bool,
}

impl NumericCell {
    fn new(mean: f64, std: f64, log1p: bool, missing_flag: bool) -> Self {
        let scale = if std > 0.0 && std.is_finite() { 1.0 / std } else { 0.0 };
        NumericCell {
            mean,
            scale,
            log1p,
            missing_flag,
        }
    }

    /// Writes `v` at `row[offset]` (a missing value as 0, and its flag in the next cell when
    /// the column has one); true when the value was imputed.
    #[inline]
    fn put(&self, row: &mut [f64], offset: usize, v: f64) -> bool {
        if v.is_finite() {
            let v = if self.log1p { log1p_of(v) } else { v };
            row[offset] = (v - self.mean) * self.scale;
            false
        } else {
            row[offset] = 0.0;
            if self.missing_flag {
                row[offset + 1] = 1.0;
            }
            true
        }
    }
}

/// ln(1 + x) of a value of a log1p column. A negative value (none was seen in training: the
/// column was chosen for never being negative) becomes -ln(1 + |x|), so the transform stays
/// monotone and such a value lies as far below the training rows as its log says; clamping it
/// to 0 (as before stop 27) put a row with a large negative value among the ordinary ones.
/// Non-finite stays non-finite (and is imputed).
fn log1p_of(v: f64) -> f64 {
    if v.is_finite() {
        v.signum() * v.abs().ln_1p()
    } else {
        v
    }
}

/// Builds the scaled, one-hot matrix. Non-finite numbers become the training mean (0 scaled).
/// Filled row by row (each row's cells are contiguous in the row-major matrix), in parallel over
/// blocks of rows: every cell is computed as it would be one at a time, so the matrix does not
/// depend on the order.
fn encode(encoding: &Encoding, columns: &[&RawColumn], rows: usize) -> (Array2<f64>, u64) {
    use rayon::prelude::*;
    let width = encoding.width();
    let mut x = Array2::<f64>::zeros((rows, width));
    if width == 0 || rows == 0 {
        return (x, 0);
    }
    // Per encoding column: its offset in a row, and what to do with a raw value.
    let mut offset = 0usize;
    let mut plan = Vec::with_capacity(encoding.columns.len());
    for (enc, raw) in encoding.columns.iter().zip(columns) {
        plan.push((offset, enc, *raw));
        offset += enc.width();
    }
    const BLOCK: usize = 16 * 1024;
    let data = x.as_slice_mut().expect("a new matrix is contiguous");
    let imputed: u64 = data
        .par_chunks_mut(BLOCK * width)
        .enumerate()
        .map(|(block, cells)| {
            let first = block * BLOCK;
            let mut imputed = 0u64;
            for &(offset, enc, raw) in &plan {
                match (enc, raw) {
                    (
                        ColumnEncoding::Numeric {
                            mean,
                            std,
                            log1p,
                            missing_flag,
                            ..
                        },
                        RawColumn::Numbers(values),
                    ) => {
                        let cell = NumericCell::new(*mean, *std, *log1p, *missing_flag);
                        let values = &values[first..first + cells.len() / width];
                        for (row, &v) in cells.chunks_exact_mut(width).zip(values) {
                            imputed += u64::from(cell.put(row, offset, v));
                        }
                    }
                    (ColumnEncoding::Categorical { categories, .. }, RawColumn::Codes { codes, .. }) => {
                        let codes = &codes[first..first + cells.len() / width];
                        for (row, &c) in cells.chunks_exact_mut(width).zip(codes) {
                            if (c as usize) < categories.len() {
                                row[offset + c as usize] = 1.0;
                            }
                        }
                    }
                    // Types are checked before reading; a mismatch leaves the columns at 0.
                    _ => {}
                }
            }
            imputed
        })
        .sum();
    (x, imputed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_summed_from_the_row_keys_is_the_one_read_from_the_source() {
        // NULLs, duplicate rows, a row of zeros, -0.0, NaN and infinities; a source whose
        // columns are all features (keys summed) and one with a column left out (read again).
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TABLE rows_in AS SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE sin(i % 40) END AS a, \
                   CASE WHEN i % 11 = 0 THEN 0.0 ELSE cos(i * 0.3) * 1e6 END AS b FROM range(3000) t(i) ORDER BY i;
                 INSERT INTO rows_in VALUES (0.0, 0.0), (-0.0, 0.0), ('nan'::DOUBLE, 1.0), ('inf'::DOUBLE, -1.0), (2.0, 2.0), (2.0, 2.0);
                 CREATE TABLE with_note AS SELECT *, 'x' || (rowid % 3) AS note FROM rows_in;",
            )
            .unwrap();
        for (table, exclude) in [("rows_in", vec![]), ("with_note", vec!["note".to_string()])] {
            let selection = Selection {
                exclude,
                ..Selection::default()
            };
            let (of, read) = store
                .in_transaction(|conn| {
                    let loaded = load_training(
                        &store,
                        &Source::parse(table),
                        &selection,
                        Limits::default(),
                        "__netlens_input_1",
                        true,
                    )?;
                    assert_eq!(loaded.row_keys.as_ref().map(Vec::len), Some(3006), "{table}");
                    let names: Vec<&str> = loaded.encoding.columns.iter().map(|c| c.name()).collect();
                    let of = RowFingerprint::of(conn, &loaded, &loaded.encoding)?;
                    let read = RowFingerprint::read(conn, &loaded, &names)?;
                    loaded.input.drop(conn)?;
                    Ok((of, read))
                })
                .unwrap();
            assert_eq!(of, read, "{table}");
            assert_eq!(of.rows, 3006);
            // The summed path is the one taken when the columns are the source's.
            let keys_sum: u64 = store
                .conn()
                .query_row(
                    &format!("SELECT CAST(sum(hash(a, b)) % 18446744073709551616 AS UBIGINT) FROM {table}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(of.fingerprint, keys_sum, "{table}");
        }
    }

    #[test]
    fn the_materialised_input_is_a_temporary_table() {
        // A persistent one was compressed and written into the database file only to be
        // dropped before the commit: most of a 1 000 000-row load (bench/RESULTS.md, stop 30).
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch("CREATE TABLE rows_in AS SELECT i AS a FROM range(10) t(i)")
            .unwrap();
        let temporary = store
            .in_transaction(|conn| {
                let columns = materialise(&store, &Source::parse("rows_in"), "__netlens_input_1")?;
                assert_eq!(columns, vec![("a".to_string(), "BIGINT".to_string())]);
                conn.query_row(
                    "SELECT bool_and(temporary), count(*) FROM duckdb_tables() WHERE table_name = '__netlens_input_1'",
                    [],
                    |r| Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(Error::sql)
            })
            .unwrap();
        assert_eq!(temporary, (true, 1));
    }

    /// A [`Raw`] as plain values (numbers by their bits), to compare two reads exactly.
    #[allow(clippy::type_complexity)]
    fn plain(
        raw: &Raw,
    ) -> (
        usize,
        Vec<(Vec<u64>, Vec<u32>, Vec<String>)>,
        Vec<Option<bool>>,
        Option<Vec<Option<String>>>,
        Option<Vec<u64>>,
    ) {
        let columns = raw
            .columns
            .iter()
            .map(|c| match c {
                RawColumn::Numbers(v) => (v.iter().map(|x| x.to_bits()).collect(), vec![], vec![]),
                RawColumn::Codes { codes, dictionary } => (vec![], codes.clone(), dictionary.clone()),
            })
            .collect();
        let ids = raw
            .ids
            .as_ref()
            .map(|a| a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect());
        (raw.rows, columns, raw.labels.clone(), ids, raw.keys.clone())
    }

    #[test]
    fn a_read_split_between_two_readers_equals_one_read() {
        // Numbers with NULL, NaN, infinities and -0.0; categories with NULLs, some met only
        // by the second reader (unsorted, so the codes are renumbered); a label; ids or keys.
        // Split at every kind of place: inside the first chunk, on a chunk's edge, one row
        // before the end, past the end (the second reader reads nothing); a source smaller than
        // one chunk, and an empty one.
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TABLE split_in AS SELECT i AS id, \
                   CASE WHEN i % 7 = 0 THEN NULL WHEN i % 13 = 0 THEN 'nan'::DOUBLE WHEN i % 17 = 0 THEN 'inf'::DOUBLE \
                        WHEN i % 19 = 0 THEN -0.0 ELSE sin(i) * 100 END AS a, \
                   CAST(i % 5 AS INTEGER) AS b, \
                   CASE WHEN i % 9 = 0 THEN NULL WHEN i < 3000 THEN 'k' || (i % 4) ELSE 'z' || (i % 3) END AS c, \
                   CASE WHEN i % 10 = 0 THEN 'attack' ELSE 'normal' END AS label \
                 FROM range(5000) t(i) ORDER BY i;
                 CREATE TABLE split_small AS SELECT * FROM split_in WHERE id < 3 ORDER BY id;
                 CREATE TABLE split_empty AS SELECT * FROM split_in WHERE false;",
            )
            .unwrap();
        let chosen: Vec<Chosen> = vec![
            ("a".into(), Kind::Numeric, true),
            ("b".into(), Kind::Numeric, true),
            ("c".into(), Kind::Categorical, true),
        ];
        store
            .in_transaction(|conn| {
                assert!(second_reader(conn).is_some(), "the second reader is made");
                let (_, columns) = open_input(&store, &Source::parse("split_in"), "__netlens_input_1")?;
                let keys_only: Vec<(String, String)> = columns.iter().filter(|(n, _)| n != "id").cloned().collect();
                let training = load_training(
                    &store,
                    &Source::parse("split_in"),
                    &Selection {
                        exclude: vec!["id".into(), "label".into()],
                        ..Selection::default()
                    },
                    Limits::default(),
                    "__netlens_input_2",
                    false,
                )?;
                for (table, splits) in [
                    ("split_in", vec![1u64, 1000, 2048, 3000, 4096, 4999, 5000, 9000]),
                    ("split_small", vec![1, 2, 3, 100]),
                    ("split_empty", vec![1, 100]),
                ] {
                    let source = Source::parse(table);
                    let (input, columns) = open_input(&store, &source, "__netlens_input_3")?;
                    assert!(input.in_place(), "{table}");
                    for known in [None, Some(&training.encoding)] {
                        for extra in [
                            Extra {
                                id: Some("id"),
                                keys: false,
                            },
                            Extra { id: None, keys: true },
                        ] {
                            let cols = if extra.keys { &keys_only } else { &columns };
                            let read = |split, fill| {
                                read_raw(
                                    &store,
                                    &source,
                                    &input,
                                    cols,
                                    &chosen,
                                    Some("label"),
                                    extra,
                                    known,
                                    split,
                                    fill,
                                )
                            };
                            let whole = read(None, false)?;
                            // The matrix encoded from the columns read, as a score run had it.
                            let encoded = known.map(|e| {
                                let refs: Vec<&RawColumn> = whole.columns.iter().collect();
                                let (x, imputed) = encode(e, &refs, whole.rows);
                                (x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), x.dim(), imputed)
                            });
                            for m in std::iter::once(None).chain(splits.iter().map(|&m| Some(m))) {
                                let split = read(m, false)?;
                                assert!(
                                    plain(&split) == plain(&whole),
                                    "{table} split at {m:?}, known {}, {extra:?}",
                                    known.is_some()
                                );
                                // Encoded as the chunks are read: the same matrix, bit for bit.
                                let filled = read(m, true)?;
                                let x = filled.x.as_ref().map(|(x, imputed)| {
                                    (x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), x.dim(), *imputed)
                                });
                                assert!(x == encoded, "{table} filled, split at {m:?}, {extra:?}");
                                let (rows, _, labels, ids, keys) = plain(&filled);
                                let (w_rows, _, w_labels, w_ids, w_keys) = plain(&whole);
                                assert_eq!(
                                    (rows, labels, ids, keys),
                                    (w_rows, w_labels, w_ids, w_keys),
                                    "{table} filled"
                                );
                            }
                        }
                    }
                }
                // Numbers only, without a stored encoding (as training reads them): the raw
                // values go straight into the matrix, equal bit for bit to the columns read
                // (NULL as NaN), with the same labels and ids, wherever the read is split.
                let numbers: Vec<Chosen> = vec![("a".into(), Kind::Numeric, true), ("b".into(), Kind::Numeric, true)];
                for (table, splits) in [
                    ("split_in", vec![1u64, 1000, 2048, 3000, 4096, 4999, 5000, 9000]),
                    ("split_small", vec![1, 2, 3, 100]),
                    ("split_empty", vec![1, 100]),
                ] {
                    let source = Source::parse(table);
                    let (input, columns) = open_input(&store, &source, "__netlens_input_4")?;
                    let extra = Extra {
                        id: Some("id"),
                        keys: false,
                    };
                    let read = |split, fill| {
                        read_raw(
                            &store,
                            &source,
                            &input,
                            &columns,
                            &numbers,
                            Some("label"),
                            extra,
                            None,
                            split,
                            fill,
                        )
                    };
                    let whole = read(None, false)?;
                    assert!(whole.x.is_none(), "{table}: columns when not asked to fill");
                    let mut expected = Vec::new();
                    for i in 0..whole.rows {
                        for column in &whole.columns {
                            match column {
                                RawColumn::Numbers(values) => expected.push(values[i].to_bits()),
                                RawColumn::Codes { .. } => panic!("{table}: a number read as a category"),
                            }
                        }
                    }
                    for m in std::iter::once(None).chain(splits.iter().map(|&m| Some(m))) {
                        let filled = read(m, true)?;
                        let (x, imputed) = filled.x.as_ref().expect("numbers only are read into the matrix");
                        assert_eq!((x.dim(), *imputed), ((whole.rows, 2), 0), "{table} split at {m:?}");
                        assert!(
                            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>() == expected,
                            "{table} split at {m:?}: the raw matrix differs from the columns"
                        );
                        let (rows, _, labels, ids, _) = plain(&filled);
                        let (w_rows, _, w_labels, w_ids, _) = plain(&whole);
                        assert_eq!((rows, labels, ids), (w_rows, w_labels, w_ids), "{table} split at {m:?}");
                    }
                }
                training.input.drop(conn)?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn training_on_numbers_filled_as_read_equals_training_on_the_columns_read() {
        // A base table of numbers only is read straight into the matrix, its encoding learnt
        // from it and applied in place (or, with missing values and so flag cells, its columns
        // taken out and encoded); a view of the same rows is copied and read into columns.
        // Both give the same encoding, matrix, imputed cells, labels and keys, bit for bit, with
        // and without log1p, read by two readers (rows enough to be split).
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let rows = SPLIT_MIN_ROWS + 4099;
        store
            .conn()
            .execute_batch(&format!(
                "CREATE TABLE numbers_gaps AS SELECT \
                   CASE WHEN i % 7 = 0 THEN NULL WHEN i % 13 = 0 THEN 'nan'::DOUBLE WHEN i % 17 = 0 THEN 'inf'::DOUBLE \
                        WHEN i % 19 = 0 THEN -0.0 ELSE sin(i) * 100 END AS a, \
                   (i % 1000) * 3.5 AS b, CAST(i % 5 AS INTEGER) AS c, \
                   CASE WHEN i % 10 = 0 THEN 'attack' ELSE 'normal' END AS label \
                 FROM range({rows}) t(i) ORDER BY i;
                 CREATE TABLE numbers_whole AS SELECT sin(i) * 100 AS a, (i % 1000) * 3.5 AS b, cos(i) - 5 AS c, \
                   CASE WHEN i % 10 = 0 THEN 'attack' ELSE 'normal' END AS label \
                 FROM range({rows}) t(i) ORDER BY i;
                 CREATE VIEW numbers_gaps_copied AS SELECT * FROM numbers_gaps;
                 CREATE VIEW numbers_whole_copied AS SELECT * FROM numbers_whole;"
            ))
            .unwrap();
        let numeric_bits = |e: &Encoding| -> Vec<(String, u64, u64, bool, bool)> {
            e.columns
                .iter()
                .map(|c| match c {
                    ColumnEncoding::Numeric {
                        name,
                        mean,
                        std,
                        log1p,
                        missing_flag,
                    } => (name.clone(), mean.to_bits(), std.to_bits(), *log1p, *missing_flag),
                    ColumnEncoding::Categorical { name, .. } => panic!("'{name}' is not a number"),
                })
                .collect()
        };
        for (table, flags) in [("numbers_gaps", 1), ("numbers_whole", 0)] {
            for log1p in [false, true] {
                let limits = Limits {
                    log1p,
                    ..Limits::default()
                };
                let selection = Selection {
                    label: Some("label".into()),
                    ..Selection::default()
                };
                store
                    .in_transaction(|conn| {
                        let direct = load_training(
                            &store,
                            &Source::parse(table),
                            &selection,
                            limits,
                            "__netlens_input_1",
                            true,
                        )?;
                        assert!(direct.input.in_place(), "{table}");
                        assert!(
                            split_point(&store, &direct.input).is_some(),
                            "{table} is read by two readers"
                        );
                        let copied = load_training(
                            &store,
                            &Source::parse(&format!("{table}_copied")),
                            &selection,
                            limits,
                            "__netlens_input_2",
                            true,
                        )?;
                        assert!(!copied.input.in_place(), "{table}");
                        assert_eq!(
                            numeric_bits(&direct.encoding),
                            numeric_bits(&copied.encoding),
                            "{table}"
                        );
                        assert_eq!(direct.encoding.width(), 3 + flags, "{table}");
                        // a has negatives; b never, and above one; c never negative in the
                        // first table only.
                        let logs: Vec<bool> = numeric_bits(&direct.encoding).iter().map(|c| c.3).collect();
                        assert_eq!(logs, vec![false, log1p, log1p && table == "numbers_gaps"], "{table}");
                        assert_eq!(direct.x.dim(), (rows as usize, 3 + flags), "{table}");
                        let bits = |x: &Array2<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert!(
                            bits(&direct.x) == bits(&copied.x),
                            "{table} log1p {log1p}: the matrices differ"
                        );
                        assert_eq!(direct.imputed, copied.imputed, "{table}");
                        assert_eq!(direct.imputed > 0, flags > 0, "{table}");
                        assert_eq!(direct.labels, copied.labels, "{table}");
                        assert_eq!(direct.row_keys, copied.row_keys, "{table}");
                        direct.input.drop(conn)?;
                        copied.input.drop(conn)?;
                        Ok(())
                    })
                    .unwrap();
            }
        }
    }

    #[test]
    fn the_second_reader_finds_the_table_where_the_run_does() {
        // A table found through the search path, not the current schema: the second reader
        // has the run's search path, so it reads the same table.
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE SCHEMA other; CREATE TABLE other.elsewhere AS SELECT i * 0.5 AS a FROM range(5000) t(i) ORDER BY i; \
                 SET search_path = 'main,other'",
            )
            .unwrap();
        let other = second_reader(store.conn()).expect("a second reader");
        let rows: i64 = other
            .query_row("SELECT count(*) FROM elsewhere", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 5000);
        let source = Source::parse("elsewhere");
        let (input, columns) = open_input(&store, &source, "__netlens_input_1").unwrap();
        assert!(input.in_place());
        let chosen: Vec<Chosen> = vec![("a".into(), Kind::Numeric, true)];
        let extra = Extra { id: None, keys: true };
        let read = |split| {
            read_raw(
                &store, &source, &input, &columns, &chosen, None, extra, None, split, false,
            )
            .unwrap()
        };
        assert!(plain(&read(Some(2048))) == plain(&read(None)));
    }

    /// A regression: rows read out of order (DuckDB may, with `preserve_insertion_order`
    /// off) were put in order column by column, and a score run that filled its matrix as it
    /// read has empty columns: indexing them panicked. The matrix is in place already; labels,
    /// keys and the columns that hold rows are still put in order.
    #[test]
    fn rows_read_out_of_order_with_the_matrix_filled_are_put_in_order_without_a_panic() {
        let mut columns = vec![
            RawColumn::Numbers(Vec::new()),
            RawColumn::Codes {
                codes: Vec::new(),
                dictionary: vec!["a".into()],
            },
            RawColumn::Numbers(vec![10.0, 20.0, 30.0]),
        ];
        let (mut labels, mut keys) = (vec![Some(true), None, Some(false)], vec![1u64, 2, 3]);
        reorder(&[2, 0, 1], &mut columns, &mut labels, &mut keys);
        assert!(matches!(&columns[0], RawColumn::Numbers(v) if v.is_empty()));
        assert!(matches!(&columns[1], RawColumn::Codes { codes, .. } if codes.is_empty()));
        assert!(matches!(&columns[2], RawColumn::Numbers(v) if v == &vec![30.0, 10.0, 20.0]));
        assert_eq!(labels, vec![Some(false), Some(true), None]);
        assert_eq!(keys, vec![3, 1, 2]);
    }

    #[test]
    fn only_a_large_table_of_a_store_not_shared_is_split_on_a_row_group() {
        let mut store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let group = crate::store::ROW_GROUP_SIZE as u64;
        let table = |rows: u64| Input {
            relation: "t".into(),
            scratch: None,
            rows: Some(rows),
            temporary: false,
        };
        assert_eq!(split_point(&store, &table(SPLIT_MIN_ROWS - 1)), None);
        assert_eq!(
            split_point(&store, &table(1_000_000)),
            Some(500_000u64.div_ceil(group) * group)
        );
        let copy = Input {
            relation: "t".into(),
            scratch: Some("t".into()),
            rows: None,
            temporary: true,
        };
        assert_eq!(split_point(&store, &copy), None);
        let temporary = Input {
            temporary: true,
            ..table(1_000_000)
        };
        assert_eq!(
            split_point(&store, &temporary),
            None,
            "a TEMP table no other connection sees"
        );
        let _other = store.connect().unwrap();
        assert_eq!(split_point(&store, &table(1_000_000)), None);
    }

    #[test]
    fn source_text_is_a_query_or_a_name() {
        assert_eq!(Source::parse("flow_features"), Source::Relation("flow_features".into()));
        assert!(matches!(Source::parse(" select 1;"), Source::Query(q) if q == "select 1"));
        assert!(matches!(
            Source::parse("WITH a AS (SELECT 1) SELECT * FROM a"),
            Source::Query(_)
        ));
        assert!(matches!(Source::parse("(SELECT 1)"), Source::Query(_)));
    }

    #[test]
    fn rows_read_out_of_order_are_put_back_in_place() {
        let mut columns = vec![RawColumn::Numbers(vec![2.0, 0.0, 1.0])];
        let mut labels = vec![Some(true), None, Some(false)];
        let mut keys = vec![12, 10, 11];
        reorder(&placement(&[2, 0, 1]).unwrap(), &mut columns, &mut labels, &mut keys);
        let RawColumn::Numbers(v) = &columns[0] else { panic!() };
        assert_eq!(v, &vec![0.0, 1.0, 2.0]);
        assert_eq!(labels, vec![None, Some(false), Some(true)]);
        assert_eq!(keys, vec![10, 11, 12]);
        assert!(placement(&[0, 0, 1]).is_none());
        assert!(placement(&[0, 3, 1]).is_none());
    }

    /// The statistics as they were computed column by column before [`column_stats`] took
    /// them from a matrix in one walk: the oracle its bits must equal.
    fn stats_one_column_at_a_time(values: &[f64], log1p: bool) -> (bool, f64, f64, usize) {
        fn lane_sum(values: &[f64], f: impl Fn(f64) -> f64) -> (u64, f64) {
            let mut sums = [0.0f64; SUM_LANES];
            let mut counts = [0u64; SUM_LANES];
            let chunks = values.chunks_exact(SUM_LANES);
            let rest = chunks.remainder();
            for chunk in chunks {
                for lane in 0..SUM_LANES {
                    let v = chunk[lane];
                    let finite = v.is_finite();
                    sums[lane] += if finite { f(v) } else { 0.0 };
                    counts[lane] += u64::from(finite);
                }
            }
            for (lane, &v) in rest.iter().enumerate() {
                if v.is_finite() {
                    sums[lane] += f(v);
                    counts[lane] += 1;
                }
            }
            (counts.iter().sum(), sums.iter().sum())
        }
        let negative = values.iter().any(|v| v.is_finite() && *v < 0.0);
        let above_one = values.iter().any(|v| v.is_finite() && *v > 1.0);
        let missing = values.iter().filter(|v| !v.is_finite()).count();
        let log1p = log1p && !negative && above_one;
        let values: Vec<f64> = values.iter().map(|&v| if log1p { log1p_of(v) } else { v }).collect();
        let (count, sum) = lane_sum(&values, |v| v);
        if count == 0 {
            return (log1p, 0.0, 0.0, missing);
        }
        let mean = sum / count as f64;
        let (_, squares) = lane_sum(&values, |v| (v - mean) * (v - mean));
        (log1p, mean, (squares / count as f64).sqrt(), missing)
    }

    fn bits(s: NumericStats) -> (bool, u64, u64, usize) {
        (s.log1p, s.mean.to_bits(), s.std.to_bits(), s.missing)
    }

    #[test]
    fn mean_and_std_skip_non_finite_values() {
        let s = numeric_stats(&[1.0, f64::NAN, 3.0, f64::INFINITY], false);
        assert_eq!((s.mean, s.std, s.missing), (2.0, 1.0, 2));
        let s = numeric_stats(&[f64::NAN], true);
        assert_eq!((s.mean, s.std, s.missing, s.log1p), (0.0, 0.0, 1, false));
        // Across the lanes and the remainder, with a large offset (where a one-pass sum of
        // squares would lose the variance).
        let values: Vec<f64> = (0..1003)
            .map(|i| if i % 97 == 5 { f64::NAN } else { 1e9 + (i % 10) as f64 })
            .collect();
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let var = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / finite.len() as f64;
        let s = numeric_stats(&values, false);
        assert!(
            (s.mean - mean).abs() < 1e-6 && (s.std - var.sqrt()).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(bits(numeric_stats(&values, false)), bits(s));
    }

    #[test]
    fn statistics_of_a_matrix_equal_those_of_each_column_alone_bit_for_bit() {
        // Columns of every kind: plain, log1p (never negative, above one), negative, with NaN and
        // infinities, all missing, constant, -0.0, huge and tiny; row counts around the lanes.
        let column = |j: usize, i: usize| -> f64 {
            let x = ((i * 7919 + j * 104_729) % 1009) as f64;
            match j {
                0 => x * 0.37 - 100.0,
                1 => x * x,
                2 if i % 13 == 3 => f64::NAN,
                2 => x / 3.0,
                3 => f64::NAN,
                4 => 5.0,
                5 if i.is_multiple_of(2) => -0.0,
                5 => 0.0,
                6 if i.is_multiple_of(17) => f64::INFINITY,
                6 => 1e300 / (x + 1.0),
                7 if i % 5 == 1 => f64::NEG_INFINITY,
                7 => 1e-300 * x,
                _ => (x - 500.0).sin() * 1e6,
            }
        };
        let pools: Vec<rayon::ThreadPool> = [1, 3, 5, 8]
            .iter()
            .map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap())
            .collect();
        for rows in [0usize, 1, 7, 8, 9, 63, 1000, 4097] {
            for width in [1usize, 3, 9] {
                for log1p in [false, true] {
                    let mut cells = vec![0.0; rows * width];
                    for i in 0..rows {
                        for j in 0..width {
                            cells[i * width + j] = column(j, i);
                        }
                    }
                    let stats = column_stats(&cells, width, log1p);
                    assert_eq!(stats.len(), width);
                    // The lanes shared out between any number of threads give the same bits.
                    for pool in &pools {
                        let theirs = pool.install(|| column_stats(&cells, width, log1p));
                        assert_eq!(
                            theirs.iter().map(|s| bits(*s)).collect::<Vec<_>>(),
                            stats.iter().map(|s| bits(*s)).collect::<Vec<_>>(),
                            "{} threads, rows {rows} width {width}",
                            pool.current_num_threads()
                        );
                    }
                    for (j, s) in stats.iter().enumerate() {
                        let alone: Vec<f64> = (0..rows).map(|i| column(j, i)).collect();
                        let (l, m, d, missing) = stats_one_column_at_a_time(&alone, log1p);
                        assert_eq!(
                            bits(*s),
                            (l, m.to_bits(), d.to_bits(), missing),
                            "rows {rows} width {width} column {j} log1p {log1p}"
                        );
                        assert_eq!(bits(numeric_stats(&alone, log1p)), bits(*s));
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_scales_imputes_and_one_hot_encodes() {
        let encoding = Encoding {
            columns: vec![
                ColumnEncoding::Numeric {
                    name: "a".into(),
                    mean: 2.0,
                    std: 2.0,
                    log1p: false,
                    missing_flag: false,
                },
                ColumnEncoding::Categorical {
                    name: "p".into(),
                    categories: vec!["tcp".into(), "udp".into()],
                },
                ColumnEncoding::Numeric {
                    name: "flat".into(),
                    mean: 5.0,
                    std: 0.0,
                    log1p: false,
                    missing_flag: false,
                },
            ],
        };
        let a = RawColumn::Numbers(vec![4.0, f64::NAN, f64::NEG_INFINITY]);
        let p = RawColumn::Codes {
            codes: vec![1, u32::MAX, 0],
            dictionary: vec![],
        };
        let flat = RawColumn::Numbers(vec![5.0, 7.0, 5.0]);
        let (x, imputed) = encode(&encoding, &[&a, &p, &flat], 3);
        assert_eq!(imputed, 2);
        assert_eq!(x.row(0).to_vec(), vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(x.row(1).to_vec(), vec![0.0, 0.0, 0.0, 0.0]);
        assert_eq!(x.row(2).to_vec(), vec![0.0, 1.0, 0.0, 0.0]);
        assert_eq!(encoding.feature_names(), vec!["a", "p=tcp", "p=udp", "flat"]);
    }

    #[test]
    fn log1p_columns_are_transformed_before_scaling_and_stored_only_when_set() {
        let encoding = Encoding {
            columns: vec![ColumnEncoding::Numeric {
                name: "bytes".into(),
                mean: 1.0,
                std: 2.0,
                log1p: true,
                missing_flag: false,
            }],
        };
        let bytes = RawColumn::Numbers(vec![0.0, std::f64::consts::E - 1.0, -5.0, f64::NAN]);
        let (x, imputed) = encode(&encoding, &[&bytes], 4);
        assert_eq!(imputed, 1);
        let col: Vec<f64> = x.column(0).to_vec();
        assert!((col[0] + 0.5).abs() < 1e-12 && col[1].abs() < 1e-12, "{col:?}");
        // A negative value, never seen in training, stays as far out as its log: -ln(6), not 0.
        assert!((col[2] - (-(6.0f64).ln() - 1.0) / 2.0).abs() < 1e-12, "{col:?}");
        assert_eq!(encoding.log_columns(), vec![true]);
        // Models stored before log1p (and the exact bits) existed read back unchanged, and a
        // plain column stores no flag.
        let old: ColumnEncoding =
            serde_json::from_str(r#"{"kind":"numeric","name":"a","mean":0.5,"std":1.0}"#).unwrap();
        assert_eq!(
            old,
            ColumnEncoding::Numeric {
                name: "a".into(),
                mean: 0.5,
                std: 1.0,
                log1p: false,
                missing_flag: false
            }
        );
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            format!(
                r#"{{"kind":"numeric","name":"a","mean":0.5,"std":1.0,"mean_bits":{},"std_bits":{}}}"#,
                0.5f64.to_bits(),
                1.0f64.to_bits()
            )
        );
    }

    /// The stored encoding reads back the very doubles it was fitted with. 0.929_561_252_213_731_3
    /// is the standard deviation of a log1p column of tests/it's `traffic` that serde_json's
    /// decimal text read back one unit in the last place lower, so a second process scored the
    /// ensemble's training rows differently (tests/it
    /// `ensemble_scores_its_training_rows_again_with_log1p`).
    #[test]
    fn stored_encodings_read_back_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut values = vec![0.929_561_252_213_731_3, 3.698_213_606_913_981_7, 1e-300, -0.0];
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push((state >> 11) as f64 / (1u64 << 53) as f64 * 100.0);
        }
        let encoding = Encoding {
            columns: values
                .chunks(2)
                .enumerate()
                .map(|(i, pair)| ColumnEncoding::Numeric {
                    name: format!("c{i}"),
                    mean: pair[0],
                    std: pair[1],
                    log1p: i % 2 == 0,
                    missing_flag: false,
                })
                .collect(),
        };
        let back: Encoding = serde_json::from_str(&serde_json::to_string(&encoding).unwrap()).unwrap();
        for (a, b) in encoding.columns.iter().zip(&back.columns) {
            let (
                ColumnEncoding::Numeric { mean, std, .. },
                ColumnEncoding::Numeric {
                    mean: mean_back,
                    std: std_back,
                    ..
                },
            ) = (a, b)
            else {
                panic!("{b:?}");
            };
            assert_eq!(
                (mean.to_bits(), std.to_bits()),
                (mean_back.to_bits(), std_back.to_bits()),
                "{a:?}"
            );
        }
        // Through a `serde_json::Value` too (how a stored model is passed around).
        let value: Encoding = serde_json::from_value(serde_json::to_value(&encoding).unwrap()).unwrap();
        assert_eq!(value, encoding);
    }

    #[test]
    fn imputed_values_are_flagged_in_a_column_of_their_own() {
        let encoding = Encoding {
            columns: vec![ColumnEncoding::Numeric {
                name: "bytes".into(),
                mean: 10.0,
                std: 5.0,
                log1p: false,
                missing_flag: true,
            }],
        };
        let bytes = RawColumn::Numbers(vec![10.0, f64::NAN, 20.0]);
        let (x, imputed) = encode(&encoding, &[&bytes], 3);
        assert_eq!(imputed, 1);
        // The imputed row sits at the mean like the first row, but its flag tells them apart.
        assert_eq!(x.row(0).to_vec(), vec![0.0, 0.0]);
        assert_eq!(x.row(1).to_vec(), vec![0.0, 1.0]);
        assert_eq!(x.row(2).to_vec(), vec![2.0, 0.0]);
        assert_eq!(encoding.feature_names(), vec!["bytes", "bytes_missing"]);
        assert_eq!(encoding.unscale(), vec![(10.0, 5.0), (0.0, 1.0)]);
        assert_eq!(encoding.log_columns(), vec![false, false]);
    }

    #[test]
    fn port_numbers_are_not_quantities() {
        for port in [
            "remote_port_min",
            "remote_port_mean",
            "dst_port",
            "resp_p",
            "src_p",
            "local_port",
            "port",
        ] {
            assert!(is_port_number_name(port), "{port}");
        }
        for other in [
            "unique_remote_ports",
            "connection_count",
            "ports_per_host",
            "bytes_sent",
            "service_port_count",
            "transport",
            "support",
            "report",
        ] {
            assert!(!is_port_number_name(other), "{other}");
        }
    }

    #[test]
    fn key_columns_are_not_features() {
        assert!(is_key_name("src_ip") && is_key_name("orig_h") && is_key_name("flow_id"));
        assert!(!is_key_name("bytes_sent"));
        assert_eq!(kind_of("DECIMAL(18,3)"), Kind::Numeric);
        assert_eq!(kind_of("ENUM('a', 'b')"), Kind::Categorical);
        assert_eq!(kind_of("TIMESTAMP"), Kind::Other);
    }
}
