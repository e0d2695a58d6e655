//! How many statements an SQL text holds, by DuckDB's own parser and without running any.
//!
//! duckdb-rs's `Connection::prepare` (and so `execute`, `query_row` and every statement API)
//! *runs* every statement of a text but the last and prepares the last. Wherever netlens
//! embeds or runs text it did not write (a model's source, a remote client's query), a text of
//! several statements would run them all: `SELECT 1; COMMIT; DELETE FROM snapshots; SELECT 1`
//! would leave a read-only transaction and delete. [`one`] refuses such a text before any of it
//! runs. The parser is DuckDB's, on a private in-memory instance of its own, so what is counted
//! is exactly what would run.
//!
//! May use DuckDB's C API; nothing else of the crate but the error type.

use std::ffi::{CStr, CString};
use std::sync::{Mutex, OnceLock};

use duckdb::ffi;

use crate::error::{Error, Result};

/// A private in-memory DuckDB that only parses.
struct Parser {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
}

// SAFETY: the handles are used only under the mutex below, one call at a time; DuckDB's
// connections may be used from any thread, just not from two at once.
unsafe impl Send for Parser {}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: both handles came from duckdb_open/duckdb_connect and are closed once.
        unsafe {
            ffi::duckdb_disconnect(&mut self.con);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

fn parser() -> Result<&'static Mutex<Parser>> {
    static PARSER: OnceLock<Option<Mutex<Parser>>> = OnceLock::new();
    PARSER
        .get_or_init(|| {
            let mut db = std::ptr::null_mut();
            let mut con = std::ptr::null_mut();
            // SAFETY: a NULL path opens an in-memory database; out-pointers are valid.
            unsafe {
                if ffi::duckdb_open(std::ptr::null(), &mut db) != ffi::DuckDBSuccess {
                    return None;
                }
                if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                    ffi::duckdb_close(&mut db);
                    return None;
                }
            }
            Some(Mutex::new(Parser { db, con }))
        })
        .as_ref()
        .ok_or_else(|| Error::Sql {
            message: "cannot start DuckDB's parser (out of memory?)".to_string(),
        })
}

/// The number of statements in `sql`; a text that does not parse is an error (with DuckDB's
/// message), and nothing of it runs.
pub fn count(sql: &str) -> Result<usize> {
    let text = CString::new(sql).map_err(|_| Error::Usage("the SQL text holds a NUL character".to_string()))?;
    let parser = parser()?.lock().map_err(|_| Error::Sql {
        message: "DuckDB's parser is unusable after a failure".to_string(),
    })?;
    let mut extracted = std::ptr::null_mut();
    // SAFETY: the connection is open, the text NUL-terminated, and `extracted` is destroyed
    // below whatever the outcome.
    unsafe {
        let n = ffi::duckdb_extract_statements(parser.con, text.as_ptr(), &mut extracted);
        let result = if n == 0 {
            let message = ffi::duckdb_extract_statements_error(extracted);
            Err(Error::Sql {
                message: if message.is_null() {
                    "no statement".to_string()
                } else {
                    CStr::from_ptr(message).to_string_lossy().into_owned()
                },
            })
        } else {
            Ok(n as usize)
        };
        ffi::duckdb_destroy_extracted(&mut extracted);
        result
    }
}

/// Refuses a text that is not exactly one statement, saying what it was given.
pub fn one(sql: &str, what: &str) -> Result<()> {
    match count(sql)? {
        1 => Ok(()),
        n => Err(Error::Usage(format!(
            "{what} must be exactly one statement, and this is {n}; nothing of it ran"
        ))),
    }
}

/// The first keyword of `sql`, upper case, after whitespace, comments and opening parentheses
/// (empty when it starts with anything else).
pub fn first_keyword(sql: &str) -> String {
    keywords(sql).next().unwrap_or_default()
}

/// Up to `n` leading keywords of `sql`, upper case ([`first_keyword`]'s rules).
pub fn leading_keywords(sql: &str, n: usize) -> Vec<String> {
    keywords(sql).take(n).collect()
}

/// The name a `DETACH [DATABASE] [IF EXISTS] name` statement detaches, unquoted; `None` when
/// it is not read as such (callers treat that as the worst case).
pub fn detached_name(sql: &str) -> Option<String> {
    let words = leading_keywords(sql, 4);
    let skip = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["DETACH", "DATABASE", "IF", "EXISTS", ..] => 4,
        ["DETACH", "IF", "EXISTS", ..] => 3,
        ["DETACH", "DATABASE", ..] => 2,
        ["DETACH", ..] => 1,
        _ => return None,
    };
    let rest = after_words(sql, skip)?;
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => return chars.all(|c| c.is_whitespace()).then_some(name),
                c => name.push(c),
            }
        }
        return None;
    }
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (name.len() == rest.len() && !name.is_empty()).then_some(name)
}

/// The leading keywords of `sql` (words of letters and underscores), upper case, after
/// whitespace, comments and opening parentheses; stops at the first thing that is not one.
fn keywords(sql: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = sql;
    std::iter::from_fn(move || {
        rest = skip_comments(rest).trim_start_matches('(');
        rest = skip_comments(rest);
        let end = rest
            .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let word = rest[..end].to_ascii_uppercase();
        rest = &rest[end..];
        Some(word)
    })
}

