//! The shell's dot commands and statement handling, driven through `netlens shell` with its
//! input piped (rustyline reads plain lines when stdin is not a terminal).

use predicates::prelude::*;

use crate::Scratch;

fn shell(s: &Scratch, input: &str) -> std::process::Output {
    s.cmd().arg("shell").write_stdin(input.to_string()).output().unwrap()
}

#[test]
fn multi_line_statements_and_settings() {
    let s = Scratch::new();
    let out = shell(
        &s,
        ".mode csv\n.headers off\nSELECT\n  40 + 2\n  AS answer;\n.headers on\nSELECT 'x;y' AS s; SELECT 7 AS n;\n",
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "42\ns\nx;y\nn\n7\n");
    let history = std::fs::read_to_string(s.path("xdg/netlens/history")).unwrap();
    assert!(history.contains("SELECT 'x;y' AS s;"), "{history}");
}

#[test]
fn an_error_is_printed_and_the_shell_goes_on() {
    let s = Scratch::new();
    let out = shell(
        &s,
        ".mode csv\nSELECT * FROM nowhere;\n.nonsense\nSELECT 5 AS five;\n.quit\nSELECT 6;\n",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout, "five\n5\n");
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(stderr.contains("nonsense"), "{stderr}");
}

#[test]
fn output_once_and_read() {
    let s = Scratch::new();
    let once = s.path("once.csv");
    let all = s.path("all.csv");
    let script = s.path("script.sql");
    std::fs::write(&script, "SELECT 'from script' AS src;\n.mode jsonl\nSELECT 1 AS n;\n").unwrap();
    let input = format!(
        ".mode csv\n.once {}\nSELECT 1 AS a;\nSELECT 2 AS b;\n.output {}\nSELECT 3 AS c;\n.read {}\n.output\nSELECT 4 AS d;\n",
        once.display(),
        all.display(),
        script.display()
    );
    let out = shell(&s, &input);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&once).unwrap(), "a\n1\n");
    assert_eq!(
        std::fs::read_to_string(&all).unwrap(),
        "c\n3\nsrc\nfrom script\n{\"n\":1}\n"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "b\n2\n{\"d\":4}\n");
}

#[test]
fn help_tables_schema_timer_maxrows() {
    let s = Scratch::new();
    s.replay_fixture();
    let out = shell(&s, ".help\n.help capture\n.tables conn%\n.schema tcp_transitions\n.timer on\n.mode table\n.maxrows 2\nSELECT * FROM range(5);\n");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains(".capture [OPTIONS]"), "{stdout}");
    assert!(stdout.contains(".export [OPTIONS]"), "{stdout}");
    assert!(stdout.contains(".maxrows ROWS"), "{stdout}");
    assert!(stdout.contains("--interval <INTERVAL>"), "{stdout}");
    assert!(stdout.contains("connections"), "{stdout}");
    assert!(stdout.contains("CREATE TABLE tcp_transitions"), "{stdout}");
    assert!(stdout.contains("State in the previous snapshot"), "{stdout}");
    assert!(stdout.contains("(5 rows, 2 shown"), "{stdout}");
    assert!(stderr.contains("Run Time:"), "{stderr}");
}

#[test]
fn domain_commands_in_the_shell_use_the_command_line_grammar() {
    let s = Scratch::new();
    let out_file = s.path("t.csv");
    let input = format!(
        ".capture --quiet --replay {}\n.export --table snapshots --out {}\n.capture --interval 0s\n.export --table nope --out x.csv\n",
        crate::fixture("host_a.jsonl").display(),
        out_file.display()
    );
    let out = shell(&s, &input);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("longer than zero"), "{stderr}");
    assert!(stderr.contains("no table or view named 'nope'"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap().lines().count(), 5);
    s.cmd()
        .args(["-c", "SELECT 1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1"));
}

/// `.output` and `.once` never write through a symbolic link someone planted at the path, and
/// leave its target as it was.
#[test]
fn output_never_writes_through_a_planted_symlink() {
    let s = Scratch::new();
    let victim = s.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let planted = s.path("out.csv");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    for command in [".output", ".once"] {
        let out = shell(&s, &format!("{command} {}\nSELECT 1 AS a;\n", planted.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("symbolic link"), "{command}: {stderr}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{command}");
    }
}

/// The settings that keep extensions out cannot be undone from the shell, no extension is
/// installed, and a --read-only session cannot detach its database to attach it writable.
#[test]
fn sessions_cannot_undo_their_safety_settings() {
    let s = Scratch::new();
    s.cmd().args(["-c", "SELECT 1"]).assert().success();
    for sql in [
        "SET autoinstall_known_extensions = true",
        "SET autoload_known_extensions = true",
        "SET lock_configuration = false",
        "INSTALL httpfs",
        "LOAD httpfs",
    ] {
        s.cmd()
            .args(["-c", sql])
            .assert()
            .code(1)
            .stderr(predicates::str::contains("locked").or(predicates::str::contains("never lets DuckDB")));
    }
    for sql in ["DETACH netlens", "ATTACH OR REPLACE 'x.duckdb' AS netlens"] {
        s.cmd()
            .args(["--read-only", "-c", "USE memory", "-c", sql])
            .assert()
            .code(1)
            .stderr(predicates::str::contains("--read-only"));
    }
    s.cmd()
        .args(["--read-only", "--format", "csv", "--no-headers", "-c"])
        .arg("SELECT readonly FROM duckdb_databases() WHERE database_name = 'netlens'")
        .assert()
        .success()
        .stdout("true\n");
}
