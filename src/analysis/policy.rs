//! The `policy` stage: prototype 000's policy inference as a table. A baseline (the source's rows
//! before a split time) defines the trusted flows, ports and protocols and each flow's usual
//! segment; every newer row (a flow in a later window) gets a verdict:
//!
//! - **Anomalous**: the Isolation Forest trained on the baseline flags it (score > threshold);
//! - **New Flow**: its host and src -> dst pair never occurs in the baseline;
//! - **Segment Drift**: the K-Means model trained on the baseline puts it in another segment
//!   than the flow's most frequent baseline segment;
//! - **Trusted**: none of these.
//!
//! The first that applies wins, in that order. The risk score (0..100) combines the three:
//! `risk = 100 * (0.5 * a + 0.3 * n + 0.2 * d)` where `a = clamp((score - m) / (t - m), 0, 1)`
//! (m = median baseline score, t = threshold: 0 for a typical flow, 1 at the threshold),
//! `n = 1` for a new flow, 0.5 for a known flow on a port or protocol the baseline never used,
//! else 0, and `d = 1` on segment drift. Rows with risk >= [`HIGH_RISK`] are high risk.
//!
//! It composes the framework instead of being a [`super::Stage`]: it trains `kmeans` and
//! `iforest` on the baseline (two ordinary, stored, versioned models, each its own run), then
//! applies both to the newer rows and writes `verdicts` plus a `model_runs` row (kind score,
//! stage policy) in one transaction; its `score_ms` covers reading the rows and applying both
//! models. What the baseline trusts is written once to `policy_baseline` when it is trained, and
//! every judging (watch judges many windows against one baseline) compares against those rows.
//! The two training runs are complete runs of their own and stay stored when a later step
//! fails. May touch: the store, through the framework and the policy tables.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use super::features::{Selection, Source};
use super::{apply_into, load_model, next_run_id, train, RunSummary, StoredModel, TrainRequest};
use crate::error::{Error, Result};
use crate::store::{quote_ident, quote_literal, Store};

/// One line for `stages`.
pub const ABOUT: &str = "Policy verdicts (prototype 000): baseline segments and Isolation Forest, then each newer flow Trusted, New Flow, Segment Drift or Anomalous with a risk score";

/// Its `--set` parameters, for `stages`.
pub const PARAMS_HELP: &str =
    "split=TIMESTAMP (default: the newest window is judged), segments=auto|K, contamination=0.05, clean_from=TIMESTAMP (windows from it to the split are a clean window that calibrates the anomaly threshold), alarm_rate=0.001";

/// Risk at and above which a verdict counts as high risk.
pub const HIGH_RISK: i64 = 60;

/// Columns a policy source must have.
const REQUIRED: [&str; 3] = ["window_start", "src_ip", "dst_ip"];

/// Key and bookkeeping columns that are never features.
const NOT_FEATURES: [&str; 7] = [
    "flow_id",
    "window_start",
    "host",
    "src_ip",
    "dst_ip",
    "first_seen",
    "last_seen",
];

/// `train policy ...`.
#[derive(Debug, Clone)]
pub struct PolicyRequest {
    /// Feature source with window_start, src_ip, dst_ip (default `flow_features`).
    pub source: String,
    /// Rows before this time are the baseline, the rest are judged; None: the newest window is
    /// judged against everything before it.
    pub split: Option<NaiveDateTime>,
    /// K-Means k; None chooses it by the elbow method.
    pub segments: Option<usize>,
    pub contamination: f64,
    pub seed: u64,
    /// Prefix of the two model names (`<prefix>_segments`, `<prefix>_iforest`).
    pub model: String,
    /// Further columns that are not features.
    pub exclude: Vec<String>,
    /// With a time: the windows in `[clean_from, split)` are declared clean, held back from the
    /// baseline and used to calibrate the Isolation Forest's threshold (see
    /// [`super::calibration`]); the baseline is the rows before `clean_from`.
    pub clean_from: Option<NaiveDateTime>,
    /// Share of the clean window's rows that may stay above the calibrated threshold.
    pub alarm_rate: f64,
}

