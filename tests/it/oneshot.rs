//! One-shot runs: --query / -c in order, -f files, SQL on stdin, formats, exit status, --bail.

use predicates::prelude::*;

use crate::Scratch;

#[test]
fn queries_and_files_run_in_command_line_order() {
    let s = Scratch::new();
    let file = s.path("two.sql");
    std::fs::write(&file, "SELECT 2 AS n;").unwrap();
    s.cmd()
        .args(["--format", "csv", "--no-headers", "-c", "SELECT 1 AS n", "-f"])
        .arg(&file)
        .args(["--query", "SELECT 3 AS n; SELECT 4 AS n"])
        .assert()
        .success()
        .stdout("1\n2\n3\n4\n");
}

#[test]
fn sql_from_stdin_with_an_unterminated_last_statement() {
    let s = Scratch::new();
    s.cmd()
        .args(["--format", "csv"])
        .write_stdin("CREATE TABLE t AS SELECT range AS i FROM range(3);\nSELECT sum(i) AS total\nFROM t")
        .assert()
        .success()
        .stdout("total\n3\n");
}

#[test]
fn formats() {
    let s = Scratch::new();
    let q = "SELECT 1 AS n, 'a,b' AS s, NULL AS z, true AS b";
    let out = |format: &str| {
        let o = s.cmd().args(["--format", format, "-c", q]).output().unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(out("csv"), "n,s,z,b\n1,\"a,b\",,true\n");
    // Keys in the result's column order.
    assert_eq!(out("jsonl"), "{\"n\":1,\"s\":\"a,b\",\"z\":null,\"b\":true}\n");
    let json: serde_json::Value = serde_json::from_str(&out("json")).unwrap();
    assert_eq!(json[0]["s"], "a,b");
    assert_eq!(
        out("markdown"),
        "| n | s | z | b |\n|---|---|---|---|\n| 1 | a,b | NULL | true |\n"
    );
    assert_eq!(out("list"), "n|s|z|b\n1|a,b|NULL|true\n");
    assert!(out("line").contains("s = a,b"));
    let table = out("table");
    assert!(table.contains("│ 1 ┆ a,b ┆ NULL ┆ true │"), "{table}");
}

#[test]
fn a_failing_statement_fails_the_run_but_the_rest_still_runs() {
    let s = Scratch::new();
    s.cmd()
        .args([
            "--format",
            "csv",
            "--no-headers",
            "-c",
            "SELECT 1; SELECT * FROM no_such_table; SELECT 2",
        ])
        .assert()
        .code(1)
        .stdout("1\n2\n")
        .stderr(predicate::str::contains("no_such_table"));
}

#[test]
fn bail_stops_at_the_first_failure() {
    let s = Scratch::new();
    s.cmd()
        .args([
            "--bail",
            "--format",
            "csv",
            "--no-headers",
            "-c",
            "SELECT 1; SELEC 2; SELECT 3",
        ])
        .assert()
        .code(1)
        .stdout("1\n")
        .stderr(predicate::str::contains("syntax error"));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let s = Scratch::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .args(["--format", "csv", "-c", "SELECT * FROM range(10000000)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dot_commands_work_in_one_shot_runs_too() {
    let s = Scratch::new();
    s.replay_fixture();
    s.cmd()
        .args(["--format", "csv", "-c", ".tables sock%"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sockets,table"));
}

/// Sends SIGINT to a child once it has been running for a moment.
fn interrupt_after(child: &std::process::Child, after: std::time::Duration) {
    std::thread::sleep(after);
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

#[test]
fn ctrl_c_interrupts_a_one_shot_query() {
    let s = Scratch::new();
    let started = std::time::Instant::now();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .args([
            "-c",
            "SELECT count(*) FROM range(1000000000000) a",
            "-c",
            "SELECT 'not reached'",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_after(&child, std::time::Duration::from_millis(1500));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Interrupted"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not reached"));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn ctrl_c_cancels_a_shell_query_and_the_shell_goes_on() {
    let s = Scratch::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .env("XDG_DATA_HOME", s.path("xdg"))
        .args(["shell"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut stdin,
        b".mode csv\nSELECT count(*) FROM range(1000000000000) a;\nSELECT 42 AS after;\n",
    )
    .unwrap();
    drop(stdin);
    interrupt_after(&child, std::time::Duration::from_millis(1500));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Interrupted"));
    assert!(stdout.contains("after\n42"), "{stdout}");
}

/// The first new database saves the empty schema in the cache directory; the next new ones
/// start as copies of it and are as complete.
#[test]
fn new_databases_start_from_the_schema_template_in_the_cache() {
    let s = Scratch::new();
    let cache = s.path("cache");
    let tables = "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()";
    let count = |db: &str| {
        let out = s
            .cmd()
            .env("XDG_CACHE_HOME", &cache)
            .args([
                "--db",
                s.path(db).to_str().unwrap(),
                "--format",
                "csv",
                "--no-headers",
                "-c",
                tables,
            ])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let first = count("first.duckdb");
    let saved: Vec<_> = std::fs::read_dir(cache.join("netlens"))
        .expect("the cache directory was made")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let name = saved[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("schema-") && name.ends_with(".duckdb"), "{name}");
    assert!(first.parse::<u32>().unwrap() >= 30, "{first} tables");
    // A table put into the template shows up in the next new database: it is a copy.
    s.cmd()
        .env("XDG_CACHE_HOME", &cache)
        .args([
            "--db",
            saved[0].to_str().unwrap(),
            "-c",
            "CREATE TABLE mark (x INTEGER)",
        ])
        .assert()
        .success();
    let second = count("second.duckdb").parse::<u32>().unwrap();
    assert_eq!(second, first.parse::<u32>().unwrap() + 1);
}

/// `.chart` draws a result in the terminal from `-c`, with its SQL kept as written (quotes and
/// all), and refuses a result of the wrong shape with the columns it needs.
#[test]
fn chart_draws_a_result_from_the_command_line() {
    let s = Scratch::new();
    s.replay_fixture();
    let out = s
        .cmd()
        .args([
            "-c",
            ".chart bar SELECT 'state: ' || coalesce(state, 'none') AS label, count(*) AS n FROM sockets GROUP BY 1 ORDER BY 2 DESC",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("n by label\n"), "{text}");
    let first = text.lines().nth(1).unwrap();
    assert!(first.contains("state: ") && first.contains("│█"), "{text}");
    assert!(!text.contains('\x1b'), "no colour into a pipe");
    let bad = s.cmd().args(["-c", ".chart line SELECT 'a' AS only"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("x, y[, series]"));
}
