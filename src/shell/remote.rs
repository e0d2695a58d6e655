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
    /// Connects to the server of `database` listening on `socket`.
    pub fn connect(database: &Path, socket: &Path) -> Result<Self> {
        Ok(RemoteDatabase {
            client: Client::connect(socket)?,
            database: database.display().to_string(),
        })
    }

    /// Connects to the server at `address`, whose database only it names.
    pub fn connect_to(address: &ServerAddress) -> Result<Self> {
        Ok(RemoteDatabase {
            client: Client::connect_to(address)?,
            database: "the database".to_string(),
        })
    }
}

impl Database for RemoteDatabase {
    fn query(&mut self, sql: &str, consume: &mut dyn FnMut(SchemaRef, Batches<'_>) -> Result<()>) -> Result<()> {
        self.client.query(sql, consume)
    }

    fn execute(&mut self, request: Request, _progress: bool, ahead: Option<ReadAhead>) -> Result<Reply> {
        // The server reads the files itself: the capture read ahead here is not needed.
        drop(ahead);
        // Files are named relative to this process's directory, which the server does not share.
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        self.client.request(&request.with_absolute_paths(&cwd))
    }

    fn describe(&self) -> String {
        match self.client.address() {
            ServerAddress::Socket(socket) => {
                format!("{} (through the server on {})", self.database, socket.display())
            }
            ServerAddress::Tcp(tcp) => format!("{} of the server at {}", self.database, tcp.url),
        }
    }
}
