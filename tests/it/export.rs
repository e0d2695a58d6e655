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

/// Nothing but `--out`'s own name and directory entries the export made itself.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn single_file_exports_land_whole_or_not_at_all() {
    let s = Scratch::new();
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("rows.csv");

    // A failure half-way leaves the previous file as it was and no partial file beside it.
    std::fs::write(&out, "previous\n").unwrap();
    s.cmd()
        .args([
            "export",
            "--overwrite",
            "--query",
            "SELECT CASE WHEN range < 300000 THEN range ELSE error('boom at ' || range) END AS x FROM range(400000)",
            "--out",
        ])
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("boom"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous\n");
    assert_eq!(entries(&dir), ["rows.csv"]);

    // A symlink at --out is replaced as a name: the file it pointed at is never written.
    let victim = s.path("victim.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    std::fs::remove_file(&out).unwrap();
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    s.cmd()
        .args(["export", "--overwrite", "--query", "SELECT 42 AS x", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "x\n42\n");

    // Without --overwrite a dangling symlink counts as taken too.
    let dangling = dir.join("dangling.json");
    std::os::unix::fs::symlink(s.path("nowhere.json"), &dangling).unwrap();
    s.cmd()
        .args(["export", "--query", "SELECT 1 AS x", "--out"])
        .arg(&dangling)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--overwrite"));
    assert!(!s.path("nowhere.json").exists());
    assert_eq!(entries(&dir), ["dangling.json", "rows.csv"]);
}

#[test]
fn ctrl_c_cancels_an_export_and_leaves_no_file() {
    let s = Scratch::new();
    s.cmd().args(["-c", "SELECT 1"]).assert().success();
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("huge.csv");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .args([
            "export",
            "--query",
            "SELECT range AS x, range * 2 AS y FROM range(100000000000)",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until DuckDB is writing (its files grow), then press Ctrl-C.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let written = || -> u64 {
        entries(&dir)
            .iter()
            .map(|e| std::fs::metadata(dir.join(e)).map_or(0, |m| m.len()))
            .sum()
    };
    while written() == 0 {
        assert!(std::time::Instant::now() < deadline, "the export never started writing");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    crate::ctrl_c_ends_it_with_130(child);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn report_replaces_a_symlink_at_its_name_instead_of_writing_through_it() {
    let s = Scratch::new();
    s.replay_fixture();
    let victim = s.path("victim.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    let out = s.path("report.md");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    s.cmd().args(["report", "--out"]).arg(&out).assert().success();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&out).unwrap().starts_with('#'));
    assert_eq!(
        entries(s.dir.path()).iter().filter(|e| e.contains("partial")).count(),
        0
    );
}

#[test]
fn ctrl_c_cancels_a_train_and_stores_no_model() {
    let s = Scratch::new();
    s.cmd().args(["-c", "SELECT 1"]).assert().success();
    // A source DuckDB works on for minutes and that yields nothing: Ctrl-C lands in its SQL.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .args([
            "train",
            "iforest",
            "--on",
            "SELECT a.range AS x, b.range AS y FROM range(1000000) a, range(100000) b WHERE a.range * b.range = -1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    crate::ctrl_c_ends_it_with_130(child);
    assert_eq!(s.query("SELECT count(*) FROM models"), "0");
    assert_eq!(s.query("SELECT count(*) FROM model_runs"), "0");
}

#[test]
fn ctrl_c_stops_a_long_fit_in_rust() {
    // Regression (issue 22): Ctrl-C during a fit (Rust, no SQL to interrupt) waited for the
    // fit to end: here thousands of epochs, minutes.
    let s = Scratch::new();
    s.query("SELECT 1");
    let child = s.spawn(&crate::SLOW_AUTOENCODER_TRAIN);
    // Past reading the 20,000 rows: in the fit.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    crate::ctrl_c_ends_it_with_130(child);
    assert_eq!(s.query("SELECT count(*) FROM models"), "0");
}

/// Regression: an export whose query fails part-way could hang for good (the bundled DuckDB's
/// asynchronous file writer deadlocked while aborting its pending writes; about one run in ten
/// on a busy machine). Every such export must end, with the query's error.
#[test]
fn a_failing_export_never_hangs() {
    let s = Scratch::new();
    s.cmd().args(["-c", "SELECT 1"]).assert().success();
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    for run in 0..30 {
        let out = dir.join(if run % 2 == 0 { "rows.csv" } else { "rows.parquet" });
        let mut child = s.spawn(&[
            "export",
            "--overwrite",
            "--query",
            "SELECT CASE WHEN range < 300000 THEN range ELSE error('boom at ' || range) END AS x FROM range(400000)",
            "--out",
            out.to_str().unwrap(),
        ]);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                panic!(
                    "run {run}: the failing export of {} still ran after 60 s",
                    out.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "run {run}: {stderr}");
        assert!(stderr.contains("boom"), "run {run}: {stderr}");
        assert!(!out.exists(), "run {run}: a failed export left {}", out.display());
    }
}
