//! The dashboard (`serve --http`): its API through a real HTTP client, and its pages in
//! headless Chromium, on a demo database the server is also capturing into.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header;

use crate::serve::{eventually, falls_idle, status_json, token_file, Server};
use crate::Scratch;

struct Dashboard {
    server: Server,
    url: String,
    token: String,
}

/// A demo day with every detector run, and the stages in `train`.
fn demo_day(s: &Scratch, train: &[&str]) {
    s.cmd()
        .args([
            "demo",
            "--quiet",
            "--hours",
            "3",
            "--interval",
            "1m",
            "--traffic-rows",
            "200",
        ])
        .assert()
        .success();
    s.cmd().args(["detect", "all", "--quiet"]).assert().success();
    for stage in train {
        s.cmd().args(["train", stage]).assert().success();
    }
}

/// The server on `s` with `args` and the dashboard on a free loopback port; its URL and token.
fn serve_dashboard(s: &Scratch, args: &[&str]) -> Dashboard {
    let args: Vec<&str> = args.iter().copied().chain(["--http", "127.0.0.1:0"]).collect();
    let server = Server::start(s, &args);
    let url = status_json(s)["http"]
        .as_str()
        .expect("status names the dashboard")
        .to_string();
    let token = std::fs::read_to_string(token_file(s))
        .expect("token")
        .trim()
        .to_string();
    assert!(
        server.log().contains(&format!("{url}/?token={token}")),
        "the log prints the URL with its token"
    );
    Dashboard { server, url, token }
}

/// A demo day (with a K-Means model to retrain) served with live capture and the dashboard.
fn start(s: &Scratch) -> Dashboard {
    demo_day(s, &["kmeans"]);
    serve_dashboard(s, &["--interval", "1s"])
}

