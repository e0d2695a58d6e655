//! Export: Parquet read back row for row, CSV/JSON, Hive partitions, refusals.

use predicates::prelude::*;

use crate::Scratch;

#[test]
fn parquet_export_reads_back_row_for_row() {
    let s = Scratch::new();
    s.replay_fixture();
    for table in [
        "sockets",
        "connections",
        "processes",
        "interfaces",
        "tcp_transitions",
        "snapshots",
    ] {
        let file = s.path(&format!("{table}.parquet"));
        s.cmd()
            .args(["export", "--table", table, "--out"])
            .arg(&file)
            .assert()
            .success();
        let f = file.display();
        // Same rows, same multiplicity, in both directions.
        let diff = s.query(&format!(
            "SELECT (SELECT count(*) FROM (SELECT * FROM {table} EXCEPT ALL SELECT * FROM read_parquet('{f}'))) || ':' || \
             (SELECT count(*) FROM (SELECT * FROM read_parquet('{f}') EXCEPT ALL SELECT * FROM {table})) || ':' || \
             ((SELECT count(*) FROM read_parquet('{f}')) = (SELECT count(*) FROM {table}))"
        ));
        assert_eq!(diff, "0:0:true", "{table}");
    }
}

#[test]
fn query_export_to_csv_and_json() {
    let s = Scratch::new();
    s.replay_fixture();
    let csv = s.path("peers.csv");
    let json = s.path("peers.json");
    let q = "SELECT remote_addr, count(*) AS n FROM connections WHERE remote_addr IS NOT NULL GROUP BY 1 ORDER BY 1";
    s.cmd()
        .args(["export", "--query", q, "--out"])
        .arg(&csv)
        .assert()
        .success();
    s.cmd()
        .args(["export", "--query", q, "--format", "json", "--out"])
        .arg(&json)
        .assert()
        .success();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("remote_addr,n\n1.1.1.1,1\n"), "{text}");
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["remote_addr"], "1.1.1.1");
}

#[test]
fn hive_partitioned_tree_by_host_and_date() {
    let s = Scratch::new();
    s.replay_fixture();
    let tree = s.path("fleet");
    s.cmd()
        .args(["export", "--table", "sockets", "--partition-by", "host,date", "--out"])
        .arg(&tree)
        .assert()
        .success();
    s.cmd()
        .args([
            "export",
            "--table",
            "connections",
            "--partition-by",
            "host,date",
            "--out",
        ])
        .arg(tree.join("connections_tree"))
        .assert()
        .success();
    let dir = tree.join("host=fixture-host").join("date=2026-11-21");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("sockets_") && f.ends_with(".parquet")),
        "{files:?}"
    );
    let t = tree.display();
    assert_eq!(
        s.query(&format!(
            "SELECT count(*) = (SELECT count(*) FROM sockets), min(host), min(date)::VARCHAR \
             FROM read_parquet('{t}/host=*/*/*.parquet', hive_partitioning = true)"
        )),
        "true,fixture-host,2026-11-21"
    );
    // A second export appends to the shared tree instead of clobbering it.
    s.cmd()
        .args(["export", "--table", "sockets", "--partition-by", "host,date", "--out"])
        .arg(&tree)
        .assert()
        .success();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), files.len() * 2);
}

#[test]
fn refusals() {
    let s = Scratch::new();
    s.replay_fixture();
    let file = s.path("x.csv");
    s.cmd()
        .args(["export", "--table", "no_such", "--out"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no table or view named 'no_such'"));
    assert!(!file.exists());
    std::fs::write(&file, "keep me").unwrap();
    s.cmd()
        .args(["export", "--table", "snapshots", "--out"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--overwrite"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    s.cmd()
        .args(["export", "--table", "snapshots", "--overwrite", "--out"])
        .arg(&file)
        .assert()
        .success();
    s.cmd()
        .args(["export", "--table", "snapshots", "--partition-by", "color", "--out"])
        .arg(s.path("tree"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot partition by 'color'"));
}

/// Regression (issue 22): `export --partition-by ... --overwrite` had DuckDB delete every file
/// under `--out` (`--out ~` emptied a home directory). Overwrite replaces only a tree a netlens
/// export made (its marker file); other files, and a symlinked `--out`, are refused untouched.
#[test]
fn overwrite_replaces_only_a_tree_netlens_wrote() {
    let s = Scratch::new();
    s.replay_fixture();
    let export = |out: &std::path::Path| {
        s.cmd()
            .args([
                "export",
                "--table",
                "snapshots",
                "--partition-by",
                "host",
                "--overwrite",
                "--out",
            ])
            .arg(out)
            .output()
            .unwrap()
    };
    let home = s.path("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("precious.txt"), "keep me").unwrap();
    let refused = export(&home);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no netlens export wrote"));
    assert_eq!(std::fs::read_to_string(home.join("precious.txt")).unwrap(), "keep me");

    let link = s.path("link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    assert!(!export(&link).status.success(), "a symlinked --out is refused");
    assert!(home.join("precious.txt").exists());

    let tree = s.path("tree");
    assert!(export(&tree).status.success(), "a new directory is netlens's");
    assert!(export(&tree).status.success(), "and may be overwritten again");
    assert!(tree.join(".netlens-export").exists());
    assert_eq!(
        s.query(&format!(
            "SELECT count(*) FROM read_parquet('{}/**/*.parquet', hive_partitioning = true)",
            tree.display()
        )),
        s.query("SELECT count(*) FROM snapshots"),
        "the second export replaced the first"
    );
}
