//! The one error type of the library. Every variant says what failed, on which input, and
//! what the user can do about it; `main` prints it to stderr and picks the exit status.

use std::path::PathBuf;

/// Everything that can go wrong in netlens, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created (permissions, missing directory, ...).
    #[error("cannot open database {path}: {reason}\n  hint: pass another file with --db PATH (or NETLENS_DB), or fix the directory's permissions; a database that exists can be read where it cannot be written (a read-only file system, a file of another user) with --read-only")]
    OpenDatabase { path: PathBuf, reason: String },

    /// Another process holds DuckDB's lock on the database file.
    #[error("database {path} is locked by another process{holder}\n  hint: stop that process, or use another file with --db PATH; --read-only works while only readers hold it")]
    DatabaseLocked { path: PathBuf, holder: String },

    /// The file exists but is not a DuckDB database, or is damaged.
    #[error("{path} is not a readable DuckDB database ({reason})\n  hint: the file was left untouched; move it away or pick another file with --db PATH")]
    CorruptDatabase { path: PathBuf, reason: String },

    /// The database was written by a newer netlens whose schema this build does not know.
    #[error("database {path} has schema version {found}, newer than this netlens understands (up to {supported})\n  hint: upgrade netlens; the file was left untouched")]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },

    /// The database records a migration applied from a script other than this build's: its
    /// schema may differ from the one this build's statements expect. `differs` says how.
    #[error("database {path} records schema migration {version} {differs}: the file was made by a build with a different schema\n  hint: the file was left untouched; open it with the netlens that made it (its `netlens export` copies the tables out, to import into a new file)")]
    MigrationDiffers {
        path: PathBuf,
        version: i64,
        differs: String,
    },

    /// A read-only open met a database whose schema still needs upgrading.
    #[error("database {path} has schema version {found} and needs upgrading to {supported}, which a read-only open cannot do\n  hint: open it once without --read-only")]
    SchemaNeedsUpgrade { path: PathBuf, found: i64, supported: i64 },

    /// A migration script failed; the database keeps its previous version.
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration { version: i64, name: String, reason: String },

    /// An SQL statement failed.
    #[error("{message}")]
    Sql { message: String },

    /// The user interrupted a running statement (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// Storing a snapshot failed; the transaction was rolled back, nothing of it was stored.
    #[error("storing snapshot failed, nothing of it was kept: {reason}")]
    StoreSnapshot { reason: String },

    /// The OS could not be read for a snapshot.
    #[error("reading {what} from the system failed: {reason}")]
    Collect { what: &'static str, reason: String },

    /// A fixture (recorded snapshots) could not be read.
    #[error("fixture {path}, line {line}: {reason}")]
    Fixture { path: PathBuf, line: usize, reason: String },

    /// A table or view the user named does not exist.
    #[error("no table or view named '{name}'\n  hint: .tables lists what exists")]
    UnknownTable { name: String },

    /// Command-line or dot-command arguments were wrong.
    #[error("{0}")]
    Usage(String),

    /// A file given to `import pcap` is not a pcap or pcapng capture (or is empty).
    #[error("{path} is not a capture file: {hint}\n  hint: import pcap reads pcap and pcapng files (tcpdump, Wireshark, dumpcap); nothing was imported from it")]
    NotACapture { path: PathBuf, hint: String },

    /// A Zeek log could not be imported; nothing of that file was kept.
    #[error("{path}{}: {reason}\n  hint: import zeek reads Zeek conn.log files, TSV (with a #fields header) or JSON; nothing was imported from this file", at_line(.line))]
    ZeekLog { path: PathBuf, line: usize, reason: String },

    /// A dataset file given to `import csv` could not be read as CSV, or does not fit the names given.
    #[error("{path}: {reason}\n  hint: import csv reads delimited text files (DuckDB's CSV reader); nothing was imported from this file")]
    Dataset { path: PathBuf, reason: String },

    /// Importing a file failed while writing it; its transaction was rolled back.
    #[error("importing {path} failed, nothing of it was kept: {reason}")]
    Import { path: PathBuf, reason: String },

    /// A `--mmdb` file is missing, unreadable, not a MaxMind DB, or holds records of another shape.
    #[error("{path}: not a usable MaxMind DB (.mmdb) geolocation database: {reason}\n  hint: --mmdb takes MaxMind GeoIP2/GeoLite2 or DB-IP .mmdb files (country, city or ASN); nothing was stored")]
    GeoDatabase { path: PathBuf, reason: String },

    /// The online geolocation provider failed (down, timeout, rate limit, malformed answer) for
    /// some addresses. The addresses it did answer were stored; nothing was stored for the rest.
    #[error("geolocation provider {url} failed for {failed} of {asked} addresses: {reason}\n  {answered} answered addresses were stored; nothing was stored for the {failed} others\n  hint: run the command again later to ask for the rest (see --timeout, --max-wait and --url)")]
    GeoProvider {
        url: String,
        asked: usize,
        answered: usize,
        failed: usize,
        reason: String,
    },
    /// A model could not be fitted or applied to the data it was given (empty input, wrong
    /// number of feature columns, values it cannot use, a damaged stored model, ...).
    #[error("{model}: {reason}")]
    ModelInput { model: &'static str, reason: String },

    /// `train` named a stage that does not exist.
    #[error("unknown stage '{name}'\n  hint: the stages are {known}; `netlens stages` describes them")]
    UnknownStage { name: String, known: String },

    /// `score` or `retrain` named a model (or version) that is not stored.
    #[error("no stored model '{name}'\n  hint: `netlens models` lists the stored models; `netlens train STAGE --model NAME` fits one")]
    UnknownModel { name: String },

    /// The feature source cannot feed a stage: missing columns, no usable feature, bad label,
    /// columns that differ from the model's. Nothing was stored.
    #[error("feature source {input}: {reason}\n  nothing was stored")]
    FeatureSource { input: String, reason: String },

    /// A stage's parameters (`--set key=value`) are wrong.
    #[error("stage {stage}: {reason}")]
    StageParams { stage: &'static str, reason: String },

    /// A detector found nothing to analyse (no history, or none in the chosen window); nothing was stored.
    #[error("{what}; nothing was stored\n  hint: {hint}")]
    NoEvents { what: String, hint: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing to the output failed (other than a closed pipe, which ends quietly).
    #[error("writing output failed: {0}")]
    Output(#[source] std::io::Error),

    /// A command failed after part of its work was stored; the message says what was kept.
    #[error("{message}")]
    Partial { message: String },

    /// The server holding the database answered with an error (its message, as the server
    /// would have printed it).
    #[error("{message}")]
    Remote { message: String },

    /// The server holding the database could not be reached, or the connection broke.
    #[error("netlens server at {endpoint}: {reason}\n  hint: `netlens status` on the server's host (`--db PATH`) shows whether it runs; its log says why it stopped")]
    Server { endpoint: String, reason: String },
}

/// DuckDB's words when `enable_external_access` is off and a file is outside
/// `allowed_directories`.
const FILE_ACCESS_OFF: &str = "file system operations are disabled by configuration";

impl Error {
    /// Wraps a DuckDB error from running SQL, turning DuckDB's interrupt into [`Error::Interrupted`].
    pub fn sql(err: duckdb::Error) -> Self {
        let message = err.to_string();
        // DuckDB's interrupt is an exception of type INTERRUPT with the text "Interrupted!"; the
        // word elsewhere (a table named "Interrupted") is an ordinary error.
        if message.starts_with("INTERRUPT Error") || message.trim() == "Interrupted!" {
            Error::Interrupted
        } else if message.contains(FILE_ACCESS_OFF) {
            Error::Sql {
                message: format!(
                    "{message}\n  hint: DuckDB's file access is off in this database: a netlens server with a TCP \
                     listener (--listen or --http) lets DuckDB read and write files only in its --files directories \
                     (`netlens status` lists them); use one of those, or start the server with --files DIR"
                ),
            }
        } else {
            Error::Sql { message }
        }
    }

    /// True for DuckDB's refusal of a file while its file access is off (see [`Error::sql`]).
    pub fn is_file_access_off(&self) -> bool {
        matches!(self, Error::Sql { message } if message.contains(FILE_ACCESS_OFF))
    }

    /// An I/O error on a named file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the output pipe was closed by the reader (`netlens ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `, line N` for messages about a line of a file; nothing for the file as a whole (line 0).
fn at_line(line: &usize) -> String {
    if *line > 0 {
        format!(", line {line}")
    } else {
        String::new()
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_duckdbs_interrupt_is_an_interrupt() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        // The word in an ordinary error (here a table's name) is that error.
        let missing = conn.execute_batch("SELECT * FROM \"Interrupted\"").unwrap_err();
        assert!(matches!(Error::sql(missing), Error::Sql { message } if message.contains("Interrupted")));
        // A statement interrupted from another thread is the interrupt.
        let handle = conn.interrupt_handle();
        let interrupter = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            handle.interrupt();
        });
        let long = conn
            .query_row(&crate::interrupt::long_query(), [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        interrupter.join().unwrap();
        assert!(matches!(Error::sql(long), Error::Interrupted));
    }
}