impl PolicyRequest {
    /// Reads `--set` keys: split (a timestamp), segments (auto or k), contamination.
    pub fn from_set(
        source: Option<String>,
        model: Option<String>,
        seed: u64,
        exclude: Vec<String>,
        set: &BTreeMap<String, String>,
    ) -> Result<Self> {
        for key in set.keys() {
            if !matches!(
                key.as_str(),
                "split" | "segments" | "k" | "contamination" | "clean_from" | "alarm_rate"
            ) {
                return Err(Error::Usage(format!(
                    "policy has no parameter '{key}'\n  hint: policy takes {PARAMS_HELP}"
                )));
            }
        }
        let split = set.get("split").map(|s| parse_timestamp(s)).transpose()?;
        let clean_from = set.get("clean_from").map(|s| parse_timestamp(s)).transpose()?;
        let alarm_rate = match set.get("alarm_rate") {
            None => super::calibration::DEFAULT_ALARM_RATE,
            Some(r) => r
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..0.5).contains(r))
                .ok_or_else(|| Error::Usage(format!("alarm_rate={r}: expected a share of at least 0 and below 0.5")))?,
        };
        if set.contains_key("alarm_rate") && clean_from.is_none() {
            return Err(Error::Usage(
                "alarm_rate applies to the clean window: set clean_from=TIME too".to_string(),
            ));
        }
        let segments = match set.get("segments").or_else(|| set.get("k")).map(String::as_str) {
            None | Some("auto") => None,
            Some(k) => Some(k.parse::<usize>().ok().filter(|k| *k >= 1).ok_or_else(|| {
                Error::Usage(format!(
                    "segments={k}: expected auto or a whole number of segments, at least 1"
                ))
            })?),
        };
        let contamination =
            match set.get("contamination") {
                None => 0.05,
                Some(c) => c.parse::<f64>().ok().filter(|c| *c > 0.0 && *c <= 0.5).ok_or_else(|| {
                    Error::Usage(format!("contamination={c}: expected a share above 0 and at most 0.5"))
                })?,
            };
        Ok(PolicyRequest {
            source: source.unwrap_or_else(|| "flow_features".to_string()),
            split,
            segments,
            contamination,
            seed,
            model: model.unwrap_or_else(|| "policy".to_string()),
            exclude,
            clean_from,
            alarm_rate,
        })
    }
}

/// Parses `2026-03-01 12:00:00` (or with a `T`, or a date alone), UTC.
pub fn parse_timestamp(text: &str) -> Result<NaiveDateTime> {
    let t = text.trim().trim_end_matches('Z').trim_end_matches(" UTC");
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(ts);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
    }
    Err(Error::Usage(format!(
        "'{text}' is not a time; write e.g. 2026-03-01 12:00:00 (UTC)"
    )))
}

/// What a policy run did.
#[derive(Debug, Clone)]
pub struct PolicySummary {
    pub run_id: i64,
    pub split: NaiveDateTime,
    pub baseline_rows: u64,
    pub judged_rows: u64,
    /// Verdict -> rows.
    pub verdicts: BTreeMap<String, u64>,
    pub high_risk: u64,
    pub segments: RunSummary,
    pub iforest: RunSummary,
    /// The clean window's calibration of the Isolation Forest (with `clean_from`).
    pub calibration: Option<super::calibration::Calibration>,
}

/// Trains on the baseline, judges the newer rows, writes `verdicts`. See the module doc.
pub fn run(store: &Store, request: &PolicyRequest, now: DateTime<Utc>) -> Result<PolicySummary> {
    let source = PolicySource::open(store, &request.source)?;
    let split = match request.split {
        Some(s) => s,
        None => source.newest_window(store)?,
    };
    // Checked before training, so a run that cannot judge anything stores no model either.
    let judged_sql = source.rows_from(split);
    if count(store, &judged_sql)? == 0 {
        return Err(no_rows_to_judge(&request.source));
    }
    let baseline = match request.clean_from {
        None => train_baseline(store, &source, source.rows_before(split), request, now)?,
        Some(clean_from) => {
            if clean_from >= split {
                return Err(Error::Usage(format!(
                    "clean_from={clean_from} is not before the split ({split}): the clean window is [clean_from, split)"
                )));
            }
            let mut baseline = train_baseline(store, &source, source.rows_before(clean_from), request, now)?;
            baseline.calibrate(store, &source, (clean_from, split), request, now)?;
            baseline
        }
    };
    let judged =
        judge(store, &baseline, &judged_sql, request, now)?.ok_or_else(|| no_rows_to_judge(&request.source))?;
    Ok(PolicySummary {
        run_id: judged.run_id,
        split,
        baseline_rows: baseline.rows,
        judged_rows: judged.rows,
        verdicts: judged.verdicts,
        high_risk: judged.high_risk,
        segments: baseline.segments,
        iforest: baseline.iforest,
        calibration: baseline.calibration,
    })
}

/// A checked policy source: the SQL that reads it with a `flow_id` and `policy_host` added.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub text: String,
    keyed: String,
    columns: Vec<String>,
}

