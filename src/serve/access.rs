//! Who may ask the server what. Two kinds of client:
//!
//! - **Local**: a process of the server's own user (or root) on the Unix socket beside the
//!   database. It could open the file itself, so it may do everything the command line can.
//! - **Remote**: a client on the TCP listener (`--listen`, and the dashboard's `--http`), which
//!   proves itself with the server's bearer token. It reads: only statements that start as
//!   queries (`SELECT`, `WITH`, `FROM`, `SHOW`, ...), each in a `READ ONLY` transaction, and
//!   no `SET`, `PRAGMA`, `CALL`, `ATTACH` or `COPY`; and the analysis commands that name no
//!   files (detect, train, score, retrain, geo without `--mmdb`, insights): they add runs, never
//!   change recorded history. With `--remote-writes` its token also runs update statements and
//!   `retain`.
//!
//! DuckDB's file functions (`read_csv('/etc/shadow')`, `COPY ... TO`, `ATTACH`, `INSTALL`,
//! `LOAD`) run with the server's rights, and DuckDB can only turn them off for a whole database
//! instance (`enable_external_access` is global and, once off, stays off). So a server that
//! listens on TCP turns them off for every client, local ones too, and allows only the
//! directories given with `--files` ([`confine_files`]); one that listens on its socket alone
//! leaves them on.
//!
//! May use the store; knows nothing of gRPC or HTTP.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::statements::skip_comments;
use crate::store::Store;

/// A TCP listener of the server and how it is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What remote clients may do, shared by every TCP listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteAccess {
    /// Listen on non-loopback addresses (each such listener needs TLS).
    pub allow_remote: bool,
    /// The token also grants writes.
    pub writes: bool,
    /// Directories DuckDB's file functions may use once any TCP listener is on.
    pub files: Vec<PathBuf>,
}

impl Listen {
    /// Refuses a listener that would put the token and every answer on a network in clear.
    pub fn check(&self, option: &str, access: &RemoteAccess) -> Result<()> {
        let ip = self.addr.ip();
        if !ip.is_loopback() && !access.allow_remote {
            return Err(Error::Usage(format!(
                "{option} {}: not a loopback address; anyone who can reach it could try the token\n  \
                 hint: listen on 127.0.0.1, or pass --allow-remote with --tls-cert and --tls-key",
                self.addr
            )));
        }
        if !ip.is_loopback() && self.tls.is_none() {
            return Err(Error::Usage(format!(
                "{option} {}: a non-loopback listener needs TLS, or the token and every answer cross the network in clear\n  \
                 hint: pass --tls-cert CERT.pem --tls-key KEY.pem",
                self.addr
            )));
        }
        Ok(())
    }

    /// Binds the address, before the server says it serves or writes its token: a port in
    /// use fails the start with nothing done. `option` is the flag that named it.
    pub fn bind(&self, option: &str) -> Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(self.addr).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "another program (or another netlens serve) listens there; stop it, or pick another port (`:0` takes any free one)"
                }
                std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; pick a port above 1023",
                _ => "check the address: one of this host's, with a free port",
            };
            Error::Usage(format!("{option} {}: cannot listen there: {e}\n  hint: {hint}", self.addr))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("{option} {}", self.addr), e))?;
        Ok(listener)
    }

    /// The TLS identity, read from its files.
    pub fn identity(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let cert = std::fs::read(&tls.cert).map_err(|e| Error::io(&tls.cert, e))?;
        let key = std::fs::read(&tls.key).map_err(|e| Error::io(&tls.key, e))?;
        Ok(Some((cert, key)))
    }

    /// `grpc://ADDR`, `grpc+tls://ADDR`, or for the dashboard `http(s)://ADDR`.
    pub fn url(&self, scheme: &str, addr: SocketAddr) -> String {
        match (scheme, self.tls.is_some()) {
            ("http", true) => format!("https://{addr}"),
            ("http", false) => format!("http://{addr}"),
            (_, true) => format!("grpc+tls://{addr}"),
            (_, false) => format!("grpc://{addr}"),
        }
    }
}

/// The file holding the bearer token of the server of `db`: the database's path with `.token`
/// appended, mode 0600.
pub fn token_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".token");
    PathBuf::from(p)
}

