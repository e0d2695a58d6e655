//! The store: one DuckDB file per host. Opens or creates it (owner-only), upgrades its schema
//! from the numbered scripts in `sql/`, hands out run ids, and exports tables.
//!
//! A leaf that knows no source: the writers (capture's snapshots, ingest's flows, the analysis
//! stages) write through [`Store::conn`] and [`Store::in_transaction`], inside the schema this
//! module made; every module reads through SQL.

pub mod export;
pub mod migrations;
pub mod runs;
pub mod statements;
pub mod template;

use std::path::{Path, PathBuf};

use duckdb::{Config, Connection};

use crate::error::{Error, Result};
use template::SchemaTemplate;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A private, throw-away database (`--db :memory:`).
    Memory,
    /// A file on disk.
    File(PathBuf),
}

impl Location {
    /// Reads `--db` / `NETLENS_DB`, or picks the default under the user's data directory.
    pub fn resolve(arg: Option<&str>) -> Result<Self> {
        match arg {
            Some(":memory:") => Ok(Location::Memory),
            Some(path) if !path.is_empty() => Ok(Location::File(PathBuf::from(path))),
            _ => Ok(Location::File(default_path()?)),
        }
    }

    /// Text for messages.
    pub fn display(&self) -> String {
        match self {
            Location::Memory => ":memory:".to_string(),
            Location::File(p) => p.display().to_string(),
        }
    }
}

/// `$XDG_DATA_HOME/netlens/netlens.duckdb`, or `~/.local/share/netlens/netlens.duckdb`.
pub fn default_path() -> Result<PathBuf> {
    Ok(data_dir()?.join("netlens.duckdb"))
}

/// netlens's per-user data directory (database, shell history). Under `sudo` with the user's
/// `HOME` kept, root would create a root-owned directory, database and history in that user's
/// home, which the user could then not open: as for the cache directory, root uses no
/// directory that belongs to someone else (an error saying so instead).
pub fn data_dir() -> Result<PathBuf> {
    let dir = if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(xdg).join("netlens")
    } else {
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share/netlens"),
            None => return Err(Error::Usage(
                "neither XDG_DATA_HOME nor HOME is set, so there is no default database path\n  hint: pass --db PATH"
                    .to_string(),
            )),
        }
    };
    // SAFETY: geteuid cannot fail and has no side effects.
    let euid = unsafe { libc::geteuid() };
    match owner_elsewhere(&dir, euid) {
        None => Ok(dir),
        Some((path, uid)) => Err(Error::Usage(format!(
            "running as root, the default data directory {} is in {} of user {uid}: netlens would leave root-owned files there that the user cannot open\n  \
             hint: pass --db PATH, run it as that user, or use sudo -H (root's own HOME)",
            dir.display(),
            path.display()
        ))),
    }
}

/// A warning when the database file at `path` exists and belongs to another user: in a shared
/// directory (such as /tmp) someone else can create the file first, and a database can hold
/// views and macros that run whatever SQL its maker wrote when they are queried.
pub fn foreign_owner_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path).ok()?.uid();
    // SAFETY: geteuid cannot fail and has no side effects.
    let me = unsafe { libc::geteuid() };
    (owner != me).then(|| {
        format!(
            "warning: {} belongs to user {owner}, not to you (user {me}): a database someone else made can hold views and macros that run their SQL when you query them; use it only if you trust its owner",
            path.display()
        )
    })
}

/// For root (`euid` 0): the nearest existing one of `dir` and its ancestors, with its owner, when
/// that owner is another user. None for anyone else, or when root owns it.
fn owner_elsewhere(dir: &Path, euid: u32) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    if euid != 0 {
        return None;
    }
    let existing = dir.ancestors().find(|p| p.exists())?;
    let uid = std::fs::metadata(existing).ok()?.uid();
    (uid != euid).then(|| (existing.to_path_buf(), uid))
}

/// An open database with an up-to-date schema.
pub struct Store {
    conn: Connection,
    location: Location,
    read_only: bool,
    /// DuckDB's default memory limit as it shows it, once a capture has asked (see
    /// `capture::persist::CaptureSettings::release_cache`).
    default_memory_limit: std::cell::OnceCell<Option<String>>,
    /// Rows stored since the file was last attached, over every capture run of this store
    /// (`watch` runs one per snapshot); see [`Store::reattach`].
    rows_since_attach: std::cell::Cell<usize>,
    /// The file could not be attached again: the connection is left without it.
    detached: std::cell::Cell<bool>,
    /// Other connections share this database instance (a server's): the file is never
    /// detached and attached again under them.
    shared: bool,
}

