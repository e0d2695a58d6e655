//! Policy verdicts, watch and insights on the synthetic demo history: the injected upload to a
//! never-seen peer must come out as new and risky, known flows must not, and everything watch
//! shows must be in the store afterwards.

use std::io::Write;

use chrono::{DateTime, Utc};
use netlens::capture::demo::DemoSource;
use netlens::capture::Source;
use predicates::prelude::*;

use crate::Scratch;

const FEATURES_5M: &str = "SELECT * FROM active_flow_features_by(INTERVAL 5 MINUTE)";

fn demo(s: &Scratch, hours: &str) {
    s.cmd()
        .args(["demo", "--quiet", "--hours", hours, "--traffic-rows", "100"])
        .assert()
        .success();
}

#[test]
fn policy_flags_the_upload_to_a_new_peer_and_trusts_the_known_pool() {
    let s = Scratch::new();
    demo(&s, "3");
    // Judge from the window the upload starts in: everything before is the baseline.
    let split = s.query(
        "SELECT strftime(time_bucket(INTERVAL 5 MINUTE, min(first_seen)), '%Y-%m-%d %H:%M:%S') \
         FROM connections WHERE process_name = 'syncd'",
    );
    s.cmd()
        .args(["train", "policy", "--on", FEATURES_5M, "--set"])
        .arg(format!("split={split}"))
        .args(["--set", "segments=4", "--seed", "7"])
        .assert()
        .success()
        .stderr(predicate::str::contains("policy: baseline of"));
    let upload = s.query(
        "SELECT verdict, new_flow, risk >= 30, processes FROM latest_verdicts \
         WHERE dst_ip = '198.51.100.77' ORDER BY window_start LIMIT 1",
    );
    let fields: Vec<&str> = upload.split(',').collect();
    assert!(
        matches!(fields[0], "New Flow" | "Anomalous"),
        "the upload's first window: {upload}"
    );
    assert_eq!(&fields[1..], ["true", "true", "syncd"], "{upload}");
    assert_eq!(
        s.query("SELECT count(*) FROM latest_verdicts WHERE dst_ip = '127.0.0.1' AND new_flow"),
        "0",
        "the database pool is in the baseline"
    );
    // The two baseline models are ordinary stored models, and the run is in model_runs.
    assert_eq!(
        s.query("SELECT string_agg(name, '+' ORDER BY name) FROM latest_models WHERE name LIKE 'policy_%'"),
        "policy_iforest+policy_segments"
    );
    assert_eq!(s.query("SELECT count(*) FROM model_runs WHERE stage = 'policy'"), "1");
    assert_eq!(
        s.query("SELECT count(*) > 0 FROM latest_policy_baseline WHERE kind = 'flow'"),
        "true"
    );
    // Every verdict is one of the four, with its reason.
    assert_eq!(
        s.query(
            "SELECT count(*) FROM latest_verdicts WHERE verdict NOT IN ('Trusted', 'New Flow', 'Segment Drift', 'Anomalous') \
             OR (verdict <> 'Trusted' AND reason = '')"
        ),
        "0"
    );
    // Issue 21: a Trusted verdict's reason said "remote port not seen in the baseline", which
    // contradicts it. Each reason starts with what decided the verdict.
    assert_eq!(
        s.query(
            "SELECT count(*) FROM latest_verdicts WHERE NOT CASE verdict \
               WHEN 'Trusted' THEN reason LIKE 'known flow in its usual segment, score %' \
               WHEN 'Anomalous' THEN reason LIKE 'anomaly score % > threshold %' \
               WHEN 'New Flow' THEN reason LIKE 'flow not seen in the baseline%' \
               ELSE reason LIKE 'segment %, usually %' END"
        ),
        "0"
    );
    assert_eq!(
        s.query("SELECT count(*) FROM latest_verdicts WHERE verdict = 'Trusted' AND reason LIKE 'remote port%'"),
        "0"
    );

    // insights names the riskiest flow and the new flows, also as JSON.
    let out = s.cmd().args(["insights", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("never seen in the baseline"), "{text}");
    assert!(text.contains("\"severity\""), "{text}");
}

/// Issue 21: `clean_from` declares the windows before the split clean: the baseline is the rows
/// before them, they calibrate the Isolation Forest's threshold (a calibration run of
/// policy_iforest) and their flows are trusted; the upload is still caught.
#[test]
fn policy_calibrates_on_a_clean_window_and_trusts_its_flows() {
    let s = Scratch::new();
    demo(&s, "3");
    let split = s.query(
        "SELECT strftime(time_bucket(INTERVAL 5 MINUTE, min(first_seen)), '%Y-%m-%d %H:%M:%S') \
         FROM connections WHERE process_name = 'syncd'",
    );
    let clean_from = s.query(&format!(
        "SELECT strftime(TIMESTAMP '{split}' - INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S')"
    ));
    s.cmd()
        .args(["train", "policy", "--on", FEATURES_5M, "--set"])
        .arg(format!("split={split}"))
        .arg("--set")
        .arg(format!("clean_from={clean_from}"))
        .args(["--set", "segments=4", "--seed", "7"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("baseline of")
                .and(predicate::str::contains(format!("rows before {clean_from}")))
                .and(predicate::str::contains(
                    "anomaly threshold calibrated on the clean window",
                )),
        );
    // The calibration is a run of the policy's Isolation Forest; the verdicts use its threshold.
    assert_eq!(
        s.query(
            "SELECT c.model, c.version = m.version, regexp_extract(c.metrics, '\"flagged_at_threshold\":\"?([^,}\"]*)', 1), \
                    regexp_extract(v.metrics, '\"calibration_run\":\"?([^,}\"]*)', 1) = CAST(c.run_id AS VARCHAR), \
                    CAST(regexp_extract(v.metrics, '\"threshold\":\"?([^,}\"]*)', 1) AS DOUBLE) = CAST(regexp_extract(c.metrics, '\"threshold\":\"?([^,}\"]*)', 1) AS DOUBLE) \
             FROM model_runs c, latest_models m, model_runs v \
             WHERE c.kind = 'calibrate' AND m.name = 'policy_iforest' AND v.stage = 'policy'"
        ),
        "policy_iforest,true,0,true,true"
    );
    // Flows of the clean window are trusted: none of them is new when judged.
    let clean_flows = format!(
        "SELECT DISTINCT src_ip, dst_ip FROM active_flow_features_by(INTERVAL 5 MINUTE) \
         WHERE window_start >= TIMESTAMP '{clean_from}' AND window_start < TIMESTAMP '{split}'"
    );
    assert_eq!(
        s.query(&format!(
            "SELECT count(*) FROM latest_verdicts v JOIN ({clean_flows}) c \
             ON v.src_ip = CAST(c.src_ip AS VARCHAR) AND v.dst_ip = CAST(c.dst_ip AS VARCHAR) WHERE v.new_flow"
        )),
        "0"
    );
    let upload = s.query(
        "SELECT verdict, risk >= 30 FROM latest_verdicts WHERE dst_ip = '198.51.100.77' ORDER BY window_start LIMIT 1",
    );
    assert_eq!(upload, "New Flow,true");
    // A clean window needs a split after it.
    s.cmd()
        .args(["train", "policy", "--on", FEATURES_5M, "--set"])
        .arg(format!("split={clean_from}"))
        .arg("--set")
        .arg(format!("clean_from={split}"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not before the split"));
}

#[test]
fn policy_refuses_sources_it_cannot_judge() {
    let s = Scratch::new();
    s.cmd()
        .args(["train", "policy", "--on", "SELECT 1 AS x"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("lacks window_start, src_ip, dst_ip"));
    demo(&s, "1");
    s.cmd()
        .args(["train", "policy", "--on", FEATURES_5M, "--set", "split=2000-01-01"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("a baseline needs at least 2 flows"));
    s.cmd()
        .args(["train", "policy", "--on", FEATURES_5M, "--set", "split=2100-01-01"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nothing to judge"));
    assert_eq!(
        s.query("SELECT count(*) FROM models"),
        "0",
        "no model is trained for nothing"
    );
    s.cmd()
        .args(["train", "policy", "--set", "colour=blue"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("policy has no parameter 'colour'"));
    assert_eq!(s.query("SELECT count(*) FROM verdicts"), "0");
    s.cmd()
        .args(["--format", "csv", "stages"])
        .assert()
        .success()
        .stdout(predicate::str::contains("policy,"));
}

/// A recording of the demo host (30 s snapshots), for watch to replay.
fn demo_recording(s: &Scratch, hours: u32) -> std::path::PathBuf {
    let end: DateTime<Utc> = "2026-03-02T12:00:00Z".parse().unwrap();
    let mut source = DemoSource::new(hours, std::time::Duration::from_secs(30), 3, end).unwrap();
    let path = s.path("demo.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    while let Some(snapshot) = source.snapshot(end).unwrap() {
        serde_json::to_writer(&mut file, &snapshot).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.flush().unwrap();
    path
}

#[test]
fn watch_judges_each_window_and_leaves_it_all_in_the_store() {
    let s = Scratch::new();
    let recording = demo_recording(&s, 1);
    let out = s
        .cmd()
        .args(["watch", "--replay"])
        .arg(&recording)
        .args([
            "--baseline",
            "15m",
            "--interval",
            "30s",
            "--segments",
            "3",
            "--windows",
            "6",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("watch: baseline of"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("active=")).collect();
    assert_eq!(lines.len(), 6, "one line per judged window off a terminal:\n{stdout}");
    assert_eq!(s.query("SELECT count(DISTINCT run_id) FROM verdicts"), "6");
    assert_eq!(
        s.query("SELECT count(*) FROM model_runs WHERE stage IN ('kmeans', 'iforest') AND kind = 'train'"),
        "2",
        "trained once, judged six times"
    );
    assert_eq!(
        s.query(
            "SELECT (SELECT count(DISTINCT run_id) FROM policy_baseline), (SELECT count(DISTINCT baseline_run) FROM verdicts)"
        ),
        "1,1",
        "the baseline is recorded once and every window is judged against it"
    );
    // What the last line printed is what the newest run holds.
    let active = s.query("SELECT count(*) FROM latest_verdicts");
    assert!(
        lines[5].contains(&format!("active={active} ")),
        "{} vs {active}",
        lines[5]
    );
    // Windows wider than the recording's spacing, or not dividing a day (DuckDB buckets from
    // 2000-01-03, not the Unix epoch), are judged whole, each once, never as empty.
    for interval in ["1m", "7s"] {
        let t = Scratch::new();
        let out = t
            .cmd()
            .args(["watch", "--replay"])
            .arg(&recording)
            .args([
                "--baseline",
                "15m",
                "--interval",
                interval,
                "--segments",
                "3",
                "--windows",
                "3",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            stdout.lines().filter(|l| l.contains("active=")).count(),
            3,
            "{interval}:\n{stdout}"
        );
        assert!(!stdout.contains("no active flows"), "{interval}:\n{stdout}");
        assert_eq!(t.query("SELECT count(DISTINCT run_id) FROM verdicts"), "3");
    }
    // watch never runs on a read-only database.
    s.cmd()
        .args(["--read-only", "watch", "--replay"])
        .arg(&recording)
        .assert()
        .failure()
        .stderr(predicate::str::contains("read-only"));
}

#[test]
fn insights_report_each_detector_with_its_top_finding() {
    let s = Scratch::new();
    demo(&s, "6");
    s.cmd().args(["detect", "all", "--quiet"]).assert().success();
    let out = s
        .cmd()
        .args(["--format", "csv", "--no-headers", "insights"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("port_scans row(s); first: 192.168.1.10 scanned 192.168.1.30"),
        "{text}"
    );
    assert!(text.contains("-> 203.0.113.66:4433 every"), "the demo's beacon: {text}");
    assert!(text.contains("long_connections row(s)"), "{text}");
    assert!(
        text.lines().next().is_some_and(|l| l.starts_with("high,")),
        "most severe first: {text}"
    );
}

#[test]
fn insights_on_an_empty_store_says_what_to_do() {
    let s = Scratch::new();
    s.cmd()
        .args(["--format", "csv", "insights"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to report yet"));
}
