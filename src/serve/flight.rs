//! The server's protocol: Arrow Flight SQL (arrow-flight's `FlightSqlService`) over gRPC
//! (tonic), on the Unix socket beside the database.
//!
//! Statements: `GetFlightInfo(CommandStatementQuery)` prepares and starts the statement on a
//! thread of its own and answers with its schema and a ticket; `DoGet(ticket)` streams the
//! record batches DuckDB produces, through a channel of [`BATCHES_IN_FLIGHT`] batches, so a
//! client that reads slowly holds the query back instead of filling the server's memory, and a
//! client that goes away stops it. `DoPut(CommandStatementUpdate)` runs a statement and returns
//! its row count.
//!
//! Sessions: a client that sends the header `x-netlens-session` keeps one connection (its
//! transactions, temporary tables and settings) for as long as it uses that id; the netlens
//! shell does. Without the header each statement runs on a fresh connection.
//!
//! netlens's own actions (`DoAction`):
//! - `netlens.request`: body a JSON [`crate::request::Request`], result one JSON
//!   [`crate::request::Reply`] (the rows it names are then asked for as statements);
//! - `netlens.status`: result one JSON [`super::ServerStatus`];
//! - `netlens.close_session`: body the session id; its connection is closed.
//!
//! Cancelling: a client that goes away, or cancels its call, stops the work done for it. A
//! query's results dropped unread (its `DoGet` cancelled, its connection closed, never fetched)
//! or Flight's `CancelFlightInfo` / Flight SQL's `CancelQuery` interrupt its statement; a
//! command whose `DoAction` is dropped stops as on Ctrl-C ([`crate::interrupt::Call`]): what it
//! stores in one transaction is rolled back, an export's file never put in place.
//!
//! Handles: a ticket (and the FlightInfo a cancel names) is 128 random bits from the operating
//! system, and belongs to the client connection that made it (a Unix socket or TCP connection,
//! numbered as accepted): another connection's call finds no such query, whoever holds the
//! token. Sessions are likewise the connection's: the same `x-netlens-session` id on another
//! connection is another session, and a session ends when its connection closes (a client
//! killed with SIGKILL included: the kernel closes its socket), with what its connection held.
//!
//! Who may ask: the socket is mode 0600 in a directory of the database's owner, and every call
//! is checked against the peer's credentials: this server's user, or root. With `--listen`,
//! the same service answers on TCP (TLS with `--tls-cert/--tls-key`) to clients that send
//! `authorization: Bearer TOKEN`, with the limits of [`super::access`].

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, CommandGetSqlInfo, CommandStatementQuery,
    CommandStatementUpdate, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, Ticket,
};
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tonic::{Request, Response, Status};

use super::access;
use super::{log, restrict_socket, ServeOptions, Shared};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::request::{self, CollectGaps};
use crate::store::Store;

/// Record batches a query may have produced ahead of what its client has read.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// A query whose results nobody fetched within this long is dropped.
const UNCLAIMED_AFTER: Duration = Duration::from_secs(60);
/// A session unused for this long is closed (its connection, and any transaction it left open).
const IDLE_SESSION_AFTER: Duration = Duration::from_secs(3600);

pub const ACTION_REQUEST: &str = "netlens.request";
pub const ACTION_STATUS: &str = "netlens.status";
pub const ACTION_CLOSE_SESSION: &str = "netlens.close_session";
/// Flight's own action that cancels a query by its FlightInfo.
pub const ACTION_CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";
pub const SESSION_HEADER: &str = "x-netlens-session";

/// Sent as `1` by a client that only reads (`netlens --read-only`): its queries run in
/// `READ ONLY` transactions and its commands may store nothing, whatever else it may do.
pub const READ_ONLY_HEADER: &str = "x-netlens-read-only";

/// A query started by `GetFlightInfo`, waiting for its `DoGet`.
struct Pending {
    schema: SchemaRef,
    batches: Batches,
    created: Instant,
    /// Who asked: only the same connection fetches the results.
    owner: Owner,
}

/// A query's handle: 128 random bits, so that no client finds another's by counting.
type TicketId = [u8; 16];

fn new_ticket() -> TicketId {
    use rand::RngCore;
    let mut ticket = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut ticket);
    ticket
}

/// The ticket in a statement handle; anything else is no netlens ticket.
fn ticket_of(handle: &[u8]) -> Option<TicketId> {
    TicketId::try_from(handle).ok()
}

/// A query's batches as they come from its thread. Dropped (the client went away, stopped
/// reading, cancelled, or never came for them) it cancels the query: DuckDB is interrupted
/// instead of computing a result nobody reads.
struct Batches {
    receiver: mpsc::Receiver<std::result::Result<RecordBatch, String>>,
    _cancel: interrupt::CancelOnDrop,
}

