//! The opt-in online provider: ip-api.com's batch endpoint (POST a JSON array of at most 100
//! addresses, get an array of answers in the same order). This is the only code in netlens
//! that sends addresses off the machine; the caller hands it public addresses only.
//!
//! The HTTP exchange sits behind [`Transport`] and time behind [`Clock`], so batching, rate
//! limits and failures are tested without a network or real waiting; the rate-limit rules
//! themselves are pure functions of the headers and the time passed in.

use std::io::Read;
use std::time::{Duration, Instant};

pub use netlens_parsers::ipapi::{
    after_429, excerpt, non_empty, observe, parse_batch, plan, Plan, RateLimit, Reply, DEFAULT_RESET, MAX_TTL,
};

/// ip-api's limit of addresses per batch request.
pub const BATCH_SIZE: usize = 100;

/// The fields asked for (ip-api sends every field otherwise).
pub const FIELDS: &str = "status,message,query,country,countryCode,regionName,city,lat,lon,as";

/// Consecutive HTTP 429 answers after which a run gives up on the rest.
const MAX_429_RETRIES: u32 = 3;

/// One HTTP answer, reduced to what the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// `X-Rl`: requests left in the current window.
    pub x_rl: Option<String>,
    /// `X-Ttl`: seconds until the window resets.
    pub x_ttl: Option<String>,
    pub body: String,
}

/// Sends one batch body; `Err` says why no HTTP answer came (refused, timeout, ...).
pub trait Transport {
    fn post(&self, body: &str) -> std::result::Result<HttpReply, String>;
    /// The endpoint, for messages.
    fn url(&self) -> &str;
}

/// Time for the client: real time in the program, a virtual one in tests.
pub trait Clock {
    fn now(&self) -> Instant;
    /// Waits `d`; true when Ctrl-C cut the wait short (a rate-limit wait can last minutes).
    fn sleep(&mut self, d: Duration) -> bool;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) -> bool {
        crate::interrupt::sleep_until(Instant::now() + d)
    }
}

/// What a run got: the answers to store, and what failed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Well-formed answers: `status` success, or fail with ip-api's reason (reserved range, ...).
    pub answers: Vec<Reply>,
    /// Addresses with no usable answer; nothing is stored for them.
    pub failed: Vec<String>,
    /// Why they failed, one phrase per cause.
    pub reasons: Vec<String>,
    /// Requests sent.
    pub requests: usize,
    /// Ctrl-C ended a rate-limit wait; the addresses not yet answered are in `failed`.
    pub interrupted: bool,
}

/// Looks up `queries` (public addresses, text) in batches, honouring the rate limit. Stops at
/// the first request that fails outright (down, timeout, malformed answer, limit longer than
/// `max_wait`): asking a provider that is failing again and again helps no one. A wait for the
/// rate limit is announced through `notice` before it starts (it can last up to `max_wait`).
pub fn lookup(
    queries: &[String],
    transport: &dyn Transport,
    clock: &mut dyn Clock,
    max_wait: Duration,
    notice: &mut dyn FnMut(&str),
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut limit = RateLimit::default();
    let mut batches = queries.chunks(BATCH_SIZE);
    while let Some(batch) = batches.next() {
        match lookup_batch(batch, transport, clock, max_wait, &mut limit, &mut outcome, notice) {
            Ok(()) => {}
            Err(reason) => {
                outcome.failed.extend(batch.iter().cloned());
                for rest in batches.by_ref() {
                    outcome.failed.extend(rest.iter().cloned());
                }
                outcome.reasons.push(reason);
            }
        }
    }
    outcome
}

const INTERRUPTED: &str = "interrupted by Ctrl-C while waiting for the rate limit to reset";