/// Begins the transaction a command stores its work in. A session's open transaction
/// (`BEGIN;` before the command, in the shell or through a server) would make DuckDB refuse
/// with "cannot start a transaction within a transaction"; the command cannot join it, since
/// it rolls back its own transaction when it fails, which would take the session's work with
/// it. So the refusal says what happened and what to do.
pub fn begin_own_transaction(conn: &Connection) -> Result<()> {
    begin_own(conn, "BEGIN TRANSACTION")
}

/// [`begin_own_transaction`] for a transaction that only reads (`BEGIN TRANSACTION READ ONLY`).
pub fn begin_own_read_only_transaction(conn: &Connection) -> Result<()> {
    begin_own(conn, "BEGIN TRANSACTION READ ONLY")
}

/// The refusal is decided before any `BEGIN` is sent: DuckDB aborts an open transaction when a
/// `BEGIN` inside it fails, and the session's uncommitted work would be lost with it.
fn begin_own(conn: &Connection, begin: &str) -> Result<()> {
    if in_open_transaction(conn)? {
        return Err(Error::Usage(
            "this command runs in a transaction of its own, and the session has one open (BEGIN)\n  \
             hint: COMMIT or ROLLBACK first, then run the command"
                .to_string(),
        ));
    }
    conn.execute_batch(begin).map_err(Error::sql)
}

/// Whether `conn` is inside a transaction it began: there, every statement sees the same
/// transaction id; outside one, each statement runs in a transaction of its own. Two reads of
/// the id leave a transaction as it was.
pub fn in_open_transaction(conn: &Connection) -> Result<bool> {
    let id = || {
        conn.query_row("SELECT txid_current()", [], |r| r.get::<_, i64>(0))
            .map_err(Error::sql)
    };
    Ok(id()? == id()?)
}

impl Store {
    /// Opens (creating when needed) and upgrades the database. A new database is a copy of this
    /// build's empty-schema template when the user's cache holds one (see [`template`]).
    pub fn open(location: &Location, read_only: bool) -> Result<Self> {
        Self::open_with(location, read_only, SchemaTemplate::in_user_cache)
    }

    /// [`Store::open`] with the template `find_template` names for a connection, if any.
    pub fn open_with(
        location: &Location,
        read_only: bool,
        find_template: impl FnOnce(&Connection, &[migrations::Migration]) -> Option<SchemaTemplate>,
    ) -> Result<Self> {
        let (conn, creation) = match location {
            Location::Memory => open_memory(read_only, find_template)?,
            Location::File(path) => open_file(path, read_only, find_template)?,
        };
        let path = PathBuf::from(location.display());
        let bootstrapped = migrations::apply(&conn, migrations::MIGRATIONS, &path, read_only)?;
        match creation {
            Creation::Existing => {}
            // The template's rows say when the template was made; this database got its schema now.
            Creation::Copied => conn
                .execute_batch("UPDATE schema_migrations SET applied_at = now()")
                .map_err(Error::sql)?,
            // Only a cache: a database that cannot be saved as a template is still a database.
            // Saved only when this open made the whole schema, so the template is sure to hold
            // nothing else.
            Creation::Migrated(Some(template)) if bootstrapped => {
                let catalog = match location {
                    Location::Memory => "memory",
                    Location::File(_) => CATALOG,
                };
                let _ = template.save_from(&conn, catalog);
            }
            Creation::Migrated(_) => {}
        }
        lock_settings(&conn)?;
        Ok(Store {
            conn,
            location: location.clone(),
            read_only,
            default_memory_limit: std::cell::OnceCell::new(),
            rows_since_attach: std::cell::Cell::new(0),
            detached: std::cell::Cell::new(false),
            shared: false,
        })
    }

    /// Checks a statement of user-given SQL (the shell, `-c`, a server's local client) before
    /// it runs: no extension is installed or loaded
    /// ([`statements::refuse_extension_statements`]), and in a `--read-only` session the
    /// database's own catalog is never detached or replaced, which is how it could be attached
    /// again writable (DuckDB itself refuses a second attachment of a file already attached,
    /// by its canonical path).
    pub fn check_user_statement(&self, sql: &str) -> Result<()> {
        statements::refuse_extension_statements(sql)?;
        if !self.read_only {
            return Ok(());
        }
        let first = statements::first_keyword(sql);
        let replaces = first == "ATTACH" && statements::leading_keywords(sql, 3).iter().any(|w| w == "REPLACE");
        let detaches_own =
            first == "DETACH" && statements::detached_name(sql).is_none_or(|name| name.eq_ignore_ascii_case(CATALOG));
        if replaces || detaches_own {
            return Err(Error::Usage(format!(
                "{} is refused in a --read-only session: the database {CATALOG} could then be attached again writable\n  \
                 hint: ATTACH other files under other names (they stay writable); open without --read-only to write",
                if replaces { "ATTACH OR REPLACE" } else { "DETACH of the database" }
            )));
        }
        Ok(())
    }

