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
}