/// The text after the first `n` keywords and the comments after them, if `sql` starts with `n`.
fn after_words(sql: &str, n: usize) -> Option<&str> {
    let mut rest = sql;
    for _ in 0..n {
        rest = skip_comments(skip_comments(rest).trim_start_matches('('));
        let end = rest
            .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        rest = &rest[end..];
    }
    Some(skip_comments(rest).trim_end_matches(|c: char| c == ';' || c.is_whitespace()))
}

/// The text after leading whitespace and comments.
pub(crate) fn skip_comments(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        if let Some(line) = trimmed.strip_prefix("--") {
            rest = line.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(block) = trimmed.strip_prefix("/*") {
            rest = block.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return trimmed;
        }
    }
}

/// Refuses a statement of user-given SQL that would install, load or update a DuckDB extension.
/// netlens promises that DuckDB never downloads code (README): its autoloading and
/// autoinstalling are off and locked ([`crate::store::Store::open`]), and these are the
/// statements that would still fetch or run an extension. DuckDB has no setting that turns them
/// off while files stay readable (`enable_external_access = false` would also stop `read_csv`
/// and `COPY`), so they are refused by their first keywords, which decide a statement's kind in
/// DuckDB's grammar (`INSTALL`, `FORCE INSTALL`, `LOAD`, `UPDATE EXTENSIONS`).
pub fn refuse_extension_statements(sql: &str) -> Result<()> {
    let mut words = keywords(sql);
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    let refused = match first.as_str() {
        "INSTALL" | "LOAD" => true,
        "FORCE" => second == "INSTALL",
        // `UPDATE EXTENSIONS [(name, ...)]`, not an update of a table called extensions.
        "UPDATE" => {
            second == "EXTENSIONS" && after_words(sql, 2).is_none_or(|rest| rest.is_empty() || rest.starts_with('('))
        }
        _ => false,
    };
    if refused {
        let what = if first == "FORCE" || first == "UPDATE" {
            format!("{first} {second}")
        } else {
            first
        };
        return Err(Error::Usage(format!(
            "{what} is refused: netlens never lets DuckDB download or load an extension (the bundled DuckDB has every one netlens needs)\n  \
             hint: use the duckdb command-line tool on a copy of the file if you need an extension"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_counted_as_duckdb_parses_them() {
        assert_eq!(count("SELECT 1").unwrap(), 1);
        assert_eq!(count("SELECT ';' AS a; -- x;\n").unwrap(), 1);
        assert_eq!(count("SELECT 1; COMMIT; DELETE FROM t; SELECT 1").unwrap(), 4);
        assert_eq!(count("SELECT $$a;b$$").unwrap(), 1);
        assert!(count("SELECT (").is_err());
        assert!(one("SELECT 1; SELECT 2", "a query")
            .unwrap_err()
            .to_string()
            .contains("is 2"));
        assert!(one("SELECT 1", "a query").is_ok());
    }

    /// What the module exists for: duckdb-rs runs every statement but the last when preparing.
    #[test]
    fn duckdb_rs_prepare_runs_the_statements_before_the_last() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t AS SELECT 1 AS x").unwrap();
        let _ = conn.prepare("DELETE FROM t; SELECT 1").unwrap();
        let left: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(
            left, 0,
            "if this fails, duckdb-rs stopped doing it and one() is belt and braces"
        );
    }

    #[test]
    fn extension_statements_are_refused_by_their_kind() {
        for refused in [
            "INSTALL httpfs",
            "  -- x\n install httpfs FROM core",
            "/* a */ FORCE INSTALL httpfs",
            "load httpfs",
            "LOAD '/tmp/x.duckdb_extension'",
            "UPDATE EXTENSIONS",
            "update /* x */ extensions (httpfs)",
            "UPDATE EXTENSIONS;",
        ] {
            assert!(refuse_extension_statements(refused).is_err(), "{refused}");
        }
        for ok in [
            "SELECT 'INSTALL httpfs'",
            "UPDATE extensions_seen SET n = 1",
            "UPDATE t SET install = 1",
            "UPDATE extensions SET n = 1",
            "UPDATE extensions e SET n = 1",
            "CREATE TABLE load AS SELECT 1",
            "(SELECT 1)",
            "",
        ] {
            assert!(refuse_extension_statements(ok).is_ok(), "{ok}");
        }
        assert_eq!(first_keyword("  /* c */ (select 1)"), "SELECT");
        assert_eq!(first_keyword("'x'"), "");
    }

    #[test]
    fn detached_names_are_read_or_left_unknown() {
        assert_eq!(detached_name("DETACH netlens").as_deref(), Some("netlens"));
        assert_eq!(
            detached_name("detach database if exists \"Net\"\"lens\" ;").as_deref(),
            Some("Net\"lens")
        );
        assert_eq!(detached_name("DETACH /* c */ other").as_deref(), Some("other"));
        assert_eq!(detached_name("DETACH netlens.x").as_deref(), None);
        assert_eq!(detached_name("SELECT 1"), None);
    }
}