impl PolicySource {
    /// Checks that `text` (a relation or query) has window_start, src_ip and dst_ip.
    pub fn open(store: &Store, text: &str) -> Result<Self> {
        let source_sql = match Source::parse(text) {
            Source::Relation(name) => {
                if !store.relation_exists(&name)? {
                    return Err(Error::UnknownTable { name });
                }
                format!("SELECT * FROM {}", quote_ident(&name))
            }
            Source::Query(q) => format!("SELECT * FROM ({q})"),
        };
        let columns = store.query_columns(&source_sql)?;
        let has = |c: &str| columns.iter().any(|x| x.eq_ignore_ascii_case(c));
        let missing: Vec<&str> = REQUIRED.iter().copied().filter(|c| !has(c)).collect();
        if !missing.is_empty() {
            return Err(Error::FeatureSource {
                input: super::features::short(text),
                reason: format!(
                    "lacks {} (policy judges flows src_ip -> dst_ip per time window; flow_features, active_flow_features and imported_flow_features have them)",
                    missing.join(", ")
                ),
            });
        }
        let host_expr = if has("host") { "CAST(host AS VARCHAR)" } else { "''" };
        let keyed = if has("flow_id") {
            format!("SELECT *, {host_expr} AS policy_host FROM ({source_sql})")
        } else {
            format!(
                "SELECT *, {host_expr} AS policy_host, concat_ws(' ', {host_expr}, src_ip, '->', dst_ip, '@', window_start) AS flow_id FROM ({source_sql})"
            )
        };
        // Rows are told apart by flow_id (results join back on it): refuse duplicates or NULLs
        // before any model is trained.
        let unique: bool = store
            .conn()
            .query_row(
                &format!("SELECT count(flow_id) = count(*) AND count(DISTINCT flow_id) = count(*) FROM ({keyed})"),
                [],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        if !unique {
            return Err(Error::FeatureSource {
                input: super::features::short(text),
                reason: "has NULL or repeated flow_id values; policy needs one row per flow and window".to_string(),
            });
        }
        Ok(PolicySource {
            text: text.to_string(),
            keyed,
            columns,
        })
    }

    fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|x| x.eq_ignore_ascii_case(column))
    }

    /// Start of the newest window: by default the newest window is judged against the rest.
    pub fn newest_window(&self, store: &Store) -> Result<NaiveDateTime> {
        let newest: Option<NaiveDateTime> = store
            .conn()
            .query_row(
                &format!("SELECT max(CAST(window_start AS TIMESTAMP)) FROM ({})", self.keyed),
                [],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        newest.ok_or_else(|| Error::FeatureSource {
            input: super::features::short(&self.text),
            reason: "has no rows: capture or import some traffic first".to_string(),
        })
    }

    fn split_sql(at: NaiveDateTime) -> String {
        format!(
            "TIMESTAMP {}",
            quote_literal(&at.format("%Y-%m-%d %H:%M:%S%.f").to_string())
        )
    }

    /// The rows before `split`.
    pub fn rows_before(&self, split: NaiveDateTime) -> String {
        format!(
            "SELECT * FROM ({}) WHERE window_start < {}",
            self.keyed,
            Self::split_sql(split)
        )
    }

    /// The rows at or after `split`.
    pub fn rows_from(&self, split: NaiveDateTime) -> String {
        format!(
            "SELECT * FROM ({}) WHERE window_start >= {}",
            self.keyed,
            Self::split_sql(split)
        )
    }

    /// The rows of windows in `[from, to)`.
    pub fn rows_between(&self, from: NaiveDateTime, to: NaiveDateTime) -> String {
        format!(
            "SELECT * FROM ({}) WHERE window_start >= {} AND window_start < {}",
            self.keyed,
            Self::split_sql(from),
            Self::split_sql(to)
        )
    }
}

/// The models a baseline trained, and what judging needs of it.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub rows: u64,
    pub segments: RunSummary,
    pub iforest: RunSummary,
    /// The Isolation Forest's threshold: from its contamination, or calibrated on a clean window.
    /// A judging uses the threshold in force then (a later `calibrate` of the model wins).
    pub threshold: f64,
    /// The Isolation Forest's own threshold (from its contamination).
    pub model_threshold: f64,
    /// The calibration, when the threshold came from a clean window.
    pub calibration: Option<super::calibration::Calibration>,
    /// Median Isolation Forest score of the baseline rows (the risk formula's m).
    pub median_score: f64,
    pub k: Option<i64>,
    segments_model: StoredModel,
    iforest_model: StoredModel,
    has_protocol: bool,
    has_ports: bool,
    has_processes: bool,
}

/// Trains the segment and anomaly models on the source's rows before `split`.
pub fn train_baseline(
    store: &Store,
    source: &PolicySource,
    sql: String,
    request: &PolicyRequest,
    now: DateTime<Utc>,
) -> Result<Baseline> {
    let rows = count(store, &sql)?;
    if rows < 2 {
        return Err(Error::FeatureSource {
            input: super::features::short(&source.text),
            reason: format!(
                "has {rows} row(s) in the baseline: a baseline needs at least 2 flows (capture longer, or set split=TIME later)"
            ),
        });
    }
    let mut exclude: Vec<String> = NOT_FEATURES
        .iter()
        .filter(|c| source.has(c))
        .map(|c| c.to_string())
        .collect();
    exclude.extend(["flow_id".to_string(), "policy_host".to_string()]);
    exclude.extend(request.exclude.iter().cloned());
    exclude.sort();
    exclude.dedup();
    let selection = Selection {
        features: Vec::new(),
        exclude,
        id: Some("flow_id".to_string()),
        label: None,
    };
    let mut kmeans_set = BTreeMap::new();
    for (key, value) in segment_params(request.segments, rows) {
        kmeans_set.insert(key.to_string(), value);
    }
    let segments = train(
        store,
        &TrainRequest {
            stage: "kmeans".to_string(),
            source: Some(sql.clone()),
            selection: selection.clone(),
            model: Some(format!("{}_segments", request.model)),
            seed: request.seed,
            set: kmeans_set,
        },
        now,
    )?;
    let mut iforest_set = BTreeMap::new();
    iforest_set.insert("contamination".to_string(), request.contamination.to_string());
    let iforest = train(
        store,
        &TrainRequest {
            stage: "iforest".to_string(),
            source: Some(sql.clone()),
            selection,
            model: Some(format!("{}_iforest", request.model)),
            seed: request.seed,
            set: iforest_set,
        },
        now,
    )?;
    let threshold = iforest
        .metrics
        .get("threshold")
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::Sql {
            message: "the iforest run reported no threshold".to_string(),
        })?;
    let has_protocol = source.has("protocol");
    let has_ports = source.has("remote_port_min") && source.has("remote_port_max");
    record_baseline(store, &sql, segments.run_id, has_protocol, has_ports)?;
    let median_score: f64 = store
        .conn()
        .query_row(
            "SELECT coalesce(median(score), 0) FROM anomaly_scores WHERE run_id = ?",
            [iforest.run_id],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    let segments_model = load_model(store, &format!("{}@{}", segments.model, segments.version))?;
    let iforest_model = load_model(store, &format!("{}@{}", iforest.model, iforest.version))?;
    Ok(Baseline {
        rows,
        segments_model,
        iforest_model,
        k: segments.metrics.get("k").and_then(Value::as_i64),
        segments,
        iforest,
        threshold,
        model_threshold: threshold,
        calibration: None,
        median_score,
        has_protocol,
        has_ports,
        has_processes: source.has("host") && source.has("last_seen") && store.relation_exists("connections")?,
    })
}