    /// After a statement of user-given SQL ran in a `--read-only` session: a writable
    /// attachment of the database's own file (by a hard link, which DuckDB's path check does
    /// not see) is detached again and reported, before any other statement can write through it.
    pub fn check_still_read_only(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Location::File(own) = &self.location else {
            return Ok(());
        };
        if !self.read_only {
            return Ok(());
        }
        let Ok(own) = std::fs::metadata(own) else {
            return Ok(());
        };
        let writable: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT database_name, path FROM duckdb_databases() WHERE NOT readonly AND path IS NOT NULL")
                .map_err(Error::sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(Error::sql)?;
            rows.collect::<duckdb::Result<_>>().map_err(Error::sql)?
        };
        for (name, path) in writable {
            let same = std::fs::metadata(&path).is_ok_and(|m| m.dev() == own.dev() && m.ino() == own.ino());
            if same {
                let detached = self.conn.execute_batch(&format!("DETACH {}", quote_ident(&name)));
                return Err(Error::Usage(format!(
                    "{path} (attached as {name}) is this --read-only session's own database, attached writable; {}\n  \
                     hint: open without --read-only to write",
                    if detached.is_ok() {
                        "it was detached again"
                    } else {
                        "detaching it failed, so end this session"
                    }
                )));
            }
        }
        Ok(())
    }

    /// Another connection to the same database instance, with its own transactions, for a
    /// server's capture, clients and scheduled work. Once a connection is shared, neither it nor
    /// this store detaches the file by itself ([`Store::stored_rows`]); only the server does,
    /// when nothing else uses the database ([`Store::attach_again`]).
    pub fn connect(&mut self) -> Result<Store> {
        self.shared = true;
        let conn = self.conn.try_clone().map_err(Error::sql)?;
        if matches!(self.location, Location::File(_)) {
            conn.execute_batch(&format!("USE {CATALOG}")).map_err(Error::sql)?;
        }
        Ok(Store {
            conn,
            location: self.location.clone(),
            read_only: self.read_only,
            default_memory_limit: std::cell::OnceCell::new(),
            rows_since_attach: std::cell::Cell::new(0),
            detached: std::cell::Cell::new(false),
            shared: true,
        })
    }

    /// Counts rows a capture stored, and once [`REATTACH_ROWS`] have been stored since the file
    /// was attached, detaches and attaches it again. DuckDB holds in memory the full description
    /// of every row group written since the file was attached (about 50 KiB each for the sockets
    /// table), and frees it only when the file is detached; a capture of 50 000 sockets grew by
    /// 200 KiB a snapshot without this. Detaching checkpoints; attaching again reads back only
    /// the catalog. Nothing to do for an in-memory database, which cannot be detached and kept.
    pub fn stored_rows(&self, rows: usize) -> Result<()> {
        if self.shared {
            return Ok(());
        }
        let total = self.rows_since_attach.get() + rows;
        if total < REATTACH_ROWS {
            self.rows_since_attach.set(total);
            return Ok(());
        }
        self.rows_since_attach.set(0);
        match &self.location {
            Location::File(path) => self.reattach(path, Reattach::CAPTURE),
            Location::Memory => Ok(()),
        }
    }

    /// Detaches the file and attaches it again; `then` says how long to wait for another process
    /// that holds the file meanwhile, and what is said when it cannot be attached.
    fn reattach(&self, path: &Path, then: Reattach) -> Result<()> {
        if let Err(e) = self.conn.execute_batch(&format!("USE memory; DETACH {CATALOG}")) {
            // DuckDB detaches before the checkpoint it runs on the way out: when that fails
            // (a full disk) the file is detached all the same, and is attached again below
            // (its WAL replayed). Otherwise nothing changed.
            if self.catalog_attached() {
                let _ = self.conn.execute_batch(&format!("USE {CATALOG}"));
                return Err(reattach_failed(path, &e, ""));
            }
        }
        self.attach_detached(path, then)
    }

    /// True when the file is attached under [`CATALOG`].
    fn catalog_attached(&self) -> bool {
        self.conn
            .query_row(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                [CATALOG],
                |r| r.get::<_, i64>(0),
            )
            .map_or(true, |n| n > 0)
    }

