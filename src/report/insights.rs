//! `netlens insights`: prototype 000's security insights (key findings and recommended actions)
//! over everything the latest runs stored: policy verdicts, anomaly scores, the detectors, the
//! capture itself and geolocation. Each finding names its evidence as a query the analyst can
//! run. Reads only; a table that does not exist yet (a stage never run) is simply skipped.

use crate::error::{Error, Result};
use crate::store::{quote_literal, Store};

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// One finding with what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub area: &'static str,
    pub finding: String,
    pub recommendation: String,
    /// A query showing the rows behind the finding.
    pub evidence: String,
}

/// Policy verdict counts of one run, and its contamination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerdictStats {
    pub run_id: i64,
    pub flows: i64,
    pub anomalies: i64,
    pub new_flows: i64,
    pub drift: i64,
    pub high_risk: i64,
    pub contamination: Option<f64>,
    /// Riskiest flow: (flow, risk, verdict, processes, reason).
    pub top: Option<(String, i64, String, String, String)>,
    /// Segment with most flows and its share.
    pub busiest_segment: Option<(i64, f64)>,
}

/// Recommendations from policy verdicts (pure, so the rules are tested without a store).
pub fn verdict_findings(v: &VerdictStats) -> Vec<Finding> {
    let mut out = Vec::new();
    let run = v.run_id;
    if v.flows == 0 {
        return out;
    }
    let share = v.anomalies as f64 / v.flows as f64;
    if let Some((flow, risk, verdict, processes, reason)) = &v.top {
        if *risk >= crate::analysis::policy::HIGH_RISK {
            let owner = if processes.is_empty() {
                String::new()
            } else {
                format!(" ({processes})")
            };
            out.push(Finding {
                severity: Severity::High,
                area: "policy",
                finding: format!(
                    "{} high-risk flow(s); the riskiest is {flow}{owner}: {verdict}, risk {risk}, {reason}",
                    v.high_risk
                ),
                recommendation: "Investigate the high-risk flows first: who owns them, what they send, whether the peer is expected; block what is not".to_string(),
                evidence: format!(
                    "SELECT * FROM verdicts WHERE run_id = {run} AND risk >= {} ORDER BY risk DESC",
                    crate::analysis::policy::HIGH_RISK
                ),
            });
        }
    }
    if v.anomalies > 0 {
        out.push(Finding {
            severity: Severity::Medium,
            area: "policy",
            finding: format!(
                "{} of {} flows ({:.1} %) are anomalous against the baseline",
                v.anomalies,
                v.flows,
                100.0 * share
            ),
            recommendation: "Review the anomalous flows' reasons; a flow that is expected belongs in the next baseline (netlens retrain)".to_string(),
            evidence: format!("SELECT * FROM verdicts WHERE run_id = {run} AND is_anomaly ORDER BY score DESC"),
        });
    }
    if let Some(c) = v.contamination {
        if v.flows >= 20 && share > 2.0 * c {
            out.push(Finding {
                severity: Severity::Low,
                area: "tuning",
                finding: format!(
                    "the anomaly share ({:.1} %) is more than twice the contamination the model expects ({:.1} %)",
                    100.0 * share,
                    100.0 * c
                ),
                recommendation: "Traffic has changed since the baseline, or the baseline was too short: learn a longer baseline, or raise contamination if this traffic is normal".to_string(),
                evidence: format!("SELECT verdict, count(*) FROM verdicts WHERE run_id = {run} GROUP BY ALL"),
            });
        } else if v.flows >= 50 && v.anomalies == 0 {
            out.push(Finding {
                severity: Severity::Info,
                area: "tuning",
                finding: format!("no anomaly among {} flows", v.flows),
                recommendation: "If you expected some, lower the threshold: train with a higher contamination"
                    .to_string(),
                evidence: format!("SELECT max(score) FROM verdicts WHERE run_id = {run}"),
            });
        }
    }
    if v.new_flows > 0 {
        out.push(Finding {
            severity: Severity::Medium,
            area: "policy",
            finding: format!("{} flow(s) were never seen in the baseline", v.new_flows),
            recommendation: "Allow-list the new flows you expect (they join the next baseline); investigate the others".to_string(),
            evidence: format!("SELECT src_ip, dst_ip, processes, risk FROM verdicts WHERE run_id = {run} AND new_flow ORDER BY risk DESC"),
        });
    }
    if v.drift > 0 {
        out.push(Finding {
            severity: Severity::Low,
            area: "policy",
            finding: format!("{} known flow(s) moved to another segment (behaviour changed)", v.drift),
            recommendation: "Check what changed for those flows (volume, ports, duration); retrain if the change is legitimate, or try another number of segments".to_string(),
            evidence: format!("SELECT * FROM verdicts WHERE run_id = {run} AND drift"),
        });
    }
    if let Some((segment, share)) = v.busiest_segment {
        out.push(Finding {
            severity: Severity::Info,
            area: "segments",
            finding: format!("segment {segment} holds {:.0} % of the judged flows", 100.0 * share),
            recommendation: "See what sets it apart in segment_profiles".to_string(),
            evidence: format!("SELECT * FROM latest_segment_profiles WHERE segment = {segment} ORDER BY rank"),
        });
    }
    out
}

