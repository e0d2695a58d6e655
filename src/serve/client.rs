//! A blocking Flight SQL client of a netlens server, for the command line and the shell: one
//! session (its own connection on the server) over the server's Unix socket or, with
//! `--server URL`, over its TCP listener with the server's token; statements whose record
//! batches arrive as they stream, and netlens's actions (requests, status).

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
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::flight::{ACTION_CLOSE_SESSION, ACTION_REQUEST, ACTION_STATUS, READ_ONLY_HEADER, SESSION_HEADER};
use super::ServerStatus;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::request::{Reply, Request};

/// A query's result as it streams: its record batches, after its schema.
pub type Batches<'a> = &'a mut dyn Iterator<Item = Result<RecordBatch>>;

/// Where a server answers, and how this client proves itself there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// The Unix socket beside the database: a local client, admitted by its user.
    Socket(PathBuf),
    /// A TCP listener of `serve --listen`: a remote client, admitted by the server's token.
    Tcp(TcpServer),
}

/// A server's TCP listener as a client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpServer {
    /// `grpc://HOST:PORT` or `grpc+tls://HOST:PORT`, as `netlens status` shows the listener.
    pub url: String,
    /// The URL's host and port, checked.
    host: String,
    port: u16,
    tls: bool,
    /// The server's token (the file `DATABASE.token` on its host).
    pub token: String,
    /// The PEM certificate of the issuer to trust, for `grpc+tls`.
    pub tls_ca: Option<Vec<u8>>,
}

impl TcpServer {
    /// Checks a listener's URL and what connecting to it needs: the token, and for TLS the
    /// certificate to trust (netlens trusts no system roots: a server's certificate is usually
    /// its operator's own).
    pub fn new(url: &str, token: String, tls_ca: Option<Vec<u8>>) -> Result<TcpServer> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--server {url}: {why}\n  hint: give the listener as `netlens status` on the server's host shows it, \
                 grpc://HOST:PORT or grpc+tls://HOST:PORT"
            ))
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("grpc+tls://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(bad("not a grpc:// or grpc+tls:// URL"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let uri: Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| bad("not HOST:PORT after the scheme"))?;
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(bad("no port given"));
        };
        if uri.path() != "/" || authority.contains('@') {
            return Err(bad("a server URL has only a host and a port"));
        }
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(Error::Usage(format!(
                "--server {url}: the token is empty\n  hint: give the server's token with --token-file \
                 (a copy of DATABASE.token from the server's host) or in NETLENS_TOKEN"
            )));
        }
        if tls && tls_ca.is_none() {
            return Err(Error::Usage(format!(
                "--server {url}: a TLS server needs the certificate to trust\n  hint: add --tls-ca FILE \
                 (the PEM certificate of the server's issuer, or the server's own for a self-signed one)"
            )));
        }
        if !tls && tls_ca.is_some() {
            return Err(Error::Usage(format!(
                "--server {url}: --tls-ca given for a server without TLS\n  hint: a server with --tls-cert \
                 listens on grpc+tls://HOST:PORT"
            )));
        }
        Ok(TcpServer {
            url: url.to_string(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            tls,
            token,
            tls_ca,
        })
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddress::Socket(path) => write!(f, "{}", path.display()),
            ServerAddress::Tcp(tcp) => f.write_str(&tcp.url),
        }
    }
}

impl ServerAddress {
    /// True when something accepts connections there (for a socket: a socket file with a
    /// listener behind it).
    pub fn answers(&self) -> bool {
        match self {
            ServerAddress::Socket(path) => Client::probe(path),
            ServerAddress::Tcp(tcp) => {
                use std::net::ToSocketAddrs;
                (tcp.host.as_str(), tcp.port)
                    .to_socket_addrs()
                    .map(|mut addrs| {
                        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
                    })
                    .unwrap_or(false)
            }
        }
    }
}

/// A connection to a netlens server.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    flight: FlightServiceClient<Channel>,
    address: ServerAddress,
    /// `Bearer TOKEN` on every call to a TCP listener.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    session: String,
    /// Asks the server to let this session only read (`--read-only`).
    read_only: bool,
}

impl Client {
    /// True when a server answers on `socket` (a socket file with a listener behind it).
    pub fn probe(socket: &Path) -> bool {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    }

    /// Connects to the server listening on `socket`.
    pub fn connect(socket: &Path) -> Result<Client> {
        Client::connect_to(&ServerAddress::Socket(socket.to_path_buf()))
    }