    /// Attaches the file again after [`Store::reattach`] detached it. While the file is
    /// detached another process may open it, and then hold its lock for as long as its query
    /// runs: a capture waits for that, a few seconds at most, then leaves the store detached; a
    /// server tries again later instead of holding its other work up.
    fn attach_detached(&self, path: &Path, then: Reattach) -> Result<()> {
        let mut attempts = 0;
        loop {
            match self.conn.execute_batch(&attach_sql(path, self.read_only)) {
                Ok(()) => {
                    self.detached.set(false);
                    return Ok(());
                }
                Err(e) => match classify_open_error(path, e) {
                    Error::DatabaseLocked { .. } if attempts < then.waits => {
                        attempts += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    other => {
                        self.detached.set(true);
                        return Err(reattach_failed(path, &other, then.left_detached));
                    }
                },
            }
        }
    }

    /// For a server, whose connections share this database instance: detaches the file and
    /// attaches it again under the same name, which drops what DuckDB holds in memory of every
    /// row group written or read since it was attached (see [`Store::stored_rows`]); after a
    /// failed attempt that left it detached, only attaches it. Other connections find the file
    /// again by its name, and their prepared statements bind again.
    ///
    /// The caller makes sure that no other connection of the instance runs a statement or holds
    /// a transaction meanwhile: what such a transaction committed afterwards would go to the
    /// detached file and be lost.
    pub fn attach_again(&self) -> Result<()> {
        match &self.location {
            Location::File(path) if self.detached.get() => self.attach_detached(path, Reattach::SERVER),
            Location::File(path) => self.reattach(path, Reattach::SERVER),
            Location::Memory => Ok(()),
        }
    }

    /// A database file at `path` with a table `t` of the numbers below `rows`, for tests.
    #[cfg(test)]
    pub(crate) fn file_with_numbers(path: &Path, rows: u64) -> Store {
        let store = Store::open(&Location::File(path.to_path_buf()), false).unwrap();
        store
            .conn()
            .execute_batch(&format!("CREATE TABLE t AS SELECT range AS i FROM range({rows})"))
            .unwrap();
        store
    }

    /// Detaches the file as a failed [`Store::attach_again`] leaves it, for tests of what
    /// follows.
    #[cfg(test)]
    pub(crate) fn detach_as_if_attaching_failed(&self) {
        self.conn
            .execute_batch(&format!("USE memory; DETACH {CATALOG}"))
            .unwrap();
        self.detached.set(true);
    }

    /// True when the file could not be attached again after a capture detached it: nothing
    /// more can be read or stored through this store.
    pub fn is_detached(&self) -> bool {
        self.detached.get()
    }

    /// The connection, for queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `work` in one transaction: committed when it succeeds, rolled back (nothing of it
    /// stored) when it fails.
    pub fn in_transaction<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        begin_own_transaction(&self.conn)?;
        match work(&self.conn).and_then(|value| {
            self.conn.execute_batch("COMMIT").map_err(Error::sql)?;
            Ok(value)
        }) {
            Ok(value) => Ok(value),
            Err(e) => {
                self.roll_back();
                Err(e)
            }
        }
    }

    /// Ends the connection's transaction, if one is still open, without its changes. A call a
    /// server's client cancelled has its statements interrupted again and again until it ends
    /// (`interrupt::Call`), and one of those can land in this ROLLBACK (or the COMMIT before
    /// it): it is tried again, so the session is never left inside a dead transaction.
    pub fn roll_back(&self) {
        for _ in 0..50 {
            match self.conn.execute_batch("ROLLBACK").map_err(Error::sql) {
                Err(Error::Interrupted) => std::thread::sleep(std::time::Duration::from_millis(1)),
                // Done, or no transaction is open (a failed COMMIT ends it).
                _ => return,
            }
        }
    }

    /// Other connections share this database instance (a server's clients).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// DuckDB's default memory limit as it shows it, asked once per store by a capture
    /// (`capture::persist::CaptureSettings::release_cache`).
    pub(crate) fn default_memory_limit(&self) -> &std::cell::OnceCell<Option<String>> {
        &self.default_memory_limit
    }

    /// True when opened with `--read-only`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// True when a table or view of that name exists in this database (or is a temporary one).
    pub fn relation_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM (SELECT table_name AS n FROM duckdb_tables() WHERE NOT internal AND {IN_THIS_DATABASE} \
                     UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal AND {IN_THIS_DATABASE}) \
                     WHERE lower(n) = lower(?)"
                ),
                [name],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        Ok(n > 0)
    }

    /// Column names of a table or view, in order.
    pub fn columns_of(&self, name: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT column_name FROM duckdb_columns() WHERE lower(table_name) = lower(?) \
                 AND NOT internal AND {IN_THIS_DATABASE} ORDER BY column_index"
            ))
            .map_err(Error::sql)?;
        let rows = stmt.query_map([name], |r| r.get::<_, String>(0)).map_err(Error::sql)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(Error::sql)
    }
}