impl Stream for Batches {
    type Item = std::result::Result<RecordBatch, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// One client session's connection.
struct Session {
    store: Arc<Mutex<Store>>,
    last_used: Instant,
}

/// A session's key: the connection it came on and the id the client gave it.
type SessionKey = (u64, String);

/// The Flight SQL service.
#[derive(Clone)]
pub struct NetlensFlight {
    shared: Arc<Shared>,
    pending: Arc<Mutex<HashMap<TicketId, Pending>>>,
    /// The calls of the queries whose results stream now, by ticket, for `CancelFlightInfo`.
    streaming: Arc<Mutex<HashMap<TicketId, (interrupt::Call, Owner)>>>,
    sessions: Arc<Mutex<HashMap<SessionKey, Session>>>,
    /// The number the next accepted connection gets (0 is no connection's: calls made without
    /// one, in tests).
    next_link: Arc<AtomicU64>,
    own_uid: u32,
    /// The bearer token of TCP clients; `None` when nothing listens on TCP.
    token: Option<Arc<str>>,
    remote_writes: bool,
}

/// Who sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// This server's user or root, on the Unix socket: everything the command line can do.
    Local,
    /// The same, asking to only read (`--read-only`): queries in `READ ONLY` transactions and the
    /// commands that store nothing.
    LocalReader,
    /// A TCP client with the token: queries, and writes without files when `writes`.
    Remote { writes: bool },
}

/// Who owns a handle: the kind of peer and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    peer: Peer,
    link: u64,
}

/// The connection info of a [`Tracked`] connection: its number and the transport's own.
#[derive(Debug, Clone)]
pub struct Linked<T> {
    link: u64,
    inner: T,
}

/// An accepted connection that tells the service when it closes (hyper drops it when the
/// client's side closed, or the server stops), so that the sessions and unclaimed queries it
/// made end with it.
pub struct Tracked<S: Connected> {
    inner: S,
    info: Linked<S::ConnectInfo>,
    service: NetlensFlight,
}

impl<S: Connected> Tracked<S> {
    fn new(inner: S, service: &NetlensFlight) -> Self {
        let link = service.next_link.fetch_add(1, Ordering::Relaxed);
        let info = Linked {
            link,
            inner: inner.connect_info(),
        };
        Tracked {
            inner,
            info,
            service: service.clone(),
        }
    }
}

impl<S: Connected> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.service.link_closed(self.info.link);
    }
}

impl<S: Connected> Connected for Tracked<S> {
    type ConnectInfo = Linked<S::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl<S: Connected + AsyncRead + Unpin> AsyncRead for Tracked<S>
where
    S::ConnectInfo: Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: Connected + AsyncWrite + Unpin> AsyncWrite for Tracked<S>
where
    S::ConnectInfo: Unpin,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The error a failed command or statement gives its client: usage errors are the client's,
/// everything else the server's, and the message is the one netlens would have printed.
fn status_of(e: Error) -> Status {
    match e {
        Error::Usage(m) => Status::invalid_argument(m),
        Error::Interrupted => Status::cancelled("interrupted: the server is stopping"),
        other => Status::failed_precondition(other.to_string()),
    }
}

impl NetlensFlight {
    pub fn new(shared: Arc<Shared>, token: Option<String>, remote_writes: bool) -> Self {
        NetlensFlight {
            token: token.map(Arc::from),
            remote_writes,
            shared,
            pending: Arc::new(Mutex::new(HashMap::new())),
            streaming: Arc::new(Mutex::new(HashMap::new())),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            next_link: Arc::new(AtomicU64::new(1)),
            // SAFETY: getuid cannot fail and has no preconditions.
            own_uid: unsafe { libc::getuid() },
        }
    }

    /// Who is asking: this server's user (or root) on the socket, whatever the directory's
    /// permissions, or a TCP client with the token.
    fn authorize<T>(&self, request: &Request<T>) -> std::result::Result<Owner, Status> {
        let reads_only = request
            .metadata()
            .get(READ_ONLY_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1");
        if let Some(info) = request.extensions().get::<Linked<UdsConnectInfo>>() {
            let link = info.link;
            return match info.inner.peer_cred.map(|c| c.uid()) {
                Some(uid) if uid == self.own_uid || uid == 0 => Ok(Owner {
                    peer: if reads_only { Peer::LocalReader } else { Peer::Local },
                    link,
                }),
                Some(uid) => Err(Status::permission_denied(format!(
                    "user {uid} may not use this server (it serves user {} and root)",
                    self.own_uid
                ))),
                None => Err(Status::permission_denied("the peer's credentials could not be read")),
            };
        }
        let extensions = request.extensions();
        let link = extensions
            .get::<Linked<TcpConnectInfo>>()
            .map(|l| l.link)
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<Linked<TcpConnectInfo>>>()
                    .map(|l| l.get_ref().link)
            })
            .unwrap_or(0);
        let Some(token) = &self.token else {
            return Err(Status::permission_denied(
                "only local clients on the server's socket are served",
            ));
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(access::bearer);
        match presented {
            Some(p) if access::token_matches(p, token) => Ok(Owner {
                peer: Peer::Remote {
                    writes: self.remote_writes && !reads_only,
                },
                link,
            }),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated(
                "this server needs its token: send the header `authorization: Bearer TOKEN`; \
                 the token is in the file DATABASE.token on the server's host",
            )),
        }
    }