/// The server's bearer token: the one stored beside the database, or a new one (stored there,
/// mode 0600). Returns the token and whether it is new. Delete the file to change the token.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            let private =
                std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(path).map_err(|e| Error::io(path, e))?) & 0o077
                    == 0;
            if !private {
                return Err(Error::Usage(format!(
                    "{}: the token file can be read by other users; anyone of them could use the server\n  \
                     hint: delete it (a new token is made at the next start) or chmod 600 it",
                    path.display()
                )));
            }
            if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Error::Usage(format!(
                    "{}: not a netlens token (expected at least 32 letters and digits)\n  hint: delete it; a new one is made at the next start",
                    path.display()
                )));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = new_token();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            file.write_all(format!("{token}\n").as_bytes())
                .map_err(|e| Error::io(path, e))?;
            Ok((token, true))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// 256 random bits from the operating system, as 64 hex digits.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented token with the server's in time that does not depend on where they
/// differ.
pub fn token_matches(presented: &str, token: &str) -> bool {
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token an `Authorization: Bearer TOKEN` header carries.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Turns DuckDB's file functions off for the whole database instance, except in `files` (and
/// the database's own spill directory). Irreversible for this process, which is the point.
pub fn confine_files(store: &Store, files: &[PathBuf], spill: &Path) -> Result<()> {
    let mut dirs = Vec::new();
    for dir in files.iter().map(PathBuf::as_path).chain(std::iter::once(spill)) {
        let absolute = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
        let mut text = absolute.display().to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        dirs.push(format!("'{}'", text.replace('\'', "''")));
    }
    store
        .conn()
        .execute_batch(&format!(
            "SET allowed_directories = [{}]; SET enable_external_access = false;",
            dirs.join(", ")
        ))
        .map_err(Error::sql)
}

/// The netlens commands a remote client may run. Never those that name files (the paths would
/// be the server host's) or that capture the server's host. With the token alone: those that
/// store nothing, and the analysis commands, which add runs and results but never change
/// recorded history (the dashboard's buttons run them). `--remote-writes` adds `retain`,
/// which deletes raw rows.
pub fn check_remote_command(request: &crate::request::Request, writes: bool) -> std::result::Result<(), String> {
    use crate::request::Request;
    let name = request.name();
    if request.names_files() {
        return Err(format!(
            "{name} names files, which would be read or written on the server's host; remote clients may not\n  \
             hint: run it on that host, through the server's Unix socket"
        ));
    }
    match request {
        Request::Capture(_) | Request::Watch(_) | Request::Demo(_) | Request::Import(_) | Request::Export(_) => Err(
            format!("{name} is for the server's host; remote clients may not run it"),
        ),
        Request::Retain(_) if !writes => Err(format!(
            "{name} deletes recorded history, and this server's token does not grant writes\n  \
             hint: start the server with --remote-writes to let remote clients run it"
        )),
        _ => Ok(()),
    }
}

/// First words of the statements a read-only remote client may run.
const QUERY_WORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "SUMMARIZE",
    "EXPLAIN",
    "PIVOT",
    "UNPIVOT",
];

/// Refuses any statement of a read-only remote client that is not a query: settings are the
/// whole server's (`SET memory_limit`), `CALL` and `PRAGMA` run functions with effects, and
/// `COPY`, `ATTACH`, `EXPORT` and `INSTALL` touch files. The statement also runs in a `READ
/// ONLY` transaction, which stops any write that starts like a query.
pub fn check_remote_query(sql: &str) -> std::result::Result<(), String> {
    // duckdb-rs runs every statement of a text but the last: one statement only, counted by
    // DuckDB's parser before anything runs.
    crate::store::statements::one(sql, "a remote client's SQL").map_err(|e| e.to_string())?;
    let rest = skip_comments(sql);
    let word = first_word(sql);
    if word == "EXPLAIN" {
        // EXPLAIN ANALYZE runs its statement, so the statement explained (after any options
        // and ANALYZE) must pass on its own, explained or not.
        let after = rest.trim_start()[word.len()..].trim_start();
        let statement = match after.strip_prefix('(') {
            Some(inner) => inner.split_once(')').map_or("", |(_, s)| s),
            None => after,
        };
        let statement = match first_word(statement).as_str() {
            "ANALYZE" => statement.trim_start()["ANALYZE".len()..].trim_start(),
            _ => statement,
        };
        return check_remote_query(statement);
    }
    if QUERY_WORDS.contains(&word.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "remote clients may only query ({}); '{}' is refused: it changes the server's settings, runs a function with effects, touches files or writes\n  \
             hint: run it on the server's host (the Unix socket), or start the server with --remote-writes for update statements",
            QUERY_WORDS.join(", "),
            if word.is_empty() { rest.chars().take(20).collect() } else { word }
        ))
    }
}

/// First words of the update statements a remote client with `--remote-writes` may run: data
/// and schema changes inside the database, none of the statements that touch files or settings.
const UPDATE_WORDS: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COMMENT",
];