impl Baseline {
    /// Calibrates the Isolation Forest on the source's windows in `[from, to)` (declared clean,
    /// held back from the baseline): stored as a calibration run of the model, and judging then
    /// flags by it.
    pub fn calibrate(
        &mut self,
        store: &Store,
        source: &PolicySource,
        (from, to): (NaiveDateTime, NaiveDateTime),
        request: &PolicyRequest,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let window = json!({ "time_column": "window_start", "from": from.to_string(), "to": to.to_string() });
        let calibration = super::calibration::calibrate_rows(
            store,
            &self.iforest_model,
            &source.rows_between(from, to),
            &request.source,
            window,
            request.alarm_rate,
            now,
        )?;
        self.threshold = calibration.threshold;
        self.calibration = Some(calibration);
        self.trust_clean_window(store, &source.rows_between(from, to))
    }

    /// The clean window is trusted traffic too: its flows, protocols and ports that the
    /// baseline lacks are added to `policy_baseline` (a flow with its most frequent segment in
    /// the window), so declaring a window clean never makes its flows "new" afterwards.
    fn trust_clean_window(&self, store: &Store, clean_sql: &str) -> Result<()> {
        let run = self.segments.run_id;
        store.in_transaction(|conn| {
            let scratch = format!("__netlens_policy_{run}_clean");
            apply_into(store, &self.segments_model, clean_sql, "flow_id", &scratch)?;
            let clean = quote_ident(&scratch);
            let known = |kind: &str| format!("SELECT value FROM policy_baseline WHERE run_id = {run} AND kind = '{kind}'");
            let mut sql = format!(
                "INSERT INTO policy_baseline
                 SELECT {run}, 'flow', flow, mode(segment), count(*)
                 FROM (SELECT policy_host || ' ' || CAST(src_ip AS VARCHAR) || ' -> ' || CAST(dst_ip AS VARCHAR) AS flow, segment FROM {clean})
                 WHERE flow NOT IN ({}) GROUP BY flow;",
                known("flow")
            );
            if self.has_protocol {
                sql.push_str(&format!(
                    "INSERT INTO policy_baseline SELECT DISTINCT {run}, 'protocol', CAST(protocol AS VARCHAR), NULL::INTEGER, NULL::BIGINT
                     FROM {clean} WHERE protocol IS NOT NULL AND CAST(protocol AS VARCHAR) NOT IN ({});",
                    known("protocol")
                ));
            }
            if self.has_ports {
                sql.push_str(&format!(
                    "INSERT INTO policy_baseline SELECT DISTINCT {run}, 'port', CAST(port AS VARCHAR), NULL::INTEGER, NULL::BIGINT
                     FROM (SELECT remote_port_min AS port FROM {clean} UNION ALL SELECT remote_port_max FROM {clean})
                     WHERE port IS NOT NULL AND CAST(port AS VARCHAR) NOT IN ({});",
                    known("port")
                ));
            }
            sql.push_str(&format!("DROP TABLE {clean};"));
            conn.execute_batch(&sql).map_err(Error::sql)
        })
    }
}

/// K-Means parameters for a baseline of `rows` rows. With `segments=auto` the elbow's range is
/// narrowed to what the rows can support (k up to half the rows, at most 10), and a baseline too
/// small for any elbow (under 8 rows, as a short watch baseline on a quiet host gives) is one
/// segment: drift then never fires, anomalies and novelty still do.
fn segment_params(segments: Option<usize>, rows: u64) -> Vec<(&'static str, String)> {
    match segments {
        Some(k) => vec![("k", k.to_string())],
        None if rows < 8 => vec![("k", "1".to_string())],
        None => vec![
            ("k", "auto".to_string()),
            ("k_min", "2".to_string()),
            ("k_max", (rows / 2).clamp(4, 10).to_string()),
        ],
    }
}

