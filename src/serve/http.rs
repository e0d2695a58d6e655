//! The dashboard: `serve --http 127.0.0.1:8787` serves the pages in `assets/dashboard/` (built
//! into the binary) and a small JSON API over the same database the server records into
//! (docs/dashboard.md).
//!
//! Who may look: whoever has the server's token (the one TCP Flight SQL clients use), printed
//! with the URL at start as Jupyter does. `/?token=T` trades it for an `HttpOnly`,
//! `SameSite=Strict` cookie and sends the browser on without the token in its address; every
//! other page and endpoint answers 401 without the cookie (or `Authorization: Bearer`). The
//! dashboard is a remote client in the sense of [`super::access`]: read-only queries, and the
//! analysis commands its buttons run. Every POST must carry the page's CSRF token in
//! `X-Netlens-CSRF`, be JSON, and come from the dashboard's own origin when the browser says
//! where it comes from, so another site cannot make a logged-in browser act. Pages are sent
//! with a strict Content-Security-Policy: scripts and styles from the dashboard only.
//!
//! Live pages refresh on server-sent events (`/api/events`): one event per stored snapshot and
//! per scheduled job, never polling.
//!
//! May use the store, the request layer, output (results as JSON and CSV) and the server's
//! shared state.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDateTime;
use futures::Stream;
use serde::Deserialize;

use super::access::{self, Listen};
use super::{log, Shared};
use crate::dashboard::{self, panel_sql_rolled, parse_time, ASSETS, INDEX};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::output::JsonTable;
use crate::request;
use crate::shared_reads::{self, SharedReads};

/// Rows a panel or the SQL page returns at most.
pub const ROW_LIMIT: usize = dashboard::PANEL_ROWS;
/// Rows a download returns at most.
const EXPORT_LIMIT: usize = 1_000_000;
const COOKIE: &str = "netlens_token";
const CSRF_HEADER: &str = "x-netlens-csrf";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct App {
    shared: Arc<Shared>,
    token: String,
    csrf: String,
    views: serde_json::Value,
    panels: HashMap<(String, String), String>,
    writes: bool,
    /// The dashboard's own origin(s), for the Origin check of POSTs.
    origins: Vec<String>,
    /// Served over TLS: the cookie is then `Secure` too.
    tls: bool,
    /// What several panels of a range read, read once per range.
    shared_reads: SharedReads,
    /// The dashboard's queries, for the warm-up to wait for a quiet moment.
    activity: Arc<Activity>,
}

/// How many dashboard queries run now, and how many have begun.
#[derive(Default)]
struct Activity {
    running: AtomicUsize,
    begun: AtomicU64,
}

/// One dashboard query running: counted in [`Activity`] until dropped.
struct Running(Arc<Activity>);

impl Running {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.running.fetch_add(1, Ordering::Relaxed);
        activity.begun.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

type AppState = Arc<App>;

impl App {
    /// How long the dashboard must have run no query before the warm-up begins.
    const QUIET: Duration = Duration::from_secs(1);