/// Refuses an update statement of a remote client that is not a data or schema change.
pub fn check_remote_update(sql: &str) -> std::result::Result<(), String> {
    crate::store::statements::one(sql, "a remote client's SQL").map_err(|e| e.to_string())?;
    let word = first_word(sql);
    if UPDATE_WORDS.contains(&word.as_str()) || QUERY_WORDS.contains(&word.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "remote clients may change data ({}) but not run '{word}': it changes the server's settings or touches files\n  \
             hint: run it on the server's host (the Unix socket)",
            UPDATE_WORDS.join(", ")
        ))
    }
}

fn first_word(sql: &str) -> String {
    skip_comments(sql)
        .trim_start_matches('(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(addr: &str, tls: bool) -> Listen {
        Listen {
            addr: addr.parse().unwrap(),
            tls: tls.then(|| TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            }),
        }
    }

    #[test]
    fn non_loopback_listeners_need_allow_remote_and_tls() {
        let closed = RemoteAccess::default();
        let open = RemoteAccess {
            allow_remote: true,
            ..RemoteAccess::default()
        };
        assert!(listen("127.0.0.1:9000", false).check("--listen", &closed).is_ok());
        assert!(listen("[::1]:9000", false).check("--listen", &closed).is_ok());
        let e = listen("0.0.0.0:9000", true).check("--listen", &closed).unwrap_err();
        assert!(e.to_string().contains("--allow-remote"), "{e}");
        let e = listen("192.0.2.1:9000", false).check("--listen", &open).unwrap_err();
        assert!(e.to_string().contains("--tls-cert"), "{e}");
        assert!(listen("192.0.2.1:9000", true).check("--listen", &open).is_ok());
    }

    #[test]
    fn remote_clients_may_query_and_nothing_else() {
        for ok in [
            "select 1",
            "  -- a comment\n SELECT * FROM sockets",
            "/* x */ with a as (select 1) select * from a",
            "(select 1) union (select 2)",
            "FROM snapshots",
            "describe sockets",
            "SHOW TABLES",
            "EXPLAIN SELECT 1",
            "explain analyze select count(*) from sockets",
        ] {
            assert_eq!(check_remote_query(ok), Ok(()), "{ok}");
        }
        for refused in [
            "COPY (select 1) TO '/tmp/x'",
            "SET memory_limit = '1MB'",
            "PRAGMA enable_profiling",
            "CALL enable_logging()",
            "ATTACH '/tmp/x.db'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "INSERT INTO sockets VALUES (1)",
            "/* select */ DELETE FROM sockets",
            "-- select\nDROP TABLE sockets",
            "",
            "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'",
            "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '/tmp/x.csv'",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
            "SELECT 1; COMMIT; DELETE FROM sockets; SELECT 1",
            "SELECT 1; SET memory_limit = '1MB'; SELECT 1",
        ] {
            assert!(check_remote_query(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn tokens_are_private_random_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(&dir.path().join("db.duckdb"));
        assert!(path.ends_with("db.duckdb.token"));
        let (token, created) = load_or_create_token(&path).unwrap();
        assert!(created);
        assert_eq!(token.len(), 64);
        let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&path).unwrap());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(&path).unwrap(), (token.clone(), false));
        assert!(token_matches(&token, &token));
        assert!(!token_matches(&token[..63], &token));
        assert!(!token_matches("", &token));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("basic abc"), None);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(
            load_or_create_token(&path).is_err(),
            "a token others can read is refused"
        );
        let other = token_path(&dir.path().join("other.duckdb"));
        assert_ne!(load_or_create_token(&other).unwrap().0, token);
    }

    #[test]
    fn confined_servers_refuse_files_outside_the_given_directories() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("exchange");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("in.csv"), "a\n1\n").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "a\n2\n").unwrap();
        let mut root = Store::open(&crate::store::Location::File(dir.path().join("t.duckdb")), false).unwrap();
        confine_files(&root, std::slice::from_ref(&allowed), &dir.path().join("t.duckdb.tmp")).unwrap();
        let client = root.connect().unwrap();
        let read = |path: &Path| {
            client
                .conn()
                .query_row(&format!("SELECT sum(a) FROM read_csv('{}')", path.display()), [], |r| {
                    r.get::<_, i64>(0)
                })
        };
        assert_eq!(read(&allowed.join("in.csv")).unwrap(), 1);
        let e = read(&dir.path().join("secret.csv")).unwrap_err().to_string();
        assert!(e.contains("disabled by configuration"), "{e}");
        let e = client
            .conn()
            .execute_batch("SET enable_external_access = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Cannot enable external access"), "{e}");
        // The database itself is still written.
        client
            .conn()
            .execute_batch("CREATE TABLE t AS SELECT 1 AS x; CHECKPOINT")
            .unwrap();
    }
}
