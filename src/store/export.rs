//! Export through DuckDB's `COPY`: a table or a query to Parquet, CSV or JSON, optionally as a
//! Hive-partitioned Parquet tree (`host=…/date=…/`) that many hosts' exports can share. Flows
//! also export as a Zeek TSV conn.log, written row by row, for tools of the Zeek ecosystem.

use std::path::{Path, PathBuf};

use super::{quote_ident, quote_literal, Store};
use crate::error::{Error, Result};

/// File format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON, one object per row.
    Json,
    /// Zeek TSV conn.log (from flows, or any source with its columns).
    Zeek,
}

impl ExportFormat {
    /// Guesses the format from the output's extension; Parquet otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => ExportFormat::Csv,
            Some("json" | "jsonl" | "ndjson") => ExportFormat::Json,
            Some("log") => ExportFormat::Zeek,
            _ => ExportFormat::Parquet,
        }
    }
}

/// The file netlens leaves in a partitioned export's directory: `--overwrite` (which has
/// DuckDB remove everything under `--out`) is allowed only where it is found.
pub const TREE_MARKER: &str = ".netlens-export";

/// Checks that a partitioned export may write into `out`: a new or empty directory, or one a
/// netlens export made (its marker is there). With `--overwrite` DuckDB deletes every file under
/// `out`, so a directory of other files, or a symlink, is refused: `--out ~` emptied a home.
fn claim_tree(out: &Path, overwrite: bool) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
            return mark_tree(out);
        }
        Err(e) => return Err(Error::io(out, e)),
    };
    if meta.file_type().is_symlink() && overwrite {
        return Err(Error::Usage(format!(
            "{} is a symbolic link; --overwrite deletes everything under --out, so it must be the real directory\n  hint: pass the directory it points to",
            out.display()
        )));
    }
    if !out.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory; --partition-by writes a directory tree",
            out.display()
        )));
    }
    let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    let empty = entries.next().is_none();
    let ours = out.join(TREE_MARKER).is_file();
    if overwrite && !empty && !ours {
        return Err(Error::Usage(format!(
            "{} holds files no netlens export wrote; --overwrite would delete every one of them, so nothing was written\n  hint: export into a new or empty directory (or drop --overwrite to add to a shared tree)",
            out.display()
        )));
    }
    if empty {
        mark_tree(out)?;
    }
    Ok(())
}

fn mark_tree(out: &Path) -> Result<()> {
    let marker = out.join(TREE_MARKER);
    std::fs::write(
        &marker,
        "written by netlens export --partition-by; --overwrite replaces this tree\n",
    )
    .map_err(|e| Error::io(&marker, e))
}

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportSource {
    Table(String),
    Query(String),
}

/// A complete export request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportRequest {
    pub source: ExportSource,
    pub out: PathBuf,
    pub format: ExportFormat,
    pub partition_by: Vec<String>,
    pub overwrite: bool,
}

/// Writes a single-file export under a private name beside `out` and moves it into place only
/// once whole: a failed or interrupted export leaves no half-written file and the old `out`
/// untouched. The move replaces `out` as a name, so a symlink there is replaced, never followed
/// into the file it points at; without `overwrite` it is a link that fails when `out` appeared
/// meanwhile. The private name ends with `out`'s own name, so DuckDB infers the same
/// compression from its extension (`.csv.gz`).
pub fn write_in_place(out: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<u64>) -> Result<u64> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--out {} names no file", out.display())))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Unique per process and call (a server may write two at once); create_new: whatever is at
    // that name (a link someone planted, a file a killed run left) is neither reused nor followed.
    let mut attempt = 0;
    let partial = loop {
        let candidate = dir.join(format!(
            ".netlens-partial-{}-{}",
            super::template::unique_suffix(),
            name.to_string_lossy()
        ));
        match super::template::private_options().create_new(true).open(&candidate) {
            Ok(_) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(Error::io(&candidate, e)),
        }
    };
    // Messages name the file the user asked for, not the private one.
    let hidden = partial.display().to_string();
    let result = write(&partial)
        .map_err(|e| match e {
            Error::Io { path, source } if path == partial => Error::io(out, source),
            Error::Sql { message } => Error::Sql {
                message: message.replace(&hidden, &out.display().to_string()),
            },
            e => e,
        })
        .and_then(|rows| {
            // Ctrl-C (a server's client gone) after the last row was written: the file was
            // still not asked for.
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let placed = if overwrite {
                std::fs::rename(&partial, out)
            } else {
                match std::fs::hard_link(&partial, out) {
                    Ok(()) => std::fs::remove_file(&partial),
                    // File systems without hard links (FAT, some network and FUSE mounts): a checked
                    // rename, which loses only the race with a file made in between.
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        if std::fs::symlink_metadata(out).is_ok() {
                            Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
                        } else {
                            std::fs::rename(&partial, out)
                        }
                    }
                    Err(e) => Err(e),
                }
            };
            match placed {
                Ok(()) => Ok(rows),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Usage(format!(
                    "{} appeared while the export ran; nothing was written\n  hint: pass --overwrite to replace it",
                    out.display()
                ))),
                Err(e) => Err(Error::io(out, e)),
            }
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

