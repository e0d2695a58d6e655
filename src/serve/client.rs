//! A blocking Flight SQL client of a netlens server, for the command line and the shell: one
//! session (its own connection on the server) over the server's Unix socket, statements whose
//! record batches arrive as they stream, and netlens's actions (requests, status).

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor};
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::{Channel, Endpoint, Uri};

use super::flight::{ACTION_CLOSE_SESSION, ACTION_REQUEST, ACTION_STATUS, SESSION_HEADER};
use super::ServerStatus;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::request::{Reply, Request};

/// A query's result as it streams: its record batches, after its schema.
pub type Batches<'a> = &'a mut dyn Iterator<Item = Result<RecordBatch>>;

/// A connection to a netlens server.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    flight: FlightServiceClient<Channel>,
    socket: PathBuf,
    session: String,
}

impl Client {
    /// True when a server answers on `socket` (a socket file with a listener behind it).
    pub fn probe(socket: &Path) -> bool {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    }

    /// Connects to the server listening on `socket`.
    pub fn connect(socket: &Path) -> Result<Client> {
        // One worker thread runs the connection (HTTP/2 and the socket), so the next batches
        // arrive while the caller decodes and consumes this one; on the caller's thread alone
        // they took turns (bench/RESULTS.md, "Flight throughput").
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netlens-client")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let path = socket.to_path_buf();
        let channel = runtime
            .block_on(async move {
                // The URI is a placeholder: the connector below always dials the socket.
                Endpoint::from_static("http://netlens.invalid")
                    .connect_timeout(Duration::from_secs(5))
                    .initial_stream_window_size(Some(super::flight::STREAM_WINDOW))
                    .initial_connection_window_size(Some(super::flight::CONNECTION_WINDOW))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                        }
                    }))
                    .await
            })
            .map_err(|e| Error::Server {
                endpoint: socket.display().to_string(),
                reason: transport_reason(&e),
            })?;
        let flight = FlightServiceClient::new(channel);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let session = format!("{}-{nanos}", std::process::id());
        Ok(Client {
            runtime,
            flight,
            socket: socket.to_path_buf(),
            session,
        })
    }

    /// A call carrying this client's session.
    fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = self.session.parse() {
            request.metadata_mut().insert(SESSION_HEADER, value);
        }
        request
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn server_error(&self, reason: String) -> Error {
        Error::Server {
            endpoint: self.socket.display().to_string(),
            reason,
        }
    }

    /// Maps a Flight error: the server's own messages as they are, a broken connection as such.
    fn error(&self, e: FlightError) -> Error {
        match e {
            FlightError::Tonic(status) => self.status_error(&status),
            other => self.server_error(other.to_string()),
        }
    }

    fn status_error(&self, status: &tonic::Status) -> Error {
        use tonic::Code;
        // A status the client's own transport made (it has the transport's error as its source;
        // the server's statuses have none): the connection broke, say so, and whether the server
        // is still there, instead of passing on HTTP/2's words as if the server had said them.
        if std::error::Error::source(status).is_some() && !crate::interrupt::requested() {
            let gone = if Client::probe(&self.socket) {
                ""
            } else {
                "; the server is gone (stopped or killed), so the results are incomplete"
            };
            return self.server_error(format!("the connection broke ({}){gone}", status.message()));
        }
        match status.code() {
            // The user's own Ctrl-C; otherwise the server cancelled (it is stopping): say so.
            Code::Cancelled if crate::interrupt::requested() => Error::Interrupted,
            Code::Cancelled => self.server_error(status.message().to_string()),
            Code::Unavailable | Code::Unknown
                if status.message().contains("transport") || status.message().is_empty() =>
            {
                self.server_error(format!("the connection broke ({})", status.message()))
            }
            Code::Unavailable => self.server_error(status.message().to_string()),
            Code::InvalidArgument => Error::Usage(status.message().to_string()),
            _ => Error::Remote {
                message: status.message().to_string(),
            },
        }
    }

    /// Runs one statement and hands its schema and batches to `consume` as they arrive. Ctrl-C
    /// drops the call, which stops the query on the server.
    pub fn query(&mut self, sql: &str, consume: &mut dyn FnMut(SchemaRef, Batches<'_>) -> Result<()>) -> Result<()> {
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let call = self.call(descriptor);
        let mut flight = self.flight.clone();
        let info = self
            .until_ctrl_c(async move { flight.get_flight_info(call).await })?
            .map_err(|status| self.status_error(&status))?
            .into_inner();
        let schema: SchemaRef = std::sync::Arc::new(
            info.clone()
                .try_decode_schema()
                .map_err(|e| self.server_error(format!("the server sent an unreadable schema: {e}")))?,
        );
        let ticket = info
            .endpoint
            .first()
            .and_then(|e| e.ticket.clone())
            .ok_or_else(|| self.server_error("the server sent no ticket for the results".to_string()))?;
        let call = self.call(ticket);
        let mut flight = self.flight.clone();
        let data = self
            .until_ctrl_c(async move { flight.do_get(call).await })?
            .map_err(|status| self.status_error(&status))?
            .into_inner();
        let stream = FlightRecordBatchStream::new_from_flight_data(data.map_err(FlightError::from));
        let mut batches = BatchStream { client: self, stream };
        consume(schema, &mut batches)
    }

    /// Runs a domain command on the server.
    pub fn request(&mut self, request: &Request) -> Result<Reply> {
        let body = serde_json::to_vec(request).map_err(|e| Error::Usage(format!("cannot encode the request: {e}")))?;
        let bytes = self.action(ACTION_REQUEST, body)?;
        serde_json::from_slice(&bytes).map_err(|e| self.server_error(format!("unreadable reply: {e}")))
    }

    /// The server's status.
    pub fn status(&mut self) -> Result<ServerStatus> {
        let bytes = self.action(ACTION_STATUS, Vec::new())?;
        serde_json::from_slice(&bytes).map_err(|e| self.server_error(format!("unreadable status: {e}")))
    }

    /// Waits for `call` while checking Ctrl-C. Ctrl-C drops the call, which cancels it on the
    /// server (the server stops what it does for it, as a local Ctrl-C would).
    fn until_ctrl_c<T>(&self, call: impl std::future::Future<Output = T>) -> Result<T> {
        let outcome = self.runtime.block_on(async {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => return Some(r),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if interrupt::requested() {
                            return None;
                        }
                    }
                }
            }
        });
        outcome.ok_or(Error::Interrupted)
    }

    /// Runs an action and returns its first result's body. Waits for it while checking Ctrl-C,
    /// which cancels the action: a command stops on the server as it would here.
    fn action(&mut self, kind: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let action = Action {
            r#type: kind.to_string(),
            body: body.into(),
        };
        let mut flight = self.flight.clone();
        let request = self.call(action);
        let call = async move {
            let mut results = flight
                .do_action(request)
                .await
                .map_err(|s| FlightError::Tonic(Box::new(s)))?
                .into_inner();
            match results.next().await {
                Some(Ok(result)) => Ok(result.body.to_vec()),
                Some(Err(status)) => Err(FlightError::Tonic(Box::new(status))),
                None => Ok(Vec::new()),
            }
        };
        self.until_ctrl_c(call)?.map_err(|e| self.error(e))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let action = Action {
            r#type: ACTION_CLOSE_SESSION.to_string(),
            body: self.session.clone().into_bytes().into(),
        };
        let mut flight = self.flight.clone();
        let request = self.call(action);
        let _ = self
            .runtime
            .block_on(async move { tokio::time::timeout(Duration::from_secs(2), flight.do_action(request)).await });
    }
}

/// The batches of one statement, read from the server one at a time.
struct BatchStream<'a> {
    client: &'a Client,
    stream: FlightRecordBatchStream,
}

impl Iterator for BatchStream<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        let next = self.client.runtime.block_on(async {
            loop {
                tokio::select! {
                    item = stream.next() => return Some(item),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if interrupt::requested() {
                            return None;
                        }
                    }
                }
            }
        });
        match next {
            None => Some(Err(Error::Interrupted)),
            Some(item) => item.map(|r| r.map_err(|e| self.client.error(e))),
        }
    }
}

fn transport_reason(e: &tonic::transport::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}
