//! The dashboard's views: which panels each view shows, the SQL behind each panel (with
//! `:since` and `:until` for the time range) and the chart kind that draws it, as
//! `assets/dashboard/views.json` describes them; and the page's files, built into the binary.
//! The live dashboard (`serve --http`) and the static report (`netlens report`) both draw from
//! here, so the two always show the same views.
//!
//! May use nothing but the error type: the callers run the SQL.

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The page and its files, built into the binary.
pub const INDEX: &str = include_str!("../assets/dashboard/index.html");
pub const VIEWS: &str = include_str!("../assets/dashboard/views.json");
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/app.css"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/echarts.min.js"),
    ),
];

/// One panel of a view, as `views.json` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PanelSpec {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub sql: String,
}

/// One view of the dashboard.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewSpec {
    pub id: String,
    pub title: String,
    pub panels: Vec<PanelSpec>,
}

/// The views built into this binary, and `views.json` itself (what the page reads, with the
/// keys only the page uses), parsed once.
pub fn views() -> Result<(Vec<ViewSpec>, serde_json::Value)> {
    let bad = |e: serde_json::Error| Error::Sql {
        message: format!("assets/dashboard/views.json is not a list of views: {e}"),
    };
    let json: serde_json::Value = serde_json::from_str(VIEWS).map_err(bad)?;
    let specs = serde_json::from_value(json.clone()).map_err(bad)?;
    Ok((specs, json))
}

/// A panel's SQL for a time range: `:since` and `:until` become timestamp literals (formatted
/// here from parsed times, never from the request's text).
pub fn panel_sql(sql: &str, since: NaiveDateTime, until: NaiveDateTime) -> String {
    let literal = |t: NaiveDateTime| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
    sql.replace(":since", &literal(since))
        .replace(":until", &literal(until))
}

/// A time from the page: `YYYY-MM-DDTHH:MM:SS[.f][Z]` or with a space, UTC.
pub fn parse_time(text: &str) -> std::result::Result<NaiveDateTime, String> {
    let t = text.trim().trim_end_matches('Z');
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(|| format!("'{text}' is not a time (expected 2026-12-05T10:00:00, UTC)"))
}

/// The chart kinds the page draws.
pub const KINDS: &[&str] = &[
    "kpi",
    "bar",
    "hbar",
    "pie",
    "line",
    "area",
    "heatmap",
    "scatter",
    "scatter3d",
    "histogram",
    "table",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn panel_times_are_literals_made_here() {
        let since = parse_time("2026-12-05T10:00:00Z").unwrap();
        let until = parse_time("2026-12-05 11:30:00.5").unwrap();
        assert_eq!(
            panel_sql(
                "SELECT * FROM snapshots WHERE ts >= :since AND ts < :until",
                since,
                until
            ),
            "SELECT * FROM snapshots WHERE ts >= TIMESTAMP '2026-12-05 10:00:00.000000' \
             AND ts < TIMESTAMP '2026-12-05 11:30:00.500000'"
        );
        assert!(parse_time("2026-12-05'; DROP TABLE x; --").is_err());
    }

    /// Every panel of every view parses, names a kind the page draws, and runs on a demo
    /// database (an empty result is fine where the demo has no such data).
    #[test]
    fn every_panel_runs_on_a_demo_database() {
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let demo = crate::capture::demo::DemoRequest {
            hours: 2,
            interval: Duration::from_secs(60),
            seed: 3,
            traffic_rows: 50,
        };
        let mut quiet = crate::request::CollectGaps::default();
        crate::capture::demo::run(&store, &demo, chrono::Utc::now(), &mut quiet).unwrap();
        let (views, _) = views().unwrap();
        assert!(views.len() >= 10, "{} views", views.len());
        let kinds = KINDS;
        let since = parse_time("2000-01-01T00:00:00").unwrap();
        let until = parse_time("2100-01-01T00:00:00").unwrap();
        let mut failures = Vec::new();
        for view in &views {
            for panel in &view.panels {
                assert!(
                    kinds.contains(&panel.kind.as_str()),
                    "{}/{}: kind {}",
                    view.id,
                    panel.id,
                    panel.kind
                );
                assert!(!panel.title.is_empty());
                let sql = panel_sql(&panel.sql, since, until);
                if let Err(e) = store.conn().prepare(&sql).and_then(|mut s| s.query([]).map(|_| ())) {
                    failures.push(format!("{}/{}: {e}", view.id, panel.id));
                }
            }
        }
        assert!(failures.is_empty(), "panels that fail:\n{}", failures.join("\n"));
        assert!(views.iter().all(|v| !v.title.is_empty()));
    }
}