impl Store {
    /// Runs the export and returns the number of rows written.
    pub fn export(&self, req: &ExportRequest) -> Result<u64> {
        let (select, columns, name) = match &req.source {
            ExportSource::Table(t) => {
                if !self.relation_exists(t)? {
                    return Err(Error::UnknownTable { name: t.clone() });
                }
                (
                    format!("SELECT * FROM {}", quote_ident(t)),
                    self.columns_of(t)?,
                    t.clone(),
                )
            }
            ExportSource::Query(q) => {
                let q = q.trim().trim_end_matches(';').to_string();
                let cols = self.query_columns(&q)?;
                (q, cols, "query".to_string())
            }
        };
        // One check for every format: partitions are Parquet only, and a file is never
        // replaced without --overwrite.
        if !req.partition_by.is_empty() && req.format != ExportFormat::Parquet {
            return Err(Error::Usage(
                "--partition-by writes a Hive-partitioned Parquet tree; use --format parquet".to_string(),
            ));
        }
        if req.partition_by.is_empty() && req.out.exists() && !req.overwrite {
            return Err(Error::Usage(format!(
                "{} already exists; nothing was written\n  hint: pass --overwrite to replace it",
                req.out.display()
            )));
        }
        let format_option = match req.format {
            ExportFormat::Parquet => "FORMAT parquet",
            ExportFormat::Csv => "FORMAT csv, HEADER true",
            ExportFormat::Zeek => {
                return write_in_place(&req.out, req.overwrite, |partial| {
                    self.export_zeek(&select, &columns, partial)
                })
            }
            // DuckDB's JSON writer lives in its json extension, which the bundled build lacks
            // (and extensions are never downloaded): stream JSON lines ourselves.
            ExportFormat::Json => {
                return write_in_place(&req.out, req.overwrite, |partial| {
                    self.export_json_lines(&select, partial)
                })
            }
        };
        if req.partition_by.is_empty() {
            return write_in_place(&req.out, req.overwrite, |partial| {
                self.copy_to(&select, partial, &[format_option.to_string()], &req.out)
            });
        }
        claim_tree(&req.out, req.overwrite)?;
        let (select, keys) = self.partitioned_select(&select, &columns, &req.partition_by)?;
        let options = [
            format_option.to_string(),
            format!("PARTITION_BY ({keys})"),
            format!(
                "FILENAME_PATTERN {}",
                quote_literal(&format!("{}_{{uuid}}", file_stem(&name)))
            ),
            // Appending keeps other hosts' files in a shared tree; --overwrite replaces the tree.
            if req.overwrite { "OVERWRITE true" } else { "APPEND true" }.to_string(),
        ];
        let rows = self.copy_to(&select, &req.out, &options, &req.out)?;
        // DuckDB's OVERWRITE removed everything in the tree, the marker too.
        mark_tree(&req.out)?;
        Ok(rows)
    }

    /// `COPY (select) TO path (options)`; errors name `out`, the path the user gave.
    fn copy_to(&self, select: &str, path: &Path, options: &[String], out: &Path) -> Result<u64> {
        let sql = format!(
            "COPY ({select}) TO {} ({})",
            quote_literal(&path.to_string_lossy()),
            options.join(", ")
        );
        let rows = self.conn.execute(&sql, []).map_err(|e| match Error::sql(e) {
            Error::Interrupted => Error::Interrupted,
            e => Error::Sql {
                message: format!("export to {} failed: {e}", out.display()),
            },
        })?;
        Ok(rows as u64)
    }

    fn export_json_lines(&self, select: &str, out: &Path) -> Result<u64> {
        use std::io::Write;
        let file = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
        let mut writer = std::io::BufWriter::new(file);
        let mut stmt = self.conn.prepare(select).map_err(Error::sql)?;
        let stream = stmt.stream_arrow([]).map_err(Error::sql)?;
        let schema = stream.get_schema();
        let opts = crate::output::RenderOptions {
            mode: crate::output::OutputMode::Jsonl,
            headers: false,
            maxrows: 0,
            width: None,
        };
        let rows = crate::output::render(&schema, stream.map(|b| b.map_err(Error::sql)), opts, &mut writer)?;
        writer.flush().map_err(|e| Error::io(out, e))?;
        Ok(rows)
    }