/// Writes what the baseline trusts into `policy_baseline`, once, keyed by the baseline's K-Means
/// training run: every flow (host src -> dst) with its usual segment, every protocol and remote
/// port. Judging compares against these rows instead of re-reading the baseline's source.
fn record_baseline(store: &Store, base: &str, segments_run: i64, has_protocol: bool, has_ports: bool) -> Result<()> {
    let mut sql = format!(
        "INSERT INTO policy_baseline
         SELECT {segments_run}, 'flow', b.policy_host || ' ' || CAST(b.src_ip AS VARCHAR) || ' -> ' || CAST(b.dst_ip AS VARCHAR),
                mode(s.segment), count(*)
         FROM segments s JOIN ({base}) b ON s.id = CAST(b.flow_id AS VARCHAR) WHERE s.run_id = {segments_run} GROUP BY ALL;"
    );
    if has_protocol {
        sql.push_str(&format!(
            "INSERT INTO policy_baseline SELECT DISTINCT {segments_run}, 'protocol', CAST(protocol AS VARCHAR), NULL::INTEGER, NULL::BIGINT
             FROM ({base}) WHERE protocol IS NOT NULL;"
        ));
    }
    if has_ports {
        sql.push_str(&format!(
            "INSERT INTO policy_baseline SELECT DISTINCT {segments_run}, 'port', CAST(port AS VARCHAR), NULL::INTEGER, NULL::BIGINT
             FROM (SELECT remote_port_min AS port FROM ({base}) UNION ALL SELECT remote_port_max FROM ({base}))
             WHERE port IS NOT NULL;"
        ));
    }
    store.in_transaction(|conn| {
        conn.execute_batch(&sql).map_err(Error::sql)?;
        crate::store::runs::record_output(conn, segments_run, "policy_baseline")
    })
}

/// What one judging did.
#[derive(Debug, Clone)]
pub struct Judged {
    pub run_id: i64,
    pub rows: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub high_risk: u64,
}

/// Applies the baseline's models to `judged_sql`'s rows and writes their verdicts: one policy
/// run, in one transaction (a failure stores nothing of it). `None` when there is no row to
/// judge (nothing is written then).
pub fn judge(
    store: &Store,
    baseline: &Baseline,
    judged_sql: &str,
    request: &PolicyRequest,
    now: DateTime<Utc>,
) -> Result<Option<Judged>> {
    let rows = count(store, judged_sql)?;
    if rows == 0 {
        return Ok(None);
    }
    let (run_id, verdicts, high_risk) = write_verdicts(
        store,
        &VerdictInputs {
            judged_sql,
            segments_model: &baseline.segments_model,
            iforest_model: &baseline.iforest_model,
            segments_run: baseline.segments.run_id,
            threshold: baseline.threshold,
            model_threshold: baseline.model_threshold,
            calibration_run: baseline.calibration.as_ref().map(|c| c.run_id),
            median_score: baseline.median_score,
            has_protocol: baseline.has_protocol,
            has_ports: baseline.has_ports,
            has_processes: baseline.has_processes,
        },
        request,
        (baseline.rows, rows),
        now,
    )?;
    Ok(Some(Judged {
        run_id,
        rows,
        verdicts,
        high_risk,
    }))
}

fn no_rows_to_judge(source: &str) -> Error {
    Error::FeatureSource {
        input: super::features::short(source),
        reason: "has no rows at or after the split: nothing to judge (set split=TIME earlier, or capture longer)"
            .to_string(),
    }
}

struct VerdictInputs<'a> {
    judged_sql: &'a str,
    segments_model: &'a StoredModel,
    iforest_model: &'a StoredModel,
    segments_run: i64,
    /// The threshold in force: the newest calibration's, else the model's own. Resolved again
    /// in the judging's transaction (a `calibrate` after the baseline was trained applies).
    threshold: f64,
    /// The Isolation Forest's own threshold (from its contamination).
    model_threshold: f64,
    calibration_run: Option<i64>,
    median_score: f64,
    has_protocol: bool,
    has_ports: bool,
    has_processes: bool,
}

type Written = (i64, BTreeMap<String, u64>, u64);