/// Double-quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Single-quotes an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How an open came by its schema.
enum Creation {
    /// The database existed: the migrations bring it up to date.
    Existing,
    /// New, as a copy of the template.
    Copied,
    /// New, made by the migrations; the template to save it as, if there is a cache for one.
    Migrated(Option<SchemaTemplate>),
}

fn open_memory(
    read_only: bool,
    find_template: impl FnOnce(&Connection, &[migrations::Migration]) -> Option<SchemaTemplate>,
) -> Result<(Connection, Creation)> {
    let conn = config()
        .and_then(Connection::open_in_memory_with_flags)
        .map_err(|e| Error::OpenDatabase {
            path: PathBuf::from(":memory:"),
            reason: e.to_string(),
        })?;
    if read_only {
        return Ok((conn, Creation::Existing));
    }
    let Some(template) = find_template(&conn, migrations::MIGRATIONS) else {
        return Ok((conn, Creation::Migrated(None)));
    };
    match template.copy_into(&conn, "memory") {
        Ok(true) => Ok((conn, Creation::Copied)),
        Ok(false) => Ok((conn, Creation::Migrated(Some(template)))),
        // The template did not attach, or the copy (one transaction) was rolled back: the
        // catalog is empty again.
        Err(_) => {
            template.discard();
            Ok((conn, Creation::Migrated(None)))
        }
    }
}