    /// The column names `query` returns, in order (planned and run with LIMIT 0, so no rows are
    /// read).
    pub fn query_columns(&self, query: &str) -> Result<Vec<String>> {
        super::statements::one(query, "a query")?;
        let stmt = self
            .conn
            .prepare(&format!("SELECT * FROM ({query}) LIMIT 0"))
            .map_err(Error::sql)?;
        let mut stmt = stmt;
        stmt.execute([]).map_err(Error::sql)?;
        Ok(stmt.column_names())
    }

    /// Adds derived `host` and `date` columns when the source lacks them: host from the
    /// snapshot a row belongs to (or this database's host), date from the row's time.
    fn partitioned_select(&self, select: &str, columns: &[String], keys: &[String]) -> Result<(String, String)> {
        let has = |c: &str| columns.iter().any(|x| x.eq_ignore_ascii_case(c));
        let mut extra = Vec::new();
        let mut join = String::new();
        for key in keys {
            if has(key) {
                continue;
            }
            match key.as_str() {
                "host" if has("snapshot_id") => {
                    join = " LEFT JOIN snapshots AS _snap ON _src.snapshot_id = _snap.snapshot_id".to_string();
                    extra.push("_snap.host AS host".to_string());
                }
                "host" => extra.push(format!("{} AS host", quote_literal(&self.single_host()?))),
                "date" => {
                    let time = ["ts", "first_seen", "start_time"].into_iter().find(|c| has(c)).ok_or_else(|| {
                        Error::Usage(
                            "cannot derive the date partition: the source has no ts or first_seen column".to_string(),
                        )
                    })?;
                    extra.push(format!("CAST(_src.{time} AS DATE) AS \"date\""));
                }
                other => {
                    return Err(Error::Usage(format!(
                        "cannot partition by '{other}': the source has no such column (host and date are derived when missing)"
                    )))
                }
            }
        }
        let keys_sql = keys.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ");
        if extra.is_empty() {
            return Ok((select.to_string(), keys_sql));
        }
        Ok((
            format!("SELECT _src.*, {} FROM ({select}) AS _src{join}", extra.join(", ")),
            keys_sql,
        ))
    }

    /// The host this database describes, for sources that carry no host of their own.
    fn single_host(&self) -> Result<String> {
        let hosts: Vec<String> = self
            .conn
            .prepare("SELECT DISTINCT host FROM snapshots ORDER BY host")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(Error::sql)?;
        match hosts.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Usage(
                "the database has no snapshots to take a host name from\n  hint: export a query that adds one: --query \"SELECT *, 'name' AS host FROM ...\""
                    .to_string(),
            )),
            _ => Err(Error::Usage(format!(
                "this database holds several hosts ({}) and the source has no host column to partition by",
                hosts.join(", ")
            ))),
        }
    }
}

/// conn.log fields in Zeek's order: (Zeek name, flows column, Zeek type). Fields the source
/// does not have (flows keeps no local_orig or local_resp) are written unset.
const ZEEK_CONN_FIELDS: [(&str, &str, &str); 21] = [
    ("ts", "ts", "time"),
    ("uid", "uid", "string"),
    ("id.orig_h", "orig_h", "addr"),
    ("id.orig_p", "orig_p", "port"),
    ("id.resp_h", "resp_h", "addr"),
    ("id.resp_p", "resp_p", "port"),
    ("proto", "proto", "enum"),
    ("service", "service", "string"),
    ("duration", "duration", "interval"),
    ("orig_bytes", "orig_bytes", "count"),
    ("resp_bytes", "resp_bytes", "count"),
    ("conn_state", "conn_state", "string"),
    ("local_orig", "local_orig", "bool"),
    ("local_resp", "local_resp", "bool"),
    ("missed_bytes", "missed_bytes", "count"),
    ("history", "history", "string"),
    ("orig_pkts", "orig_pkts", "count"),
    ("orig_ip_bytes", "orig_ip_bytes", "count"),
    ("resp_pkts", "resp_pkts", "count"),
    ("resp_ip_bytes", "resp_ip_bytes", "count"),
    ("tunnel_parents", "tunnel_parents", "set[string]"),
];

