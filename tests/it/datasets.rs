//! Datasets and the demo: `import csv` on NSL-KDD and prototype 002's format (and on bad
//! files), and `netlens demo` building a synthetic database every query works on.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

use crate::Scratch;

fn nsl_kdd() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nsl-kdd");
    crate::prerequisite(
        dir.join("KDDTest+.txt").exists(),
        "../shared/data/nsl-kdd beside this checkout",
    )
    .then_some(dir)
}

#[test]
fn nsl_kdd_loads_as_it_is() {
    let Some(dir) = nsl_kdd() else { return };
    let s = Scratch::new();
    s.cmd()
        .args(["import", "csv"])
        .arg(dir.join("KDDTest+.txt"))
        .args(["--table", "kdd_test", "--no-header", "--columns-file"])
        .arg(dir.join("columns.txt"))
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "22544 rows into kdd_test (created, 43 columns)",
        ));
    assert_eq!(
        s.query("SELECT count(*), count(DISTINCT label), sum((label = 'normal')::INT) FROM kdd_test"),
        "22544,38,9711"
    );
    assert_eq!(
        s.query("SELECT data_type FROM duckdb_columns() WHERE table_name = 'kdd_test' AND column_name IN ('protocol_type', 'src_bytes', 'serror_rate') ORDER BY column_name"),
        "VARCHAR\nDOUBLE\nBIGINT"
    );
    assert_eq!(
        s.query("SELECT kind, rows_added, mode FROM datasets WHERE name = 'kdd_test'"),
        "csv,22544,create"
    );
    // The field-description file works as a names file too (first field of each line), and
    // --append adds rows by name.
    s.cmd()
        .args(["import", "csv"])
        .arg(dir.join("KDDTest+.txt"))
        .args(["--table", "kdd_test", "--no-header", "--append", "--columns-file"])
        .arg(dir.join("columns.txt"))
        .assert()
        .success();
    assert_eq!(s.query("SELECT count(*) FROM kdd_test"), "45088");
}

#[test]
fn prototype_002_format_with_header_and_default_table_name() {
    let s = Scratch::new();
    let csv = s.path("sample network-traffic.csv");
    std::fs::write(
        &csv,
        "packet_size,duration,src_bytes,dst_bytes,protocol_type,flag,src_port,dst_port,packet_rate,error_rate,label\n\
         512.5,2.3,5000,4800,0,1,45678,80,50.2,0.5,0\n\
         1400.2,15.7,45000,42000,2,4,500,8080,450.8,18.5,1\n",
    )
    .unwrap();
    s.cmd().args(["import", "csv"]).arg(&csv).assert().success();
    assert_eq!(
        s.query("SELECT sum(label), max(packet_size), min(dst_port) FROM sample_network_traffic"),
        "1,1400.2,80"
    );
}

#[test]
fn a_wrong_name_list_or_an_existing_table_stores_nothing() {
    let s = Scratch::new();
    let csv = s.path("t.csv");
    std::fs::write(&csv, "1,2,3\n4,5,6\n").unwrap();
    s.cmd()
        .args(["import", "csv", "--no-header", "--columns", "a,b"])
        .arg(&csv)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "2 column names were given but the file has 3 columns",
        ));
    assert_eq!(
        s.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'"),
        "0"
    );

    s.cmd()
        .args(["import", "csv", "--no-header", "--columns", "a,b,c"])
        .arg(&csv)
        .assert()
        .success();
    s.cmd()
        .args(["import", "csv", "--no-header"])
        .arg(&csv)
        .assert()
        .failure()
        .stderr(predicate::str::contains("table 't' already exists"));
    s.cmd()
        .args(["import", "csv", "--no-header", "--columns", "a,a,b"])
        .arg(&csv)
        .assert()
        .failure()
        .stderr(predicate::str::contains("given twice"));
    assert_eq!(s.query("SELECT sum(a + b + c), count(*) FROM t"), "21,2");
    // netlens's own tables are never appended to or replaced by an import.
    for flag in ["--append", "--replace"] {
        s.cmd()
            .args(["import", "csv", "--no-header", "--table", "snapshots", flag])
            .arg(&csv)
            .assert()
            .failure()
            .stderr(predicate::str::contains("one of netlens's own tables"));
    }
    assert_eq!(s.query("SELECT count(*) FROM snapshots"), "0");
    assert_eq!(s.query("SELECT count(*) FROM datasets"), "1");

    s.cmd()
        .args(["import", "csv", "--no-header", "--replace", "--columns", "x,y,z"])
        .arg(&csv)
        .assert()
        .success();
    assert_eq!(s.query("SELECT sum(x) FROM t"), "5");
}