fn lookup_batch(
    batch: &[String],
    transport: &dyn Transport,
    clock: &mut dyn Clock,
    max_wait: Duration,
    limit: &mut RateLimit,
    outcome: &mut Outcome,
    notice: &mut dyn FnMut(&str),
) -> std::result::Result<(), String> {
    let body = serde_json::to_string(batch).map_err(|e| e.to_string())?;
    let mut refusals = 0;
    loop {
        match plan(limit, clock.now(), max_wait) {
            Plan::Send => {}
            Plan::Wait(d) => {
                notice(&format!(
                    "note: the provider's rate limit is used up; waiting {} s for it to reset",
                    d.as_secs_f64().ceil()
                ));
                if clock.sleep(d) {
                    outcome.interrupted = true;
                    return Err(INTERRUPTED.to_string());
                }
                *limit = RateLimit::default();
            }
            Plan::GiveUp(d) => {
                return Err(format!(
                    "rate limit reached; it resets in {} s, longer than --max-wait {} s",
                    d.as_secs_f64().ceil(),
                    max_wait.as_secs_f64().ceil()
                ))
            }
        }
        outcome.requests += 1;
        let reply = match transport.post(&body) {
            Ok(reply) => reply,
            Err(reason) if reason == REQUEST_INTERRUPTED => {
                outcome.interrupted = true;
                return Err(reason);
            }
            Err(reason) => return Err(reason),
        };
        let now = clock.now();
        if reply.status == 429 {
            refusals += 1;
            if refusals > MAX_429_RETRIES {
                return Err(format!("rate limited (HTTP 429) {refusals} times in a row"));
            }
            *limit = after_429(reply.x_ttl.as_deref(), now);
            continue;
        }
        if !(200..300).contains(&reply.status) {
            return Err(format!("HTTP {}: {}", reply.status, excerpt(&reply.body)));
        }
        *limit = observe(reply.x_rl.as_deref(), reply.x_ttl.as_deref(), now);
        let replies = parse_batch(batch, &reply.body)?;
        for r in replies {
            // "invalid query" means the request was wrong, not that the address has no data.
            if r.status == "fail" && r.message.as_deref() == Some("invalid query") {
                outcome.failed.push(r.query.clone());
                let reason = format!("ip-api rejected {} as an invalid query", r.query);
                outcome.reasons.push(reason);
            } else {
                outcome.answers.push(r);
            }
        }
        return Ok(());
    }
}

/// The largest reply read from the provider.
const MAX_REPLY: u64 = 1 << 20;

/// The real transport: reqwest's blocking client, over plain HTTP (ip-api's free tier has no
/// HTTPS) or HTTPS (its paid endpoint, a mirror) through rustls, with ring as the crypto provider
/// (the one the server's TLS uses; no second crypto library) and the system's root certificates.
pub struct HttpTransport {
    client: reqwest::blocking::Client,
    url: String,
    endpoint: String,
    timeout: Duration,
}

impl HttpTransport {
    pub fn new(url: &str, timeout: Duration) -> std::result::Result<Self, String> {
        Self::trusting(url, timeout, None)
    }

    /// [`HttpTransport::new`] that also trusts the certificate authority `extra_root` (PEM)
    /// besides the system's: how the tests reach a loopback TLS server.
    fn trusting(url: &str, timeout: Duration, extra_root: Option<&[u8]>) -> std::result::Result<Self, String> {
        // reqwest is built without a provider of its own: the process's default is ring. An
        // error only says one is installed already.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("netlens/", env!("CARGO_PKG_VERSION")))
            // Over plain HTTP anyone on the path can answer: a redirect could lead the
            // addresses anywhere (over HTTPS, to another host than the one named).
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = extra_root {
            let certificate = reqwest::Certificate::from_pem(pem).map_err(|e| error_chain(&e))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build().map_err(|e| error_chain(&e))?;
        let separator = if url.contains('?') { '&' } else { '?' };
        Ok(HttpTransport {
            client,
            // For messages: without the query, where a paid endpoint's key goes.
            url: super::without_query(url).to_string(),
            endpoint: format!("{url}{separator}fields={FIELDS}"),
            timeout,
        })
    }
}

/// What [`HttpTransport::post`] returns when Ctrl-C came while the request was in flight.
pub const REQUEST_INTERRUPTED: &str = "interrupted by Ctrl-C while waiting for the provider's answer";

impl Transport for HttpTransport {
    /// Sends on a thread of its own and waits for the answer in steps of 100 ms, so Ctrl-C
    /// ends the wait at once instead of after up to `--timeout`: reqwest's blocking client
    /// cannot be cancelled from outside. The abandoned request ends by itself within the
    /// timeout, and nothing of its answer is used.
    fn post(&self, body: &str) -> std::result::Result<HttpReply, String> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let (client, endpoint, body, timeout) = (
            self.client.clone(),
            self.endpoint.clone(),
            body.to_string(),
            self.timeout,
        );
        std::thread::Builder::new()
            .name("geo-request".to_string())
            .spawn(move || {
                let _ = sender.send(exchange(&client, &endpoint, body, timeout));
            })
            .map_err(|e| format!("cannot start the request: {e}"))?;
        loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => return answer,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if crate::interrupt::requested() {
                        return Err(REQUEST_INTERRUPTED.to_string());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the request ended without an answer".to_string())
                }
            }
        }
    }

    fn url(&self) -> &str {
        &self.url
    }
}

