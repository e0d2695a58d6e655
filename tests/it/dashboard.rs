//! The dashboard (`serve --http`): its API through a real HTTP client, and its pages in
//! headless Chromium, on a demo database the server is also capturing into.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header;

use crate::serve::{eventually, status_json, Server};
use crate::Scratch;

struct Dashboard {
    server: Server,
    url: String,
    token: String,
}

/// A demo day served with live capture and the dashboard on a free loopback port.
fn start(s: &Scratch) -> Dashboard {
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
    let server = Server::start(s, &["--interval", "1s", "--http", "127.0.0.1:0"]);
    let status = status_json(s);
    let url = status["http"].as_str().expect("status names the dashboard").to_string();
    let mut token_file = s.db().into_os_string();
    token_file.push(".token");
    let token = std::fs::read_to_string(token_file).expect("token").trim().to_string();
    assert!(
        server.log().contains(&format!("{url}/?token={token}")),
        "the log prints the URL with its token"
    );
    Dashboard { server, url, token }
}

fn client() -> Client {
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
    ] {
        let r = post("/api/sql", serde_json::json!({"sql": refused}), Some(&token), None);
        assert_eq!(r.status(), 403, "{refused}");
    }
    let files = post(
        "/api/sql",
        serde_json::json!({"sql": "SELECT * FROM read_csv('/etc/passwd')"}),
        Some(&token),
        None,
    );
    assert_eq!(files.status(), 400, "DuckDB's file functions are off");

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

    let detect = post(
        "/api/request",
        serde_json::json!({"command": "insights"}),
        Some(&token),
        None,
    );
    assert_eq!(detect.status(), 200);
    let retain = serde_json::json!({"command": "retain", "raw": {"secs": 3600, "nanos": 0}, "rollups": null,
                                    "bucket": {"secs": 3600, "nanos": 0}, "batch": 300});
    assert_eq!(
        post("/api/request", retain, Some(&token), None).status(),
        403,
        "retain needs --remote-writes"
    );
    drop(d.server);
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
    drop(d.server);
}