#[test]
fn bad_files_are_refused_clearly() {
    let s = Scratch::new();
    let empty = s.path("empty.csv");
    std::fs::write(&empty, "").unwrap();
    s.cmd()
        .args(["import", "csv"])
        .arg(&empty)
        .assert()
        .failure()
        .stderr(predicate::str::contains("the file is empty"));
    s.cmd()
        .args(["import", "csv"])
        .arg(s.path("missing.csv"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("missing.csv"));
    let ragged = s.path("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3,4,5,6\n7,8\n").unwrap();
    s.cmd()
        .args(["import", "csv"])
        .arg(&ragged)
        .assert()
        .failure()
        .stderr(predicate::str::contains("ragged.csv").and(predicate::str::contains("nothing was imported")));
    assert_eq!(s.query("SELECT count(*) FROM datasets"), "0");
}

#[test]
fn demo_builds_a_marked_synthetic_day_that_every_view_reads() {
    let s = Scratch::new();
    s.cmd()
        .args(["demo", "--hours", "6", "--traffic-rows", "400", "--seed", "5"])
        .assert()
        .success()
        .stderr(predicate::str::contains("synthetic snapshots of host demo-host"));
    assert_eq!(
        s.query("SELECT count(*), count(DISTINCT source), min(source) FROM snapshots"),
        "721,1,demo"
    );
    assert_eq!(
        s.query("SELECT count(*), sum(label), count(DISTINCT anomaly_type) FROM demo_traffic"),
        "400,60,9"
    );
    // The injected scan and beacon are in the derived tables, found by plain queries.
    assert_eq!(
        s.query("SELECT count(DISTINCT remote_port) FROM connections WHERE process_name = 'nmap' AND remote_addr = '192.168.1.30'"),
        "300"
    );
    let beacons: i64 = s
        .query("SELECT count(*) FROM connections WHERE remote_addr = '203.0.113.66' AND remote_port = 4433")
        .parse()
        .unwrap();
    assert!((65..=80).contains(&beacons), "6 h / 5 min = 72 beacons, got {beacons}");
    assert_eq!(
        s.query("SELECT count(*) > 0 FROM tcp_transitions WHERE to_state = 'TIME_WAIT'"),
        "true"
    );
    // Every example query runs on it.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        s.cmd().arg("-f").arg(&path).assert().success();
    }
    // A second demo into the same file is refused, and so is a database with real data.
    s.cmd()
        .args(["demo", "--hours", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already holds the demo"));
    let live = Scratch::new();
    live.replay_fixture();
    live.cmd()
        .args(["demo", "--hours", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("never mixes synthetic rows with real ones"));
}

/// Regression (issue 22): a CSV path was read as a glob (`d[1].csv` read `d1.csv`), and
/// `--table schema_migrations --replace` succeeded and broke every later open.
#[test]
fn a_csv_path_is_a_path_and_netlens_tables_are_not_import_targets() {
    let s = Scratch::new();
    std::fs::write(s.path("d[1].csv"), "a\nliteral\n").unwrap();
    std::fs::write(s.path("d1.csv"), "a\nglobbed\n").unwrap();
    s.cmd()
        .args(["import", "csv", "--table", "t"])
        .arg(s.path("d[1].csv"))
        .assert()
        .success();
    assert_eq!(s.query("SELECT a FROM t"), "literal");
    for owned in ["schema_migrations", "connections", "latest_feedback"] {
        let out = s
            .cmd()
            .args(["import", "csv", "--replace", "--table", owned])
            .arg(s.path("d1.csv"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{owned} was replaced");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("netlens's own"),
            "{owned}"
        );
    }
    assert_ne!(
        s.query("SELECT count(*) FROM schema_migrations"),
        "0",
        "the database still opens"
    );
}

#[test]
fn ctrl_c_cancels_a_csv_import_and_it_leaves_nothing() {
    // Regression (issue 22): `import csv` had no Ctrl-C test. Eight million rows keep DuckDB's
    // CSV reader busy for seconds, so Ctrl-C lands inside the import.
    let s = Scratch::new();
    let csv = s.path("big.csv");
    s.query(&format!(
        "COPY (SELECT range AS id, 'host' || (range % 977) AS host, range * 0.5 AS bytes, range % 3 = 0 AS flagged \
         FROM range(8000000)) TO '{}' (HEADER)",
        csv.display()
    ));
    let child = s.spawn(&["import", "csv", csv.to_str().unwrap(), "--table", "big"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    crate::ctrl_c_ends_it_with_130(child);
    assert_eq!(
        s.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'big'"),
        "0",
        "the cancelled import left its table"
    );
    assert_eq!(s.query("SELECT count(*) FROM datasets"), "0");
}

/// Issue 21: the docs' NSL-KDD example trained on `difficulty`, a column derived from the labels
/// (how many of 21 classifiers got the row right), so its ROC-AUC was not a detector's. Every
/// documented `train ... --on kdd_...` leaves it out.
#[test]
fn documented_nsl_kdd_training_leaves_the_label_derived_difficulty_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut examples = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("train ") && line.contains("--on kdd_") {
                examples += 1;
                assert!(
                    line.contains("difficulty"),
                    "{}:{}: an NSL-KDD training example keeps the label-derived difficulty column: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
    assert!(examples >= 3, "the docs' NSL-KDD examples were found ({examples})");
}
