//! `netlens report`: the dashboard's views as one file for a ticket or an email. HTML is
//! self-contained: the page's script, styles and chart library inline, and every panel's rows
//! as JSON inside the page, so it opens and draws with no server and no network. Markdown gives
//! each panel's rows as a table; JSON the same bundle the HTML carries.
//!
//! May use the store, the dashboard's views and output (rows as JSON).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dashboard::{self, panel_sql_rolled};
use crate::error::{Error, Result};
use crate::output::JsonTable;
use crate::shared_reads::SharedReads;
use crate::store::Store;

/// Rows kept per panel.
pub const PANEL_ROWS: usize = dashboard::PANEL_ROWS;

/// File formats of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Html,
    Md,
    Json,
}

impl ReportFormat {
    /// From the file name's extension; HTML when it says nothing.
    pub fn from_path(path: &std::path::Path) -> ReportFormat {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("md" | "markdown") => ReportFormat::Md,
            Some("json") => ReportFormat::Json,
            _ => ReportFormat::Html,
        }
    }
}

/// `report`: which range, into which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub out: PathBuf,
    pub format: ReportFormat,
    /// [default: the first snapshot]
    pub since: Option<NaiveDateTime>,
    /// [default: just after the newest snapshot]
    pub until: Option<NaiveDateTime>,
}

/// What a report holds: every panel's rows (or its error) for one range.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub generated_at: String,
    pub since: String,
    pub until: String,
    pub views: serde_json::Value,
    /// `view/panel` -> the panel's result, or `{"error": ...}`.
    pub results: serde_json::Map<String, serde_json::Value>,
}

/// Runs every panel of every view over the range.
pub fn bundle(store: &Store, request: &ReportRequest, now: DateTime<Utc>) -> Result<Bundle> {
    let (first, last): (Option<NaiveDateTime>, Option<NaiveDateTime>) = store
        .conn()
        .query_row("SELECT min(ts), max(ts) FROM snapshots", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(Error::sql)?;
    let since = request.since.or(first).unwrap_or(DateTime::UNIX_EPOCH.naive_utc());
    let until = request
        .until
        .or(last.map(|t| t + chrono::Duration::seconds(1)))
        .unwrap_or(now.naive_utc());
    if until <= since {
        return Err(Error::Usage(format!(
            "report --since {since} --until {until}: the range is empty"
        )));
    }
    let (specs, views) = dashboard::views()?;
    // What of a range of days the rollups hold, for the panels that can read them (as the
    // server does for each panel).
    let rolled = dashboard::rolled(store.conn(), since, until)?;
    // What several panels read is read once (the same rows); should that fail, each reads its own.
    let shared = SharedReads::new();
    let results = draw_panels(store, &specs, since, until, rolled.as_ref(), &shared);
    shared.clear(store.conn());
    let results = results?;
    let iso = |t: NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Bundle {
        generated_at: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        since: iso(since),
        until: iso(until),
        views,
        results,
    })
}

/// Runs every panel of `specs` over `[since, until]`: `view/panel` -> its result, or
/// `{"error": ...}`.
fn draw_panels(
    store: &Store,
    specs: &[dashboard::ViewSpec],
    since: NaiveDateTime,
    until: NaiveDateTime,
    rolled: Option<&dashboard::Rolled>,
    shared: &SharedReads,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut results = serde_json::Map::new();
    for view in specs {
        for panel in &view.panels {
            // A Ctrl-C between two panels' queries interrupts no query: it is seen here.
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let prepared = shared.prepare(store.conn(), &panel.sql, since, until).ok();
            let rolled = rolled.filter(|_| dashboard::reads_rollups(&panel.sql));
            let result = (|| -> Result<JsonTable> {
                let conn = store.conn();
                // The shared tables only when this transaction sees the data they hold.
                crate::store::begin_own_read_only_transaction(conn)?;
                let read = (|| {
                    let template = match &prepared {
                        Some(p) => p.sql(conn)?,
                        None => &panel.sql,
                    };
                    let sql = panel_sql_rolled(template, since, until, rolled);
                    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
                    let arrow = stmt.query_arrow([]).map_err(Error::sql)?;
                    let schema = arrow.get_schema();
                    JsonTable::collect(&schema, arrow.map(Ok), PANEL_ROWS)
                })();
                let _ = conn.execute_batch("ROLLBACK");
                read
            })();
            let value = match result {
                Ok(mut table) => {
                    let sampled = dashboard::take_sampled(&mut table.columns, &mut table.types, &mut table.rows);
                    let mut value = serde_json::to_value(table).map_err(|e| Error::Sql { message: e.to_string() })?;
                    if let (Some(sampled), Some(object)) = (sampled, value.as_object_mut()) {
                        object.insert(
                            "sampled".into(),
                            serde_json::to_value(sampled).map_err(|e| Error::Sql { message: e.to_string() })?,
                        );
                    }
                    if let (Some(rolled), Some(object)) = (rolled, value.as_object_mut()) {
                        object.insert(
                            "rolled".into(),
                            serde_json::to_value(rolled).map_err(|e| Error::Sql { message: e.to_string() })?,
                        );
                    }
                    value
                }
                // Ctrl-C ends the report, not just the panel it caught; so does a session's
                // open transaction, which every panel would meet.
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e @ Error::Usage(_)) => return Err(e),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            results.insert(format!("{}/{}", view.id, panel.id), value);
        }
    }
    Ok(results)
}