fn client() -> Client {
    // reqwest is built without a crypto provider of its own (see Cargo.toml): as netlens's geo
    // client does, install ring first, or building a client panics.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The page's CSRF token, read from the page as a browser would.
fn csrf(d: &Dashboard, c: &Client) -> String {
    let page = c
        .get(format!("{}/", d.url))
        .bearer_auth(&d.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let marker = "name=\"netlens-csrf\" content=\"";
    let start = page.find(marker).expect("the page carries its CSRF token") + marker.len();
    page[start..start + 64].to_string()
}

#[test]
fn without_the_token_everything_is_401_and_with_it_a_cookie() {
    let s = Scratch::new();
    let d = start(&s);
    let c = client();
    for path in [
        "/",
        "/assets/app.js",
        "/api/views",
        "/api/range",
        "/api/status",
        "/api/events",
        "/api/panel?view=overview&panel=x",
    ] {
        let r = c.get(format!("{}{path}", d.url)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let wrong = c.get(format!("{}/?token={}", d.url, "0".repeat(64))).send().unwrap();
    assert_eq!(wrong.status(), 401);
    let r = c.get(format!("{}/?token={}", d.url, d.token)).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/", "the token leaves the address bar");
    let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = c
        .get(format!("{}/", d.url))
        .header(header::COOKIE, &pair)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!page.text().unwrap().contains("{{CSRF}}"));
    drop(d.server);
}

#[test]
fn every_panel_answers_and_posts_need_the_page_and_its_origin() {
    let s = Scratch::new();
    let d = start(&s);
    let c = client();
    let views: serde_json::Value = c
        .get(format!("{}/api/views", d.url))
        .bearer_auth(&d.token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut answered = 0;
    let mut with_rows = 0;
    for view in views.as_array().unwrap() {
        for panel in view["panels"].as_array().unwrap() {
            let (v, p) = (view["id"].as_str().unwrap(), panel["id"].as_str().unwrap());
            let r = c
                .get(format!(
                    "{}/api/panel?view={v}&panel={p}&since=2000-01-01T00:00:00&until=2100-01-01T00:00:00",
                    d.url
                ))
                .bearer_auth(&d.token)
                .send()
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().unwrap();
            assert_eq!(status, 200, "{v}/{p}: {body}");
            answered += 1;
            if !body["rows"].as_array().unwrap().is_empty() {
                with_rows += 1;
            }
        }
    }
    assert!(answered >= 30, "{answered} panels");
    assert!(
        with_rows * 2 > answered,
        "only {with_rows} of {answered} panels have rows on a demo day"
    );
    let bad = c
        .get(format!("{}/api/panel?view=overview&panel=kpis&since=yesterday", d.url))
        .bearer_auth(&d.token)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);

    let token = csrf(&d, &c);
    let post = |path: &str, body: serde_json::Value, csrf: Option<&str>, origin: Option<&str>| {
        let mut r = c
            .post(format!("{}{path}", d.url))
            .bearer_auth(&d.token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = csrf {
            r = r.header("X-Netlens-CSRF", t);
        }
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.send().unwrap()
    };
    let query = serde_json::json!({"sql": "SELECT count(*) AS n FROM snapshots"});
    assert_eq!(
        post("/api/sql", query.clone(), None, None).status(),
        403,
        "no CSRF header"
    );
    assert_eq!(
        post("/api/sql", query.clone(), Some(&token), Some("http://evil.example")).status(),
        403,
        "another origin"
    );
    let ok = post("/api/sql", query.clone(), Some(&token), Some(&d.url));
    assert_eq!(ok.status(), 200);
    let rows: serde_json::Value = ok.json().unwrap();
    assert!(rows["rows"][0][0].as_i64().unwrap() > 0);
    for refused in [
        "COPY (SELECT 1) TO '/tmp/netlens-dashboard.csv'",
        "DELETE FROM snapshots",
        "SET memory_limit = '1MB'",
        // duckdb-rs runs every statement of a text but the last: this left the read-only
        // transaction and deleted, before texts of several statements were refused.
        "SELECT 1; COMMIT; DELETE FROM snapshots; SELECT 1",
    ] {
        let r = post("/api/sql", serde_json::json!({"sql": refused}), Some(&token), None);
        assert_eq!(r.status(), 403, "{refused}");
    }
    assert_ne!(s.query("SELECT count(*) FROM snapshots"), "0", "nothing was deleted");
    let files = post(
        "/api/sql",
        serde_json::json!({"sql": "SELECT * FROM read_csv('/etc/passwd')"}),
        Some(&token),
        None,
    );
    assert_eq!(files.status(), 400, "DuckDB's file functions are off");
    let malformed = post("/api/sql", serde_json::json!({"sql": "SELEC 1"}), Some(&token), None);
    assert_eq!(
        malformed.status(),
        400,
        "a syntax error is a bad request, not a refusal"
    );
    assert!(malformed.text().unwrap().contains("syntax error"));

    let csv = post(
        "/api/export",
        serde_json::json!({"sql": "SELECT snapshot_id, host FROM snapshots ORDER BY 1 LIMIT 3", "format": "csv"}),
        Some(&token),
        None,
    );
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("attachment"));
    assert_eq!(csv.text().unwrap().lines().count(), 4);
    let parquet = post(
        "/api/export",
        serde_json::json!({"sql": "SELECT * FROM snapshots", "format": "parquet"}),
        Some(&token),
        None,
    );
    assert_eq!(parquet.status(), 200);
    assert!(parquet.bytes().unwrap().starts_with(b"PAR1"));

    // The page's buttons: run every detector, retrain the models, show the insights.
    let runs_before = s.query("SELECT count(*) FROM detector_runs");
    let detect = netlens::request::Request::Detect(netlens::detect::DetectRequest::defaults(
        netlens::detect::DetectorName::All,
        Some(Duration::from_secs(86_400)),
    ));
    for button in [
        serde_json::to_value(&detect).unwrap(),
        serde_json::json!({"command": "retrain", "target": null}),
        serde_json::json!({"command": "insights"}),
    ] {
        let r = post("/api/request", button.clone(), Some(&token), None);
        assert_eq!(r.status(), 200, "{button}");
    }
    assert_ne!(
        s.query("SELECT count(*) FROM detector_runs"),
        runs_before,
        "the detectors ran and stored their runs"
    );
    let retain = serde_json::json!({"command": "retain", "raw": {"secs": 3600, "nanos": 0}, "rollups": null,
                                    "bucket": {"secs": 3600, "nanos": 0}, "batch": 300});
    assert_eq!(
        post("/api/request", retain, Some(&token), None).status(),
        403,
        "retain needs --remote-writes"
    );
    drop(d.server);
}

/// The server builds the whole history's shared read once the dashboard is quiet (issue 18: a
/// visitor over "all" finds it built), says so in its log, and panels over "all", asked with the
/// page's bounds or with none, then give what the same SQL gives on the file.
#[test]
fn the_whole_history_is_warmed_once_the_dashboard_is_quiet() {
    let s = Scratch::new();
    demo_day(&s, &[]);
    let d = serve_dashboard(&s, &["--no-capture"]);
    eventually(Duration::from_secs(60), "the warm-up's log line", || {
        d.server.log().contains("the whole history's shared read is built")
    });
    let c = client();
    let panel = |bounds: &str| -> serde_json::Value {
        let r = c
            .get(format!("{}/api/panel?view=statistics&panel=protocols{bounds}", d.url))
            .bearer_auth(&d.token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut body: serde_json::Value = r.json().unwrap();
        body.as_object_mut().unwrap().remove("elapsed_ms");
        body
    };
    let page = panel("&since=1970-01-01T00:00:00&until=9999-12-31T23:59:59");
    assert_eq!(page, panel(""), "no bounds are the page's \"all\"");
    let sql = serde_json::json!({"sql": "SELECT source, proto, count(*) AS connections FROM connection_events \
        GROUP BY ALL ORDER BY source, connections DESC"});
    let token = csrf(&d, &c);
    let direct: serde_json::Value = c
        .post(format!("{}/api/sql", d.url))
        .bearer_auth(&d.token)
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Netlens-CSRF", token)
        .body(sql.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let counts = |t: &serde_json::Value| -> Vec<serde_json::Value> {
        t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::json!([r[0], r[1], r[2]]))
            .collect()
    };
    assert!(!counts(&direct).is_empty());
    assert_eq!(counts(&page), counts(&direct));
}

/// Live pages refresh on server-sent events: one per stored snapshot.
#[test]
fn events_announce_each_snapshot() {
    let s = Scratch::new();
    let d = start(&s);
    let mut events = client()
        .get(format!("{}/api/events", d.url))
        .bearer_auth(&d.token)
        .send()
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    eventually(Duration::from_secs(20), "two snapshot events", || {
        use std::io::Read;
        if let Ok(n) = events.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.matches("event: snapshot").count() >= 2
    });
    assert!(seen.contains("\"snapshot_id\""), "{seen}");
    // Regression: the events' times ended in "Z", unlike every other time of the API.
    let data = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("an event's data");
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    let at = event["at"].as_str().expect("its time");
    assert!(
        chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").is_ok(),
        "an event's time as the API's others (UTC without a zone): {at}"
    );
    drop(d.server);
}

/// An open page's event stream never ends by itself: a stopping server used to wait for it (and
/// for any other connection) until the client went away, past a service manager's kill timeout.
#[test]
fn an_open_event_stream_does_not_hold_a_stopping_server() {
    let s = Scratch::new();
    let d = serve_dashboard(&s, &["--interval", "1s"]);
    let mut events = client()
        .get(format!("{}/api/events", d.url))
        .bearer_auth(&d.token)
        .send()
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    eventually(Duration::from_secs(20), "a snapshot event", || {
        use std::io::Read;
        if let Ok(n) = events.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.contains("event: snapshot")
    });
    let started = std::time::Instant::now();
    // Panics if the server is not gone within the limit; the stream stays open meanwhile.
    d.server.stop(Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    drop(events);
}

/// A minimal W3C WebDriver client for chromedriver driving headless Chromium.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    http: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
        eventually(Duration::from_secs(20), "chromedriver answering", || {
            http.get(format!("{base}/status")).send().is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let created: serde_json::Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let value: serde_json::Value = request.send().unwrap().json().unwrap();
        if value["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", value["value"]);
        }
        value["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", serde_json::json!({ "url": url }));
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
    }

    fn size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            serde_json::json!({"width": width, "height": height}),
        );
    }

    fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", serde_json::Value::Null);
        std::fs::write(path, base64_decode(b64.as_str().expect("screenshot"))).unwrap();
    }

    /// Console messages since the last call, as (level, message).
    fn console(&self) -> Vec<(String, String)> {
        self.call(reqwest::Method::POST, "/se/log", serde_json::json!({"type": "browser"}))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().fold(0u32, |acc, x| acc << 6 | x) << (6 * (4 - v.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..v.len() - 1]);
    }
    out
}

/// JavaScript: the view's state once every card has finished (null while any is loading).
const VIEW_STATE: &str = r#"
const cards = [...document.querySelectorAll('#grid section.card')];
if (!cards.length) return null;
const out = {cards: cards.length, charts: 0, drawn: 0, kpis: 0, tables: 0, empty: 0, errors: []};
for (const c of cards) {
  const body = c.querySelector('.card-body');
  if (!body || body.querySelector('.loading') || /Loading/.test(body.textContent) && !body.querySelector('.chart,.kpis,.table-wrap')) return null;
  const err = body.querySelector('.error-box');
  if (err) out.errors.push(c.dataset.panel + ': ' + err.textContent);
  for (const chart of body.querySelectorAll('.chart')) {
    out.charts++;
    const inst = window.echarts && echarts.getInstanceByDom(chart);
    const series = inst ? (inst.getOption().series || []) : [];
    if (series.some(s => (s.data || []).length > 0)) out.drawn++;
  }
  if (body.querySelector('.kpis')) out.kpis++;
  if (body.querySelector('.table-wrap')) out.tables++;
  if (body.querySelector('.empty')) out.empty++;
}
return out;
"#;

/// Every view of a demo day in headless Chromium: no console errors or CSP violations, every
/// card finishes, charts have drawn marks, the overview's numbers equal the same SQL run by
/// netlens (over the whole history and over a custom From/To range), the models view's PCA is
/// coloured by verdict with every anomaly drawn, and a screenshot of each view (and of the
/// overview at phone size) is written under the test's output directory.
#[test]
#[cfg_attr(not(ci), ignore = "needs chromium and chromium-driver (Debian; CI installs them)")]
fn every_view_draws_in_a_real_browser() {
    let s = Scratch::new();
    demo_day(&s, &["kmeans", "iforest", "pca"]);
    let Dashboard { server, url, token } = serve_dashboard(&s, &["--no-capture"]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-shots");
    std::fs::create_dir_all(&shots).unwrap();

    let browser = Browser::start();
    browser.size(1366, 768);
    browser.goto(&format!("{url}/api/views"));
    assert!(
        browser
            .script("return document.body.textContent")
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "no token, no data"
    );
    browser.goto(&format!("{url}/?token={token}"));
    let views: serde_json::Value = views_of(&url, &token);
    let mut report = Vec::new();
    for view in views.as_array().unwrap() {
        let id = view["id"].as_str().unwrap();
        browser.goto(&format!("{url}/#/{id}"));
        let mut state = serde_json::Value::Null;
        eventually(Duration::from_secs(60), &format!("view {id} to finish"), || {
            state = browser.script(VIEW_STATE);
            !state.is_null()
        });
        std::thread::sleep(Duration::from_millis(700)); // chart animations settle for the picture
        browser.screenshot(&shots.join(format!("{id}.png")));
        assert_eq!(state["errors"], serde_json::json!([]), "{id}: {state}");
        assert_eq!(
            state["charts"], state["drawn"],
            "{id}: every chart on the page has drawn marks: {state}"
        );
        report.push(format!("{id}: {state}"));
    }
    let drawn: i64 = report.iter().filter(|l| !l.contains("\"drawn\":0")).count() as i64;
    assert!(drawn >= 8, "views with drawn charts: {report:#?}");

    // Feedback from the page: mark the first beacon a false positive, with a note.
    browser.goto(&format!("{url}/#/behaviour"));
    eventually(Duration::from_secs(60), "the behaviour view", || {
        !browser.script(VIEW_STATE).is_null()
    });
    let clicked = browser.script(
        "const b = document.querySelector('section.card[data-panel=\"beacons\"] button.mark-btn[data-label=\"false_positive\"]'); \
         if (!b) return false; b.click(); return true;",
    );
    assert_eq!(clicked, serde_json::json!(true), "the beacons table has Mark buttons");
    eventually(Duration::from_secs(10), "the mark dialog", || {
        browser.script("return !!document.querySelector('dialog.mark-dialog[open]');") == serde_json::json!(true)
    });
    browser.script("document.getElementById('mark-note').value = 'the backup agent'; return 1;");
    browser.screenshot(&shots.join("feedback-dialog.png"));
    browser.script("document.querySelector('dialog.mark-dialog button.primary').click(); return 1;");
    let stored =
        || s.query("SELECT label || '|' || note || '|' || analyst FROM latest_feedback WHERE subject = 'beacons'");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stored() != "false_positive|the backup agent|dashboard" {
        assert!(
            std::time::Instant::now() < deadline,
            "the mark was not stored: {:?}; page: {}; console: {:?}; server log:\n{}",
            stored(),
            browser.script("return document.querySelector('dialog.mark-dialog') ? document.querySelector('dialog.mark-dialog').textContent : document.body.textContent.slice(0, 300);"),
            browser.console(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The overview over all data: its numbers are the SQL's.
    browser.goto(&format!("{url}/#/overview"));
    browser.script("const r = document.getElementById('range-select'); r.value = 'all'; r.dispatchEvent(new Event('change')); return 1;");
    let mut connections = String::new();
    eventually(Duration::from_secs(60), "the overview's connections tile", || {
        let v = browser.script(
            "const t = document.querySelector('.kpi[data-column=\"connections\"] .value'); \
             return document.getElementById('range-select').value === 'all' && t ? t.textContent : null;",
        );
        connections = v.as_str().unwrap_or("").replace([',', ' ', '\u{202f}', '\u{a0}'], "");
        !connections.is_empty()
    });
    let overview = &views.as_array().unwrap()[0];
    let kpi_sql_template = overview["panels"][0]["sql"].as_str().unwrap();
    // Nothing is rolled up yet: the rolled part is empty (`:rolled_*` the range's start, as the
    // server sets them then).
    let raw_kpis = |since: &str, until: &str| {
        kpi_sql_template
            .replace(":rolled_from", since)
            .replace(":rolled_to", since)
            .replace(":since", since)
            .replace(":until", until)
    };
    let kpi_sql = raw_kpis("TIMESTAMP '1970-01-01'", "TIMESTAMP '2100-01-01'");
    let direct = s.query(&format!("SELECT connections FROM ({kpi_sql})"));
    assert_eq!(connections, direct, "the page shows what the SQL says");

    // A custom range (the picker's From/To, UTC): the overview's numbers are the SQL's over it.
    let (from, to) = {
        let row = s.query(
            "SELECT strftime(min(ts) + INTERVAL 40 MINUTE, '%Y-%m-%dT%H:%M:%S') || ' ' || \
             strftime(min(ts) + INTERVAL 100 MINUTE, '%Y-%m-%dT%H:%M:%S') FROM snapshots",
        );
        let (f, t) = row.split_once(' ').unwrap();
        (f.to_string(), t.to_string())
    };
    browser.script(&format!(
        "const r = document.getElementById('range-select'); r.value = 'custom'; r.dispatchEvent(new Event('change')); \
         document.getElementById('range-from').value = '{from}'; document.getElementById('range-to').value = '{to}'; \
         document.getElementById('range-apply').click(); return 1;"
    ));
    let in_range = s.query(&format!(
        "SELECT connections FROM ({})",
        raw_kpis(&format!("TIMESTAMP '{from}'"), &format!("TIMESTAMP '{to}'"))
    ));
    // The tile shows the whole history's number until the custom range's answer replaces it.
    let mut custom = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while custom != in_range {
        assert!(
            std::time::Instant::now() < deadline,
            "the custom range shows {custom:?}, the SQL over it says {in_range}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let v = browser.script(&format!(
            "const t = document.querySelector('.kpi[data-column=\"connections\"] .value'); \
             const s = JSON.parse(sessionStorage.getItem('netlens.range') || 'null'); \
             return s && s.key === 'custom' && s.custom.since === '{from}' && t ? t.textContent : null;"
        ));
        custom = v.as_str().unwrap_or("").replace([',', ' ', '\u{202f}', '\u{a0}'], "");
    }
    eventually(Duration::from_secs(60), "the overview over the custom range", || {
        !browser.script(VIEW_STATE).is_null()
    });
    std::thread::sleep(Duration::from_millis(700));
    browser.screenshot(&shots.join("overview-custom-range.png"));
    assert_ne!(custom, connections, "the custom range is not the whole history");

    // The models view's PCA coloured by verdict: anomalies and normal rows as two series, every
    // anomaly of the newest iforest run drawn (they come first, under the 4000-point cap).
    browser.goto(&format!("{url}/#/models"));
    eventually(Duration::from_secs(60), "the models view", || {
        !browser.script(VIEW_STATE).is_null()
    });
    let series = browser.script(
        "const c = document.querySelector('section.card[data-panel=\"pca_anomaly\"] .chart'); \
         const i = c && echarts.getInstanceByDom(c); if (!i) return null; \
         const o = {}; for (const s of i.getOption().series) o[s.name] = (s.data || []).length; return o;",
    );
    let anomalies: i64 = s
        .query(
            "SELECT count(*) FROM anomaly_scores a JOIN embedding e ON e.row_id = a.row_id \
             WHERE a.run_id = (SELECT max(run_id) FROM anomaly_scores) AND a.is_anomaly \
             AND e.run_id = (SELECT max(run_id) FROM embedding)",
        )
        .parse()
        .unwrap();
    assert!(anomalies > 0, "the demo's iforest run flags rows");
    assert_eq!(
        series["anomaly"],
        serde_json::json!(anomalies),
        "PCA by verdict: {series}"
    );
    assert!(series["normal"].as_i64().unwrap_or(0) > 0, "PCA by verdict: {series}");
    assert_eq!(
        series.as_object().map(|o| o.len()),
        Some(2),
        "two verdicts, two colours: {series}"
    );
    browser.script(
        "document.querySelector('section.card[data-panel=\"pca_anomaly\"]').scrollIntoView({block: 'center'}); return 1;",
    );
    std::thread::sleep(Duration::from_millis(300));
    browser.screenshot(&shots.join("models-pca-verdict.png"));

    // A range of days draws the traffic panels from the hourly rollups, and the page says so.
    s.cmd().args(["retain"]).assert().success();
    let rolled_note = "const n = document.querySelector('section.card[data-panel=\"sent\"] .card-meta .rolled'); \
                       return n ? n.textContent : null;";
    let bandwidth_over_all = |width: u32, height: u32, shot: &str| {
        browser.size(width, height);
        browser.goto(&format!("{url}/#/bandwidth"));
        browser.script("const r = document.getElementById('range-select'); r.value = 'all'; r.dispatchEvent(new Event('change')); return 1;");
        let mut state = serde_json::Value::Null;
        eventually(Duration::from_secs(60), "the bandwidth view from rollups", || {
            state = browser.script(VIEW_STATE);
            !state.is_null() && !browser.script(rolled_note).is_null()
        });
        std::thread::sleep(Duration::from_millis(700));
        browser.screenshot(&shots.join(shot));
        assert_eq!(state["errors"], serde_json::json!([]), "bandwidth over all: {state}");
        assert_eq!(state["charts"], state["drawn"], "bandwidth over all: {state}");
        let note = browser.script(rolled_note);
        assert!(
            note.as_str()
                .unwrap_or("")
                .starts_with("drawn from hourly rollups for "),
            "{note}"
        );
    };
    bandwidth_over_all(1366, 768, "bandwidth-rollups.png");
    bandwidth_over_all(375, 812, "phone-bandwidth-rollups.png");

    // The overview's figures over all data are read from the rollups too, and are the same.
    browser.size(1366, 768);
    browser.goto(&format!("{url}/#/overview"));
    browser.script("const r = document.getElementById('range-select'); r.value = 'all'; r.dispatchEvent(new Event('change')); return 1;");
    let kpis_rolled = "const n = document.querySelector('section.card[data-panel=\"kpis\"] .card-meta .rolled'); \
                       const t = document.querySelector('.kpi[data-column=\"connections\"] .value'); \
                       return n && t ? [n.textContent, t.textContent] : null;";
    let mut shown = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "the overview's figures from rollups", || {
        shown = browser.script(kpis_rolled);
        !shown.is_null() && !browser.script(VIEW_STATE).is_null()
    });
    std::thread::sleep(Duration::from_millis(700));
    browser.screenshot(&shots.join("overview-rollups.png"));
    assert!(
        shown[0]
            .as_str()
            .unwrap_or("")
            .starts_with("drawn from hourly rollups for "),
        "{shown}"
    );
    assert_eq!(
        shown[1]
            .as_str()
            .unwrap_or("")
            .replace([',', ' ', '\u{202f}', '\u{a0}'], ""),
        connections,
        "the overview's connections over all data, from rollups and raw rows alike"
    );

    // Every view at phone size (the range back to the last day).
    browser.size(375, 812);
    browser.goto(&format!("{url}/#/overview"));
    browser.script("const r = document.getElementById('range-select'); r.value = '24h'; r.dispatchEvent(new Event('change')); return 1;");
    for view in views.as_array().unwrap() {
        let id = view["id"].as_str().unwrap();
        browser.goto(&format!("{url}/#/{id}"));
        let mut state = serde_json::Value::Null;
        eventually(Duration::from_secs(60), &format!("phone view {id}"), || {
            state = browser.script(VIEW_STATE);
            !state.is_null()
        });
        std::thread::sleep(Duration::from_millis(700));
        browser.screenshot(&shots.join(format!("phone-{id}.png")));
        assert_eq!(state["errors"], serde_json::json!([]), "phone {id}: {state}");
        assert_eq!(state["charts"], state["drawn"], "phone {id}: {state}");
    }

    // The static report: the same views from one file, drawing with the network off.
    let report = s.path("report.html");
    s.cmd().args(["report", "--out"]).arg(&report).assert().success();
    browser.size(1366, 768);
    browser.call(
        reqwest::Method::POST,
        "/chromium/network_conditions",
        serde_json::json!({"network_conditions": {
            "offline": true, "latency": 0, "download_throughput": -1, "upload_throughput": -1
        }}),
    );
    let reach = format!("return fetch('{url}/api/range').then(() => 'reached', () => 'offline');");
    assert_eq!(
        browser.script(&reach),
        serde_json::json!("offline"),
        "the network is off"
    );
    browser.goto(&format!("file://{}#/overview", report.display()));
    let mut state = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "the report's overview", || {
        state = browser.script(VIEW_STATE);
        !state.is_null()
    });
    std::thread::sleep(Duration::from_millis(700));
    browser.screenshot(&shots.join("report-overview.png"));
    assert_eq!(state["errors"], serde_json::json!([]), "report: {state}");
    assert!(state["drawn"].as_i64().unwrap_or(0) >= 3, "report: {state}");
    assert_eq!(state["charts"], state["drawn"], "report: {state}");
    let fetched = browser.script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));",
    );
    assert_eq!(fetched, serde_json::json!([]), "the report fetches nothing");

    let problems: Vec<(String, String)> = browser
        .console()
        .into_iter()
        .filter(|(level, message)| level == "SEVERE" || message.contains("Content Security Policy"))
        .filter(|(_, message)| {
            !message.contains("/api/views - Failed to load resource: the server responded with a status of 401")
                // the check that the network is off
                && !message.contains("/api/range - Failed to load resource: net::ERR_INTERNET_DISCONNECTED")
        })
        .collect();
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    eprintln!("screenshots in {}", shots.display());
    drop(server);
}