/// One policy run over `v.judged_sql` in one transaction, in the phases of its own: the
/// models score the rows into scratch tables, SQL turns scores and baseline into verdicts,
/// their counts are checked against the rows judged, and the run is recorded in `model_runs`.
fn write_verdicts(
    store: &Store,
    v: &VerdictInputs,
    request: &PolicyRequest,
    (baseline_rows, judged_rows): (u64, u64),
    now: DateTime<Utc>,
) -> Result<Written> {
    store.in_transaction(|conn| {
        // The threshold the Isolation Forest flags by now (apply_into flags by the newest
        // calibration): the risk and the reasons must use the same one.
        let in_force = super::calibration::latest(conn, &v.iforest_model.name, v.iforest_model.version)?;
        let v = &VerdictInputs {
            threshold: in_force.map_or(v.model_threshold, |(_, t)| t),
            calibration_run: in_force.map(|(run, _)| run),
            ..*v
        };
        let run_id = next_run_id(conn)?;
        let scratch_segments = format!("__netlens_policy_{run_id}_segments");
        let scratch_scores = format!("__netlens_policy_{run_id}_scores");
        let score_started = Instant::now();
        apply_into(store, v.segments_model, v.judged_sql, "flow_id", &scratch_segments)?;
        apply_into(store, v.iforest_model, v.judged_sql, "flow_id", &scratch_scores)?;
        let score_ms = score_started.elapsed().as_secs_f64() * 1000.0;
        let write_started = Instant::now();
        let seg = quote_ident(&scratch_segments);
        let sco = quote_ident(&scratch_scores);
        let sql = judged_table_sql(v, run_id, &seg, &sco);
        conn.execute_batch("DROP TABLE IF EXISTS __netlens_policy_judged")
            .map_err(Error::sql)?;
        conn.execute_batch(&sql).map_err(Error::sql)?;
        conn.execute_batch(&format!(
            "INSERT INTO verdicts BY NAME SELECT * FROM __netlens_policy_judged;
             DROP TABLE __netlens_policy_judged; DROP TABLE {seg}; DROP TABLE {sco};"
        ))
        .map_err(Error::sql)?;
        crate::store::runs::record_output(conn, run_id, "verdicts")?;
        let (verdicts, high_risk) = count_verdicts(conn, run_id)?;
        let rows_out: u64 = verdicts.values().sum();
        if rows_out != judged_rows {
            return Err(Error::Sql {
                message: format!(
                    "policy judged {rows_out} rows but the source has {judged_rows} after the split; flow_id must be unique per row"
                ),
            });
        }
        let run = PolicyRun {
            run_id,
            baseline_rows,
            judged_rows,
            rows_out,
            high_risk,
            score_ms,
            write_ms: write_started.elapsed().as_secs_f64() * 1000.0,
        };
        record_policy_run(conn, v, request, &run, &verdicts, now)?;
        Ok((run_id, verdicts, u64::try_from(high_risk).unwrap_or(0)))
    })
}

/// The statement creating `__netlens_policy_judged`: each scored row (`sco`) with its segment
/// (`seg`), what is new against the baseline, its verdict, risk and reason.
fn judged_table_sql(v: &VerdictInputs, run_id: i64, seg: &str, sco: &str) -> String {
    let seg_run = v.segments_run;
    let protocol_col = if v.has_protocol {
        "CAST(l.protocol AS VARCHAR)"
    } else {
        "NULL"
    };
    let new_protocol = if v.has_protocol {
        "l.protocol IS NOT NULL AND CAST(l.protocol AS VARCHAR) NOT IN (SELECT value FROM base_protocols)"
    } else {
        "false"
    };
    let new_port = if v.has_ports {
        "(l.remote_port_min IS NOT NULL AND CAST(l.remote_port_min AS VARCHAR) NOT IN (SELECT value FROM base_ports)) OR \
         (l.remote_port_max IS NOT NULL AND CAST(l.remote_port_max AS VARCHAR) NOT IN (SELECT value FROM base_ports))"
    } else {
        "false"
    };
    let processes = if v.has_processes {
        "(SELECT string_agg(DISTINCT c.process_name, ', ' ORDER BY c.process_name) FROM connections c \
          WHERE c.host = l.host AND ((c.local_addr = l.src_ip AND c.remote_addr = l.dst_ip) \
                                     OR (c.local_addr = l.dst_ip AND c.remote_addr = l.src_ip)) \
            AND c.first_seen <= l.last_seen AND c.last_seen >= l.window_start)"
    } else {
        "NULL"
    };
    let t = v.threshold;
    format!(
        "CREATE TEMP TABLE __netlens_policy_judged AS
         WITH base_flows AS (
                  SELECT value AS flow, segment FROM policy_baseline WHERE run_id = {seg_run} AND kind = 'flow'),
              base_protocols AS (SELECT value FROM policy_baseline WHERE run_id = {seg_run} AND kind = 'protocol'),
              base_ports AS (SELECT value FROM policy_baseline WHERE run_id = {seg_run} AND kind = 'port'),
              med AS (SELECT CAST({m} AS DOUBLE) AS m),
              judged AS (
                  SELECT l.flow_id, l.window_start, l.policy_host AS host, CAST(l.src_ip AS VARCHAR) AS src_ip,
                         CAST(l.dst_ip AS VARCHAR) AS dst_ip, {protocol_col} AS protocol,
                         g.segment, b.segment AS baseline_segment, l.score, l.is_anomaly,
                         b.flow IS NULL AS new_flow,
                         coalesce({new_port}, false) AS new_port,
                         coalesce({new_protocol}, false) AS new_protocol,
                         coalesce(b.segment IS NOT NULL AND b.segment <> g.segment, false) AS drift,
                         {processes} AS processes
                  FROM {sco} AS l
                  JOIN {seg} AS g ON g.flow_id = l.flow_id
                  LEFT JOIN base_flows b
                    ON b.flow = l.policy_host || ' ' || CAST(l.src_ip AS VARCHAR) || ' -> ' || CAST(l.dst_ip AS VARCHAR))
         SELECT {run_id} AS run_id, {seg_run} AS baseline_run, j.*,
                CASE WHEN is_anomaly THEN 'Anomalous' WHEN new_flow THEN 'New Flow'
                     WHEN drift THEN 'Segment Drift' ELSE 'Trusted' END AS verdict,
                CAST(round(100 * (
                    0.5 * (CASE WHEN {t} > med.m THEN greatest(0, least(1, (score - med.m) / ({t} - med.m)))
                                ELSE CAST(score > {t} AS INTEGER) END)
                  + 0.3 * (CASE WHEN new_flow THEN 1 WHEN new_port OR new_protocol THEN 0.5 ELSE 0 END)
                  + 0.2 * CAST(drift AS INTEGER))) AS INTEGER) AS risk,
                -- The reason starts with what decided the verdict, so a Trusted row never
                -- reads like an alarm: novelties that did not decide it are marked as notes.
                concat_ws('; ',
                    CASE WHEN is_anomaly THEN printf('anomaly score %.3f > threshold %.3f', score, {t}) END,
                    CASE WHEN new_flow THEN 'flow not seen in the baseline' END,
                    CASE WHEN drift THEN printf('segment %d, usually %d', segment, baseline_segment) END,
                    CASE WHEN NOT (is_anomaly OR new_flow OR drift)
                         THEN printf('known flow in its usual segment, score %.3f at or below threshold %.3f', score, {t}) END,
                    CASE WHEN new_port AND (is_anomaly OR new_flow OR drift) THEN 'remote port not seen in the baseline'
                         WHEN new_port THEN 'note: remote port not seen in the baseline (not enough to distrust a known flow)' END,
                    CASE WHEN new_protocol AND (is_anomaly OR new_flow OR drift) THEN 'protocol not seen in the baseline'
                         WHEN new_protocol THEN 'note: protocol not seen in the baseline (not enough to distrust a known flow)' END) AS reason
         FROM judged j, med",
        m = v.median_score,
    )
}

