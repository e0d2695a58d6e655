//! Empty-schema templates, as PostgreSQL's `template1`: a new database starts as a copy of an
//! empty one instead of running the migrations again.
//!
//! netlens's schema is about a thousand statements (most of them `COMMENT ON`, which keep every
//! table and column documented), and DuckDB's fixed cost per statement makes creating it take
//! about 0.2 s: more than reading a capture of a million packets takes. So the first database a
//! netlens build creates is saved once, empty, in the user's cache directory
//! (`$XDG_CACHE_HOME/netlens` or `~/.cache/netlens`), and later new databases are a copy of that
//! file (a new file database) or of its catalog (an in-memory one).
//!
//! A template is named after a fingerprint of everything that decides what it holds: the
//! migration scripts, the netlens version that stamps `schema_migrations`, and the DuckDB
//! library that wrote it. Another build uses another file, never a stale one. The template is
//! written under a temporary name and renamed into place, so a reader never sees half a file,
//! and processes creating it at once each leave a whole one. A template DuckDB cannot read is
//! deleted and the database is created from the scripts, as without one.
//!
//! The cache is an optimisation only: when there is no cache directory this user owns, or it
//! cannot be written, every new database runs the migrations as before. This module touches
//! only the templates (`schema-*.duckdb`) and their partial saves (`.schema-*.partial`) in that
//! directory, and beside a new database the copy it links into place
//! (`.NAME.*.netlens-copy`, removed at once; a crash in the millisecond it exists leaves it).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use duckdb::Connection;

use super::migrations::{self, Migration};
use super::quote_literal;
use crate::error::{Error, Result};

/// The catalog name a template is attached under while it is read or written.
const ATTACHED_AS: &str = "netlens_schema_template";

/// The empty-schema database of one build.
#[derive(Debug, Clone)]
pub struct SchemaTemplate {
    path: PathBuf,
}

impl SchemaTemplate {
    /// This build's template in the user's cache directory, or `None` when there is no cache
    /// directory this user owns (see [`cache_dir`]).
    pub fn in_user_cache(conn: &Connection, migrations: &[Migration]) -> Option<Self> {
        let dir = cache_dir()?;
        Self::in_dir(&dir, conn, migrations).ok()
    }