/// Every finding the store supports now, most severe first.
pub fn insights(store: &Store) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    if let Some(v) = verdict_stats(store)? {
        out.extend(verdict_findings(&v));
    }
    for detector in DETECTORS {
        if let Some(f) = detector_finding(store, detector)? {
            out.push(f);
        }
    }
    out.extend(capture_findings(store)?);
    // A Ctrl-C between two of the queries (no statement running for DuckDB to interrupt) ends
    // the command as interrupted too.
    if crate::interrupt::requested() {
        return Err(Error::Interrupted);
    }
    if out.is_empty() {
        out.push(Finding {
            severity: Severity::Info,
            area: "store",
            finding: "nothing to report yet: no verdicts, detections or capture problems are stored".to_string(),
            recommendation: "Capture (netlens capture or watch), import traffic, then run train policy or detect all"
                .to_string(),
            evidence: "SELECT count(*) FROM snapshots".to_string(),
        });
    }
    out.sort_by_key(|f| f.severity);
    Ok(out)
}

/// The findings as one query, so every output mode (table, json, csv, ...) renders them.
pub fn findings_sql(findings: &[Finding]) -> String {
    let rows: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "({}, {}, {}, {}, {})",
                quote_literal(f.severity.as_str()),
                quote_literal(f.area),
                quote_literal(&f.finding),
                quote_literal(&f.recommendation),
                quote_literal(&f.evidence)
            )
        })
        .collect();
    format!(
        "SELECT * FROM (VALUES {}) AS insights(severity, area, finding, recommendation, evidence)",
        rows.join(", ")
    )
}

/// How one policy run's verdicts split: what watch's dashboard and insights both report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictCounts {
    pub flows: i64,
    pub anomalies: i64,
    pub new_flows: i64,
    pub drift: i64,
    pub high_risk: i64,
}

/// The verdict counts of policy run `run_id`.
pub fn verdict_counts(store: &Store, run_id: i64) -> Result<VerdictCounts> {
    store
        .conn()
        .query_row(
            "SELECT count(*), count(*) FILTER (is_anomaly), count(*) FILTER (new_flow),
                    count(*) FILTER (verdict = 'Segment Drift'), count(*) FILTER (risk >= ?)
             FROM verdicts WHERE run_id = ?",
            duckdb::params![crate::analysis::policy::HIGH_RISK, run_id],
            |r| {
                Ok(VerdictCounts {
                    flows: r.get(0)?,
                    anomalies: r.get(1)?,
                    new_flows: r.get(2)?,
                    drift: r.get(3)?,
                    high_risk: r.get(4)?,
                })
            },
        )
        .map_err(Error::sql)
}

