//! What a detector run reads: which source (live `connections` or imported `flows`, both seen
//! through the `connection_events` view), which time window, and how precisely that source
//! knows start times. Everything here is read-only SQL.

use chrono::{DateTime, NaiveDateTime};
use duckdb::Connection;

use super::{DetectRequest, DetectSource};
use crate::error::{Error, Result};

/// The source a run analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flows,
    Connections,
}

impl Source {
    /// Its name in connection_events.source and detector_runs.source.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flows => "flows",
            Source::Connections => "connections",
        }
    }
}

/// The data a run analyses: source, window (microseconds since the epoch, inclusive) and the
/// time resolution of its start times.
#[derive(Debug, Clone)]
pub struct Scope {
    pub source: Source,
    /// Why this source, when `--on auto` chose it.
    pub chosen_because: Option<String>,
    pub start_us: i64,
    pub end_us: i64,
    pub resolution_s: f64,
}

/// Microseconds since the epoch as a UTC timestamp (for binding and printing).
pub fn timestamp(us: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(us).unwrap_or_default().naive_utc()
}

/// `2026-11-21 08:00:00` style text of a microsecond timestamp.
pub fn fmt_us(us: i64) -> String {
    timestamp(us).format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn count_source(conn: &Connection, source: Source) -> Result<i64> {
    let sql = match source {
        Source::Flows => "SELECT count(*) FROM flows",
        Source::Connections => {
            "SELECT count(*) FROM connection_lifetimes WHERE direction IS DISTINCT FROM 'listen' AND remote_addr IS NOT NULL"
        }
    };
    conn.query_row(sql, [], |r| r.get(0)).map_err(Error::sql)
}

/// Resolves `--on`, the window options and the time resolution, failing with a clear message
/// when there is nothing to analyse.
pub fn resolve(conn: &Connection, args: &DetectRequest) -> Result<Scope> {
    let (source, chosen_because) = match args.on {
        DetectSource::Flows => (Source::Flows, None),
        DetectSource::Connections => (Source::Connections, None),
        DetectSource::Auto => {
            let live = count_source(conn, Source::Connections)?;
            let flows = count_source(conn, Source::Flows)?;
            match (live > 0, flows > 0) {
                (true, true) => (
                    Source::Connections,
                    Some(format!(
                        "auto: live history first; flows has {flows} rows too, use --on flows for them"
                    )),
                ),
                (true, false) => (Source::Connections, Some("auto: the only source with rows".to_string())),
                (false, true) => (Source::Flows, Some("auto: the only source with rows".to_string())),
                (false, false) => {
                    return Err(Error::NoEvents {
                        what: "no connection history and no imported flows to analyse".to_string(),
                        hint: "record some with `netlens capture`, or import traffic with `netlens import pcap FILE`"
                            .to_string(),
                    })
                }
            }
        }
    };
    let (first, last): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT epoch_us(min(start_ts)), epoch_us(max(end_ts)) FROM connection_events WHERE source = ?",
            [source.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(Error::sql)?;
    let (Some(first), Some(last)) = (first, last) else {
        return Err(Error::NoEvents {
            what: format!("{} has no connections to analyse", source.as_str()),
            hint: match source {
                Source::Flows => {
                    "import traffic with `netlens import pcap FILE` or `import zeek FILE`, or use --on connections"
                }
                Source::Connections => "record history with `netlens capture`, or use --on flows",
            }
            .to_string(),
        });
    };
    let micros = |t: NaiveDateTime| t.and_utc().timestamp_micros();
    let end_us = args.until.map(micros).unwrap_or(last);
    let start_us = match (args.since, args.window) {
        (Some(since), _) => micros(since),
        (None, Some(window)) => end_us - i64::try_from(window.as_micros()).unwrap_or(i64::MAX / 2),
        (None, None) => first.min(end_us),
    };
    if start_us > end_us {
        return Err(Error::Usage(format!(
            "the window starts ({}) after it ends ({}); check --since and --until",
            fmt_us(start_us),
            fmt_us(end_us)
        )));
    }
    let in_window: i64 = conn
        .query_row(
            "SELECT count(*) FROM connection_events WHERE source = ? AND epoch_us(start_ts) <= ? AND epoch_us(end_ts) >= ?",
            duckdb::params![source.as_str(), end_us, start_us],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    if in_window == 0 {
        return Err(Error::NoEvents {
            what: format!(
                "no {} connections between {} and {} UTC (the data covers {} .. {})",
                source.as_str(),
                fmt_us(start_us),
                fmt_us(end_us),
                fmt_us(first),
                fmt_us(last)
            ),
            hint: "move or widen the window (--window, --since, --until), or leave them out to analyse everything"
                .to_string(),
        });
    }
    let resolution_s = match source {
        Source::Flows => 1e-6,
        Source::Connections => capture_interval(conn, start_us, end_us)?,
    };
    Ok(Scope {
        source,
        chosen_because,
        start_us,
        end_us,
        resolution_s,
    })
}

/// Median time between consecutive snapshots of a host in the window: live start times are
/// only known to this precision. 0 when the window holds a single snapshot.
fn capture_interval(conn: &Connection, start_us: i64, end_us: i64) -> Result<f64> {
    let median: Option<f64> = conn
        .query_row(
            "SELECT median(gap) FROM (SELECT epoch(ts) - epoch(lag(ts) OVER (PARTITION BY host ORDER BY ts)) AS gap \
             FROM snapshots WHERE epoch_us(ts) BETWEEN ? AND ?) WHERE gap > 0",
            [start_us, end_us],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    Ok(median.unwrap_or(0.0))
}