    /// The template for `migrations` and the DuckDB library behind `conn`, in `dir`.
    pub fn in_dir(dir: &Path, conn: &Connection, migrations: &[Migration]) -> Result<Self> {
        if dir.to_str().is_none() {
            // DuckDB takes paths as UTF-8 text: it would attach some other file.
            return Err(Error::Sql {
                message: format!("the cache directory {} is not valid UTF-8", dir.display()),
            });
        }
        let duckdb: String = conn
            .query_row(
                "SELECT library_version || ' ' || source_id FROM pragma_version()",
                [],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        let key = fingerprint(&[env!("CARGO_PKG_VERSION"), &duckdb, &migrations::schema_text(migrations)]);
        Ok(SchemaTemplate {
            path: dir.join(format!("schema-{key:016x}.duckdb")),
        })
    }

    /// The template's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts a copy of the template at `target` unless something is there already. The copy is
    /// written under a name of its own beside `target`, made durable, and only then linked into
    /// place: a link never replaces a file, and a crash never leaves half a copy at `target`.
    pub fn copy_to_file(&self, target: &Path) -> io::Result<Copied> {
        let mut source = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Copied::NoTemplate),
            Err(e) => return Err(e),
        };
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let partial = target.with_file_name(format!(".{name}.{}.netlens-copy", unique_suffix()));
        let placed = private_options()
            .create_new(true)
            .open(&partial)
            .and_then(|mut copy| {
                // Durable before DuckDB writes to it: DuckDB's syncs cover only what it writes.
                io::copy(&mut source, &mut copy)?;
                copy.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&partial, target));
        let _ = std::fs::remove_file(&partial);
        match placed {
            Ok(()) => {
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(Copied::Placed)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Copied::TargetExists),
            Err(e) => Err(e),
        }
    }

    /// Copies the template's tables, views, macros and their rows into `catalog` of `conn`, in
    /// one transaction. `Ok(false)` when there is no template yet.
    pub fn copy_into(&self, conn: &Connection, catalog: &str) -> Result<bool> {
        if !self.path.exists() {
            return Ok(false);
        }
        conn.execute_batch(&format!(
            "ATTACH {} AS {ATTACHED_AS} (READ_ONLY)",
            quote_literal(&self.path.to_string_lossy())
        ))
        .map_err(Error::sql)?;
        let copied = conn
            .execute_batch(&format!(
                "BEGIN TRANSACTION; COPY FROM DATABASE {ATTACHED_AS} TO {catalog}; COMMIT"
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                Error::sql(e)
            });
        // The copy stands whether or not the template detaches; an attachment left behind is
        // read-only and holds nothing of the user's.
        let _ = conn.execute_batch(&format!("DETACH DATABASE IF EXISTS {ATTACHED_AS}"));
        copied.map(|()| true)
    }

    /// Saves `catalog` of `conn`, a database the migrations have just created and nothing else
    /// has written to, as the template.
    pub fn save_from(&self, conn: &Connection, catalog: &str) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        super::create_private_dir(dir).map_err(|e| Error::io(dir, e))?;
        // A name of this save's own: threads and processes saving at once never share a file.
        let partial = dir.join(format!(
            ".{}.{}.partial",
            self.path.file_name().unwrap_or_default().to_string_lossy(),
            unique_suffix()
        ));
        remove_with_wal(&partial);
        // DETACH checkpoints: the file is whole, with no WAL, before it is renamed into place.
        let written = conn
            .execute_batch(&format!(
                "ATTACH {} AS {ATTACHED_AS}; COPY FROM DATABASE {catalog} TO {ATTACHED_AS}; DETACH {ATTACHED_AS}",
                quote_literal(&partial.to_string_lossy())
            ))
            .map_err(Error::sql)
            .and_then(|()| {
                // Private like the databases copied from it, whatever the umask.
                super::restrict_permissions(&partial);
                std::fs::rename(&partial, &self.path).map_err(|e| Error::io(&self.path, e))
            });
        if written.is_err() {
            let _ = conn.execute_batch(&format!("DETACH DATABASE IF EXISTS {ATTACHED_AS}"));
            remove_with_wal(&partial);
        } else {
            self.remove_leftovers();
        }
        written
    }

    /// Removes the templates of other builds, and partial saves an hour old (a process that
    /// died while saving), so the cache holds one template, not one per version ever run.
    fn remove_leftovers(&self) {
        let Some(dir) = self.path.parent() else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let ours = self.path.file_name().unwrap_or_default();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            let other_build = text.starts_with("schema-") && text.ends_with(".duckdb") && name != ours;
            let stale_partial = text.starts_with(".schema-")
                && (text.ends_with(".partial") || text.ends_with(".partial.wal"))
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(3600));
            if other_build {
                remove_with_wal(&entry.path());
            } else if stale_partial {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Deletes the template, after a copy of it failed to open.
    pub fn discard(&self) {
        remove_with_wal(&self.path);
    }
}

/// What [`SchemaTemplate::copy_to_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The copy is at the target.
    Placed,
    /// There is no template yet; nothing was done.
    NoTemplate,
    /// Another process created the target meanwhile; it was left as it is.
    TargetExists,
}

/// `netlens` in the user's cache directory, when there is one this user owns (see
/// [`cache_base`]). Unit tests use a directory of their own, never the developer's cache.
fn cache_dir() -> Option<PathBuf> {
    let base = if cfg!(test) {
        Some(std::env::temp_dir().join("netlens-unit-test-cache"))
    } else {
        cache_base(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
    }?;
    owned_or_creatable(&base).then(|| base.join("netlens"))
}

/// `$XDG_CACHE_HOME`, or `~/.cache`. A relative `XDG_CACHE_HOME` is ignored, as the XDG base
/// directory specification says.
fn cache_base(xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let xdg = xdg.map(PathBuf::from).filter(|p| p.is_absolute());
    xdg.or_else(|| {
        home.map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    })
}

/// True when `dir` is a directory this user owns, or can be created in one this user owns.
/// netlens is often run as root, with the invoking user's `HOME` kept by sudo: it must not
/// leave directories owned by root in a user's home.
#[cfg(unix)]
fn owned_or_creatable(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail and has no side effects.
    let me = unsafe { libc::geteuid() };
    let owned = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == me);
    if owned(dir) {
        return true;
    }
    !dir.exists() && dir.parent().is_some_and(owned) && super::create_private_dir(dir).is_ok()
}

#[cfg(not(unix))]
fn owned_or_creatable(dir: &Path) -> bool {
    dir.is_dir() || std::fs::create_dir_all(dir).is_ok()
}

/// A suffix no other save or copy in this process or another has at the same time.
pub(super) fn unique_suffix() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub(super) fn remove_with_wal(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(super::wal_of(path));
}

/// Options that write a new file readable by its owner only (whatever the umask).
#[cfg(unix)]
pub(super) fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    options
}

#[cfg(not(unix))]
pub(super) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    options
}

