//! `explain`: permutation importance and per-row reasons through the real binary, on the command
//! line, in the shell and through a server; determinism, bad input and Ctrl-C storing nothing;
//! the ensemble on NSL-KDD.

use predicates::prelude::*;

use crate::analysis::{with_traffic, SMALL_ENSEMBLE};
use crate::Scratch;

/// The traffic table with a column that tells nothing (the same spread of values in outliers
/// and in normal rows).
const WITH_NOISE: &str = "CREATE VIEW noisy AS SELECT *, CAST((id * 37) % 11 AS DOUBLE) AS noise FROM traffic";

fn csv(s: &Scratch, args: &[&str]) -> String {
    let out = s.cmd().args(["--format", "csv"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What every explain table holds, to show a failed run stored nothing.
fn stored(s: &Scratch) -> String {
    s.query(
        "SELECT (SELECT count(*) FROM explain_runs), (SELECT count(*) FROM permutation_importance), \
         (SELECT count(*) FROM row_explanations), \
         (SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '__netlens%')",
    )
}

#[test]
fn explain_ranks_the_planted_features_and_says_why_each_outlier_stands_out() {
    let s = with_traffic();
    s.query(WITH_NOISE);
    csv(
        &s,
        &["train", "iforest", "--on", "noisy", "--label", "label", "--seed", "3"],
    );
    let shown = csv(&s, &["explain", "1", "--top", "10"]);
    assert!(shown.starts_with("rank,feature,importance"), "{shown}");
    // With the run's label: the drop in ROC-AUC; a and b carry the outliers, noise and proto do not.
    assert_eq!(
        s.query("SELECT explained_run, model, measure, baseline, label_column, rows_in, sampled, explained_rows FROM explain_runs"),
        "1,iforest,roc_auc_drop,1.0,label,600,600,10"
    );
    let ranking = s.query("SELECT string_agg(feature, ' ' ORDER BY rank) FROM latest_permutation_importance");
    let top_two: Vec<&str> = ranking.split(' ').take(2).collect();
    assert!(top_two.contains(&"a") && top_two.contains(&"b"), "{ranking}");
    assert_eq!(
        s.query(
            "SELECT count(*) FROM permutation_importance WHERE feature IN ('noise', 'proto') AND importance > 0.001"
        ),
        "0"
    );
    // The ten highest-scoring rows are the planted outliers; what pushed each out first is a or b,
    // far from its training median, and setting it to the median lowers the score.
    assert_eq!(
        s.query(
            "SELECT count(DISTINCT row_id), min(CAST(id AS INT)), count(*) FILTER (feature_rank = 1 AND feature IN ('a', 'b') AND score_drop > 0), \
             count(*) FILTER (feature_rank = 1 AND abs(TRY_CAST(value AS DOUBLE) - TRY_CAST(reference AS DOUBLE)) > 200), bool_and(is_anomaly) \
             FROM latest_row_explanations"
        ),
        "10,590,10,10,true"
    );
    assert_eq!(
        s.query("SELECT count(*) FROM row_explanations WHERE abs(score - score_with_reference - score_drop) > 1e-12"),
        "0"
    );
    // The row's score is the run's.
    assert_eq!(
        s.query(
            "SELECT count(*) FROM row_explanations e JOIN anomaly_scores a ON a.run_id = 1 AND a.row_id = e.row_id \
             WHERE abs(a.score - e.score) < 1e-12 AND e.feature_rank = 1"
        ),
        "10"
    );
    // Same seed, same figures; another seed shuffles otherwise.
    csv(&s, &["explain", "1", "--top", "10"]);
    csv(&s, &["explain", "1", "--top", "10", "--seed", "7"]);
    let same = |a: i64, b: i64| {
        s.query(&format!(
            "SELECT count(*) FROM permutation_importance x JOIN permutation_importance y USING (feature) \
             WHERE x.run_id = {a} AND y.run_id = {b} AND x.importance = y.importance AND x.rank = y.rank"
        ))
    };
    assert_eq!(same(2, 3), "4");
    assert_ne!(
        s.query(
            "SELECT string_agg(importance::VARCHAR, ',' ORDER BY feature) FROM permutation_importance WHERE run_id = 4"
        ),
        s.query(
            "SELECT string_agg(importance::VARCHAR, ',' ORDER BY feature) FROM permutation_importance WHERE run_id = 2"
        ),
    );
    // A model and rows without a label: the mean shift of the score, on a seeded sample.
    csv(
        &s,
        &[
            "explain",
            "iforest",
            "--on",
            "SELECT * EXCLUDE (label) FROM noisy",
            "--sample",
            "100",
            "--top",
            "0",
        ],
    );
    assert_eq!(
        s.query("SELECT explained_run IS NULL, measure, label_column IS NULL, sampled, explained_rows FROM explain_runs WHERE run_id = 5"),
        "true,mean_abs_score_shift,true,100,0"
    );
    assert_eq!(
        s.query("SELECT feature FROM permutation_importance WHERE run_id = 5 AND rank = 4"),
        "proto"
    );
}

#[test]
fn explain_of_an_ensemble_run_joins_each_members_vote() {
    let s = with_traffic();
    let mut args = vec![
        "train", "ensemble", "--on", "traffic", "--label", "label", "--seed", "11",
    ];
    args.extend_from_slice(SMALL_ENSEMBLE);
    csv(&s, &args);
    csv(&s, &["explain", "1", "--top", "5", "--sample", "300"]);
    assert_eq!(
        s.query("SELECT stage, measure, sampled FROM explain_runs"),
        "ensemble,roc_auc_drop,300"
    );
    // Each explained row's members, from the run it explains.
    assert_eq!(
        s.query(
            "SELECT count(*), count(*) FILTER (abs(e.score - x.score) < 1e-12 AND x.iforest_vote IS NOT NULL AND x.votes >= 0) \
             FROM row_explanations e JOIN explain_runs r USING (run_id) \
             JOIN ensemble_scores x ON x.run_id = r.explained_run AND x.row_id = e.row_id WHERE e.feature_rank = 1"
        ),
        "5,5"
    );
}

#[test]
fn explain_refuses_bad_input_and_stores_nothing() {
    let s = with_traffic();
    csv(&s, &["train", "iforest", "--on", "traffic", "--exclude", "label"]);
    csv(&s, &["train", "pca", "--on", "traffic", "--exclude", "label"]);
    let before = stored(&s);
    for (args, message) in [
        (vec!["explain", "99"], "there is no model run 99"),
        (vec!["explain", "nosuch"], "nosuch"),
        (vec!["explain", "pca"], "gives no anomaly score to explain"),
        (vec!["explain", "1", "--sample", "1"], "--sample 1: expected 2 to"),
        (vec!["explain", "1", "--repeats", "0"], "--repeats 0"),
        (
            vec!["explain", "1", "--label", "verdict"],
            "has no column 'verdict' for --label",
        ),
        (
            vec!["explain", "iforest", "--on", "SELECT id, a FROM traffic"],
            "lacks column(s)",
        ),
        (
            vec!["explain", "iforest", "--on", "SELECT * FROM traffic LIMIT 1"],
            "at least 2",
        ),
    ] {
        s.cmd()
            .args(&args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(message));
    }
    assert_eq!(stored(&s), before);
    assert_eq!(before, "0,0,0,0");
}

#[test]
fn explain_works_in_the_shell_and_through_the_server() {
    let s = with_traffic();
    let out = s
        .cmd()
        .arg("shell")
        .write_stdin(".mode csv\n.train iforest --on traffic --label label\n.explain 1 --top 2\nSELECT count(*) FROM row_explanations;\n")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("row_rank,row_id,id,score,is_anomaly,pushed_out_by"),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n6\n"), "{stdout}");
    let server = crate::serve::Server::start(&s, &["--no-capture"]);
    let shown = csv(&s, &["explain", "iforest", "--top", "1"]);
    assert!(shown.contains("1,a,") || shown.contains("1,b,"), "{shown}");
    server.stop(std::time::Duration::from_secs(20));
    assert_eq!(s.query("SELECT count(*), max(explained_rows) FROM explain_runs"), "2,2");
}

#[test]
fn ctrl_c_cancels_an_explain_and_stores_nothing() {
    let s = Scratch::new();
    s.query("CREATE TABLE big AS SELECT i AS id, random() AS x, random() AS y FROM range(300000) r(i)");
    s.cmd()
        .args(["train", "iforest", "--on", "SELECT * FROM big LIMIT 2000"])
        .assert()
        .success();
    // Minutes of shuffling in Rust, no statement running: Ctrl-C lands between two batches.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .args([
            "explain",
            "iforest",
            "--on",
            "big",
            "--sample",
            "300000",
            "--repeats",
            "1000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    crate::ctrl_c_ends_it_with_130(child);
    assert_eq!(stored(&s), "0,0,0,0");
}

/// NSL-KDD as in bench/analysis_bench.py: the ensemble fitted on KDDTrain+'s normal rows,
/// explained on KDDTest+ with its label.
#[test]
fn explain_names_what_sets_nsl_kdd_attacks_apart() {
    let Some(s) = crate::nsl_kdd() else {
        return;
    };
    csv(
        &s,
        &[
            "train",
            "ensemble",
            "--on",
            "SELECT * FROM kdd_train WHERE label = 'normal'",
            "--exclude",
            "label,difficulty",
            "--model",
            "kdd",
        ],
    );
    csv(
        &s,
        &[
            "explain",
            "kdd",
            "--on",
            "kdd_test",
            "--label",
            "label",
            "--sample",
            "1000",
            "--repeats",
            "2",
            "--top",
            "20",
        ],
    );
    // The sample ranks attacks as the whole test set does, and some features carry it.
    let baseline: f64 = s.query("SELECT baseline FROM explain_runs").parse().unwrap();
    assert!(baseline > 0.9, "baseline ROC-AUC {baseline}");
    let top: f64 = s
        .query("SELECT importance FROM permutation_importance WHERE rank = 1")
        .parse()
        .unwrap();
    assert!(top > 0.005, "top importance {top}");
    assert_eq!(s.query("SELECT count(*) FROM permutation_importance"), "41");
    // The rows ranked highest are attacks, each with a feature that pushed it out.
    assert_eq!(
        s.query(
            "SELECT count(DISTINCT e.row_id) FILTER (t.label <> 'normal') >= 18, count(DISTINCT e.row_id) FILTER (e.score_drop > 0) \
             FROM row_explanations e JOIN (SELECT row_number() OVER () - 1 AS row_id, label FROM kdd_test) t USING (row_id)"
        ),
        "true,20"
    );
}