    /// Builds the shared reads of the page's "all" range ([`SharedReads::warm`]) on a connection
    /// of its own once the dashboard has been quiet for [`Self::QUIET`] (a page opened at start
    /// does not wait for this build's share of the CPU), and says in the log how long it took. A
    /// failure only means the first panel over "all" builds them. Not while the server captures:
    /// every commit changes the data version, so a warmed read would be stale within seconds
    /// and only hold memory. Not once the server is stopping: a build begun then would hold
    /// the database past the shutdown's wait for clients.
    fn warm_up(&self) {
        loop {
            let begun = self.activity.begun.load(Ordering::Relaxed);
            std::thread::sleep(Self::QUIET);
            if self.shared.capturing() || crate::interrupt::requested() {
                return;
            }
            if self.activity.running.load(Ordering::Relaxed) == 0
                && self.activity.begun.load(Ordering::Relaxed) == begun
            {
                break;
            }
        }
        let started = Instant::now();
        let (since, until) = dashboard::everything();
        let using = self.shared.using_database();
        let built = self
            .shared
            .connect()
            .and_then(|store| self.shared_reads.warm(store.conn(), since, until));
        drop(using);
        match built {
            Ok(()) => log(&format!(
                "dashboard: the whole history's shared read is built ({:.2} s)",
                started.elapsed().as_secs_f64()
            )),
            Err(e) => log(&format!(
                "dashboard: the whole history's shared read was not built: {e}"
            )),
        }
    }
}

/// Serves the dashboard on `listen` until `stopped` resolves.
pub async fn serve(
    shared: Arc<Shared>,
    listen: &Listen,
    tcp: std::net::TcpListener,
    token: String,
    writes: bool,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (views_spec, views) = dashboard::views()?;
    let panels = views_spec
        .iter()
        .flat_map(|v| v.panels.iter().map(|p| ((v.id.clone(), p.id.clone()), p.sql.clone())))
        .collect();
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| Error::io(format!("--http {}", listen.addr), e))?;
    let bound = tcp.local_addr().map_err(|e| Error::io("--http", e))?;
    let url = listen.url("http", bound);
    let mut origins = vec![url.clone()];
    if bound.ip().is_loopback() {
        origins.push(url.replace(&bound.ip().to_string(), "localhost"));
    }
    let app = Arc::new(App {
        shared: Arc::clone(&shared),
        csrf: access::new_token(),
        token: token.clone(),
        views,
        panels,
        writes,
        origins,
        tls: listen.tls.is_some(),
        shared_reads: SharedReads::new(),
        activity: Arc::default(),
    });
    shared.update(|s| s.http = Some(url.clone()));
    log(&format!("dashboard on {url}/?token={token}"));
    // The whole history's shared read, built in the background at the first quiet moment: a
    // visitor over "all" who comes after it is done finds it built, and one who comes while it
    // is built waits for this build (the range's lock) rather than starting another.
    let warm = Arc::clone(&app);
    tokio::task::spawn_blocking(move || warm.warm_up());
    let router = router(app);
    match listen.identity()? {
        None => axum::serve(tcp, router)
            .with_graceful_shutdown(stopped)
            .await
            .map_err(|e| Error::io(format!("--http {bound}"), e)),
        Some((cert, key)) => {
            let acceptor = tls_acceptor(&cert, &key).map_err(|reason| Error::Server {
                endpoint: url.clone(),
                reason,
            })?;
            axum::serve(TlsListener { tcp, acceptor }, router)
                .with_graceful_shutdown(stopped)
                .await
                .map_err(|e| Error::io(format!("--http {bound}"), e))
        }
    }
}

fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        // Browsers ask for it on any page, the 401 page too; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/views", get(api_views))
        .route("/api/range", get(api_range))
        .route("/api/status", get(api_status))
        .route("/api/panel", get(api_panel))
        .route("/api/events", get(api_events))
        .route("/api/sql", post(api_sql))
        .route("/api/export", post(api_export))
        .route("/api/request", post(api_request))
        .fallback(not_found)
        .with_state(app)
}

/// An answer with the headers every response carries.
fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

fn unauthorized() -> Response {
    respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "401: this netlens dashboard needs its token.\nOpen the address `netlens serve` printed \
         (http://HOST:PORT/?token=...); the token is also in the file DATABASE.token on the server's host.\n",
    )
}

impl App {
    /// True when the request carries the token, in the cookie or as a bearer.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(access::bearer);
        if bearer.is_some_and(|t| access::token_matches(t, &self.token)) {
            return true;
        }
        cookie(headers, COOKIE).is_some_and(|t| access::token_matches(&t, &self.token))
    }

    /// A POST must be JSON, carry the page's CSRF token, and come from this dashboard's origin
    /// when the browser names one; otherwise the answer that refuses it.
    fn refuse_cross_site(&self, headers: &HeaderMap) -> Option<Response> {
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !access::token_matches(csrf, &self.csrf) {
            return Some(error(
                StatusCode::FORBIDDEN,
                "missing or wrong X-Netlens-CSRF header: reload the dashboard page",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            if !self.origins.iter().any(|o| o == origin) {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    &format!("requests from {origin} are not accepted"),
                ));
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        (!json).then(|| {
            error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send JSON (Content-Type: application/json)",
            )
        })
    }
}

impl App {
    /// A POST's JSON body, once the caller has the token and the request is the page's own
    /// (see `refuse_cross_site`); otherwise the answer that refuses it.
    fn accept_post<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        expected: &str,
    ) -> std::result::Result<T, Box<Response>> {
        if !self.authorized(headers) {
            return Err(Box::new(unauthorized()));
        }
        if let Some(refused) = self.refuse_cross_site(headers) {
            return Err(Box::new(refused));
        }
        serde_json::from_slice(body)
            .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("expected {expected}: {e}"))))
    }
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn index(State(app): State<AppState>, Query(q): Query<TokenQuery>, headers: HeaderMap) -> Response {
    if let Some(token) = q.token {
        if !access::token_matches(&token, &app.token) {
            return unauthorized();
        }
        // Trade the token for a cookie, and leave it out of the address bar and history.
        let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
        let secure = if app.tls { "; Secure" } else { "" };
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
        if let (Ok(cookie), Ok(home)) = (HeaderValue::from_str(&cookie), HeaderValue::from_str("/")) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response.headers_mut().insert(header::LOCATION, home);
        }
        return response;
    }
    if !app.authorized(&headers) {
        return unauthorized();
    }
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        INDEX.replace("{{CSRF}}", &app.csrf),
    )
}