/// The geography view in headless Chromium over flows whose addresses the MaxMind test
/// databases know: its country bars are what the panel's SQL says, and its ASN bars are drawn.
#[test]
#[cfg_attr(not(ci), ignore = "needs chromium and chromium-driver (Debian; CI installs them)")]
fn the_geography_view_draws_looked_up_places() {
    let Some(mmdb) = crate::geo::mmdb_dir() else { return };
    let s = Scratch::new();
    // Addresses of the test databases: two in Great Britain, one in Sweden, one of Telstra's.
    crate::geo::add_flows(
        &s,
        &[
            ("10.0.0.5", "2.125.160.216"),
            ("10.0.0.5", "81.2.69.160"),
            ("10.0.0.6", "89.160.20.112"),
            ("10.0.0.6", "1.128.0.1"),
        ],
    );
    s.cmd()
        .args(["geo", "--mmdb"])
        .arg(mmdb.join("GeoLite2-Country-Test.mmdb"))
        .arg("--mmdb")
        .arg(mmdb.join("GeoLite2-ASN-Test.mmdb"))
        .assert()
        .success();
    let Dashboard { server, url, token } = serve_dashboard(&s, &["--no-capture"]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let views: serde_json::Value = views_of(&url, &token);
    let countries_sql = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "geography")
        .and_then(|v| v["panels"].as_array().unwrap().iter().find(|p| p["id"] == "countries"))
        .and_then(|p| p["sql"].as_str())
        .unwrap()
        .replace(":since", "TIMESTAMP '1970-01-01'")
        .replace(":until", "TIMESTAMP '9999-12-31'");
    let expected = s.query(&format!(
        "SELECT string_agg(label || '=' || connections, ';' ORDER BY label) FROM ({countries_sql})"
    ));
    assert!(expected.contains("=2"), "two flows to one country: {expected}");

    let browser = Browser::start();
    browser.size(1366, 768);
    browser.goto(&format!("{url}/?token={token}"));
    browser.goto(&format!("{url}/#/geography"));
    browser.script("const r = document.getElementById('range-select'); r.value = 'all'; r.dispatchEvent(new Event('change')); return 1;");
    let bars = |panel: &str| {
        format!(
            "const c = document.querySelector('section.card[data-panel=\"{panel}\"] .chart'); \
             const i = c && echarts.getInstanceByDom(c); if (!i) return null; \
             const o = i.getOption(); const names = (o.xAxis && o.xAxis[0] && o.xAxis[0].data) || (o.yAxis && o.yAxis[0] && o.yAxis[0].data) || []; \
             const values = (o.series[0] && o.series[0].data || []).map(d => Array.isArray(d) ? d[1] : (d && d.value !== undefined ? d.value : d)); \
             return names.map((n, k) => n + '=' + values[k]).sort().join(';');"
        )
    };
    let mut drawn = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "the geography view's countries", || {
        drawn = browser.script(&bars("countries"));
        drawn.as_str() == Some(expected.as_str())
            || (drawn.as_str().is_some_and(|d| !d.is_empty()) && !browser.script(VIEW_STATE).is_null())
    });
    let mut state = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "the geography view", || {
        state = browser.script(VIEW_STATE);
        !state.is_null()
    });
    std::thread::sleep(Duration::from_millis(700));
    browser.screenshot(&shots.join("geography-looked-up.png"));
    assert_eq!(
        drawn.as_str(),
        Some(expected.as_str()),
        "the country bars are the SQL's"
    );
    assert_eq!(state["errors"], serde_json::json!([]), "geography: {state}");
    let asns = browser.script(&bars("asns"));
    assert!(
        asns.as_str().unwrap_or("").contains("Telstra"),
        "the ASN bars name the looked-up operator: {asns}"
    );
    drop(server);
}