    /// The connection a request runs on: its session's, or a fresh one.
    /// Sessions are their client connection's: no other client gets a session's database
    /// connection (and whatever transaction it holds), whatever id it sends.
    fn connection<T>(&self, request: &Request<T>, owner: Owner) -> std::result::Result<Arc<Mutex<Store>>, Status> {
        let id = request
            .metadata()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|id| (owner.link, id.to_string()));
        let Some(id) = id else {
            return Ok(Arc::new(Mutex::new(self.shared.connect().map_err(status_of)?)));
        };
        let mut sessions = self.sessions.lock().map_err(internal)?;
        if let Some(session) = sessions.get_mut(&id) {
            session.last_used = Instant::now();
            return Ok(Arc::clone(&session.store));
        }
        let store = Arc::new(Mutex::new(self.shared.connect().map_err(status_of)?));
        self.shared.session_opened(&store);
        sessions.insert(
            id,
            Session {
                store: Arc::clone(&store),
                last_used: Instant::now(),
            },
        );
        self.shared.sessions.store(sessions.len(), Ordering::Relaxed);
        Ok(store)
    }

    /// A client connection closed: its sessions end (their database connections close, rolling
    /// back a transaction left open) and its unclaimed queries are dropped, which stops them.
    fn link_closed(&self, link: u64) {
        let unclaimed: Vec<Pending> = match self.pending.lock() {
            Ok(mut pending) => {
                let theirs: Vec<TicketId> = pending
                    .iter()
                    .filter(|(_, p)| p.owner.link == link)
                    .map(|(t, _)| *t)
                    .collect();
                theirs.iter().filter_map(|t| pending.remove(t)).collect()
            }
            Err(_) => Vec::new(),
        };
        drop(unclaimed);
        let ended: Vec<Session> = match self.sessions.lock() {
            Ok(mut sessions) => {
                let theirs: Vec<SessionKey> = sessions.keys().filter(|k| k.0 == link).cloned().collect();
                let ended = theirs.iter().filter_map(|k| sessions.remove(k)).collect();
                self.shared.sessions.store(sessions.len(), Ordering::Relaxed);
                ended
            }
            Err(_) => Vec::new(),
        };
        if ended.is_empty() {
            return;
        }
        // Closed outside the map's lock and within the shared one, as every connection is
        // (closing one may roll back a transaction), on a blocking thread: the shared lock
        // waits while the capture releases DuckDB's cache.
        let shared = Arc::clone(&self.shared);
        let close = move || {
            let _using = shared.using_database();
            drop(ended);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(close)),
            Err(_) => close(),
        }
    }

    /// Drops unclaimed queries and idle sessions.
    fn reap(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|_, p| p.created.elapsed() < UNCLAIMED_AFTER);
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, s| s.last_used.elapsed() < IDLE_SESSION_AFTER);
            self.shared.sessions.store(sessions.len(), Ordering::Relaxed);
        }
    }

    /// Starts `sql` on its connection and waits for its schema (or its error); returns the
    /// ticket its results wait under, and their schema.
    async fn start_query(
        &self,
        store: Arc<Mutex<Store>>,
        sql: String,
        read_only: bool,
        owner: Owner,
    ) -> std::result::Result<(TicketId, SchemaRef), Status> {
        let (schema_tx, schema_rx) = oneshot::channel();
        let (batch_tx, batch_rx) = mpsc::channel(BATCHES_IN_FLIGHT);
        let shared = Arc::clone(&self.shared);
        let ticket = new_ticket();
        let call = interrupt::Call::new();
        // Until the batches wait under their ticket, the client going away (this future
        // dropped) cancels the query; then dropping the batches does.
        let cancel = call.cancel_on_drop();
        self.streaming
            .lock()
            .map_err(internal)?
            .insert(ticket, (call.clone(), owner));
        let streaming = Arc::clone(&self.streaming);
        std::thread::Builder::new()
            .name("query".into())
            .spawn(move || {
                shared.queries_running.fetch_add(1, Ordering::Relaxed);
                let using = shared.using_database();
                let entered = call.enter();
                run_query(&store, &sql, read_only, schema_tx, &batch_tx);
                drop(entered);
                // A session-less connection closes here, still within the lock.
                drop(store);
                drop(using);
                if let Ok(mut streaming) = streaming.lock() {
                    streaming.remove(&ticket);
                }
                shared.queries_running.fetch_sub(1, Ordering::Relaxed);
                shared.queries_served.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(|e| {
                if let Ok(mut streaming) = self.streaming.lock() {
                    streaming.remove(&ticket);
                }
                internal(e)
            })?;
        let schema = schema_rx
            .await
            .map_err(|_| Status::internal("the query thread ended without an answer"))?
            .map_err(Status::invalid_argument)?;
        self.pending.lock().map_err(internal)?.insert(
            ticket,
            Pending {
                schema: Arc::clone(&schema),
                batches: Batches {
                    receiver: batch_rx,
                    _cancel: cancel,
                },
                created: Instant::now(),
                owner,
            },
        );
        Ok((ticket, schema))
    }

    /// Runs a domain command on the session's connection.
    async fn run_request(
        &self,
        store: Arc<Mutex<Store>>,
        body: &[u8],
        peer: Peer,
    ) -> std::result::Result<Vec<u8>, Status> {
        let request: request::Request = serde_json::from_slice(body)
            .map_err(|e| Status::invalid_argument(format!("netlens.request: not a request: {e}")))?;
        if let Peer::Remote { writes } = peer {
            access::check_remote_command(&request, writes).map_err(Status::permission_denied)?;
        }
        if peer == Peer::LocalReader && !request.is_read_only() {
            return Err(Status::permission_denied(format!(
                "{} stores what it does, and this client asked to only read (--read-only)\n  \
                 hint: run it without --read-only",
                request.name()
            )));
        }
        if let request::Request::Watch(_) = request {
            return Err(Status::invalid_argument(
                "watch draws its dashboard on the terminal that captures; with a server holding the database, \
                 query latest_verdicts instead, or stop the server to run watch",
            ));
        }
        if let request::Request::Capture(c) = &request {
            if c.replay.is_none() && self.shared.capturing() {
                return Err(Status::invalid_argument(
                    "this server already captures this host; a second live capture would store every snapshot twice\n  \
                     hint: `netlens status` shows the server's capture; capture --replay FILE stores a recording",
                ));
            }
        }
        let name = request.name();
        let writes = !request.is_read_only();
        let captures = matches!(request, request::Request::Capture(_));
        let shared = Arc::clone(&self.shared);
        // The client going away (this future dropped) is the command's Ctrl-C.
        let call = interrupt::Call::new();
        let _cancel = call.cancel_on_drop();
        let cancelled = call.clone();
        let reply = tokio::task::spawn_blocking(move || -> Result<request::Reply> {
            // Taken first, so that a session-less connection closes within it. Taking it never
            // waits: its only writer tries without waiting.
            let _using = shared.using_database();
            let _call = call.enter();
            let connection = store;
            let store = connection.lock().map_err(|_| super::poisoned())?;
            let _one_at_a_time = writes.then(|| shared.commands.lock().unwrap_or_else(|p| p.into_inner()));
            let mut gaps = CollectGaps::default();
            let mut notes = Vec::new();
            let mut ctx = request::Context {
                observer: &mut gaps,
                import_progress: crate::ingest::Progress::collecting(false),
                watch: None,
                ahead: None,
                clock: &chrono::Utc::now,
                notice: &mut |note| notes.push(note.to_string()),
            };
            let mut reply = match request::execute(&store, request, &mut ctx) {
                Ok(reply) => reply,
                // Logged here: the future that would log it went with the client.
                Err(e) if call.is_cancelled() => {
                    log(&format!("{name} cancelled by its client: {e}"));
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            reply.items.extend(gaps.gaps.into_iter().map(request::Item::Warning));
            reply.items.extend(notes.into_iter().map(request::Item::Warning));
            // A capture stored through this server can be looked at in its dashboard (the status
            // is read for captures only: it copies the whole status and sizes the files).
            if let Some(http) = captures.then(|| shared.status().http).flatten() {
                reply.items.push(request::Item::Summary(format!(
                    "this server's dashboard: {http} (the token is in the database's .token file)"
                )));
            }
            shared.requests_served.fetch_add(1, Ordering::Relaxed);
            Ok(reply)
        })
        .await
        .map_err(internal)?
        .map_err(|e| {
            if cancelled.is_cancelled() {
                return Status::cancelled(format!("{name} cancelled: {e}"));
            }
            log(&format!("{name} failed: {e}"));
            status_of(e)
        })?;
        serde_json::to_vec(&reply).map_err(internal)
    }
}

impl NetlensFlight {
    /// `CancelFlightInfo` (and the older `CancelQuery`): the query of the FlightInfo's ticket
    /// stops, whether its results wait for their `DoGet` or stream now.
    fn cancel_query(&self, info: &FlightInfo, owner: Owner) -> std::result::Result<CancelStatus, Status> {
        let not_ours = || Status::invalid_argument("not a FlightInfo of a netlens query");
        let ticket = info
            .endpoint
            .first()
            .and_then(|e| e.ticket.as_ref())
            .ok_or_else(not_ours)?;
        let handle: TicketStatementQuery = arrow_flight::sql::Any::decode(&*ticket.ticket)
            .ok()
            .and_then(|any| any.unpack().ok().flatten())
            .ok_or_else(not_ours)?;
        let id = ticket_of(&handle.statement_handle).ok_or_else(not_ours)?;
        // Removed from those waiting, its batches are dropped, which cancels it.
        let waiting = {
            let mut pending = self.pending.lock().map_err(internal)?;
            match pending.get(&id) {
                Some(p) if p.owner == owner => pending.remove(&id),
                _ => None,
            }
        };
        if waiting.is_some() {
            return Ok(CancelStatus::Cancelled);
        }
        let streaming = self.streaming.lock().map_err(internal)?;
        match streaming.get(&id) {
            Some((call, by)) if *by == owner => {
                call.cancel();
                Ok(CancelStatus::Cancelled)
            }
            _ => Err(Status::not_found("no such query: it ended, or never ran")),
        }
    }
}

/// Prepares and runs `sql`, sends its schema, then its batches until the client stops reading.
fn run_query(
    store: &Mutex<Store>,
    sql: &str,
    read_only: bool,
    schema_tx: oneshot::Sender<std::result::Result<SchemaRef, String>>,
    batch_tx: &mpsc::Sender<std::result::Result<RecordBatch, String>>,
) {
    let Ok(store) = store.lock() else {
        let _ = schema_tx.send(Err(
            "the session's connection is unusable after a failure; start a new session".into(),
        ));
        return;
    };
    if let Err(e) = store.check_user_statement(sql) {
        let _ = schema_tx.send(Err(e.to_string()));
        return;
    }
    let conn = store.conn();
    if read_only {
        if let Err(e) = conn.execute_batch("BEGIN TRANSACTION READ ONLY") {
            let _ = schema_tx.send(Err(Error::sql(e).to_string()));
            return;
        }
        stream_query(conn, sql, schema_tx, batch_tx);
        let _ = conn.execute_batch("ROLLBACK");
    } else {
        stream_query(conn, sql, schema_tx, batch_tx);
        if let Err(e) = store.check_still_read_only() {
            let _ = batch_tx.blocking_send(Err(e.to_string()));
        }
    }
}

/// Runs the statement; cancelling the call this thread runs interrupts it (the client went away
/// while DuckDB computes a batch, which no failed send would show until it is done).
fn stream_query(
    conn: &duckdb::Connection,
    sql: &str,
    schema_tx: oneshot::Sender<std::result::Result<SchemaRef, String>>,
    batch_tx: &mpsc::Sender<std::result::Result<RecordBatch, String>>,
) {
    let _running = interrupt::Running::new(conn.interrupt_handle());
    let mut stmt = match conn.prepare(sql) {
        Ok(stmt) => stmt,
        Err(e) => {
            let _ = schema_tx.send(Err(Error::sql(e).to_string()));
            return;
        }
    };
    let stream = match stmt.stream_arrow([]) {
        Ok(stream) => stream,
        Err(e) => {
            let _ = schema_tx.send(Err(Error::sql(e).to_string()));
            return;
        }
    };
    if schema_tx.send(Ok(stream.get_schema())).is_err() {
        return;
    }
    for batch in stream {
        let item = batch.map_err(|e| Error::sql(e).to_string());
        let failed = item.is_err();
        // The client went away, or never came for the results: stop the query here.
        if batch_tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

type FlightStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

fn one_result(body: Vec<u8>) -> FlightStream<arrow_flight::Result> {
    Box::pin(futures::stream::once(async move {
        Ok(arrow_flight::Result { body: body.into() })
    }))
}

/// A FlightInfo for results of `schema` fetched with one ticket.
fn flight_info(
    schema: &duckdb::arrow::datatypes::Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> std::result::Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor))
}

/// Server facts for `GetSqlInfo` (ADBC asks for them when it connects).
static SQL_INFO: std::sync::LazyLock<arrow_flight::sql::metadata::SqlInfoData> = std::sync::LazyLock::new(sql_info);

fn sql_info() -> arrow_flight::sql::metadata::SqlInfoData {
    let mut builder = arrow_flight::sql::metadata::SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "netlens");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "60");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.build().expect("a fixed set of SqlInfo values builds")
}

#[tonic::async_trait]
impl FlightSqlService for NetlensFlight {
    type FlightService = NetlensFlight;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let owner = self.authorize(&request)?;
        if let Peer::Remote { .. } = owner.peer {
            access::check_remote_query(&query.query).map_err(Status::permission_denied)?;
        }
        let store = self.connection(&request, owner)?;
        let (ticket, schema) = self
            .start_query(store, query.query, owner.peer != Peer::Local, owner)
            .await?;
        let handle = TicketStatementQuery {
            statement_handle: ticket.to_vec().into(),
        };
        let info = flight_info(&schema, handle.as_any().encode_to_vec(), request.into_inner())?.with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let owner = self.authorize(&request)?;
        let id = ticket_of(&ticket.statement_handle).ok_or_else(|| Status::invalid_argument("not a netlens ticket"))?;
        let gone = || Status::not_found("no such query: its results were fetched already, or expired unclaimed");
        let pending = {
            let mut pending = self.pending.lock().map_err(internal)?;
            if pending.get(&id).is_none_or(|p| p.owner != owner) {
                return Err(gone());
            }
            pending.remove(&id).ok_or_else(gone)?
        };
        let batches = pending
            .batches
            .map(|item| item.map_err(|m| FlightError::Tonic(Box::new(Status::failed_precondition(m)))));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(pending.schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let owner = self.authorize(&request)?;
        match owner.peer {
            Peer::Local => {}
            Peer::LocalReader => {
                return Err(Status::permission_denied(
                    "this client asked to only read (--read-only)\n  hint: run it without --read-only",
                ))
            }
            Peer::Remote { writes: false } => {
                return Err(Status::permission_denied(
                    "this server's token grants queries only\n  hint: start the server with --remote-writes to let TCP clients write",
                ))
            }
            Peer::Remote { writes: true } => {
                access::check_remote_update(&command.query).map_err(Status::permission_denied)?
            }
        }
        let store = self.connection(&request, owner)?;
        let shared = Arc::clone(&self.shared);
        let call = interrupt::Call::new();
        let _cancel = call.cancel_on_drop();
        tokio::task::spawn_blocking(move || -> std::result::Result<i64, Status> {
            // Taken first, so that a session-less connection closes within it.
            let _using = shared.using_database();
            let connection = store;
            let store = connection.lock().map_err(internal)?;
            let _call = call.enter();
            // duckdb-rs runs every statement of a text but the last: one statement, checked
            // like any other user-given SQL.
            crate::store::statements::one(&command.query, "an update statement")
                .and_then(|()| store.check_user_statement(&command.query))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let ran = {
                let _running = interrupt::Running::new(store.conn().interrupt_handle());
                store.conn().execute(&command.query, [])
            };
            store
                .check_still_read_only()
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let rows = ran.map_err(|e| Status::invalid_argument(Error::sql(e).to_string()))?;
            shared.queries_served.fetch_add(1, Ordering::Relaxed);
            Ok(i64::try_from(rows).unwrap_or(i64::MAX))
        })
        .await
        .map_err(internal)?
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        let info = flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        let batch = builder.build();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let owner = self.authorize(&request)?;
        match request.get_ref().r#type.as_str() {
            ACTION_STATUS => {
                let status = self.shared.status();
                Ok(Response::new(one_result(
                    serde_json::to_vec(&status).map_err(internal)?,
                )))
            }
            ACTION_REQUEST => {
                let store = self.connection(&request, owner)?;
                let body = self.run_request(store, &request.get_ref().body, owner.peer).await?;
                Ok(Response::new(one_result(body)))
            }
            ACTION_CANCEL_FLIGHT_INFO => {
                let cancel = CancelFlightInfoRequest::decode(&*request.get_ref().body)
                    .map_err(|e| Status::invalid_argument(format!("CancelFlightInfo: {e}")))?;
                let info = cancel
                    .info
                    .ok_or_else(|| Status::invalid_argument("CancelFlightInfo: no FlightInfo"))?;
                let status = self.cancel_query(&info, owner)?;
                let result = CancelFlightInfoResult::new(status);
                Ok(Response::new(one_result(result.encode_to_vec())))
            }
            ACTION_CLOSE_SESSION => {
                // Only a session of the caller's own connection.
                let id = (owner.link, String::from_utf8_lossy(&request.get_ref().body).into_owned());
                let closed = {
                    let mut sessions = self.sessions.lock().map_err(internal)?;
                    let closed = sessions.remove(&id);
                    self.shared.sessions.store(sessions.len(), Ordering::Relaxed);
                    closed
                };
                drop(closed);
                Ok(Response::new(Box::pin(futures::stream::empty())))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action '{other}'; netlens serves {ACTION_REQUEST}, {ACTION_STATUS}, {ACTION_CLOSE_SESSION} and {ACTION_CANCEL_FLIGHT_INFO}"
            ))),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<std::result::Result<ActionType, Status>>> {
        Some(vec![
            Ok(ActionType {
                r#type: ACTION_REQUEST.to_string(),
                description:
                    "Run a netlens command: body a JSON request ({\"command\": \"detect\", ...}), result a JSON reply"
                        .to_string(),
            }),
            Ok(ActionType {
                r#type: ACTION_STATUS.to_string(),
                description: "The server's status as JSON".to_string(),
            }),
            Ok(ActionType {
                r#type: ACTION_CLOSE_SESSION.to_string(),
                description: "Close the session named in the body (x-netlens-session)".to_string(),
            }),
            Ok(ActionType {
                r#type: ACTION_CANCEL_FLIGHT_INFO.to_string(),
                description: "Cancel the query of a FlightInfo (body a CancelFlightInfoRequest)".to_string(),
            }),
        ])
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCancelQueryResult, Status> {
        let owner = self.authorize(&request)?;
        let info = FlightInfo::decode(&*query.info)
            .map_err(|e| Status::invalid_argument(format!("CancelQuery: not a FlightInfo: {e}")))?;
        self.cancel_query(&info, owner)?;
        // CANCEL_RESULT_CANCELLED (the enum is not re-exported by arrow-flight).
        Ok(ActionCancelQueryResult { result: 1 })
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// How long a stopping server waits for its clients' calls and connections to end. tonic and axum
/// wait for every connection to close on their own, and some never do by themselves: an open
/// dashboard's event stream, a client reading a large result slowly; `systemctl stop` would then
/// run into its kill timeout.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The TCP listeners of `--listen` and `--http`, bound before the server starts anything.
pub struct Bound {
    pub listen: Option<std::net::TcpListener>,
    pub http: Option<std::net::TcpListener>,
}

/// Serves on `socket` (and TCP with `--listen`) until SIGTERM or SIGINT, then lets running
/// calls finish for at most [`STOP_GRACE`] and returns, closing what is still connected.
pub async fn serve(
    shared: Arc<Shared>,
    socket: &Path,
    options: &ServeOptions,
    token: Option<String>,
    bound: Bound,
) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut stop = stop_rx.clone();
    let grace_over = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        served = serve_until(shared, socket, options, token, bound, stop_rx) => served,
        () = grace_over => {
            log(&format!(
                "stopping: clients still connected {} s after the signal are disconnected",
                STOP_GRACE.as_secs()
            ));
            Ok(())
        }
    }
}

/// [`serve`]'s listeners, which stop accepting once `stop_rx` turns true and end when their
/// connections have.
async fn serve_until(
    shared: Arc<Shared>,
    socket: &Path,
    options: &ServeOptions,
    token: Option<String>,
    bound: Bound,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::UnixListener::bind(socket).map_err(|e| Error::io(socket, e))?;
    restrict_socket(socket)?;
    let service = NetlensFlight::new(Arc::clone(&shared), token.clone(), options.remote.writes);
    let reaper = service.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            reaper.reap();
        }
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    log(&format!(
        "serving {} on {} (pid {})",
        shared.database.display(),
        socket.display(),
        std::process::id()
    ));
    let tracker = service.clone();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener).map(move |accepted| {
        accepted.map(|stream| {
            widen_send_buffer(&stream);
            Tracked::new(stream, &tracker)
        })
    });
    let local = server_builder()
        .add_service(FlightServiceServer::new(service.clone()))
        .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
    let local = async {
        local.await.map_err(|e| Error::Server {
            endpoint: socket.display().to_string(),
            reason: e.to_string(),
        })
    };
    let dashboard_stop = stopped(stop_rx.clone());
    let dashboard = async {
        match (&options.http, bound.http, &token) {
            (Some(http), Some(tcp), Some(token)) => {
                super::http::serve(
                    Arc::clone(&shared),
                    http,
                    tcp,
                    token.clone(),
                    options.remote.writes,
                    dashboard_stop,
                )
                .await
            }
            _ => Ok(()),
        }
    };
    let (Some(listen), Some(tcp)) = (&options.listen, bound.listen) else {
        return tokio::try_join!(local, dashboard).map(|_| ());
    };
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| Error::io(format!("--listen {}", listen.addr), e))?;
    let bound = tcp.local_addr().map_err(|e| Error::io("--listen", e))?;
    let url = listen.url("grpc", bound);
    shared.update(|s| s.listen = Some(url.clone()));
    log(&format!("Flight SQL for TCP clients with the token on {url}"));
    let mut builder = server_builder();
    if let Some((cert, key)) = listen.identity()? {
        let tls = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
        builder = builder.tls_config(tls).map_err(|e| Error::Server {
            endpoint: url.clone(),
            reason: format!("TLS: {e}"),
        })?;
    }
    let tracker = service.clone();
    let incoming = tonic::transport::server::TcpIncoming::from(tcp)
        .with_nodelay(Some(true))
        .map(move |accepted| accepted.map(|stream| Tracked::new(stream, &tracker)));
    let remote = builder
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, stopped(stop_rx));
    let remote = async {
        remote.await.map_err(|e| Error::Server {
            endpoint: url.clone(),
            reason: e.to_string(),
        })
    };
    tokio::try_join!(local, remote, dashboard).map(|_| ())
}