/// One request and its reply, read up to [`MAX_REPLY`].
fn exchange(
    client: &reqwest::blocking::Client,
    endpoint: &str,
    body: String,
    timeout: Duration,
) -> std::result::Result<HttpReply, String> {
    let sent = client
        .post(endpoint)
        .header("Content-Type", "application/json")
        .body(body)
        .send();
    // reqwest's errors name the URL, key and all: messages leave it out (the endpoint is named
    // without its query by the caller).
    let response = sent.map_err(|e| describe(&e.without_url(), timeout))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (x_rl, x_ttl) = (header("X-Rl"), header("X-Ttl"));
    let status = response.status().as_u16();
    // Anyone on the path can answer: read at most MAX_REPLY (100 answers take ~30 KB).
    let mut bytes = Vec::new();
    response
        .take(MAX_REPLY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    if bytes.len() as u64 > MAX_REPLY {
        return Err(format!(
            "the reply is larger than {} KiB, far more than an answer to 100 addresses; not read",
            MAX_REPLY / 1024
        ));
    }
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(HttpReply {
        status,
        x_rl,
        x_ttl,
        body,
    })
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within --timeout {:.1} s", timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("cannot connect ({})", error_chain(e))
    } else {
        error_chain(e)
    }
}

/// An error with its causes, which is where reqwest says "connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct FakeClock {
        now: Instant,
        slept: Vec<Duration>,
        /// Ctrl-C during every wait.
        ctrl_c: bool,
    }

    impl FakeClock {
        fn new() -> Self {
            FakeClock {
                now: Instant::now(),
                slept: Vec::new(),
                ctrl_c: false,
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.now
        }
        fn sleep(&mut self, d: Duration) -> bool {
            self.slept.push(d);
            self.now += d;
            self.ctrl_c
        }
    }

    /// Answers each request with the next scripted reply (or, past the script, a good one).
    struct Scripted {
        replies: RefCell<Vec<std::result::Result<HttpReply, String>>>,
        bodies: RefCell<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(replies: Vec<std::result::Result<HttpReply, String>>) -> Self {
            Scripted {
                replies: RefCell::new(replies),
                bodies: RefCell::new(Vec::new()),
            }
        }
    }

    fn good(queries: &[String], x_rl: &str, x_ttl: &str) -> HttpReply {
        let items: Vec<String> = queries
            .iter()
            .map(|q| {
                format!(r#"{{"status":"success","country":"Country","countryCode":"CC","regionName":"","city":"Town","lat":1.5,"lon":-2.5,"as":"AS64500 Example Org","query":"{q}"}}"#)
            })
            .collect();
        HttpReply {
            status: 200,
            x_rl: Some(x_rl.to_string()),
            x_ttl: Some(x_ttl.to_string()),
            body: format!("[{}]", items.join(",")),
        }
    }

    impl Transport for Scripted {
        fn post(&self, body: &str) -> std::result::Result<HttpReply, String> {
            let queries: Vec<String> = serde_json::from_str(body).unwrap();
            self.bodies.borrow_mut().push(queries.clone());
            let mut replies = self.replies.borrow_mut();
            if replies.is_empty() {
                return Ok(good(&queries, "14", "60"));
            }
            match replies.remove(0) {
                Ok(r) if r.body == "GOOD" => Ok(good(&queries, r.x_rl.as_deref().unwrap(), "60")),
                other => other,
            }
        }
        fn url(&self) -> &str {
            "http://test/batch"
        }
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("8.8.{}.{}", i / 256, i % 256)).collect()
    }

    fn reply(status: u16, x_rl: Option<&str>, x_ttl: Option<&str>, body: &str) -> HttpReply {
        HttpReply {
            status,
            x_rl: x_rl.map(str::to_string),
            x_ttl: x_ttl.map(str::to_string),
            body: body.to_string(),
        }
    }

    #[test]
    fn batches_hold_at_most_100_addresses() {
        let t = Scripted::new(vec![]);
        let mut clock = FakeClock::new();
        let out = lookup(&addrs(250), &t, &mut clock, Duration::from_secs(60), &mut |_| {});
        let sizes: Vec<usize> = t.bodies.borrow().iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(out.answers.len(), 250);
        assert!(out.failed.is_empty() && out.reasons.is_empty());
        assert_eq!(
            out.answers[0].asn_and_org(),
            (Some(64500), Some("Example Org".to_string()))
        );
        assert!(clock.slept.is_empty());
    }

    #[test]
    fn an_exhausted_quota_waits_for_the_reset() {
        let t = Scripted::new(vec![Ok(reply(200, Some("0"), None, "GOOD"))]);
        let mut clock = FakeClock::new();
        let mut notes = Vec::new();
        let out = lookup(&addrs(150), &t, &mut clock, Duration::from_secs(120), &mut |n| {
            notes.push(n.to_string())
        });
        assert_eq!(out.answers.len(), 150);
        // X-Rl 0 with X-Ttl 60 (from the scripted good reply): wait 61 s before the second batch.
        assert_eq!(clock.slept, [Duration::from_secs(61)]);
        // Said before the wait, through the notice the command layer shows (geo never prints).
        assert_eq!(
            notes,
            ["note: the provider's rate limit is used up; waiting 61 s for it to reset"]
        );
    }

    #[test]
    fn ctrl_c_ends_a_rate_limit_wait() {
        // Regression (issue 22): the wait for a reset ran on to --max-wait, ignoring Ctrl-C.
        let t = Scripted::new(vec![Ok(reply(200, Some("0"), None, "GOOD"))]);
        let mut clock = FakeClock::new();
        clock.ctrl_c = true;
        let out = lookup(&addrs(250), &t, &mut clock, Duration::from_secs(120), &mut |_| {});
        assert!(out.interrupted);
        assert_eq!(out.requests, 1, "nothing is sent after the interrupted wait");
        assert_eq!((out.answers.len(), out.failed.len()), (100, 150));
    }

    #[test]
    fn http_429_is_retried_after_x_ttl() {
        let t = Scripted::new(vec![Ok(reply(429, Some("0"), Some("5"), ""))]);
        let mut clock = FakeClock::new();
        let out = lookup(&addrs(3), &t, &mut clock, Duration::from_secs(60), &mut |_| {});
        assert_eq!(out.answers.len(), 3);
        assert_eq!(clock.slept, [Duration::from_secs(6)]);
        assert_eq!(out.requests, 2);
    }

    #[test]
    fn a_long_rate_limit_gives_up_and_keeps_earlier_answers() {
        let t = Scripted::new(vec![
            Ok(reply(200, Some("14"), Some("60"), "GOOD")),
            Ok(reply(429, Some("0"), Some("3600"), "")),
        ]);
        let mut clock = FakeClock::new();
        let out = lookup(&addrs(250), &t, &mut clock, Duration::from_secs(60), &mut |_| {});
        assert_eq!(out.answers.len(), 100);
        assert_eq!(out.failed.len(), 150);
        assert!(out.reasons[0].contains("resets in 3601 s"), "{:?}", out.reasons);
        assert!(clock.slept.is_empty());
        assert_eq!(out.requests, 2, "no request after giving up");
    }

    #[test]
    fn repeated_429_without_ttl_progress_gives_up() {
        let r = || Ok(reply(429, None, Some("0"), ""));
        let t = Scripted::new(vec![r(), r(), r(), r(), r()]);
        let mut clock = FakeClock::new();
        let out = lookup(&addrs(2), &t, &mut clock, Duration::from_secs(60), &mut |_| {});
        assert!(out.answers.is_empty());
        assert_eq!(out.failed.len(), 2);
        assert!(out.reasons[0].contains("429"), "{:?}", out.reasons);
        assert_eq!(out.requests, 4);
    }

    #[test]
    fn transport_failure_stops_the_run() {
        let t = Scripted::new(vec![Err("cannot connect (connection refused)".into())]);
        let mut clock = FakeClock::new();
        let out = lookup(&addrs(150), &t, &mut clock, Duration::from_secs(60), &mut |_| {});
        assert!(out.answers.is_empty());
        assert_eq!(out.failed.len(), 150);
        assert_eq!(out.requests, 1);
        assert!(out.reasons[0].contains("refused"));
    }

    #[test]
    fn malformed_answers_are_refused_whole() {
        let b = addrs;
        assert!(parse_batch(&b(1), "not json").unwrap_err().contains("malformed answer"));
        assert!(parse_batch(&b(1), r#"{"status":"success"}"#).is_err());
        assert!(parse_batch(&b(2), r#"[{"status":"success","query":"8.8.0.0"}]"#)
            .unwrap_err()
            .contains("1 results for 2"));
        assert!(parse_batch(&b(1), r#"[{"status":"success","query":"9.9.9.9"}]"#)
            .unwrap_err()
            .contains("not asked"));
        assert!(parse_batch(&b(1), r#"[{"status":"weird","query":"8.8.0.0"}]"#).is_err());
        assert!(parse_batch(&b(1), r#"[{"status":"success","query":"8.8.0.0","lat":"north"}]"#).is_err());
        let ok = parse_batch(
            &b(1),
            r#"[{"status":"fail","message":"reserved range","query":"8.8.0.0"}]"#,
        )
        .unwrap();
        assert_eq!(ok[0].message.as_deref(), Some("reserved range"));

        let t = Scripted::new(vec![
            Ok(reply(200, Some("14"), Some("60"), "GOOD")),
            Ok(reply(200, None, None, "[{")),
        ]);
        let out = lookup(
            &addrs(150),
            &t,
            &mut FakeClock::new(),
            Duration::from_secs(60),
            &mut |_| {},
        );
        assert_eq!((out.answers.len(), out.failed.len()), (100, 50));
    }

    #[test]
    fn invalid_query_is_a_failure_not_an_answer() {
        let body = r#"[{"status":"fail","message":"invalid query","query":"8.8.0.0"},{"status":"fail","message":"reserved range","query":"8.8.0.1"}]"#;
        let t = Scripted::new(vec![Ok(reply(200, Some("14"), Some("60"), body))]);
        let out = lookup(
            &addrs(2),
            &t,
            &mut FakeClock::new(),
            Duration::from_secs(60),
            &mut |_| {},
        );
        assert_eq!(out.failed, ["8.8.0.0"]);
        assert_eq!(out.answers.len(), 1);
        assert_eq!(out.answers[0].query, "8.8.0.1");
    }

    /// A self-signed certificate for 127.0.0.1 (PEM certificate, PEM key) from the openssl
    /// command; `None` (and the test ignored, outside CI) without it.
    fn loopback_certificate(dir: &std::path::Path) -> Option<(Vec<u8>, Vec<u8>)> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args([
                "-days",
                "1",
                "-subj",
                "/CN=netlens-test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .output();
        match made {
            Ok(out) if out.status.success() => Some((std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())),
            other => {
                if cfg!(ci) {
                    panic!("prerequisite missing in CI: openssl ({other:?})");
                }
                eprintln!("IGNORED (prerequisite missing): openssl ({other:?})");
                None
            }
        }
    }

    /// A TLS server on 127.0.0.1 answering `connections` connections: each request's first line
    /// and body go to the returned channel, and the answer is a good reply for `queries`.
    fn loopback_tls_server(
        cert: &[u8],
        key: &[u8],
        queries: &[String],
        connections: usize,
    ) -> (u16, std::sync::mpsc::Receiver<String>) {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use std::io::{BufRead, Write};
        use tokio_rustls::rustls;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = good(queries, "44", "60").body;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let Ok((socket, _)) = listener.accept() else { return };
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(connection, socket));
                let mut first = String::new();
                if tls.read_line(&mut first).is_err() {
                    let _ = sender.send("handshake failed".to_string());
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    tls.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                std::io::Read::read_exact(&mut tls, &mut body).unwrap();
                let _ = sender.send(format!("{}{}", first.trim(), String::from_utf8_lossy(&body)));
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Rl: 44\r\nX-Ttl: 60\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let stream = tls.get_mut();
                stream.write_all(answer.as_bytes()).unwrap();
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        (port, receiver)
    }

    /// Issue 22: https:// endpoints work (rustls with ring). A loopback TLS server whose
    /// certificate the client is given answers a batch; the same server is refused by a client
    /// that trusts only the system's authorities, so the certificate is checked.
    #[test]
    fn https_endpoints_are_reached_over_tls_and_their_certificate_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let Some((cert, key)) = loopback_certificate(dir.path()) else {
            return;
        };
        let queries = addrs(2);
        let (port, requests) = loopback_tls_server(&cert, &key, &queries, 2);
        let url = format!("https://127.0.0.1:{port}/batch?key=SECRET");
        let trusting = HttpTransport::trusting(&url, Duration::from_secs(10), Some(&cert)).unwrap();
        let reply = trusting.post(&serde_json::to_string(&queries).unwrap()).unwrap();
        assert_eq!((reply.status, reply.x_rl.as_deref()), (200, Some("44")));
        assert_eq!(parse_batch(&queries, &reply.body).unwrap().len(), 2);
        let request = requests.recv().unwrap();
        assert!(request.starts_with("POST /batch?key=SECRET&fields="), "{request}");
        assert!(
            request.ends_with(&serde_json::to_string(&queries).unwrap()),
            "{request}"
        );
        let system_only = HttpTransport::new(&url, Duration::from_secs(10)).unwrap();
        let refused = system_only.post("[]").unwrap_err();
        assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    }

    /// Issue 22 (fuzzing): damaged replies, headers and statuses from the provider, which come
    /// over plain HTTP. None panics or waits past `max_wait`, every address ends answered or
    /// failed, and no answer is for an address that was not asked.
    #[test]
    fn damaged_replies_and_headers_never_panic() {
        let queries = addrs(3);
        let body = good(&queries, "14", "60").body;
        let mut rng = crate::mutate::Rng(7);
        for (_, case, damaged) in crate::mutate::cases(&[body.as_bytes(), b"44", b"60"], 300) {
            let text = String::from_utf8_lossy(&damaged).into_owned();
            let header = |rng: &mut crate::mutate::Rng| match rng.below(3) {
                0 => None,
                1 => Some(text.clone()),
                _ => Some(["0", "18446744073709551615", "-1", " 5 ", "1e9"][rng.below(5)].to_string()),
            };
            let first = HttpReply {
                status: [200, 200, 429, 500, 301, 0][rng.below(6)],
                x_rl: header(&mut rng),
                x_ttl: header(&mut rng),
                body: text.clone(),
            };
            let t = Scripted::new(vec![Ok(first)]);
            let mut clock = FakeClock::new();
            let max_wait = Duration::from_secs(120);
            let out = lookup(&queries, &t, &mut clock, max_wait, &mut |_| {});
            assert_eq!(
                out.answers.len() + out.failed.len(),
                queries.len(),
                "case {case}: {text:?}"
            );
            assert!(out.answers.iter().all(|a| queries.contains(&a.query)), "case {case}");
            assert!(
                clock.slept.iter().all(|d| *d <= max_wait + Duration::from_secs(2)),
                "case {case}: {:?}",
                clock.slept
            );
            let _ = parse_batch(&queries, &text);
            let _ = plan(&observe(Some(&text), Some(&text), clock.now), clock.now, max_wait);
            let _ = plan(&after_429(Some(&text), clock.now), clock.now, max_wait);
        }
    }
}