/// FNV-1a over the parts, each followed by a NUL: a name that stays the same from one Rust
/// release to the next, which `std`'s hasher does not promise.
fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(&[0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Location, Store};

    fn template_in(dir: &Path) -> impl FnOnce(&Connection, &[Migration]) -> Option<SchemaTemplate> + '_ {
        move |conn, migrations| Some(SchemaTemplate::in_dir(dir, conn, migrations).unwrap())
    }

    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.collect::<std::result::Result<_, _>>().unwrap()
    }

    /// Every object of the database's own catalog, with its definition and documentation.
    fn catalog(conn: &Connection) -> Vec<String> {
        let this = "database_name = current_database()";
        [
            format!("SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' \
                     || coalesce(column_default, '-') || ' ' || coalesce(comment, '-') FROM duckdb_columns() WHERE {this}"),
            format!("SELECT table_name || ' ' || sql || ' ' || coalesce(comment, '-') FROM duckdb_tables() WHERE {this}"),
            format!("SELECT view_name || ' ' || sql || ' ' || coalesce(comment, '-') FROM duckdb_views() WHERE {this} AND NOT internal"),
            format!("SELECT table_name || ' ' || constraint_type || ' ' || constraint_text FROM duckdb_constraints() WHERE {this}"),
            format!("SELECT index_name || ' ' || coalesce(sql, '-') FROM duckdb_indexes() WHERE {this}"),
            format!("SELECT sequence_name || ' ' || coalesce(comment, '-') FROM duckdb_sequences() WHERE {this}"),
            format!("SELECT function_name || ' ' || coalesce(macro_definition, '-') || ' ' || coalesce(comment, '-') \
                     FROM duckdb_functions() WHERE {this}"),
            "SELECT version || ' ' || name || ' ' || netlens FROM schema_migrations".to_string(),
        ]
        .iter()
        .flat_map(|sql| {
            let mut found = rows(conn, &format!("{sql} ORDER BY ALL"));
            found.insert(0, sql.clone());
            found
        })
        .collect()
    }

    fn migrated_catalog() -> Vec<String> {
        let store = Store::open_with(&Location::Memory, false, |_, _| None).unwrap();
        catalog(store.conn())
    }

    /// A file made by any earlier build upgrades to exactly the schema a new file gets, and
    /// keeps its rows: no migration may assume it runs on an empty database or after some
    /// other step than the one before it.
    #[test]
    fn every_older_schema_upgrades_to_exactly_the_fresh_one() {
        let fresh = migrated_catalog();
        let all = migrations::MIGRATIONS;
        for shipped in 1..all.len() {
            let conn = Connection::open_in_memory().unwrap();
            migrations::apply(&conn, &all[..shipped], Path::new("old.duckdb"), false).unwrap();
            conn.execute_batch(
                "INSERT INTO snapshots (snapshot_id, ts, host, source, socket_count, process_count, interface_count) \
                 VALUES (7, TIMESTAMP '2026-01-01 00:00:00', 'old', 'fixture', 0, 0, 0)",
            )
            .unwrap();
            migrations::apply(&conn, all, Path::new("old.duckdb"), false).unwrap();
            let upgraded = catalog(&conn);
            let differs: Vec<_> = fresh
                .iter()
                .filter(|row| !upgraded.contains(row))
                .chain(upgraded.iter().filter(|row| !fresh.contains(row)))
                .take(5)
                .collect();
            assert!(differs.is_empty(), "upgraded from version {shipped}: {differs:#?}");
            let kept: String = conn
                .query_row("SELECT host FROM snapshots WHERE snapshot_id = 7", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kept, "old");
        }
    }

    #[test]
    fn copies_hold_exactly_what_the_migrations_make() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let expected = migrated_catalog();
        assert!(expected.len() > 900, "{} catalog rows", expected.len());
        let open = |location: Location| Store::open_with(&location, false, template_in(cache.path())).unwrap();
        // The first new database is made by the migrations and saved as the template.
        let first = open(Location::File(data.path().join("first.duckdb")));
        assert_eq!(catalog(first.conn()), expected);
        let saved: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(saved.len(), 1, "{saved:?}");
        // The next ones, a file and an in-memory database, are copies of it.
        let second = open(Location::File(data.path().join("second.duckdb")));
        assert_eq!(catalog(second.conn()), expected);
        let memory = open(Location::Memory);
        assert_eq!(catalog(memory.conn()), expected);
        // Copies carry the migrations' checksums: every open of them verifies against these.
        for copy in [&second, &memory] {
            let recorded = rows(
                copy.conn(),
                "SELECT count(*) FILTER (checksum IS NOT NULL) || '/' || count(*) FROM schema_migrations",
            );
            assert_eq!(recorded, [format!("{0}/{0}", migrations::MIGRATIONS.len())]);
        }
        // A copy that failed would have discarded the template (and the migrations would have
        // given the same catalog).
        let again: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(again, saved);
    }

    /// A mark put into the template shows up in new databases: they are copies, not made anew.
    #[test]
    fn new_databases_are_copies_of_the_template() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        drop(Store::open_with(&Location::Memory, false, template_in(cache.path())).unwrap());
        let conn = Connection::open_in_memory().unwrap();
        let template = SchemaTemplate::in_dir(cache.path(), &conn, migrations::MIGRATIONS).unwrap();
        assert!(template.path().exists(), "not saved: {}", template.path().display());
        conn.execute_batch(&format!(
            "ATTACH {} AS t; CREATE TABLE t.mark AS SELECT 42 AS x; UPDATE t.schema_migrations SET applied_at = TIMESTAMP '2001-01-01'; DETACH t",
            quote_literal(&template.path().to_string_lossy())
        ))
        .unwrap();
        for location in [Location::File(data.path().join("n.duckdb")), Location::Memory] {
            let store = Store::open_with(&location, false, template_in(cache.path())).unwrap();
            let x: i32 = store.conn().query_row("SELECT x FROM mark", [], |r| r.get(0)).unwrap();
            assert_eq!(x, 42, "{location:?}");
            // When the schema came is when this database was made, not the template.
            let oldest: i64 = store
                .conn()
                .query_row("SELECT min(year(applied_at)) FROM schema_migrations", [], |r| r.get(0))
                .unwrap();
            assert!(oldest > 2001, "{location:?}: {oldest}");
        }
        // A file that already exists is opened as it is, never replaced by the template.
        let store = Store::open_with(&Location::File(data.path().join("n.duckdb")), false, |_, _| None).unwrap();
        store.conn().execute_batch("DROP TABLE mark").unwrap();
        drop(store);
        let store = Store::open_with(
            &Location::File(data.path().join("n.duckdb")),
            false,
            template_in(cache.path()),
        )
        .unwrap();
        assert!(!store.relation_exists("mark").unwrap());
    }

    #[test]
    fn a_damaged_template_is_dropped_and_the_migrations_run() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let conn = Connection::open_in_memory().unwrap();
        let template = SchemaTemplate::in_dir(cache.path(), &conn, migrations::MIGRATIONS).unwrap();
        let expected = migrated_catalog();
        for location in [Location::File(data.path().join("n.duckdb")), Location::Memory] {
            std::fs::write(template.path(), b"not a database at all".repeat(500)).unwrap();
            let store = Store::open_with(&location, false, template_in(cache.path())).unwrap();
            assert_eq!(catalog(store.conn()), expected, "{location:?}");
            assert!(
                !template.path().exists(),
                "{location:?}: the damaged template is still there"
            );
        }
    }

    /// Several stores created at once, with no template yet, each save one: the one left is whole.
    #[test]
    fn saves_at_once_leave_one_whole_template() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for i in 0..4 {
                let (cache, data) = (cache.path(), data.path());
                scope.spawn(move || {
                    let location = match i % 2 {
                        0 => Location::Memory,
                        _ => Location::File(data.join(format!("{i}.duckdb"))),
                    };
                    Store::open_with(&location, false, template_in(cache)).unwrap();
                });
            }
        });
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let copy = Store::open_with(&Location::Memory, false, template_in(cache.path())).unwrap();
        assert_eq!(catalog(copy.conn()), migrated_catalog());
        // And it is what new databases are copied from.
        mark(cache.path());
        let copy = Store::open_with(&Location::Memory, false, template_in(cache.path())).unwrap();
        assert!(copy.relation_exists("mark").unwrap());
    }

    /// Puts a table `mark` into the template in `dir`.
    fn mark(dir: &Path) {
        let conn = Connection::open_in_memory().unwrap();
        let template = SchemaTemplate::in_dir(dir, &conn, migrations::MIGRATIONS).unwrap();
        conn.execute_batch(&format!(
            "ATTACH {} AS t; CREATE TABLE t.mark AS SELECT 42 AS x; DETACH t",
            quote_literal(&template.path().to_string_lossy())
        ))
        .unwrap();
    }

    /// Saving removes the templates of other builds and partial saves left by a process that
    /// died, not a save under way.
    #[test]
    fn saving_removes_what_other_builds_and_dead_saves_left() {
        let cache = tempfile::tempdir().unwrap();
        let old_build = cache.path().join("schema-0123456789abcdef.duckdb");
        let dead = cache.path().join(".schema-0123456789abcdef.duckdb.99-0.partial");
        let under_way = cache.path().join(".schema-0123456789abcdef.duckdb.98-0.partial");
        let unrelated = cache.path().join("notes.txt");
        for f in [&old_build, &dead, &under_way, &unrelated] {
            std::fs::write(f, b"x").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        drop(Store::open_with(&Location::Memory, false, template_in(cache.path())).unwrap());
        assert!(!old_build.exists() && !dead.exists());
        assert!(under_way.exists() && unrelated.exists());
        let templates = std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("schema-"))
            .count();
        assert_eq!(templates, 1);
    }

    #[test]
    fn the_cache_directory_follows_xdg() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_base(some("/x/cache"), some("/home/u")),
            Some(PathBuf::from("/x/cache"))
        );
        assert_eq!(cache_base(None, some("/home/u")), Some(PathBuf::from("/home/u/.cache")));
        // Relative paths are not to be used (the XDG base directory specification).
        assert_eq!(
            cache_base(some("rel/cache"), some("/home/u")),
            Some(PathBuf::from("/home/u/.cache"))
        );
        assert_eq!(cache_base(some("rel"), some("also/rel")), None);
        assert_eq!(cache_base(None, None), None);
        // A directory this user owns, or one that can be made in one this user owns.
        let dir = tempfile::tempdir().unwrap();
        assert!(owned_or_creatable(dir.path()));
        assert!(owned_or_creatable(&dir.path().join("new")));
        assert!(dir.path().join("new").is_dir());
        assert!(!owned_or_creatable(&dir.path().join("no/such/parent")));
    }

    /// Run as root with another user's directory (sudo keeping `HOME`): not used, and nothing
    /// created in it.
    #[test]
    fn another_users_directory_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let c_path = std::ffi::CString::new(theirs.to_str().unwrap()).unwrap();
        // SAFETY: chown reads a NUL-terminated path; 65534 is `nobody`.
        if unsafe { libc::chown(c_path.as_ptr(), 65534, 65534) } != 0 {
            eprintln!("skipped: changing a directory's owner needs root");
            return;
        }
        assert!(!owned_or_creatable(&theirs));
        assert!(!owned_or_creatable(&theirs.join(".cache")));
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    }

    #[test]
    fn a_copy_never_overwrites_a_file() {
        let cache = tempfile::tempdir().unwrap();
        drop(Store::open_with(&Location::Memory, false, template_in(cache.path())).unwrap());
        let conn = Connection::open_in_memory().unwrap();
        let template = SchemaTemplate::in_dir(cache.path(), &conn, migrations::MIGRATIONS).unwrap();
        let data = tempfile::tempdir().unwrap();
        let target = data.path().join("precious.duckdb");
        std::fs::write(&target, b"precious").unwrap();
        assert_eq!(template.copy_to_file(&target).unwrap(), Copied::TargetExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        // Nothing is left beside it either.
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 1);
        // No template yet: nothing is copied and nothing created.
        let absent = SchemaTemplate::in_dir(&cache.path().join("empty"), &conn, migrations::MIGRATIONS).unwrap();
        let new = data.path().join("new.duckdb");
        assert_eq!(absent.copy_to_file(&new).unwrap(), Copied::NoTemplate);
        assert!(!new.exists());
        // A copy is placed whole.
        assert_eq!(template.copy_to_file(&new).unwrap(), Copied::Placed);
        assert_eq!(std::fs::read(&new).unwrap(), std::fs::read(template.path()).unwrap());
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 2);
    }

    #[test]
    fn the_name_follows_the_schema() {
        let dir = Path::new("/cache");
        let conn = Connection::open_in_memory().unwrap();
        let all = SchemaTemplate::in_dir(dir, &conn, migrations::MIGRATIONS).unwrap();
        let fewer = SchemaTemplate::in_dir(dir, &conn, &migrations::MIGRATIONS[..2]).unwrap();
        assert_ne!(all.path(), fewer.path());
        assert_eq!(
            all.path(),
            SchemaTemplate::in_dir(dir, &conn, migrations::MIGRATIONS)
                .unwrap()
                .path()
        );
        // FNV-1a of "a\0" (its published value for "a" is af63dc4c8601ec8c): the same name from
        // one Rust release to the next.
        assert_eq!(fingerprint(&["a"]), 0x089b_e207_b544_f1e4);
        assert_ne!(fingerprint(&["ab"]), fingerprint(&["a", "b"]));
    }
}