fn verdict_stats(store: &Store) -> Result<Option<VerdictStats>> {
    if !store.relation_exists("verdicts")? {
        return Ok(None);
    }
    let conn = store.conn();
    let run: Option<i64> = conn
        .query_row(
            "SELECT max(run_id) FROM run_outputs WHERE table_name = 'verdicts'",
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    let Some(run_id) = run else { return Ok(None) };
    let VerdictCounts {
        flows,
        anomalies,
        new_flows,
        drift,
        high_risk,
    } = verdict_counts(store, run_id)?;
    let contamination: Option<f64> = conn
        .query_row(
            "SELECT TRY_CAST(json_value_contamination AS DOUBLE) FROM (
                 SELECT regexp_extract(params, '\"contamination\":\\s*([0-9.eE+-]+)', 1) AS json_value_contamination
                 FROM model_runs WHERE run_id = ?)",
            [run_id],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    let top = conn
        .query_row(
            "SELECT src_ip || ' -> ' || dst_ip, risk, verdict, coalesce(processes, ''), reason
             FROM verdicts WHERE run_id = ? ORDER BY risk DESC, score DESC, flow_id LIMIT 1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .map_err(Error::sql)?;
    let busiest = conn
        .query_row(
            "SELECT segment, count(*) / sum(count(*)) OVER () FROM verdicts WHERE run_id = ?
             GROUP BY segment ORDER BY count(*) DESC, segment LIMIT 1",
            [run_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
        )
        .map_err(Error::sql)?;
    Ok(Some(VerdictStats {
        run_id,
        flows,
        anomalies,
        new_flows,
        drift,
        high_risk,
        contamination,
        top: Some(top),
        busiest_segment: Some(busiest),
    }))
}

/// A detector's latest result table, which of its rows are alarms, how to describe its top row,
/// and what to do.
struct Detector {
    table: &'static str,
    /// The rows that are alarms as the detector judged them (beacons: is_beacon; the other
    /// tables store only what they flag). Rows an analyst's mark suppressed are never alarms.
    alarm: &'static str,
    severity: Severity,
    describe: &'static str,
    order: &'static str,
    recommendation: &'static str,
}

/// The detectors' latest runs (`netlens detect`).
const DETECTORS: &[Detector] = &[
    Detector {
        table: "port_scans",
        alarm: "true",
        severity: Severity::High,
        describe: "scanner || ' scanned ' || coalesce(target, targets, '?') || ' (' || distinct_ports || ' ports, ' || distinct_hosts || ' hosts, ' || round(100 * failed_share) || ' % failed)'",
        order: "score DESC",
        recommendation: "Find out who runs the scanner; if it is not an authorised scan, isolate the host and block it",
    },
    Detector {
        table: "beacons",
        alarm: "is_beacon",
        severity: Severity::High,
        describe: "src || ' -> ' || dst || ':' || coalesce(CAST(dst_port AS VARCHAR), '*') || ' every ' || round(median_interval_s, 1) || ' s (score ' || round(score, 2) || coalesce(', ' || processes, '') || ')'",
        order: "is_beacon DESC, score DESC",
        recommendation: "Periodic calls to one peer are how implants check in: identify the process, the peer and its reputation; block the peer if it is not a known updater",
    },
    Detector {
        table: "bursts",
        alarm: "true",
        severity: Severity::Medium,
        describe: "entity_kind || ' ' || entity || ': ' || metric || ' ' || round(factor, 1) || 'x its baseline at ' || CAST(start_ts AS VARCHAR)",
        order: "factor DESC",
        recommendation: "Check whether the burst was planned (backup, update); an unplanned one can be exfiltration or a flood",
    },
    Detector {
        table: "long_connections",
        alarm: "true",
        severity: Severity::Low,
        describe: "src || ' -> ' || dst || ':' || coalesce(CAST(dst_port AS VARCHAR), '?') || ' for ' || round(duration_s / 3600, 1) || ' h (' || grade || coalesce(', ' || process_name, '') || ')'",
        order: "duration_s DESC",
        recommendation: "Long sessions are normal for databases and SSH; one to an unknown peer can be a tunnel or remote access",
    },
];

fn detector_finding(store: &Store, d: &Detector) -> Result<Option<Finding>> {
    let latest = format!("latest_{}", d.table);
    if !store.relation_exists(&latest)? {
        return Ok(None);
    }
    let conn = store.conn();
    // Rows of runs before migration 32 have suppressed NULL: not suppressed.
    let alarms_sql = format!("{latest} WHERE {} AND NOT coalesce(suppressed, false)", d.alarm);
    let (rows, suppressed): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT count(*) FILTER (WHERE NOT coalesce(suppressed, false)), count(*) FILTER (WHERE suppressed) \
                 FROM {latest} WHERE {}",
                d.alarm
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(Error::sql)?;
    let marks = match suppressed {
        0 => String::new(),
        n => format!(" ({n} more suppressed by analysts' marks: SELECT * FROM {latest} WHERE suppressed)"),
    };
    if rows == 0 {
        // Nothing to alarm on; still say that marks silenced rows, so nothing is hidden.
        return Ok((suppressed > 0).then(|| Finding {
            severity: Severity::Info,
            area: "detect",
            finding: format!("0 {} row(s){marks}", d.table),
            recommendation: "Suppressed rows are known benign by an analyst's false_positive mark; a true_positive mark on the row lifts it (netlens feedback)".to_string(),
            evidence: format!("SELECT * FROM {latest} WHERE suppressed"),
        }));
    }
    let top: String = conn
        .query_row(
            &format!("SELECT {} FROM {alarms_sql} ORDER BY {} LIMIT 1", d.describe, d.order),
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    Ok(Some(Finding {
        severity: d.severity,
        area: "detect",
        finding: format!("{rows} {} row(s){marks}; first: {top}", d.table),
        recommendation: d.recommendation.to_string(),
        evidence: format!("SELECT * FROM {alarms_sql} ORDER BY {}", d.order),
    }))
}

/// What to do about the gaps a snapshot's notes describe (`capture::system` writes them). Only
/// what a user without root cannot read calls for root: some of it the kernel keeps from root
/// too (the disk i/o of kernel-protected processes), and telling a root capture to run as root
/// was wrong.
fn gap_recommendation(notes: &str) -> &'static str {
    if notes.contains("without root") || notes.contains("need root") {
        "Capture as root (or with CAP_NET_ADMIN and CAP_SYS_PTRACE) to see every socket's owner and kernel counters"
    } else if notes.contains("netstat2") {
        "Capture with the default socket reader (sock_diag) for the kernel's TCP counters"
    } else if notes.contains("predates Linux 4.19") {
        "A kernel of Linux 4.19 or later gives these counters"
    } else if notes.contains("protected by the kernel") {
        "Nothing to do: the kernel keeps this from every user, root included; those values are NULL"
    } else {
        "See the snapshots' notes for what could not be read, and why"
    }
}

fn capture_findings(store: &Store) -> Result<Vec<Finding>> {
    let conn = store.conn();
    let mut out = Vec::new();
    let gaps: Option<String> = conn
        .query_row(
            "SELECT (SELECT notes FROM snapshots ORDER BY snapshot_id DESC LIMIT 1)",
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    if let Some(notes) = gaps {
        out.push(Finding {
            severity: Severity::Low,
            area: "capture",
            finding: format!("the newest snapshots miss data: {notes}"),
            recommendation: gap_recommendation(&notes).to_string(),
            evidence: "SELECT snapshot_id, ts, notes FROM snapshots WHERE notes IS NOT NULL ORDER BY snapshot_id DESC"
                .to_string(),
        });
    }
    let stuck: i64 = conn
        .query_row(
            "SELECT count(*) FROM connections WHERE NOT closed AND last_state IN ('CLOSE_WAIT', 'SYN_SENT') AND duration_s >= 60",
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    if stuck > 0 {
        out.push(Finding {
            severity: Severity::Low,
            area: "tcp",
            finding: format!("{stuck} open connection(s) stuck in CLOSE_WAIT or SYN_SENT for a minute or more"),
            recommendation: "CLOSE_WAIT means the local program never closed its socket (a leak); a long SYN_SENT means an unreachable or filtering peer".to_string(),
            evidence: "SELECT * FROM connections WHERE NOT closed AND last_state IN ('CLOSE_WAIT', 'SYN_SENT') ORDER BY duration_s DESC".to_string(),
        });
    }
    if store.relation_exists("geo")? {
        let pending: i64 = conn
            .query_row(
                "SELECT count(DISTINCT remote_addr) FROM connection_lifetimes
                 WHERE remote_scope = 'public' AND remote_addr NOT IN (SELECT ip FROM geo)",
                [],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        if pending > 0 {
            out.push(Finding {
                severity: Severity::Info,
                area: "geo",
                finding: format!("{pending} public peer address(es) are not geolocated"),
                recommendation: "Run netlens geo --mmdb GeoLite2-City.mmdb (offline) to see where peers are"
                    .to_string(),
                evidence: "SELECT * FROM connections_geo WHERE geo_status IS NULL AND remote_scope = 'public'"
                    .to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> VerdictStats {
        VerdictStats {
            run_id: 7,
            flows: 100,
            anomalies: 3,
            new_flows: 2,
            drift: 0,
            high_risk: 1,
            contamination: Some(0.05),
            top: Some((
                "10.0.0.1 -> 203.0.113.9".into(),
                85,
                "Anomalous".into(),
                "syncd".into(),
                "anomaly".into(),
            )),
            busiest_segment: Some((1, 0.6)),
        }
    }

    #[test]
    fn root_is_recommended_only_for_what_root_could_read() {
        let root_capture = "processes: disk i/o of 1 processes is unreadable (protected by the kernel); stored as NULL";
        assert!(gap_recommendation(root_capture).starts_with("Nothing to do"));
        let user_capture = "pid: 3 sockets have no owner because 40 processes' fd tables are unreadable without root";
        assert!(gap_recommendation(user_capture).starts_with("Capture as root"));
        let both = format!("{root_capture}; {user_capture}");
        assert!(gap_recommendation(&both).starts_with("Capture as root"));
    }

    #[test]
    fn high_risk_comes_with_its_flow_and_process() {
        let f = verdict_findings(&stats());
        assert_eq!(f[0].severity, Severity::High);
        assert!(
            f[0].finding.contains("10.0.0.1 -> 203.0.113.9 (syncd)"),
            "{}",
            f[0].finding
        );
        assert!(f.iter().any(|x| x.finding.contains("2 flow(s) were never seen")));
        assert!(!f.iter().any(|x| x.area == "tuning"), "3 % is within 2 x 5 %");
    }

    #[test]
    fn tuning_advice_when_the_share_is_off() {
        let mut s = stats();
        s.anomalies = 30;
        assert!(verdict_findings(&s)
            .iter()
            .any(|x| x.area == "tuning" && x.finding.contains("more than twice")));
        s.anomalies = 0;
        s.top = Some(("a -> b".into(), 10, "Trusted".into(), String::new(), String::new()));
        let f = verdict_findings(&s);
        assert!(f.iter().any(|x| x.finding.contains("no anomaly among 100 flows")));
        assert!(!f.iter().any(|x| x.severity == Severity::High));
    }

    #[test]
    fn findings_render_as_one_query_with_quotes_escaped() {
        let sql = findings_sql(&[Finding {
            severity: Severity::Low,
            area: "x",
            finding: "it's".into(),
            recommendation: "r".into(),
            evidence: "SELECT 1".into(),
        }]);
        assert!(sql.contains("'it''s'"));
        assert!(sql.ends_with("AS insights(severity, area, finding, recommendation, evidence)"));
    }
}