/// The file is attached to an in-memory DuckDB rather than opened as its main database,
/// because only ATTACH takes the row group size ([`ROW_GROUP_SIZE`]); the in-memory catalog
/// `memory` stays empty. `temp_directory` is where DuckDB would spill for the file itself.
fn open_file(
    path: &Path,
    read_only: bool,
    find_template: impl FnOnce(&Connection, &[migrations::Migration]) -> Option<SchemaTemplate>,
) -> Result<(Connection, Creation)> {
    if path.to_str().is_none() {
        return Err(Error::OpenDatabase {
            path: path.to_path_buf(),
            reason: "the path is not valid UTF-8, which DuckDB cannot take".to_string(),
        });
    }
    let exists = path.exists();
    if !exists {
        if read_only {
            return Err(Error::OpenDatabase {
                path: path.to_path_buf(),
                reason: "the file does not exist, and --read-only cannot create it".to_string(),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(|e| Error::OpenDatabase {
                path: path.to_path_buf(),
                reason: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
    } else if path.is_dir() {
        return Err(Error::OpenDatabase {
            path: path.to_path_buf(),
            reason: "it is a directory".to_string(),
        });
    }
    let config = config()
        .and_then(|c| c.with("temp_directory", format!("{}.tmp", path.display())))
        .map_err(|e| Error::OpenDatabase {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let conn = Connection::open_in_memory_with_flags(config).map_err(|e| classify_open_error(path, e))?;
    if exists {
        conn.execute_batch(&attach_sql(path, read_only))
            .map_err(|e| classify_open_error(path, e))?;
        return Ok((conn, Creation::Existing));
    }
    // A WAL without its database is not ours to replay over a copy: DuckDB decides.
    let template = find_template(&conn, migrations::MIGRATIONS).filter(|_| !wal_of(path).exists());
    let mut creation = Creation::Migrated(template.clone());
    // A template that cannot be copied is as good as none: the migrations make the file.
    match template.as_ref().map(|t| t.copy_to_file(path)) {
        Some(Ok(template::Copied::Placed)) => match conn.execute_batch(&attach_sql(path, read_only)) {
            Ok(()) => return Ok((conn, Creation::Copied)),
            Err(e) => match classify_open_error(path, e) {
                // The template is damaged. The copy was placed by this open a moment ago and
                // DuckDB could not open it, so nothing can have been stored in it: remove both.
                Error::CorruptDatabase { .. } => {
                    template::remove_with_wal(path);
                    if let Some(template) = &template {
                        template.discard();
                    }
                    creation = Creation::Migrated(None);
                }
                other => return Err(other),
            },
        },
        // Another process made the file since this one looked: open it as it is.
        Some(Ok(template::Copied::TargetExists)) => creation = Creation::Existing,
        Some(Ok(template::Copied::NoTemplate)) | Some(Err(_)) | None => {}
    }
    conn.execute_batch(&attach_sql(path, read_only))
        .map_err(|e| classify_open_error(path, e))?;
    if let Creation::Migrated(_) = creation {
        restrict_permissions(path);
    }
    Ok((conn, creation))
}

/// The WAL DuckDB keeps beside a database file.
pub fn wal_of(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    PathBuf::from(wal)
}

/// The name the database file is attached under, and the default catalog of every query.
pub const CATALOG: &str = "netlens";

/// Filter for `duckdb_tables()`, `duckdb_views()` and `duckdb_columns()`: this database's
/// relations and the session's temporary ones, not those of other attached databases.
pub const IN_THIS_DATABASE: &str = "database_name IN (current_database(), 'temp')";

fn attach_sql(path: &Path, read_only: bool) -> String {
    format!(
        "ATTACH {} AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_SIZE}{}); USE {CATALOG}",
        quote_literal(&path.to_string_lossy()),
        if read_only { ", READ_ONLY" } else { "" }
    )
}

/// Rows per row group in the file, in place of DuckDB's 122 880. DuckDB writes a transaction's
/// rows straight to the file, compressed, row group by row group, only once they fill a whole
/// row group; fewer rows wait in memory and are copied into the table at commit, so a snapshot
/// of 50 000 sockets used to sit in memory twice (about 20 MiB each time). With row groups of
/// 16 384 rows, such a snapshot goes to disk as it is appended, and the WAL gets only where its
/// row groups are, not its rows. The size is not part of the file: files written with other
/// sizes open and read as before.
pub const ROW_GROUP_SIZE: usize = 16_384;

/// Rows stored after which a capture attaches the file again ([`Store::stored_rows`]): about 15
/// row groups, under 1 MiB of their descriptions. That is every 5 snapshots at 50 000 sockets,
/// for about 35 ms each time, and every few hundred snapshots on a quiet host.
pub(crate) const REATTACH_ROWS: usize = 250_000;

/// How [`Store::reattach`] attaches the file again.
#[derive(Clone, Copy)]
struct Reattach {
    /// Tries, 100 ms apart, while another process holds the file.
    waits: u32,
    /// What the error says when the file is left detached.
    left_detached: &'static str,
}

impl Reattach {
    const CAPTURE: Reattach = Reattach {
        waits: 50,
        left_detached: "\n  hint: the database is no longer open in this process; start netlens again",
    };
    const SERVER: Reattach = Reattach {
        waits: 0,
        left_detached: "\n  the database is no longer open in the server: every statement fails until it is \
             attached again, which the server tries after each snapshot that failed (every second \
             without snapshots); the live packet capture waits for it",
    };
}

/// The error of a failed [`Store::reattach`]: `kept` says what became of the database.
fn reattach_failed(path: &Path, e: &dyn std::fmt::Display, kept: &str) -> Error {
    Error::Sql {
        message: format!(
            "attaching {} again (to free DuckDB's memory of the row groups written) failed: {e}\n  \
             everything stored so far is in the file{kept}",
            path.display()
        ),
    }
}

/// Nothing leaves the machine: DuckDB must never try to download an extension (it would for
/// a SQLite file given as --db, or for time-zone functions), so autoloading is off.
///
/// `max_vacuum_tasks = 1`: at a checkpoint DuckDB merges runs of small row groups, and holds
/// every merged one uncompressed until all merges of the table are done, up to 100 by default. A
/// capture of 20 000 sockets leaves a part-filled row group per snapshot, and merging them all at
/// once took 250-500 MiB; one merge per table per checkpoint still compacts the tables that grow
/// a row or a hundred per snapshot (`snapshots`, `processes`, `interfaces`), which would
/// otherwise take a row group, and a block read by every scan, per checkpoint.
///
/// `async_threads = 0`: files are written by the thread that produces them, not by DuckDB's
/// pool of asynchronous writers. When a `COPY` failed part-way (an error in the query, a full
/// disk), the bundled DuckDB's CSV writer could deadlock while aborting its pending writes (the
/// aborting thread waits for a write task that waits for the lock the aborting thread holds), so
/// `export` hung for good instead of reporting the error; the regression test is
/// `export::a_failing_export_never_hangs`. The setting also turns off DuckDB's read-ahead for
/// scans of the file (asynchronous reads); timed without a measurable cost in bench/RESULTS.md.
fn config() -> duckdb::Result<Config> {
    Config::default()
        .with("max_vacuum_tasks", "1")?
        .with("async_threads", "0")?
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

/// The DuckDB settings user SQL may still change once [`lock_settings`] has run: resource
/// limits, and the ones netlens itself changes after opening (capture's per-snapshot
/// settings, a server's memory limit and file confinement). `enable_external_access` can then
/// only be turned off (DuckDB refuses to turn it on while running) and `allowed_directories`
/// only changed while it is on, when it has no effect.
pub const UNLOCKED_SETTINGS: &[&str] = &[
    "memory_limit",
    "threads",
    "write_buffer_row_group_count",
    "enable_external_access",
    "allowed_directories",
    "preserve_insertion_order",
    "enable_progress_bar",
];

/// Locks DuckDB's configuration for the rest of the process (DuckDB refuses even to unlock it),
/// except [`UNLOCKED_SETTINGS`]: no statement can turn extension autoloading or autoinstalling
/// back on, allow unsigned or community extensions, or change where extensions come from.
fn lock_settings(conn: &Connection) -> Result<()> {
    let allowed = UNLOCKED_SETTINGS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "SET allowed_configs = [{allowed}]; SET lock_configuration = true"
    ))
    .map_err(Error::sql)
}

/// Turns DuckDB's open errors into ones that say what to do.
fn classify_open_error(path: &Path, err: duckdb::Error) -> Error {
    let text = err.to_string();
    if text.contains("Could not set lock") || text.contains("Conflicting lock") {
        let holder = text
            .split("Conflicting lock is held in ")
            .nth(1)
            .map(|rest| format!(" ({})", rest.lines().next().unwrap_or(rest).trim_end_matches('.')))
            .unwrap_or_default();
        Error::DatabaseLocked {
            path: path.to_path_buf(),
            holder,
        }
    } else if [
        "not a valid DuckDB database",
        "Corrupt",
        "corrupt",
        "SQLite",
        "sqlite_scanner",
    ]
    .iter()
    .any(|m| text.contains(m))
    {
        Error::CorruptDatabase {
            path: path.to_path_buf(),
            reason: text,
        }
    } else {
        Error::OpenDatabase {
            path: path.to_path_buf(),
            reason: text,
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// The database records what the host did: only its owner may read it. DuckDB creates the
/// file with the process umask, so tighten it right after creation (the process umask is
/// 077 too, see `main`, which covers the WAL written later).
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: DuckDB detaches a file before the checkpoint it runs on the way out, so a
    /// DETACH whose checkpoint failed (a full disk) left the file detached while the store took
    /// it for attached, and nothing attached it again.
    #[test]
    fn a_file_a_failed_detach_left_detached_is_attached_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::file_with_numbers(&dir.path().join("t.duckdb"), 10);
        // As a failed checkpoint leaves it: detached, the store not told.
        store
            .conn()
            .execute_batch(&format!("USE memory; DETACH {CATALOG}"))
            .unwrap();
        store.attach_again().unwrap();
        assert!(!store.is_detached());
        let n: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
        // An ordinary round trip keeps it attached and whole.
        store.attach_again().unwrap();
        let n: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
    }

    #[test]
    fn opens_memory_and_applies_schema() {
        let store = Store::open(&Location::Memory, false).unwrap();
        for table in [
            "snapshots",
            "sockets",
            "processes",
            "interfaces",
            "connections",
            "tcp_transitions",
        ] {
            assert!(store.relation_exists(table).unwrap(), "{table}");
        }
        assert!(!store.relation_exists("nope").unwrap());
        // The session's temporary relations count; another attached database's do not.
        store
            .conn()
            .execute_batch("CREATE TEMP VIEW scratch AS SELECT 1 AS x")
            .unwrap();
        assert!(store.relation_exists("scratch").unwrap());
        assert_eq!(store.columns_of("scratch").unwrap(), ["x"]);
        store
            .conn()
            .execute_batch("ATTACH ':memory:' AS other; CREATE TABLE other.elsewhere (y INTEGER)")
            .unwrap();
        assert!(!store.relation_exists("elsewhere").unwrap());
        assert_eq!(store.columns_of("tcp_transitions").unwrap()[0], "connection_id");
    }

    #[test]
    fn every_table_and_column_is_documented() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let undocumented: Vec<String> = store
            .conn()
            .prepare(
                "SELECT table_name || '.' || column_name FROM duckdb_columns() WHERE NOT internal \
                 AND (comment IS NULL OR comment = '') \
                 UNION ALL SELECT table_name FROM duckdb_tables() WHERE NOT internal AND (comment IS NULL OR comment = '')",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    }

    /// Issue 22: under sudo with the user's HOME kept, root made root-owned directories and
    /// files in that user's home. Root uses no data directory inside another user's.
    #[test]
    fn root_uses_no_data_directory_of_another_user() {
        use std::os::unix::ffi::OsStrExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".local/share/netlens");
        assert_eq!(owner_elsewhere(&dir, 1000), None, "not root: no rule");
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            if cfg!(ci) {
                panic!("prerequisite missing in CI: root (to hand a directory to another user)");
            }
            eprintln!("IGNORED (prerequisite missing): root");
            return;
        }
        assert_eq!(owner_elsewhere(&dir, 0), None, "root's own directory");
        let c_path = std::ffi::CString::new(home.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: chown reads a NUL-terminated path; 65534 is `nobody`.
        assert_eq!(unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) }, 0);
        assert_eq!(owner_elsewhere(&dir, 0), Some((home.path().to_path_buf(), 65534)));
        assert!(!dir.exists(), "nothing created");
    }

    #[test]
    fn new_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        // The first is made by the migrations, the second copied from the template.
        for name in ["first", "second"] {
            let path = dir.path().join(format!("sub/dir/{name}.duckdb"));
            let store = Store::open_with(&Location::File(path.clone()), false, |conn, migrations| {
                SchemaTemplate::in_dir(cache.path(), conn, migrations).ok()
            })
            .unwrap();
            drop(store);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let saved: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(saved.len(), 1, "one template");
        let mode = saved[0].metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the template");
    }

    #[test]
    fn garbage_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.duckdb");
        let junk = b"this is not a database, it is a shopping list\n".repeat(200);
        std::fs::write(&path, &junk).unwrap();
        let err = Store::open(&Location::File(path.clone()), false).err().unwrap();
        assert!(matches!(err, Error::CorruptDatabase { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname.duckdb"));
        let err = Store::open(&Location::File(path), false).err().unwrap();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a file was created");
    }

    #[test]
    fn read_only_refuses_to_create() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(&Location::File(dir.path().join("absent.duckdb")), true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn settings_stay_locked_and_extensions_stay_out() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let conn = store.conn();
        for undo in [
            "SET autoinstall_known_extensions = true",
            "SET autoload_known_extensions = true",
            "RESET autoload_known_extensions",
            "SET lock_configuration = false",
            "SET allowed_configs = ['autoinstall_known_extensions']",
            "SET allow_unsigned_extensions = true",
            "SET custom_extension_repository = 'http://example.invalid'",
            "PRAGMA autoinstall_known_extensions = true",
        ] {
            let e = conn.execute_batch(undo).unwrap_err().to_string();
            assert!(e.contains("locked") || e.contains("Cannot"), "{undo}: {e}");
        }
        let installed: bool = conn
            .query_row("SELECT current_setting('autoinstall_known_extensions')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(!installed);
        // What netlens itself changes later, and resource limits, still change.
        for setting in UNLOCKED_SETTINGS
            .iter()
            .filter(|s| !s.starts_with("allowed") && !s.contains("external"))
        {
            let value: String = conn
                .query_row(&format!("SELECT current_setting('{setting}')::VARCHAR"), [], |r| {
                    r.get(0)
                })
                .unwrap();
            conn.execute_batch(&format!("SET {setting} = '{value}'")).unwrap();
        }
        conn.execute_batch("RESET memory_limit").unwrap();
        for refused in [
            "INSTALL httpfs",
            "LOAD httpfs",
            "FORCE INSTALL httpfs",
            "UPDATE EXTENSIONS",
        ] {
            assert!(store.check_user_statement(refused).is_err(), "{refused}");
        }
        assert!(
            store.check_user_statement("DETACH netlens").is_ok(),
            "only read-only sessions keep it"
        );
    }

    #[test]
    fn a_read_only_session_cannot_attach_its_file_writable_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        drop(Store::open(&Location::File(path.clone()), false).unwrap());
        let store = Store::open(&Location::File(path.clone()), true).unwrap();
        for refused in [
            "DETACH netlens",
            "detach database if exists \"NETLENS\"",
            "ATTACH OR REPLACE 'x.duckdb' AS netlens",
        ] {
            let e = store.check_user_statement(refused).unwrap_err().to_string();
            assert!(e.contains("--read-only"), "{refused}: {e}");
        }
        assert!(store.check_user_statement("DETACH other").is_ok());
        // A hard link is another path to the same file, which DuckDB lets attach writable.
        let link = dir.path().join("link.duckdb");
        std::fs::hard_link(&path, &link).unwrap();
        store
            .conn()
            .execute_batch(&format!("ATTACH {} AS w", quote_literal(&link.display().to_string())))
            .unwrap();
        let e = store.check_still_read_only().unwrap_err().to_string();
        assert!(e.contains("detached again"), "{e}");
        let left: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'w'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        // Other files stay writable.
        store
            .conn()
            .execute_batch(&format!(
                "ATTACH {} AS other; CREATE TABLE other.t AS SELECT 1 AS x",
                quote_literal(&dir.path().join("other.duckdb").display().to_string())
            ))
            .unwrap();
        store.check_still_read_only().unwrap();
    }
}