/// Text safe inside a `<script>` element: no `</` (which could end it) and no `<!--`.
fn script_safe(text: &str) -> String {
    text.replace("</", "<\\/").replace("<!--", "<\\!--")
}

/// The bundle as one self-contained HTML page.
pub fn html(bundle: &Bundle) -> Result<String> {
    let data = serde_json::to_string(bundle).map_err(|e| Error::Sql { message: e.to_string() })?;
    let asset = |name: &str| {
        dashboard::ASSETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, body)| String::from_utf8_lossy(body).into_owned())
            .unwrap_or_default()
    };
    let body = dashboard::INDEX
        .split_once("<body>")
        .and_then(|(_, rest)| rest.rsplit_once("</body>"))
        .map(|(body, _)| body)
        .unwrap_or_default();
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n\
         <title>netlens report {since} to {until}</title>\n<style>\n{css}\n</style>\n</head>\n\
         <body class=\"report\">\n{body}\n\
         <script type=\"application/json\" id=\"netlens-report\">{data}</script>\n\
         <script>\n{echarts}\n</script>\n<script>\n{app}\n</script>\n</body>\n</html>\n",
        since = bundle.since,
        until = bundle.until,
        css = asset("app.css"),
        data = script_safe(&data),
        echarts = script_safe(&asset("echarts.min.js")),
        app = script_safe(&asset("app.js")),
    ))
}

/// The bundle as Markdown: each view a section, each panel its rows as a table (at most 50).
pub fn markdown(bundle: &Bundle) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.replace('|', "\\|").replace('\n', " "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut out = format!(
        "# netlens report\n\n{} to {} (UTC), generated {}\n",
        bundle.since, bundle.until, bundle.generated_at
    );
    for view in bundle.views.as_array().into_iter().flatten() {
        out.push_str(&format!("\n## {}\n", view["title"].as_str().unwrap_or("")));
        for panel in view["panels"].as_array().into_iter().flatten() {
            let key = format!(
                "{}/{}",
                view["id"].as_str().unwrap_or(""),
                panel["id"].as_str().unwrap_or("")
            );
            out.push_str(&format!("\n### {}\n\n", panel["title"].as_str().unwrap_or("")));
            let result = &bundle.results[&key];
            if let Some(e) = result["error"].as_str() {
                out.push_str(&format!("(failed: {e})\n"));
                continue;
            }
            let columns: Vec<&str> = result["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect();
            let rows = result["rows"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                out.push_str("(no rows in this range)\n");
                continue;
            }
            out.push_str(&format!(
                "| {} |\n|{}|\n",
                columns.join(" | "),
                vec!["---"; columns.len()].join("|")
            ));
            for row in rows.iter().take(50) {
                let cells: Vec<String> = row.as_array().into_iter().flatten().map(cell).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            if rows.len() > 50 {
                out.push_str(&format!(
                    "\n({} more rows in the JSON and HTML reports)\n",
                    rows.len() - 50
                ));
            }
        }
    }
    out
}

/// Writes the report; returns the panels written and how many failed.
pub fn write(store: &Store, request: &ReportRequest, now: DateTime<Utc>) -> Result<(usize, usize)> {
    let bundle = bundle(store, request, now)?;
    let failed = bundle.results.values().filter(|r| r.get("error").is_some()).count();
    let text = match request.format {
        ReportFormat::Html => html(&bundle)?,
        ReportFormat::Md => markdown(&bundle),
        ReportFormat::Json => {
            serde_json::to_string_pretty(&bundle).map_err(|e| Error::Sql { message: e.to_string() })?
        }
    };
    // A report is made to be made again: it replaces the file, whole, and a symlink at its name
    // is replaced rather than written through.
    crate::store::export::write_in_place(&request.out, true, |partial| {
        std::fs::write(partial, &text).map_err(|e| Error::io(&request.out, e))?;
        Ok(0)
    })?;
    Ok((bundle.results.len(), failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_cannot_be_ended_by_the_data() {
        assert_eq!(script_safe("a</script><!--b"), "a<\\/script><\\!--b");
    }

    #[test]
    fn a_report_of_an_empty_database_has_every_panel_and_no_failure() {
        let store = Store::open(&crate::store::Location::Memory, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, format) in [
            ("r.html", ReportFormat::Html),
            ("r.md", ReportFormat::Md),
            ("r.json", ReportFormat::Json),
        ] {
            let request = ReportRequest {
                out: dir.path().join(name),
                format,
                since: None,
                until: None,
            };
            let (panels, failed) = write(&store, &request, Utc::now()).unwrap();
            assert!(panels >= 30);
            assert_eq!(failed, 0);
        }
        let page = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
        assert!(page.contains("id=\"netlens-report\""));
        assert!(!page.contains("src=\"/assets"), "nothing is fetched");
        assert_eq!(ReportFormat::from_path(std::path::Path::new("x.MD")), ReportFormat::Md);
    }
}
