//! A session's database held by a running `netlens serve`: statements and commands go to the
//! server over its socket (or, with `--server URL`, its TCP listener), and come back as the same record batches and replies a local run
//! gives, so the shell prints them alike.

use std::path::Path;

use duckdb::arrow::datatypes::SchemaRef;

use super::{Batches, Database};
use crate::error::{Error, Result};
use crate::ingest::ReadAhead;
use crate::request::{Reply, Request};
use crate::serve::client::{Client, ServerAddress};

/// The server's database, through a client session.
pub struct RemoteDatabase {
    client: Client,
    database: String,
}

impl RemoteDatabase {
    /// Connects to the server of `database` listening on `socket`; a session that only reads
    /// when `read_only`.
    pub fn connect(database: &Path, socket: &Path, read_only: bool) -> Result<Self> {
        Ok(RemoteDatabase {
            client: Client::connect(socket)?.reading_only(read_only),
            database: database.display().to_string(),
        })
    }

    /// Connects to the server at `address`, whose database only it names.
    pub fn connect_to(address: &ServerAddress, read_only: bool) -> Result<Self> {
        Ok(RemoteDatabase {
            client: Client::connect_to(address)?.reading_only(read_only),
            database: "the database".to_string(),
        })
    }
}

impl Database for RemoteDatabase {
    fn query(&mut self, sql: &str, consume: &mut dyn FnMut(SchemaRef, Batches<'_>) -> Result<()>) -> Result<()> {
        let read_only = self.client.is_read_only();
        self.client.query(sql, consume).map_err(|e| match e {
            Error::Remote { message } if read_only => Error::Remote {
                message: read_only_hint(message),
            },
            Error::Usage(message) if read_only => Error::Usage(read_only_hint(message)),
            other => other,
        })
    }

    fn execute(&mut self, request: Request, _progress: bool, ahead: Option<ReadAhead>) -> Result<Reply> {
        // The server reads the files itself: the capture read ahead here is not needed.
        drop(ahead);
        // Files are named relative to this process's directory, which the server does not share.
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        self.client.request(&request.with_absolute_paths(&cwd))
    }

    fn describe(&self) -> String {
        let reading = if self.client.is_read_only() { ", read-only" } else { "" };
        match self.client.address() {
            ServerAddress::Socket(socket) => {
                format!(
                    "{} (through the server on {}{reading})",
                    self.database,
                    socket.display()
                )
            }
            ServerAddress::Tcp(tcp) => format!("{} of the server at {}{reading}", self.database, tcp.url),
        }
    }
}

/// DuckDB's words for a write, or a `BEGIN`, in the `READ ONLY` transaction the server runs each
/// statement of a read-only session in, with what they mean here.
fn read_only_hint(message: String) -> String {
    if message.contains("read-only mode") {
        format!("{message}\n  hint: this session only reads (--read-only); run it without --read-only to write")
    } else if message.contains("transaction within a transaction") {
        format!(
            "{message}\n  hint: through a server, a --read-only session runs each statement in a read-only \
             transaction of its own, so it cannot begin one"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::read_only_hint;

    #[test]
    fn a_read_only_sessions_refusals_say_why() {
        let write = read_only_hint(
            "TransactionContext Error: Cannot write to database \"netlens\" - transaction is launched in read-only mode"
                .to_string(),
        );
        assert!(write.ends_with("run it without --read-only to write"), "{write}");
        let begin =
            read_only_hint("TransactionContext Error: cannot start a transaction within a transaction".to_string());
        assert!(begin.contains("cannot begin one"), "{begin}");
        assert_eq!(read_only_hint("Binder Error: no t".to_string()), "Binder Error: no t");
    }
}