/// Run `run_id`'s verdicts counted by kind, and its high-risk rows.
fn count_verdicts(conn: &duckdb::Connection, run_id: i64) -> Result<(BTreeMap<String, u64>, i64)> {
    let mut verdicts = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT verdict, count(*) FROM verdicts WHERE run_id = ? GROUP BY verdict")
            .map_err(Error::sql)?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(Error::sql)?;
        for row in rows {
            let (k, n) = row.map_err(Error::sql)?;
            verdicts.insert(k, u64::try_from(n).unwrap_or(0));
        }
    }
    let high_risk: i64 = conn
        .query_row(
            "SELECT count(*) FROM verdicts WHERE run_id = ? AND risk >= ?",
            duckdb::params![run_id, HIGH_RISK],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    Ok((verdicts, high_risk))
}

/// What a policy run did, for its `model_runs` row.
struct PolicyRun {
    run_id: i64,
    baseline_rows: u64,
    judged_rows: u64,
    rows_out: u64,
    high_risk: i64,
    score_ms: f64,
    write_ms: f64,
}

fn record_policy_run(
    conn: &duckdb::Connection,
    v: &VerdictInputs,
    request: &PolicyRequest,
    run: &PolicyRun,
    verdicts: &BTreeMap<String, u64>,
    now: DateTime<Utc>,
) -> Result<()> {
    let PolicyRun {
        run_id,
        baseline_rows,
        judged_rows,
        rows_out,
        high_risk,
        score_ms,
        write_ms,
    } = *run;
    let mut metrics = Map::new();
    metrics.insert("baseline_rows".into(), json!(baseline_rows));
    metrics.insert("threshold".into(), json!(v.threshold));
    metrics.insert("high_risk".into(), json!(high_risk));
    metrics.insert("verdicts".into(), json!(verdicts));
    metrics.insert("segments_run".into(), json!(v.segments_run));
    if let Some(run) = v.calibration_run {
        metrics.insert("calibration_run".into(), json!(run));
        metrics.insert("model_threshold".into(), json!(v.model_threshold));
    }
    let params = json!({
        "clean_from": request.clean_from.map(|s| s.to_string()),
        "alarm_rate": request.clean_from.map(|_| request.alarm_rate),
        "split": request.split.map(|s| s.to_string()),
        "segments": request.segments.map_or(json!("auto"), |k| json!(k)),
        "contamination": request.contamination,
        "seed": request.seed,
    });
    conn.execute(
        "INSERT INTO model_runs (run_id, kind, stage, model, version, params, input, id_column, label_column,
             features, rows_in, rows_out, imputed, load_ms, fit_ms, score_ms, write_ms, metrics, into_table, started_at)
         VALUES (?, 'score', 'policy', ?, 0, ?, ?, 'flow_id', NULL, 0, ?, ?, 0, ?, NULL, ?, ?, ?, NULL, ?)",
        duckdb::params![
            run_id,
            request.model,
            params.to_string(),
            request.source,
            i64::try_from(judged_rows).unwrap_or(i64::MAX),
            i64::try_from(rows_out).unwrap_or(i64::MAX),
            0.0,
            score_ms,
            write_ms,
            Value::Object(metrics).to_string(),
            now.naive_utc()
        ],
    )
    .map_err(Error::sql)?;
    Ok(())
}