    /// Connects to a server at `address`.
    pub fn connect_to(address: &ServerAddress) -> Result<Client> {
        // One worker thread runs the connection (HTTP/2 and the socket), so the next batches
        // arrive while the caller decodes and consumes this one; on the caller's thread alone
        // they took turns (bench/RESULTS.md, "Flight throughput").
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netlens-client")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let failed = |e: tonic::transport::Error| {
            let mut reason = transport_reason(&e);
            if reason.contains("CaUsedAsEndEntity") {
                reason.push_str(
                    "; the server's certificate is marked as a CA's (as `openssl req -x509` makes one by \
                     default): give the server a certificate with basicConstraints CA:FALSE, or one signed \
                     by the CA you pass to --tls-ca",
                );
            }
            Error::Server {
                endpoint: address.to_string(),
                reason,
            }
        };
        let channel = match address {
            ServerAddress::Socket(socket) => {
                let path = socket.clone();
                runtime.block_on(async move {
                    // The URI is a placeholder: the connector below always dials the socket.
                    tuned(Endpoint::from_static("http://netlens.invalid"))
                        .connect_with_connector(tower::service_fn(move |_: Uri| {
                            let path = path.clone();
                            async move {
                                let stream = tokio::net::UnixStream::connect(path).await?;
                                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                            }
                        }))
                        .await
                })
            }
            ServerAddress::Tcp(tcp) => {
                let scheme = if tcp.tls { "https" } else { "http" };
                let endpoint = Endpoint::from_shared(format!("{scheme}://{}:{}", uri_host(&tcp.host), tcp.port))
                    .map_err(failed)?;
                let endpoint = match &tcp.tls_ca {
                    Some(ca) => endpoint
                        .tls_config(
                            ClientTlsConfig::new()
                                .ca_certificate(Certificate::from_pem(ca))
                                .domain_name(tcp.host.clone()),
                        )
                        .map_err(failed)?,
                    None => endpoint,
                };
                runtime.block_on(async move { tuned(endpoint).connect().await })
            }
        }
        .map_err(failed)?;
        let authorization = match address {
            ServerAddress::Socket(_) => None,
            ServerAddress::Tcp(tcp) => Some(format!("Bearer {}", tcp.token).parse().map_err(|_| {
                Error::Usage(format!(
                    "--server {}: the token holds characters a header cannot carry\n  \
                     hint: the server's token is 64 hex digits",
                    tcp.url
                ))
            })?),
        };
        let flight = FlightServiceClient::new(channel);
        // A session is named by its client; the server keeps local and remote sessions apart,
        // and a name nobody can guess keeps another client of the same kind off this one.
        let session = super::access::new_token()[..32].to_string();
        Ok(Client {
            runtime,
            flight,
            address: address.clone(),
            authorization,
            session,
            read_only: false,
        })
    }

    /// Makes this session one that only reads: its queries run in `READ ONLY` transactions on
    /// the server, and commands that store anything are refused.
    pub fn reading_only(mut self, read_only: bool) -> Client {
        self.read_only = read_only;
        self
    }

    /// A call carrying this client's session (and its token, on TCP).
    fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = self.session.parse() {
            request.metadata_mut().insert(SESSION_HEADER, value);
        }
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        if self.read_only {
            request
                .metadata_mut()
                .insert(READ_ONLY_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        }
        request
    }

    /// Where this client's server answers.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// Whether this session only reads.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn server_error(&self, reason: String) -> Error {
        Error::Server {
            endpoint: self.address.to_string(),
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
            let gone = if self.address.answers() {
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

/// The connection's settings for either kind of server: how long to try, and HTTP/2 windows as
/// large as the server's, so large results stream without waiting for window updates.
fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(Some(super::flight::STREAM_WINDOW))
        .initial_connection_window_size(Some(super::flight::CONNECTION_WINDOW))
}

/// A host as a URI carries it: an IPv6 address in brackets.
fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> String {
        "ab".repeat(32)
    }

    #[test]
    fn a_server_url_is_a_scheme_a_host_and_a_port() {
        let plain = TcpServer::new("grpc://127.0.0.1:31337", format!(" {}\n", token()), None).unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls),
            ("127.0.0.1", 31337, false)
        );
        assert_eq!(plain.token, token(), "the token file's newline is not part of it");
        let v6 = TcpServer::new("grpc+tls://[::1]:443/", token(), Some(b"PEM".to_vec())).unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.tls), ("::1", 443, true));
        assert_eq!(uri_host(&v6.host), "[::1]");
        for (url, says) in [
            ("http://127.0.0.1:1", "not a grpc://"),
            ("127.0.0.1:1", "not a grpc://"),
            ("grpc://127.0.0.1", "no port"),
            ("grpc://127.0.0.1:1/db", "only a host and a port"),
            ("grpc://user@127.0.0.1:1", "only a host and a port"),
            ("grpc://127.0.0.1:99999", "HOST:PORT"),
        ] {
            let e = TcpServer::new(url, token(), None).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn tls_needs_a_certificate_to_trust_and_plain_needs_none() {
        let e = TcpServer::new("grpc+tls://localhost:1", token(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-ca"), "{e}");
        let e = TcpServer::new("grpc://localhost:1", token(), Some(b"PEM".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("without TLS"), "{e}");
        let e = TcpServer::new("grpc://localhost:1", "\n".to_string(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token is empty"), "{e}");
    }
}