impl Store {
    /// Writes `select` as a Zeek TSV conn.log; columns are matched by name (flows' names or
    /// Zeek's dotted ones), missing optional ones are written unset.
    fn export_zeek(&self, select: &str, columns: &[String], out: &Path) -> Result<u64> {
        use std::io::Write;
        let find = |a: &str, b: &str| {
            columns
                .iter()
                .find(|c| c.eq_ignore_ascii_case(a) || c.eq_ignore_ascii_case(b))
        };
        let mut exprs = Vec::new();
        for (zeek, col, _) in ZEEK_CONN_FIELDS {
            let expr = match (find(col, zeek), zeek) {
                (Some(c), "ts") => format!("epoch_us({})::BIGINT::VARCHAR", quote_ident(c)),
                (Some(c), "duration") => format!("printf('%.6f', CAST({} AS DOUBLE))", quote_ident(c)),
                (Some(c), "local_orig" | "local_resp") => {
                    format!("CASE WHEN CAST({0} AS BOOLEAN) THEN 'T' WHEN NOT CAST({0} AS BOOLEAN) THEN 'F' END", quote_ident(c))
                }
                // A set: its members joined by Zeek's set separator, `(empty)` when it has none.
                (Some(c), "tunnel_parents") => format!(
                    "CASE WHEN len({0}) = 0 THEN '(empty)' ELSE array_to_string({0}, ',') END",
                    quote_ident(c)
                ),
                (Some(c), _) => format!("CAST({} AS VARCHAR)", quote_ident(c)),
                (None, "ts" | "uid" | "id.orig_h" | "id.orig_p" | "id.resp_h" | "id.resp_p" | "proto") => {
                    return Err(Error::Usage(format!(
                        "a Zeek conn.log needs a {col} column, which the source lacks\n  hint: export --table flows, or a query with flows' columns"
                    )))
                }
                (None, _) => "NULL::VARCHAR".to_string(),
            };
            exprs.push(expr);
        }
        let ts_col = find("ts", "ts").map(|c| quote_ident(c)).unwrap_or_default();
        let sql = format!("SELECT {} FROM ({select}) AS _src ORDER BY {ts_col}", exprs.join(", "));
        let fail = |e: std::io::Error| Error::io(out, e);
        let file = std::fs::File::create(out).map_err(fail)?;
        let mut w = std::io::BufWriter::new(file);
        let now = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S");
        let names: Vec<&str> = ZEEK_CONN_FIELDS.iter().map(|f| f.0).collect();
        let types: Vec<&str> = ZEEK_CONN_FIELDS.iter().map(|f| f.2).collect();
        write!(
            w,
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t{now}\n#fields\t{}\n#types\t{}\n",
            names.join("\t"),
            types.join("\t")
        )
        .map_err(fail)?;
        let mut stmt = self.conn.prepare(&sql).map_err(|e| Error::Sql {
            message: format!("export to {} failed: {e}", out.display()),
        })?;
        let mut rows = stmt.query([]).map_err(Error::sql)?;
        let mut n = 0u64;
        let mut line = String::new();
        while let Some(row) = rows.next().map_err(Error::sql)? {
            line.clear();
            for i in 0..ZEEK_CONN_FIELDS.len() {
                if i > 0 {
                    line.push('\t');
                }
                let v: Option<String> = row.get(i).map_err(Error::sql)?;
                match (v, i) {
                    (None, _) => line.push('-'),
                    (Some(us), 0) => {
                        let us: i64 = us.parse().unwrap_or(0);
                        line.push_str(&format!("{}.{:06}", us.div_euclid(1_000_000), us.rem_euclid(1_000_000)));
                    }
                    (Some(v), _) => line.push_str(&netlens_parsers::zeek::escape(&v)),
                }
            }
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(fail)?;
            n += 1;
        }
        writeln!(w, "#close\t{}", chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S")).map_err(fail)?;
        w.flush().map_err(fail)?;
        Ok(n)
    }
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_extension() {
        assert_eq!(ExportFormat::from_path(Path::new("a.csv")), ExportFormat::Csv);
        assert_eq!(ExportFormat::from_path(Path::new("a.JSONL")), ExportFormat::Json);
        assert_eq!(ExportFormat::from_path(Path::new("a.parquet")), ExportFormat::Parquet);
        assert_eq!(ExportFormat::from_path(Path::new("tree")), ExportFormat::Parquet);
        assert_eq!(ExportFormat::from_path(Path::new("conn.log")), ExportFormat::Zeek);
    }

    #[test]
    fn a_partial_file_left_by_an_earlier_run_does_not_block_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rows.csv");
        // What a killed run with this pid would have left, for the first calls of this process.
        for call in 0..3 {
            let left = format!(".netlens-partial-{}-{call}-rows.csv", std::process::id());
            std::fs::write(dir.path().join(left), "half").unwrap();
        }
        let rows = write_in_place(&out, false, |partial| {
            std::fs::write(partial, "x\n1\n").unwrap();
            Ok(1)
        })
        .unwrap();
        assert_eq!(rows, 1);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "x\n1\n");
        // A failed write names the user's file and leaves no partial of its own.
        let failed = write_in_place(&dir.path().join("other.csv"), false, |partial| {
            Err(Error::io(partial, std::io::Error::other("disk full")))
        })
        .unwrap_err();
        assert!(
            failed.to_string().contains("other.csv") && !failed.to_string().contains("partial"),
            "{failed}"
        );
        let partials = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("partial"))
            .count();
        assert_eq!(partials, 3, "only the planted ones");
    }
}