fn count(store: &Store, sql: &str) -> Result<u64> {
    let n: i64 = store
        .conn()
        .query_row(&format!("SELECT count(*) FROM ({sql})"), [], |r| r.get(0))
        .map_err(Error::sql)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_the_usual_forms() {
        let want = NaiveDateTime::parse_from_str("2026-03-01 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        for text in [
            "2026-03-01 12:00:00",
            "2026-03-01T12:00:00Z",
            "2026-03-01 12:00",
            "2026-03-01 12:00:00 UTC",
        ] {
            assert_eq!(parse_timestamp(text).unwrap(), want, "{text}");
        }
        assert!(parse_timestamp("noon").is_err());
    }

    #[test]
    fn small_baselines_get_an_elbow_they_can_support() {
        assert_eq!(segment_params(Some(3), 2), [("k", "3".to_string())]);
        assert_eq!(segment_params(None, 5), [("k", "1".to_string())]);
        let p = segment_params(None, 9);
        assert_eq!(p[2], ("k_max", "4".to_string()));
        assert_eq!(segment_params(None, 500)[2], ("k_max", "10".to_string()));
    }

    #[test]
    fn parameters_are_checked() {
        let mut set = BTreeMap::new();
        set.insert("segments".to_string(), "3".to_string());
        set.insert("contamination".to_string(), "0.1".to_string());
        let r = PolicyRequest::from_set(None, None, 1, Vec::new(), &set).unwrap();
        assert_eq!(
            (r.segments, r.contamination, r.source.as_str()),
            (Some(3), 0.1, "flow_features")
        );
        set.insert("contamination".to_string(), "0.9".to_string());
        assert!(PolicyRequest::from_set(None, None, 1, Vec::new(), &set).is_err());
        let mut bad = BTreeMap::new();
        bad.insert("kk".to_string(), "3".to_string());
        assert!(PolicyRequest::from_set(None, None, 1, Vec::new(), &bad).is_err());
    }

    /// Issue 21: a `calibrate` of the policy's Isolation Forest after its baseline was trained
    /// (watch keeps judging with that baseline) changes what is flagged; the risk and the
    /// reasons must use the same threshold, the one in force, not the baseline's.
    #[test]
    fn judging_uses_the_threshold_in_force_after_a_later_calibration() {
        use crate::store::Location;
        let store = Store::open(&Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TABLE test_flows AS
                 SELECT TIMESTAMP '2026-03-01 00:00:00' + INTERVAL (i // 4 * 5) MINUTE AS window_start,
                        '10.0.0.' || (i % 4) AS src_ip, '192.0.2.' || (i % 4) AS dst_ip,
                        CAST(100 + (i * 37) % 50 AS DOUBLE) AS bytes_sent,
                        CAST(i % 7 AS DOUBLE) AS packets
                 FROM range(400) t(i)",
            )
            .unwrap();
        let request =
            PolicyRequest::from_set(Some("test_flows".into()), None, 3, Vec::new(), &BTreeMap::new()).unwrap();
        let source = PolicySource::open(&store, "test_flows").unwrap();
        let split = parse_timestamp("2026-03-01 06:00:00").unwrap();
        let now = Utc::now();
        let baseline = train_baseline(&store, &source, source.rows_before(split), &request, now).unwrap();
        let judged = source.rows_from(split);
        let reasons = |run_id: i64| {
            let mut stmt = store
                .conn()
                .prepare("SELECT reason, is_anomaly, risk FROM verdicts WHERE run_id = ? ORDER BY flow_id")
                .unwrap();
            stmt.query_map([run_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?))
            })
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap()
        };
        let before = judge(&store, &baseline, &judged, &request, now).unwrap().unwrap();
        let own = format!("{:.3}", baseline.threshold);
        let mentioning = |rows: &[(String, bool, i64)], t: &str| {
            let with: Vec<&String> = rows.iter().map(|r| &r.0).filter(|r| r.contains("threshold")).collect();
            !with.is_empty() && with.iter().all(|r| r.contains(&format!("threshold {t}")))
        };
        let rows = reasons(before.run_id);
        assert!(mentioning(&rows, &own), "{own}: {rows:?}");
        // A later calibration on the judged rows themselves, nothing allowed above it.
        let stored = load_model(
            &store,
            &format!("{}@{}", baseline.iforest.model, baseline.iforest.version),
        )
        .unwrap();
        let calibration =
            super::super::calibration::calibrate_rows(&store, &stored, &judged, "test_flows", json!({}), 0.0, now)
                .unwrap();
        assert_ne!(format!("{:.3}", calibration.threshold), own);
        let after = judge(&store, &baseline, &judged, &request, now).unwrap().unwrap();
        let rows = reasons(after.run_id);
        let in_force = format!("{:.3}", calibration.threshold);
        assert!(rows.iter().all(|(_, anomalous, _)| !anomalous), "{rows:?}");
        assert!(mentioning(&rows, &in_force), "{in_force}: {rows:?}");
        let metrics: String = store
            .conn()
            .query_row("SELECT metrics FROM model_runs WHERE run_id = ?", [after.run_id], |r| {
                r.get(0)
            })
            .unwrap();
        let metrics: Value = serde_json::from_str(&metrics).unwrap();
        assert_eq!(metrics["calibration_run"], json!(calibration.run_id));
        assert_eq!(metrics["threshold"], json!(calibration.threshold));
        assert_eq!(metrics["model_threshold"], json!(baseline.threshold));
    }
}