/// HTTP/2 flow-control windows. gRPC's default of 64 KiB per stream makes a large result wait
/// for a window update every few batches; these let a result stream at the speed of encoding
/// (bench/RESULTS.md, "Flight throughput"). At most BATCHES_IN_FLIGHT batches still wait in the
/// server, so a slow client holds the query back as before.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 16 << 20;

/// The send buffer of a client's Unix socket: 4 MiB (Linux caps it at `net.core.wmem_max`)
/// instead of about 200 KiB, so a large result is written in fewer, larger writes with fewer
/// wake-ups of either side (bench/RESULTS.md, "Flight throughput").
const SEND_BUFFER: libc::c_int = 4 << 20;

fn widen_send_buffer(stream: &tokio::net::UnixStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int, on an open socket.
    // Failing only costs speed (the kernel's default stays), so the result is not checked.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
}

/// Resolves at SIGTERM or SIGINT (and tells every loop to stop); SIGHUP is logged and ignored:
/// the server reloads nothing, its options are its command line.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        log("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { log("SIGTERM: finishing the snapshot in flight and stopping"); break; }
            _ = int.recv() => { log("SIGINT: finishing the snapshot in flight and stopping"); break; }
            _ = hup.recv() => log("SIGHUP ignored: netlens serve reloads nothing; restart it to change its options"),
        }
    }
    crate::interrupt::request_stop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    use crate::interrupt::long_query;

    /// A local client on connection 1.
    const LOCAL: Owner = Owner {
        peer: Peer::Local,
        link: 1,
    };

    fn service(dir: &Path) -> NetlensFlight {
        let store = Store::file_with_numbers(&dir.join("t.duckdb"), 10);
        NetlensFlight::new(Arc::new(super::super::tests::shared_over(store, None)), None, false)
    }

    fn running(flight: &NetlensFlight) -> u64 {
        flight.shared.queries_running.load(Ordering::Relaxed)
    }

    /// Waits at most 3 s for the query thread to end.
    fn ends_within_3_s(flight: &NetlensFlight, what: &str) {
        let cancelled = Instant::now();
        while running(flight) != 0 {
            assert!(cancelled.elapsed() < Duration::from_secs(3), "{what}: still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn started(flight: &NetlensFlight) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while running(flight) == 0 {
            assert!(Instant::now() < deadline, "the query did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Well into DuckDB's work on the only batch.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Regression: a query whose client went away ran to its end, DuckDB computing its one
    /// batch with nobody to send it to. Its results dropped (the `DoGet` stream gone, or never
    /// fetched) interrupt it, and the session's connection serves the next statement.
    #[test]
    fn a_querys_results_dropped_stop_it_and_the_session_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let flight = service(dir.path());
        let session = Arc::new(Mutex::new(flight.shared.connect().unwrap()));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (ticket, _) = runtime
            .block_on(flight.start_query(Arc::clone(&session), long_query(), false, LOCAL))
            .unwrap();
        started(&flight);
        let pending = flight.pending.lock().unwrap().remove(&ticket).unwrap();
        drop(pending);
        ends_within_3_s(&flight, "the query whose results were dropped");

        let (ticket, _) = runtime
            .block_on(flight.start_query(session, "SELECT count(*) FROM t".into(), false, LOCAL))
            .unwrap();
        let pending = flight.pending.lock().unwrap().remove(&ticket).unwrap();
        let batches: Vec<_> = runtime.block_on(pending.batches.collect());
        let batch = batches.into_iter().next().unwrap().unwrap();
        let count = batch
            .column(0)
            .as_any()
            .downcast_ref::<duckdb::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(count, 10, "the session's connection after the interrupt");
    }

    /// `CancelFlightInfo` stops a query whose results stream now, and one still unclaimed.
    #[test]
    fn cancel_flight_info_stops_the_query_of_its_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let flight = service(dir.path());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        for claimed in [true, false] {
            let store = Arc::new(Mutex::new(flight.shared.connect().unwrap()));
            let (ticket, schema) = runtime
                .block_on(flight.start_query(store, long_query(), false, LOCAL))
                .unwrap();
            let handle = TicketStatementQuery {
                statement_handle: ticket.to_vec().into(),
            };
            let info = flight_info(
                &schema,
                handle.as_any().encode_to_vec(),
                FlightDescriptor::new_cmd(Vec::new()),
            )
            .unwrap();
            // As a DoGet holds them.
            let streaming = claimed.then(|| flight.pending.lock().unwrap().remove(&ticket).unwrap());
            started(&flight);
            let remote = Owner {
                peer: Peer::Remote { writes: true },
                link: LOCAL.link,
            };
            assert!(
                flight.cancel_query(&info, remote).is_err(),
                "another kind of peer's query"
            );
            let other_connection = Owner { link: 2, ..LOCAL };
            assert!(
                flight.cancel_query(&info, other_connection).is_err(),
                "another connection's query"
            );
            assert_eq!(flight.cancel_query(&info, LOCAL).unwrap(), CancelStatus::Cancelled);
            ends_within_3_s(&flight, "the cancelled query");
            if let Some(pending) = streaming {
                let first = runtime.block_on(pending.batches.collect::<Vec<_>>());
                let error = first.into_iter().next().unwrap().unwrap_err();
                assert!(error.contains("nterrupt"), "{error}");
            }
            assert!(flight.cancel_query(&info, LOCAL).is_err(), "cancelled twice");
        }
    }

    /// Regression: tickets were numbered 1, 2, 3, ...: any client with the token could take
    /// another's results by counting. They are 128 random bits now, and a connection closing
    /// drops the queries it left unclaimed and ends its sessions.
    #[test]
    fn tickets_are_random_and_a_closed_connection_takes_its_queries_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let flight = service(dir.path());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut tickets = Vec::new();
        for _ in 0..2 {
            let store = Arc::new(Mutex::new(flight.shared.connect().unwrap()));
            let (ticket, _) = runtime
                .block_on(flight.start_query(store, "SELECT 1".into(), false, LOCAL))
                .unwrap();
            tickets.push(ticket);
        }
        assert_ne!(tickets[0], tickets[1]);
        for ticket in &tickets {
            assert!(ticket.iter().filter(|b| **b != 0).count() > 4, "{ticket:?}");
        }
        flight.sessions.lock().unwrap().insert(
            (LOCAL.link, "s".into()),
            Session {
                store: Arc::new(Mutex::new(flight.shared.connect().unwrap())),
                last_used: Instant::now(),
            },
        );
        flight.link_closed(LOCAL.link + 1);
        assert_eq!(flight.pending.lock().unwrap().len(), 2, "another connection closed");
        assert_eq!(flight.sessions.lock().unwrap().len(), 1, "another connection closed");
        flight.link_closed(LOCAL.link);
        assert!(flight.pending.lock().unwrap().is_empty());
        assert!(flight.sessions.lock().unwrap().is_empty());
    }
}