/// A capture stored through a server with a dashboard ends with the dashboard's address (the
/// issue's "the command to look further: the dashboard URL when a server runs").
#[test]
fn a_capture_through_the_server_names_its_dashboard() {
    let s = Scratch::new();
    let Dashboard { server, url, .. } = serve_dashboard(&s, &["--no-capture"]);
    let out = s
        .cmd()
        .args(["capture", "--replay"])
        .arg(crate::fixture("host_a.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("this server's dashboard: {url} ")), "{stderr}");
    assert!(stderr.contains("detectors over this capture"), "{stderr}");
    drop(server);
}

/// The dashboard's views as `/api/views` gives them.
fn views_of(url: &str, token: &str) -> serde_json::Value {
    client()
        .get(format!("{url}/api/views"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Regression: a dashboard query whose browser went away (a closed tab, a timeout) ran on in
/// the server to its end. Now it stops: the server's CPU falls idle once the client is gone.
#[test]
fn a_dashboard_query_stops_when_its_client_goes_away() {
    let s = Scratch::new();
    let d = serve_dashboard(&s, &["--no-capture"]);
    let c = client();
    let token = csrf(&d, &c);
    let impatient = Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let sql = crate::long_query();
    let answer = impatient
        .post(format!("{}/api/sql", d.url))
        .bearer_auth(&d.token)
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Netlens-CSRF", &token)
        .body(serde_json::json!({ "sql": sql }).to_string())
        .send();
    assert!(answer.is_err(), "the query answered within 1.5 s: {answer:?}");
    drop(impatient);
    falls_idle(&s, &d.server, "after its client went away");
    // The dashboard answers on.
    let ok = c
        .post(format!("{}/api/sql", d.url))
        .bearer_auth(&d.token)
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Netlens-CSRF", &token)
        .body(serde_json::json!({ "sql": "SELECT 42 AS x" }).to_string())
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
}