async fn asset(
    State(app): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => respond(StatusCode::OK, content_type, *body),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

async fn api_views(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    json_response(StatusCode::OK, &app.views)
}

async fn api_status(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    json_response(StatusCode::OK, &app.shared.status())
}

async fn api_range(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    let live = app.shared.capturing();
    let result = query_table(
        &app,
        "SELECT min(ts) AS first, max(ts) AS last FROM snapshots".to_string(),
        1,
    )
    .await;
    match result {
        Ok(table) => {
            let row = table.rows.first().cloned().unwrap_or_default();
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "first": row.first().cloned().unwrap_or(serde_json::Value::Null),
                    "last": row.get(1).cloned().unwrap_or(serde_json::Value::Null),
                    "live": live,
                }),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

#[derive(Deserialize)]
struct PanelQuery {
    view: String,
    panel: String,
    since: Option<String>,
    until: Option<String>,
}

async fn api_panel(State(app): State<AppState>, Query(q): Query<PanelQuery>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    let Some(sql) = app.panels.get(&(q.view.clone(), q.panel.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no panel '{}' in view '{}'", q.panel, q.view),
        );
    };
    let bound = |text: Option<&String>, default: NaiveDateTime| text.map_or(Ok(default), |t| parse_time(t));
    let (all_since, all_until) = dashboard::everything();
    let (since, until) = match (bound(q.since.as_ref(), all_since), bound(q.until.as_ref(), all_until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let panel = |shared: bool| {
        let template = sql.clone();
        let reads = Arc::clone(&app);
        query_with(&app, ROW_LIMIT, move |conn| {
            // What other panels of the range read too is read once (the same rows); should that
            // fail, the panel reads its own.
            let prepared = if shared {
                reads.shared_reads.prepare(conn, &template, since, until).ok()
            } else {
                None
            };
            // A range of days reads what is rolled up of it from the rollups (the page says so).
            let rolled = if dashboard::reads_rollups(&template) {
                dashboard::rolled(conn, since, until)?
            } else {
                None
            };
            let in_transaction: InTransaction = {
                let rolled = rolled.clone();
                Box::new(move |conn| {
                    // The shared tables only when this transaction sees the data they hold.
                    let template = match &prepared {
                        Some(p) => p.sql(conn)?,
                        None => &template,
                    };
                    Ok(panel_sql_rolled(template, since, until, rolled.as_ref()))
                })
            };
            Ok((in_transaction, rolled))
        })
    };
    let mut result = panel(true).await;
    // A shared read dropped between this panel's choosing it and its query (the data changed
    // and another panel built the read again): the panel reads its own.
    if result.as_ref().is_err_and(|e| e.contains(shared_reads::TABLE_PREFIX)) {
        result = panel(false).await;
    }
    let result = result.map(|mut timed| {
        let t = &mut timed.table;
        timed.sampled = dashboard::take_sampled(&mut t.columns, &mut t.types, &mut t.rows);
        timed
    });
    table_response(result)
}

fn table_response(result: std::result::Result<TimedTable, String>) -> Response {
    match result {
        Ok(table) => json_response(StatusCode::OK, &table),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// A result and how long it took.
#[derive(serde::Serialize)]
struct TimedTable {
    #[serde(flatten)]
    table: JsonTable,
    elapsed_ms: f64,
    /// The part of the range drawn from the hourly rollups, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled: Option<dashboard::Rolled>,
    /// The plot shows a sample of the panel's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled: Option<dashboard::Sampled>,
}

impl std::ops::Deref for TimedTable {
    type Target = JsonTable;
    fn deref(&self) -> &JsonTable {
        &self.table
    }
}

/// Runs one query in a READ ONLY transaction on a connection of its own.
async fn query_table(app: &App, sql: String, limit: usize) -> std::result::Result<TimedTable, String> {
    let write: InTransaction = Box::new(move |_: &duckdb::Connection| Ok(sql));
    query_with(app, limit, move |_| Ok((write, None))).await
}

/// Writes a query inside the transaction that runs it (what it reads to do so is read as of the
/// same data as the query).
type InTransaction = Box<dyn FnOnce(&duckdb::Connection) -> Result<String> + Send>;

/// Runs the query `make_sql` gives, in a READ ONLY transaction on a connection of its own.
/// `make_sql` runs on that connection before the transaction begins: it may read what it needs
/// to write the query, and build shared reads, which a transaction begun before them would not
/// see; the query itself is written by what it returns, inside the transaction.
async fn query_with<F>(app: &App, limit: usize, make_sql: F) -> std::result::Result<TimedTable, String>
where
    F: FnOnce(&duckdb::Connection) -> Result<(InTransaction, Option<dashboard::Rolled>)> + Send + 'static,
{
    let shared = Arc::clone(&app.shared);
    let running = Running::new(&app.activity);
    // The browser going away (this future dropped) stops the query.
    let call = interrupt::Call::new();
    let _cancel = call.cancel_on_drop();
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let started = Instant::now();
        let _using = shared.using_database();
        let store = shared.connect().map_err(|e| e.to_string())?;
        let conn = store.conn();
        let _call = call.enter();
        let _interruptible = interrupt::Running::new(conn.interrupt_handle());
        let table = (|| -> Result<(JsonTable, Option<dashboard::Rolled>)> {
            let (write_sql, rolled) = make_sql(conn)?;
            conn.execute_batch("BEGIN TRANSACTION READ ONLY").map_err(Error::sql)?;
            let sql = write_sql(conn)?;
            let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
            let arrow = stmt.query_arrow([]).map_err(Error::sql)?;
            let schema = arrow.get_schema();
            Ok((JsonTable::collect(&schema, arrow.map(Ok), limit)?, rolled))
        })();
        let _ = conn.execute_batch("ROLLBACK");
        shared.queries_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (table, rolled) = table.map_err(|e| e.to_string())?;
        Ok(TimedTable {
            table,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            rolled,
            sampled: None,
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

#[derive(Deserialize)]
struct SqlBody {
    sql: String,
}

async fn api_sql(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let body: SqlBody = match app.accept_post(&headers, &body, "{\"sql\": \"...\"}") {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    // SQL that does not parse is a bad request, not a refusal.
    if let Err(e) = crate::store::statements::count(&body.sql) {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    if let Err(e) = access::check_remote_query(&body.sql) {
        let update_allowed = app.writes && access::check_remote_update(&body.sql).is_ok();
        if !update_allowed {
            return error(StatusCode::FORBIDDEN, &e);
        }
        return run_update(&app, body.sql).await;
    }
    table_response(query_table(&app, body.sql, ROW_LIMIT).await)
}

/// An update statement, for a server started with `--remote-writes`.
async fn run_update(app: &App, sql: String) -> Response {
    let shared = Arc::clone(&app.shared);
    let call = interrupt::Call::new();
    let _cancel = call.cancel_on_drop();
    let result = tokio::task::spawn_blocking(move || -> std::result::Result<usize, String> {
        let _using = shared.using_database();
        let store = shared.connect().map_err(|e| e.to_string())?;
        let _call = call.enter();
        let _interruptible = interrupt::Running::new(store.conn().interrupt_handle());
        store.conn().execute(&sql, []).map_err(|e| Error::sql(e).to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match result {
        Ok(rows) => json_response(
            StatusCode::OK,
            &JsonTable {
                columns: vec!["rows_changed".into()],
                types: vec!["BIGINT".into()],
                rows: vec![vec![serde_json::json!(rows)]],
                truncated: false,
            },
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

#[derive(Deserialize)]
struct ExportBody {
    sql: String,
    format: String,
}

async fn api_export(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let expected = "{\"sql\": \"...\", \"format\": \"csv\"|\"parquet\"}";
    let body: ExportBody = match app.accept_post(&headers, &body, expected) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    if let Err(e) = access::check_remote_query(&body.sql) {
        return error(StatusCode::FORBIDDEN, &e);
    }
    let shared = Arc::clone(&app.shared);
    let format = body.format.clone();
    let call = interrupt::Call::new();
    let _cancel = call.cancel_on_drop();
    let result = tokio::task::spawn_blocking(move || {
        let _call = call.enter();
        export(&shared, &body.sql, &body.format)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match result {
        Ok(bytes) => {
            let (content_type, name) = if format == "parquet" {
                ("application/vnd.apache.parquet", "netlens.parquet")
            } else {
                ("text/csv; charset=utf-8", "netlens.csv")
            };
            let mut response = respond(StatusCode::OK, content_type, bytes);
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// The rows of a query as a CSV or Parquet file's bytes. CSV is written here from the record
/// batches; Parquet by DuckDB into the server's spill directory (the one place its file
/// functions may always write), read back and removed.
fn export(shared: &Shared, sql: &str, format: &str) -> std::result::Result<Vec<u8>, String> {
    let _using = shared.using_database();
    let store = shared.connect().map_err(|e| e.to_string())?;
    let conn = store.conn();
    let _interruptible = interrupt::Running::new(conn.interrupt_handle());
    // The statement alone must be whole: wrapped below, it cannot reach past its parentheses.
    conn.prepare(sql).map_err(|e| Error::sql(e).to_string())?;
    match format {
        "csv" => {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM (\n{sql}\n) LIMIT {EXPORT_LIMIT}"))
                .map_err(|e| Error::sql(e).to_string())?;
            let arrow = stmt.query_arrow([]).map_err(|e| Error::sql(e).to_string())?;
            let schema = arrow.get_schema();
            let mut out = Vec::new();
            crate::output::render(
                &schema,
                arrow.map(Ok),
                crate::output::RenderOptions {
                    mode: crate::output::OutputMode::Csv,
                    headers: true,
                    maxrows: 0,
                    width: None,
                },
                &mut out,
            )
            .map_err(|e| e.to_string())?;
            Ok(out)
        }
        "parquet" => {
            let mut dir = shared.database.as_os_str().to_owned();
            dir.push(".tmp");
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let file = dir.join(format!("export-{}.parquet", access::new_token()));
            let target = file.display().to_string().replace('\'', "''");
            let copied = conn.execute_batch(&format!(
                "COPY (SELECT * FROM (\n{sql}\n) LIMIT {EXPORT_LIMIT}) TO '{target}' (FORMAT parquet)"
            ));
            let bytes = copied
                .map_err(|e| Error::sql(e).to_string())
                .and_then(|_| std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display())));
            let _ = std::fs::remove_file(&file);
            bytes
        }
        other => Err(format!("format '{other}': the dashboard downloads csv or parquet")),
    }
}

async fn api_request(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut request: request::Request = match app.accept_post(&headers, &body, "a netlens request") {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    if let Err(e) = access::check_remote_command(&request, app.writes) {
        return error(StatusCode::FORBIDDEN, &e);
    }
    if let request::Request::Feedback(mark) = &mut request {
        mark.analyst.get_or_insert_with(|| "dashboard".to_string());
    }
    let shared = Arc::clone(&app.shared);
    let name = request.name();
    // The browser going away is the command's Ctrl-C.
    let call = interrupt::Call::new();
    let _cancel = call.cancel_on_drop();
    let result = tokio::task::spawn_blocking(move || -> Result<request::Reply> {
        let _call = call.enter();
        let _one_at_a_time =
            (!request.is_read_only()).then(|| shared.commands.lock().unwrap_or_else(|p| p.into_inner()));
        let _using = shared.using_database();
        // Within the lock: the connection closes before it is let go.
        let store = shared.connect()?;
        let mut gaps = request::CollectGaps::default();
        let mut notes = Vec::new();
        let mut ctx = request::Context {
            observer: &mut gaps,
            import_progress: crate::ingest::Progress::collecting(false),
            watch: None,
            ahead: None,
            clock: &chrono::Utc::now,
            notice: &mut |note| notes.push(note.to_string()),
        };
        let mut reply = request::execute(&store, request, &mut ctx)?;
        reply.items.extend(notes.into_iter().map(request::Item::Warning));
        shared
            .requests_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(reply)
    })
    .await;
    match result {
        Ok(Ok(reply)) => json_response(StatusCode::OK, &reply),
        Ok(Err(e)) => {
            log(&format!("dashboard: {name} failed: {e}"));
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn api_events(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return unauthorized();
    }
    let events = app.shared.events.subscribe();
    let stream = event_stream(events);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Server events as SSE; a page that fell behind gets a `lagged` event and refreshes.
fn event_stream(
    events: tokio::sync::broadcast::Receiver<super::ServerEvent>,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    futures::stream::unfold(events, |mut events| async move {
        let event = match events.recv().await {
            Ok(e) => Event::default().event(e.kind).data(e.data.to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), events))
    })
}

/// TLS for the dashboard: rustls with ring, the certificate chain and key from PEM.
fn tls_acceptor(cert: &[u8], key: &[u8]) -> std::result::Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("--tls-cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("--tls-key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener whose connections are TLS; a handshake that fails or takes over 10 s is
/// dropped without holding up the next.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    log(&format!("dashboard: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => log(&format!("dashboard: TLS handshake with {addr} failed: {e}")),
                Err(_) => log(&format!("dashboard: TLS handshake with {addr} timed out")),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; netlens_token=abc; b=2"));
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
