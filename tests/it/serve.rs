//! `netlens serve`: the real server binary on a scratch database, with the real netlens binary
//! (and, where installed, Python's ADBC Flight SQL driver) as its clients.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{fixture, long_query, test_cache, Scratch};

/// A running `netlens serve`, killed when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    log: PathBuf,
    socket: PathBuf,
}

impl Server {
    /// Starts `netlens serve` on the scratch database and waits until it answers.
    pub(crate) fn start(s: &Scratch, args: &[&str]) -> Server {
        let log = s.path(&format!("serve-{}.log", std::process::id() ^ rand_suffix()));
        let child = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
            .arg("--db")
            .arg(s.db())
            .arg("serve")
            .args(args)
            .env("XDG_DATA_HOME", s.dir.path().join("xdg"))
            .env("XDG_CACHE_HOME", test_cache())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start netlens serve");
        let mut socket = s.db().into_os_string();
        socket.push(".sock");
        let server = Server {
            child: Some(child),
            log,
            socket: PathBuf::from(socket),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not start within 60 s; its log:\n{}", self.log());
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill");
    }

    /// Sends SIGTERM and waits for the exit (at most `limit`).
    pub(crate) fn stop(mut self, limit: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the server did not stop within {limit:?} of SIGTERM; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    fn crash(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Waits until `check` holds, at most `limit`.
pub(crate) fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {limit:?}");
}

/// The file the server keeps its bearer token in: the database's path with `.token`.
pub(crate) fn token_file(s: &Scratch) -> PathBuf {
    let mut path = s.db().into_os_string();
    path.push(".token");
    PathBuf::from(path)
}

pub(crate) fn status_json(s: &Scratch) -> serde_json::Value {
    let out = s.cmd().args(["--format", "json", "status"]).output().expect("status");
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status is JSON")
}

#[test]
fn every_command_goes_through_the_server_while_it_captures() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "300ms"]);
    eventually(Duration::from_secs(30), "two snapshots", || {
        s.query("SELECT count(*) FROM snapshots").parse::<i64>().unwrap_or(0) >= 2
    });

    // Data formats get only their data; people get a note that the server answered.
    let csv = s
        .cmd()
        .args(["--format", "csv", "-c", "SELECT 6 * 7 AS answer"])
        .output()
        .unwrap();
    assert!(csv.status.success());
    assert_eq!(String::from_utf8_lossy(&csv.stdout), "answer\n42\n");
    assert!(csv.stderr.is_empty(), "{}", String::from_utf8_lossy(&csv.stderr));
    let table = s.cmd().args(["--format", "table", "-c", "SELECT 1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stderr).contains("through the server on"));

    // The server's errors are the client's, with the same exit status as a local run.
    s.cmd()
        .args(["-c", "SELECT * FROM no_such_table"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no_such_table"));

    // Domain commands travel as requests and print as they do locally.
    s.cmd()
        .args(["--format", "csv", "stages"])
        .assert()
        .success()
        .stdout(predicates::str::contains("kmeans"));
    let before: i64 = s
        .query("SELECT count(*) FROM snapshots WHERE source = 'fixture'")
        .parse()
        .unwrap();
    assert_eq!(before, 0);
    s.cmd()
        .args(["capture", "--quiet", "--replay"])
        .arg(fixture("host_a.jsonl"))
        .assert()
        .success();
    let replayed: i64 = s
        .query("SELECT count(*) FROM snapshots WHERE source = 'fixture' AND host = 'fixture-host'")
        .parse()
        .unwrap();
    assert!(replayed > 0, "the replay through the server stored nothing");
    // A second live capture of the same host is refused, saying why.
    s.cmd()
        .args(["capture", "--count", "1"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("already captures this host"));

    // A --read-only client through the server reads and writes nothing (it was refused before
    // the server could make a session read-only).
    let read = s
        .cmd()
        .args([
            "--read-only",
            "--format",
            "csv",
            "--no-headers",
            "-c",
            "SELECT count(*) > 0 FROM snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "true");
    let tables = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'read_only_made'";
    for (args, says) in [
        (
            vec!["--read-only", "-c", "CREATE TABLE read_only_made AS SELECT 1 AS x"],
            "only reads (--read-only)",
        ),
        (
            vec!["--read-only", "-c", "DELETE FROM snapshots"],
            "only reads (--read-only)",
        ),
        (vec!["--read-only", "-c", "BEGIN"], "cannot begin one"),
        (vec!["--read-only", "detect", "all"], "asked to only read (--read-only)"),
    ] {
        s.cmd()
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicates::str::contains(says));
    }
    assert_eq!(s.query(tables), "0");
    let out = s
        .cmd()
        .args(["--read-only", "--format", "table", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only)"),
        "the note says the session only reads: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = status_json(&s);
    assert_eq!(status["pid"].as_i64(), Some(i64::from(server.pid())));
    assert!(status["capture"]["snapshots"].as_u64().unwrap() >= 2, "{status}");
    assert!(status["clients"]["requests_served"].as_u64().unwrap() >= 2, "{status}");
    let text = s.cmd().arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout)
        .contains("capture     this host every 300 ms (stored together within 5 s), running"));
    assert_eq!(status["capture"]["commit_every_s"].as_f64(), Some(5.0), "{status}");

    let seen: i64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    let socket = server.socket.clone();
    let log_path = server.log.clone();
    let exit = server.stop(Duration::from_secs(20));
    assert!(exit.success(), "serve exited with {exit:?}");
    assert!(!socket.exists(), "the socket outlived the server");
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
    // Without a server, the same command opens the file itself, with everything stored.
    let after: i64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    assert!(after >= seen, "snapshots were lost: {after} < {seen}");
    s.cmd()
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no netlens server holds"));
}

#[test]
fn a_session_keeps_its_connection_across_statements() {
    let s = Scratch::new();
    let _server = Server::start(&s, &["--no-capture"]);
    let out = s
        .cmd()
        .args(["--format", "csv", "--no-headers"])
        .args(["-c", "CREATE TEMP TABLE t AS SELECT 42 AS x"])
        .args(["-c", "BEGIN; INSERT INTO t VALUES (1); ROLLBACK;"])
        .args(["-c", "SELECT sum(x) FROM t"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Another client is another session: it does not see that temporary table.
    s.cmd()
        .args(["-c", "SELECT * FROM t"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("t"));
}

#[test]
fn the_executables_start_up_pages_are_reclaimed_and_the_server_goes_on() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "300ms"]);
    eventually(Duration::from_secs(30), "the start-up pages given back", || {
        server.log().contains("start-up over:")
    });
    let log = server.log();
    assert!(
        log.contains("asked the kernel to reclaim the executable's read-only pages (")
            && log.contains("resident file pages"),
        "the executable's mappings are found and this kernel takes MADV_PAGEOUT; the log:\n{log}"
    );
    // The code it needs again comes back as it runs: snapshots go on and queries answer.
    let before = s.query("SELECT count(*) FROM snapshots").parse::<i64>().unwrap();
    eventually(Duration::from_secs(30), "three more snapshots", || {
        s.query("SELECT count(*) FROM snapshots").parse::<i64>().unwrap_or(0) >= before + 3
    });
    assert_eq!(s.query("SELECT 6 * 7"), "42");
    assert!(server.stop(Duration::from_secs(30)).success());
}

#[test]
fn serve_refuses_read_only_and_scripts_instead_of_dropping_them() {
    let s = Scratch::new();
    s.query("CREATE TABLE kept AS SELECT 1 AS x");
    let before = std::fs::read(s.db()).expect("read the database");
    // A server writes its file: --read-only used to be dropped, and the capture wrote to it.
    s.cmd()
        .args(["--read-only", "serve"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("--read-only does not apply to `serve`"));
    s.cmd()
        .args(["-c", "SELECT 1", "serve", "--no-capture"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("-c and -f do not apply to `serve`"));
    assert_eq!(
        std::fs::read(s.db()).expect("read the database"),
        before,
        "the file was written"
    );
    let mut socket = s.db().into_os_string();
    socket.push(".sock");
    assert!(!PathBuf::from(socket).exists(), "no server was started");
}

/// A server with a TCP listener (the dashboard's too) turns DuckDB's file access off: a CSV
/// import through it was blamed on the file ("reads delimited text files"), an export had no
/// hint at all.
#[test]
fn file_access_off_says_why_and_what_to_do() {
    let s = Scratch::new();
    s.query("CREATE TABLE t AS SELECT 1 AS x");
    let csv = s.path("data.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let _server = Server::start(&s, &["--no-capture", "--http", "127.0.0.1:0"]);
    let hint = "only in its --files directories";
    s.cmd()
        .args(["export", "--table", "t", "--out"])
        .arg(s.path("t.parquet"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(hint));
    s.cmd()
        .args(["import", "csv"])
        .arg(&csv)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(hint))
        .stderr(predicates::prelude::PredicateBooleanExt::not(
            predicates::str::contains("delimited text"),
        ));
}

/// A file named through a symbolic link is the same file: its client went to the file itself
/// and was told it was locked, and a second server through the link was not refused as such.
#[test]
fn a_link_to_the_database_finds_its_server() {
    let s = Scratch::new();
    let _server = Server::start(&s, &["--no-capture"]);
    let link = s.path("link.duckdb");
    std::os::unix::fs::symlink(s.db(), &link).unwrap();
    s.cmd()
        .arg("--db")
        .arg(&link)
        .args(["--format", "table", "-c", "SELECT 42"])
        .assert()
        .success()
        .stdout(predicates::str::contains("42"))
        .stderr(predicates::str::contains("through the server"));
    s.cmd()
        .arg("--db")
        .arg(&link)
        .args(["serve", "--no-capture"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("a netlens server already serves"));
}

#[test]
fn a_second_server_and_a_killed_ones_socket_get_clear_messages() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    s.cmd()
        .args(["serve", "--no-capture"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("a netlens server already serves"));
    let socket = server.socket.clone();
    server.crash();
    assert!(socket.exists(), "SIGKILL leaves the socket behind");
    // With nothing behind the socket, a client opens the file itself.
    assert_eq!(s.query("SELECT 1"), "1");
    s.cmd()
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("left from a server that is gone"));
    let again = Server::start(&s, &["--no-capture"]);
    assert!(again.log().contains("removing the stale socket"), "{}", again.log());
    assert_eq!(s.query("SELECT 2"), "2");
}

#[test]
fn clients_killed_mid_stream_or_many_at_once_leave_the_server_serving() {
    let s = Scratch::new();
    let _server = Server::start(&s, &["--interval", "1s"]);
    // A client that goes away in the middle of a large result.
    let mut reader = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT range AS n, md5(range::VARCHAR) FROM range(50000000)",
        ])
        .env("NETLENS_DB", s.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4096];
    reader
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .expect("the first rows arrive before the query ends");
    reader.kill().unwrap();
    reader.wait().unwrap();
    eventually(Duration::from_secs(20), "the killed client's query to stop", || {
        status_json(&s)["clients"]["queries_running"].as_u64() == Some(0)
    });

    // 100 clients connecting at once (issue 17), each with its own answer.
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let db = s.db();
            std::thread::spawn(move || {
                let out = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
                    .args(["--format", "csv", "--no-headers", "-c"])
                    .arg(format!("SELECT {i} * 1000 + count(*) FROM range(1000)"))
                    .env("NETLENS_DB", db)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    (i * 1000 + 1000).to_string()
                );
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let status = status_json(&s);
    assert_eq!(status["capture"]["late_snapshots"].as_u64(), Some(0), "{status}");
}

/// Four clients of 250 queries each, and one long query, while the server captures every
/// second: every answer is right and no snapshot is skipped or late by more than an interval.
#[test]
fn concurrent_clients_do_not_delay_the_capture() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "1s"]);
    // The long query is sized to take about 30 s on this machine: a tenth of the pairs first,
    // timed, then scaled.
    let pairs_query =
        |b: i64| format!("SELECT count(*) FROM range(20000) a, range({b}) b WHERE (a.range * b.range) % 7 = 3");
    let calibration = Instant::now();
    let probe = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
        .args(["--format", "csv", "--no-headers", "-c", &pairs_query(6_000)])
        .env("NETLENS_DB", s.db())
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let b_rows = ((6_000.0 * 30.0 / calibration.elapsed().as_secs_f64()) as i64).clamp(6_000, 5_000_000);
    let started = Instant::now();
    let long = {
        let query = pairs_query(b_rows);
        let db = s.db();
        std::thread::spawn(move || {
            let t = Instant::now();
            let out = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
                .args(["--format", "csv", "--no-headers", "-c"])
                .arg(query)
                .env("NETLENS_DB", db)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            (String::from_utf8_lossy(&out.stdout).trim().to_string(), t.elapsed())
        })
    };
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let db = s.db();
            std::thread::spawn(move || {
                // One netlens process per client, its 250 statements in one session.
                let script: String = (0..250).map(|q| format!("SELECT {c} * 1000 + {q};\n")).collect();
                let out = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
                    .args(["--format", "csv", "--no-headers", "-c", &script])
                    .env("NETLENS_DB", db)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let got: Vec<i64> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| l.trim().parse().unwrap())
                    .collect();
                let want: Vec<i64> = (0..250).map(|q| c * 1000 + q).collect();
                assert_eq!(got, want);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let (count, took) = long.join().expect("long query");
    // 20 000 x b_rows pairs; a*b % 7 == 3 for about 6/49 of them (a, b not multiples of 7, with
    // the residues' products hitting 3 once per row of the table of residues).
    let expected = {
        let mut n: i64 = 0;
        let ra: Vec<i64> = (0..7)
            .map(|r| (0..20_000).filter(|a| a % 7 == r).count() as i64)
            .collect();
        let rb: Vec<i64> = (0..7)
            .map(|r| (0..b_rows).filter(|b| b % 7 == r).count() as i64)
            .collect();
        for x in 0..7 {
            for y in 0..7 {
                if (x * y) % 7 == 3 {
                    n += ra[x as usize] * rb[y as usize];
                }
            }
        }
        n
    };
    assert_eq!(count, expected.to_string());
    // It ran long enough to span many snapshots (about 30 s; less when the load fell meanwhile).
    assert!(took >= Duration::from_secs(10), "the long query took only {took:?}");
    let status = status_json(&s);
    let snapshots = status["capture"]["snapshots"].as_u64().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(status["capture"]["late_snapshots"].as_u64(), Some(0), "{status}");
    // Stored snapshots trail those taken by at most a batch: 5 s (--commit-every) at 1 s.
    assert!(
        snapshots as f64 >= elapsed.floor() - 1.0 - 5.0,
        "{snapshots} snapshots in {elapsed:.1} s (long query took {took:?}): some were skipped\n{status}"
    );
    drop(server);
}

/// A third-party Flight SQL client: Python's ADBC driver gets the same rows as netlens.
#[test]
#[cfg_attr(
    not(ci),
    ignore = "needs Python with adbc-driver-flightsql, adbc-driver-manager and pyarrow (CI installs them)"
)]
fn adbc_flight_sql_client_gets_the_same_rows() {
    let s = Scratch::new();
    s.replay_fixture();
    let server = Server::start(&s, &["--no-capture"]);
    let sql = "SELECT snapshot_id, count(*) AS sockets, sum(coalesce(bytes_received, 0)) AS received \
               FROM sockets GROUP BY snapshot_id ORDER BY snapshot_id";
    let ours = s.query(sql);
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as flight_sql
conn = flight_sql.connect("grpc+unix://" + sys.argv[1])
cur = conn.cursor()
cur.execute(sys.argv[2])
for row in cur.fetchall():
    print(",".join(str(v) for v in row))
cur.close()
conn.close()
"#;
    let out = Process::new("python3")
        .args(["-c", script])
        .arg(&server.socket)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the ADBC client failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), ours);
    assert!(!ours.is_empty());
}

/// A third-party client runs a netlens command the documented way: the Flight action
/// `netlens.request` with a JSON request (pyarrow's Flight client), and gets the JSON reply
/// netlens itself would print from.
#[test]
#[cfg_attr(not(ci), ignore = "needs Python with pyarrow (CI installs it)")]
fn a_third_party_flight_client_runs_a_command_as_an_action() {
    let s = Scratch::new();
    s.replay_fixture();
    let server = Server::start(&s, &["--no-capture"]);
    let script = r#"
import json, sys
import pyarrow.flight as flight
# gRPC C++ names a Unix socket's path as the HTTP/2 authority, which the server's HTTP/2 stack
# refuses (RST_STREAM); docs/serve.md says to set the authority, as here.
client = flight.FlightClient(
    "grpc+unix://" + sys.argv[1], generic_options=[("grpc.default_authority", "localhost")]
)
body = json.dumps({"command": "insights"}).encode()
for result in client.do_action(flight.Action("netlens.request", body)):
    print(result.body.to_pybytes().decode())
status = next(iter(client.do_action(flight.Action("netlens.status", b""))))
print(json.loads(status.body.to_pybytes())["pid"])
"#;
    let out = Process::new("python3")
        .args(["-c", script])
        .arg(&server.socket)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pyarrow's Flight client failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let reply: serde_json::Value = serde_json::from_str(lines.next().unwrap()).expect("a JSON reply");
    assert!(reply["items"].as_array().is_some_and(|i| !i.is_empty()), "{reply}");
    assert_eq!(lines.next(), Some(server.pid().to_string().as_str()));
}

/// The systemd unit's capability bounding set is enough to attribute sockets to processes (its
/// documented reason), and nothing less would do: with no capabilities the same capture finds
/// no owner.
#[test]
#[cfg_attr(not(ci), ignore = "needs root and setpriv (util-linux); CI runs it")]
fn the_service_units_capabilities_attribute_sockets() {
    let unit =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/netlens.service"))
            .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let owner_of_listener = |bounding: String| {
        let s = Scratch::new();
        let out = Process::new("setpriv")
            .args(["--inh-caps=-all", "--ambient-caps=-all"])
            .arg(format!("--bounding-set={bounding}"))
            .arg(assert_cmd::cargo::cargo_bin("netlens"))
            .args(["capture", "--count", "1", "--quiet"])
            .env("NETLENS_DB", s.db())
            .env("XDG_CACHE_HOME", test_cache())
            .output()
            .expect("setpriv");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        s.query(&format!(
            "SELECT coalesce(max(pid)::VARCHAR, 'none') FROM sockets WHERE local_port = {port} AND state = 'LISTEN'"
        ))
    };
    assert_eq!(
        owner_of_listener(format!("-all,{}", caps.join(","))),
        std::process::id().to_string()
    );
    assert_eq!(owner_of_listener("-all".to_string()), "none");
}

/// A remote client on the TCP listener: without the token it gets nothing, over TLS with the
/// token it reads the same rows as netlens, and every way out of the database (files, settings,
/// extensions, writes, commands) is refused. The owner's socket still does what the CLI can.
#[test]
#[cfg_attr(
    not(ci),
    ignore = "needs Python with adbc-driver-flightsql, adbc-driver-manager and pyarrow, and openssl (CI installs them)"
)]
fn tcp_clients_need_the_token_and_may_only_read() {
    let s = Scratch::new();
    s.replay_fixture();
    let (cert, key) = (s.path("cert.pem"), s.path("key.pem"));
    let made = Process::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=netlens-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            // The server's own certificate, not a CA's: rustls (netlens's client) refuses a CA
            // certificate as a server's, as `openssl req -x509` makes it by default.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let exchange = s.path("exchange");
    std::fs::create_dir(&exchange).unwrap();
    std::fs::write(exchange.join("in.csv"), "a\n7\n").unwrap();
    let server = Server::start(
        &s,
        &[
            "--no-capture",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--files",
            exchange.to_str().unwrap(),
        ],
    );
    let status = status_json(&s);
    let url = status["listen"]
        .as_str()
        .expect("status names the listener")
        .to_string();
    assert!(url.starts_with("grpc+tls://127.0.0.1:"), "{url}");
    let token = std::fs::read_to_string(token_file(&s)).expect("the token is stored beside the database");
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(token_file(&s)).unwrap());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.log().contains(token.trim()),
        "a new token is printed once at start"
    );

    let sql = "SELECT snapshot_id, count(*) AS sockets FROM sockets GROUP BY snapshot_id ORDER BY snapshot_id";
    let script = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as fl
url, token, cert, sql = sys.argv[1:5]
pem = open(cert).read()
tls = {"adbc.flight.sql.client_option.tls_root_certs": pem}
auth = {"adbc.flight.sql.authorization_header": "Bearer " + token}
out = {}
def attempt(name, fn):
    try:
        out[name] = ["ok", fn()]
    except Exception as e:
        out[name] = ["error", str(e)[:300]]
def query(kwargs, text, target=url):
    with flight_sql.connect(target, db_kwargs=kwargs) as conn:
        cur = conn.cursor()
        cur.execute(text)
        return [list(r) for r in cur.fetchall()]
def update(text):
    with flight_sql.connect(url, db_kwargs={**tls, **auth}) as conn:
        cur = conn.cursor()
        cur.adbc_statement.set_sql_query(text)
        return cur.adbc_statement.execute_update()
attempt("no_token", lambda: query(tls, sql))
attempt("wrong_token", lambda: query({**tls, "adbc.flight.sql.authorization_header": "Bearer " + "0" * 64}, sql))
attempt("plain_to_tls", lambda: query(auth, sql, url.replace("grpc+tls", "grpc")))
attempt("rows", lambda: query({**tls, **auth}, sql))
for name, text in [
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')"),
    ("replacement_scan", "FROM '/etc/passwd'"),
    ("read_text", "SELECT * FROM read_text('/etc/hostname')"),
    ("copy_to", "COPY (SELECT 1) TO '/tmp/netlens-remote-copy.csv'"),
    ("attach", "ATTACH '/tmp/netlens-remote.db' AS r"),
    ("install", "INSTALL httpfs"),
    ("set", "SET memory_limit = '1MB'"),
    ("create", "CREATE TABLE remote_made AS SELECT 1 AS x"),
    ("select_into_write", "SELECT * FROM (DELETE FROM snapshots RETURNING *)"),
]:
    attempt(name, lambda text=text: query({**tls, **auth}, text))
attempt("update", lambda: update("DELETE FROM snapshots"))
client = fl.FlightClient(url, tls_root_certs=pem)
options = fl.FlightCallOptions(headers=[(b"authorization", ("Bearer " + token).encode())])
def action(kind, body):
    return [r.body.to_pybytes().decode() for r in client.do_action(fl.Action(kind, body), options=options)]
attempt("status", lambda: json.loads(action("netlens.status", b"")[0])["pid"])
attempt("insights", lambda: action("netlens.request", json.dumps({"command": "insights"}).encode()))
attempt("retain", lambda: action("netlens.request", json.dumps({"command": "retain", "raw": {"secs": 3600, "nanos": 0}, "rollups": None, "bucket": {"secs": 3600, "nanos": 0}, "batch": 300}).encode()))
attempt("export", lambda: action("netlens.request", json.dumps({"command": "export", "source": {"table": "snapshots"}, "format": "csv", "out": "/tmp/netlens-remote-export", "overwrite": True, "partition_by": []}).encode()))
print(json.dumps(out))
"#;
    let out = Process::new("python3")
        .args(["-c", script])
        .arg(&url)
        .arg(token.trim())
        .arg(&cert)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the client script failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let outcome = |name: &str| -> (String, String) {
        let r = &results[name];
        (r[0].as_str().unwrap_or("").to_string(), r[1].to_string())
    };
    for refused in ["no_token", "wrong_token", "plain_to_tls"] {
        assert_eq!(outcome(refused).0, "error", "{refused}: {results}");
    }
    assert!(outcome("no_token").1.contains("Bearer"), "{results}");
    let ours: Vec<Vec<i64>> = s
        .query(sql)
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(!ours.is_empty());
    assert_eq!(results["rows"][1], serde_json::json!(ours), "{results}");
    for refused in [
        "read_csv",
        "replacement_scan",
        "read_text",
        "copy_to",
        "attach",
        "install",
        "set",
        "create",
        "select_into_write",
        "update",
        "retain",
        "export",
    ] {
        assert_eq!(outcome(refused).0, "error", "{refused} was not refused: {results}");
    }
    assert_eq!(outcome("status").0, "ok", "{results}");
    assert_eq!(outcome("insights").0, "ok", "{results}");
    assert!(outcome("retain").1.contains("--remote-writes"), "{results}");
    assert!(outcome("export").1.contains("names files"), "{results}");
    assert!(
        outcome("read_csv").1.contains("may only query") || outcome("read_csv").1.contains("disabled by configuration"),
        "{results}"
    );
    assert!(!std::path::Path::new("/tmp/netlens-remote-copy.csv").exists());
    assert!(!std::path::Path::new("/tmp/netlens-remote-export").exists());
    assert_eq!(
        s.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'remote_made'"),
        "0"
    );

    // The owner, on the socket: everything, but DuckDB's files only in --files.
    assert_eq!(
        s.query(&format!(
            "SELECT a FROM read_csv('{}')",
            exchange.join("in.csv").display()
        )),
        "7"
    );
    let outside = s
        .cmd()
        .args(["-c", "SELECT count(*) FROM read_csv('/etc/passwd')"])
        .output()
        .unwrap();
    assert!(!outside.status.success());
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("disabled by configuration"),
        "{}",
        String::from_utf8_lossy(&outside.stderr)
    );
    assert_ne!(s.query("SELECT count(*) FROM snapshots"), "0", "nothing was deleted");

    // netlens itself over TLS: the issuer's certificate to trust, and the same rows.
    let elsewhere = Scratch::new();
    let over_tls = |extra: &[&str]| {
        elsewhere
            .cmd()
            .args(["--server", &url, "--token-file", token_file(&s).to_str().unwrap()])
            .args(extra)
            .args(["--format", "csv", "--no-headers", "-c", sql])
            .output()
            .unwrap()
    };
    let out = over_tls(&["--tls-ca", cert.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Vec<i64>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(theirs, ours);
    let out = over_tls(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
    drop(server);
}

/// netlens is a client of a server's TCP listener too (`--server URL` and the token): the same
/// rows and output as on the socket, from a client with no database of its own; no token, a
/// wrong one, a write and a command naming files are refused with the server's reasons.
#[test]
fn netlens_reaches_a_server_over_tcp_with_its_token() {
    let s = Scratch::new();
    s.replay_fixture();
    let server = Server::start(&s, &["--no-capture", "--listen", "127.0.0.1:0"]);
    let url = status_json(&s)["listen"]
        .as_str()
        .expect("status names the listener")
        .to_string();
    assert!(url.starts_with("grpc://127.0.0.1:"), "{url}");
    let token = std::fs::read_to_string(token_file(&s)).unwrap();
    let elsewhere = Scratch::new();
    let remote = |args: &[&str]| {
        elsewhere
            .cmd()
            .args(["--server", &url, "--token-file", token_file(&s).to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let sql = "SELECT snapshot_id, count(*) AS sockets FROM sockets GROUP BY snapshot_id ORDER BY snapshot_id";
    let local = s.cmd().args(["--format", "csv", "-c", sql]).output().unwrap();
    let out = remote(&["--format", "csv", "-c", sql]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, text(&local).0);
    assert!(text(&out).0.lines().count() > 2, "{}", text(&out).0);
    assert_eq!(text(&out).1, "", "csv output carries no note");
    assert!(!elsewhere.db().exists(), "the client opened no database of its own");

    let from_env = elsewhere
        .cmd()
        .env("NETLENS_TOKEN", token.trim())
        .args(["--server", &url, "--format", "csv", "-c", "SELECT 42 AS x"])
        .output()
        .unwrap();
    assert_eq!(text(&from_env).0, "x\n42\n", "{}", text(&from_env).1);
    let status = remote(&["status"]);
    assert!(status.status.success(), "{}", text(&status).1);
    assert!(text(&status).0.contains(&url), "{}", text(&status).0);

    let wrong = elsewhere.path("wrong.token");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    let (token_path, wrong) = (token_file(&s), wrong.to_str().unwrap().to_string());
    let pcap = elsewhere.path("none.pcap");
    let with_token = |more: &[&str]| -> Vec<String> {
        ["--server", &url, "--token-file", token_path.to_str().unwrap()]
            .iter()
            .chain(more)
            .map(|a| a.to_string())
            .collect()
    };
    let plain = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
    for (args, says) in [
        (plain(&["--server", &url, "-c", "SELECT 1"]), "needs the server's token"),
        (
            plain(&["--server", &url, "--token-file", &wrong, "-c", "SELECT 1"]),
            "wrong token",
        ),
        (
            plain(&[
                "--server",
                "http://127.0.0.1:1",
                "--token-file",
                &wrong,
                "-c",
                "SELECT 1",
            ]),
            "grpc://HOST:PORT",
        ),
        (
            with_token(&["-c", "CREATE TABLE remote_made AS SELECT 1 AS x"]),
            "may only query",
        ),
        (with_token(&["import", "pcap", pcap.to_str().unwrap()]), "names files"),
        (with_token(&["serve", "--no-capture"]), "does not apply to `serve`"),
    ] {
        let out = elsewhere.cmd().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).1.contains(says), "{args:?}: {}", text(&out).1);
    }
    assert_eq!(
        s.query("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'remote_made'"),
        "0"
    );
    drop(server);
}

/// `serve --retain` rolls up and deletes on its schedule while clients query; `netlens retain`
/// does the same by hand, and a second run changes nothing.
#[test]
fn retention_rolls_up_and_deletes_on_schedule_and_by_hand() {
    let s = Scratch::new();
    s.cmd()
        .args([
            "demo",
            "--quiet",
            "--hours",
            "3",
            "--interval",
            "1m",
            "--traffic-rows",
            "20",
        ])
        .assert()
        .success();
    let before: i64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    let server = Server::start(&s, &["--no-capture", "--retain", "1h", "--every", "retain=1s"]);
    eventually(Duration::from_secs(30), "a retain run", || {
        status_json(&s)["schedule"][0]["runs"].as_u64().unwrap_or(0) >= 1
    });
    let status = status_json(&s);
    let result = status["schedule"][0]["last_result"].as_str().unwrap_or("").to_string();
    assert!(result.contains("deleted"), "{status}");
    let after: i64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    assert!(after < before && after > 0, "{before} -> {after}");
    assert_eq!(
        s.query("SELECT count(*) FROM snapshots WHERE ts < now()::TIMESTAMP - INTERVAL 61 MINUTE"),
        "0"
    );
    assert_ne!(s.query("SELECT count(*) FROM connection_rollups"), "0");
    assert_ne!(s.query("SELECT count(*) FROM retention_runs"), "0");
    assert!(server.stop(Duration::from_secs(20)).success());

    // By hand, with the file free: rollups older than two hours go, raw rows are kept.
    let out = s.cmd().args(["retain", "--rollups", "2h"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        s.query("SELECT count(*) FROM connection_rollups WHERE bucket_start < now()::TIMESTAMP - INTERVAL 2 HOUR"),
        "0"
    );
    let again = s.cmd().args(["retain", "--rollups", "2h"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to roll up or delete"));
    let refused = s
        .cmd()
        .args(["retain", "--raw", "2h", "--rollups", "1h"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least as long"));
}

/// Regression: the server's capture set DuckDB's instance-wide `threads = 1` (and lowered the
/// memory limit to 1 MB between snapshots), so every client query ran on one thread and could
/// fail for memory while a capture ran. A shared store leaves the settings alone.
#[test]
fn the_capture_leaves_client_queries_their_threads_and_memory() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "200ms"]);
    eventually(Duration::from_secs(20), "three snapshots", || {
        status_json(&s)["capture"]["snapshots"].as_u64().unwrap_or(0) >= 3
    });
    let defaults = s
        .cmd()
        .args(["--db", ":memory:", "--format", "csv", "--no-headers", "-c"])
        .arg("SELECT current_setting('threads'), current_setting('memory_limit')")
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&defaults.stdout).trim().to_string();
    for _ in 0..10 {
        let served = s.query("SELECT current_setting('threads'), current_setting('memory_limit')");
        assert_eq!(
            served, expected,
            "a client sees DuckDB's defaults while the capture runs"
        );
        std::thread::sleep(Duration::from_millis(70));
    }
    drop(server);
}

/// The disk filling up (simulated with RLIMIT_FSIZE, which fails writes as a full disk does,
/// without privileges): the server says so in its status and once in its log, keeps answering
/// queries, stops cleanly, and the file reopens with every stored snapshot whole.
#[test]
fn a_full_disk_is_reported_and_the_file_stays_whole() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    s.query("SELECT 1");
    let limit = std::fs::metadata(s.db()).unwrap().len() + 3 * 1024 * 1024;
    let log = s.path("serve.log");
    let mut command = Process::new(assert_cmd::cargo::cargo_bin("netlens"));
    command
        .arg("--db")
        .arg(s.db())
        // Each snapshot stored as it is taken: some are stored before the file reaches its limit
        // (a batch of the default 5 s would be larger than the 3 MiB left).
        .args(["serve", "--interval", "100ms", "--commit-every", "0"])
        .env("XDG_DATA_HOME", s.dir.path().join("xdg"))
        .env("XDG_CACHE_HOME", test_cache())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start netlens serve");
    let mut status = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "the server to report the full disk", || {
        if Process::new(assert_cmd::cargo::cargo_bin("netlens"))
            .arg("--db")
            .arg(s.db())
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            status = status_json(&s);
        }
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("File too large"))
    });
    let stored = status["capture"]["snapshots"].as_u64().unwrap();
    assert!(stored > 0, "{status}");
    std::thread::sleep(Duration::from_secs(2));
    let answered: u64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    assert!(answered >= stored, "queries are still answered");
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines = logged.lines().filter(|l| l.contains("File too large")).count();
    assert!(
        lines <= 2,
        "the same error is logged once, not every 100 ms ({lines} lines):\n{logged}"
    );
    // SAFETY: kill sends SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert_eq!(
        s.query("SELECT (SELECT sum(socket_count) FROM snapshots) = (SELECT count(*) FROM sockets)"),
        "true",
        "every stored snapshot is whole"
    );
    assert!(s.query("SELECT count(*) FROM snapshots").parse::<u64>().unwrap() >= stored);
}

/// `--memory-limit` bounds DuckDB's memory (and so its cache) for the whole server: every
/// client sees it; a size DuckDB cannot read is refused before the server starts.
#[test]
fn the_memory_limit_is_the_whole_servers() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture", "--memory-limit", "300MB"]);
    assert_eq!(s.query("SELECT current_setting('memory_limit')"), "286.1 MiB");
    drop(server);
    let bad = s.cmd().args(["serve", "--memory-limit", "lots"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("512MB"));
}

/// A local client of the server (the Unix socket) may run any SQL the shell may, and no more:
/// the settings that keep extensions out stay locked, and no extension is installed or loaded.
#[test]
fn local_clients_cannot_unlock_settings_or_install_extensions() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    for sql in [
        "SET autoinstall_known_extensions = true",
        "RESET autoload_known_extensions",
        "SET lock_configuration = false",
        "INSTALL httpfs",
        "LOAD httpfs",
    ] {
        let out = s.cmd().args(["-c", sql]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{sql} was not refused: {stderr}\n{}",
            server.log()
        );
        assert!(
            stderr.contains("locked") || stderr.contains("never lets DuckDB"),
            "{sql}: {stderr}"
        );
    }
    s.cmd()
        .args(["--format", "csv", "--no-headers"])
        .args(["-c", "SET memory_limit = '2GB'"])
        .args(["-c", "SELECT current_setting('autoinstall_known_extensions')"])
        .assert()
        .success()
        .stdout(predicates::str::contains("false"));
}

/// The server's resident memory in bytes (VmRSS), from /proc.
fn resident_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// SIGHUP changes nothing (the server says so and keeps serving); `status` shows every field an
/// operator asks for (pid, uptime, snapshots stored, last error, schedule, database size,
/// clients); scheduled jobs store their runs in the same tables as the commands run by hand.
#[test]
fn sighup_reloads_nothing_and_status_shows_the_server_and_its_schedule() {
    let s = Scratch::new();
    s.replay_fixture();
    let server = Server::start(
        &s,
        &["--interval", "200ms", "--every", "detect=1s", "--every", "insights=1s"],
    );
    eventually(Duration::from_secs(60), "a scheduled detect and insights run", || {
        let status = status_json(&s);
        status["schedule"]
            .as_array()
            .is_some_and(|jobs| jobs.len() == 2 && jobs.iter().all(|j| j["runs"].as_u64().unwrap_or(0) >= 1))
    });
    server.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "the server to log SIGHUP", || {
        server.log().contains("SIGHUP ignored")
    });
    // Still serving, still capturing, same process.
    let before = status_json(&s)["capture"]["snapshots"].as_u64().unwrap();
    eventually(Duration::from_secs(20), "a snapshot after SIGHUP", || {
        status_json(&s)["capture"]["snapshots"].as_u64().unwrap_or(0) > before
    });
    let status = status_json(&s);
    assert_eq!(status["pid"].as_i64(), Some(i64::from(server.pid())), "{status}");
    assert!(status["uptime_s"].as_f64().unwrap() > 0.0, "{status}");
    assert!(status["database_bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(status["capture"]["running"].as_bool().unwrap(), "{status}");
    assert!(status["capture"]["last_snapshot_at"].is_string(), "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    assert!(status["clients"]["queries_served"].is_u64(), "{status}");
    let jobs: Vec<&str> = status["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["detect", "insights"], "{status}");
    // The scheduled detect stored its runs where `netlens detect` stores them.
    assert_ne!(s.query("SELECT count(*) FROM detector_runs"), "0", "{status}");
    let text = String::from_utf8(s.cmd().arg("status").output().unwrap().stdout).unwrap();
    for key in [
        "server ",
        "database ",
        "up since ",
        "capture ",
        "schedule ",
        "clients ",
        "last error ",
    ] {
        assert!(text.contains(key), "status text lacks {key:?}:\n{text}");
    }
    assert!(server.stop(Duration::from_secs(30)).success());
}

/// A client that never reads: one Unix-socket connection that sends nothing, and one that
/// starts a 50-million-row query and reads one batch only. Both hold nothing but their own
/// connection and query: other clients are answered, the capture keeps its pace, the
/// server's memory stays bounded (a few batches, not the result), and the query stops when
/// that client goes away.
#[test]
fn a_client_that_never_reads_holds_back_only_itself() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "200ms"]);
    let silent = std::os::unix::net::UnixStream::connect(&server.socket).expect("connect");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let socket = server.socket.clone();
    let stalled = std::thread::spawn(move || {
        let mut client = netlens::serve::client::Client::connect(&socket).expect("connect");
        client
            .query(
                "SELECT range AS n, md5(range::VARCHAR) AS h FROM range(50000000)",
                &mut |_, batches| {
                    let first = batches.next().expect("a first batch").expect("batch");
                    started_tx.send(first.num_rows()).unwrap();
                    // Never read on, until the test lets this client go.
                    let _ = release_rx.recv_timeout(Duration::from_secs(120));
                    Ok(())
                },
            )
            .expect("query");
    });
    assert!(started_rx.recv_timeout(Duration::from_secs(60)).unwrap() > 0);
    std::thread::sleep(Duration::from_secs(2));
    let held = resident_bytes(server.pid());
    for i in 0..20 {
        assert_eq!(s.query(&format!("SELECT {i} + 1")), (i + 1).to_string());
    }
    std::thread::sleep(Duration::from_secs(2));
    let status = status_json(&s);
    assert_eq!(status["clients"]["queries_running"].as_u64(), Some(1), "{status}");
    assert_eq!(status["capture"]["late_snapshots"].as_u64(), Some(0), "{status}");
    let later = resident_bytes(server.pid());
    assert!(
        later < held + 64 * 1024 * 1024,
        "the stalled query grew the server's memory from {held} to {later} bytes"
    );
    release_tx.send(()).unwrap();
    stalled.join().expect("stalled client");
    drop(silent);
    eventually(Duration::from_secs(20), "the stalled query to stop", || {
        status_json(&s)["clients"]["queries_running"].as_u64() == Some(0)
    });
    assert!(server.stop(Duration::from_secs(30)).success());
}

/// A server killed with SIGKILL while it captures and streams a result: the client gets a
/// clear error (not a hang, not a partial result reported as success), the file reopens, and
/// every snapshot the server had reported stored is there and whole (what still waited to be
/// stored, at most `--commit-every` of snapshots, is what a kill loses).
#[test]
fn a_server_killed_mid_stream_keeps_every_snapshot_it_reported_stored() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--interval", "200ms"]);
    eventually(Duration::from_secs(30), "three snapshots", || {
        status_json(&s)["capture"]["snapshots"].as_u64().unwrap_or(0) >= 3
    });
    let mut reader = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT range AS n, md5(range::VARCHAR) FROM range(50000000)",
        ])
        .env("NETLENS_DB", s.db())
        .env("XDG_CACHE_HOME", test_cache())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = reader.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).expect("the first rows arrive");
    let stored = status_json(&s)["capture"]["snapshots"].as_u64().unwrap();
    server.crash();
    let drained = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = reader.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the client hung after the server died");
        std::thread::sleep(Duration::from_millis(50));
    };
    drained.join().unwrap().unwrap();
    let mut stderr = String::new();
    reader.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the connection broke") && stderr.contains("the server is gone"),
        "not a clear message: {stderr}"
    );
    // The file reopens without the server; what it had stored is there and whole.
    let after: u64 = s.query("SELECT count(*) FROM snapshots").parse().unwrap();
    assert!(
        after >= stored,
        "{stored} snapshots reported stored, {after} in the file"
    );
    assert_eq!(
        s.query("SELECT (SELECT sum(socket_count) FROM snapshots) = (SELECT count(*) FROM sockets)"),
        "true",
        "every stored snapshot is whole"
    );
    // And a new server takes the file over.
    let again = Server::start(&s, &["--no-capture"]);
    assert_eq!(s.query("SELECT count(*) >= 3 FROM snapshots"), "true");
    drop(again);
}

/// Issue 17's target for small queries: the round trip of `SELECT 1` through the Unix socket,
/// one session, at most 5 ms at the median (bench/RESULTS.md has the figures).
#[test]
fn a_small_querys_round_trip_is_under_5_ms_at_the_median() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    let mut client = netlens::serve::client::Client::connect(&server.socket).expect("connect");
    let mut times = Vec::new();
    for i in 0..300 {
        let started = Instant::now();
        let mut rows = 0;
        client
            .query(&format!("SELECT {i} AS n"), &mut |_, batches| {
                for batch in batches {
                    rows += batch?.num_rows();
                }
                Ok(())
            })
            .expect("query");
        assert_eq!(rows, 1);
        times.push(started.elapsed());
    }
    times.sort();
    let p50 = times[times.len() / 2];
    eprintln!(
        "SELECT through the socket: p50 {:.2} ms, p90 {:.2} ms",
        p50.as_secs_f64() * 1e3,
        times[times.len() * 9 / 10].as_secs_f64() * 1e3
    );
    assert!(p50 < Duration::from_millis(5), "p50 {p50:?}");
    drop(client);
    drop(server);
}

/// The systemd unit in the repository is one systemd accepts.
#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let present = Process::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::prerequisite(present, "systemd-analyze (package systemd)") {
        return;
    }
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/netlens.service");
    let out = Process::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // verify checks ExecStart's binary exists; this host need not have netlens installed there.
    let complaints: Vec<&str> = said
        .lines()
        .filter(|l| !l.contains("/usr/local/bin/netlens") && !l.trim().is_empty())
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {said}");
}

/// The scheduled geo and retrain jobs store their runs where `netlens geo` and `netlens retrain`
/// store theirs: `geo_runs` with the addresses filled, and a new model version of kind retrain.
#[test]
fn scheduled_geo_and_retrain_land_where_the_commands_do() {
    let Some(mmdb) = crate::geo::mmdb_dir() else { return };
    let s = crate::analysis::with_traffic();
    s.cmd()
        .args([
            "--format",
            "csv",
            "train",
            "kmeans",
            "--on",
            "traffic",
            "--exclude",
            "label",
            "--set",
            "k=3",
        ])
        .args(["--model", "seg"])
        .assert()
        .success();
    s.query(
        "INSERT INTO flows (import_id, ts, uid, orig_h, orig_p, resp_h, resp_p, proto, source_file) VALUES \
         (1, TIMESTAMP '2026-01-01 00:00:00', 'C1', '10.0.0.1', 40000, '81.2.69.160', 443, 'tcp', 'test.pcap'), \
         (1, TIMESTAMP '2026-01-01 00:00:01', 'C2', '10.0.0.1', 40001, '9.9.9.9', 443, 'tcp', 'test.pcap')",
    );
    let country = mmdb.join("GeoLite2-Country-Test.mmdb");
    let country = country.to_str().unwrap();
    let server = Server::start(
        &s,
        &[
            "--no-capture",
            "--every",
            "geo=1s",
            "--every",
            "retrain=2s",
            "--mmdb",
            country,
        ],
    );
    eventually(Duration::from_secs(60), "a scheduled geo and retrain run", || {
        let status = status_json(&s);
        status["schedule"]
            .as_array()
            .is_some_and(|jobs| jobs.len() == 2 && jobs.iter().all(|j| j["runs"].as_u64().unwrap_or(0) >= 1))
    });
    let status = status_json(&s);
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(s.query("SELECT country_code FROM geo WHERE ip = '81.2.69.160'"), "GB");
    assert_eq!(s.query("SELECT status FROM geo WHERE ip = '9.9.9.9'"), "not_found");
    // Later geo runs found everything cached and stored no run, as by hand.
    assert_eq!(s.query("SELECT count(*) FROM geo_runs"), "1");
    assert_eq!(s.query("SELECT kind FROM latest_model_runs"), "retrain");
    assert_eq!(
        s.query("SELECT min(version) FROM model_runs WHERE kind = 'retrain'"),
        "2"
    );
    drop(server);
}

/// CPU seconds process `pid` has used (user and system).
fn cpu_seconds(pid: u64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn queries_running(s: &Scratch) -> Option<u64> {
    status_json(s)["clients"]["queries_running"].as_u64()
}

/// Regression: Ctrl-C in a client, or the client killed, left its query running on the server
/// to its end (queries_running 1, a core busy) though the client had said "Interrupted".
#[test]
fn a_clients_ctrl_c_or_death_stops_its_query_on_the_server() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    for kill in [false, true] {
        let mut client = s.spawn(&["-c", &long_query()]);
        eventually(Duration::from_secs(10), "the query to start on the server", || {
            queries_running(&s) == Some(1)
        });
        std::thread::sleep(Duration::from_millis(500));
        let stopped = Instant::now();
        if kill {
            client.kill().unwrap();
            client.wait().unwrap();
        } else {
            crate::ctrl_c_ends_it_with_130(client);
        }
        let limit = Duration::from_secs(3);
        while queries_running(&s) != Some(0) {
            assert!(
                stopped.elapsed() < limit,
                "the query still runs on the server {limit:?} after its client {} (kill: {kill}); its log:\n{}",
                if kill { "was killed" } else { "pressed Ctrl-C" },
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The server serves on.
    assert_eq!(s.query("SELECT 42"), "42");
}

/// Regression: an export interrupted by Ctrl-C in its client ("Error: interrupted") went on
/// writing on the server, and put the whole file in place some 15 s later. Now the server stops
/// it: no partial file is left, and the file never appears.
#[test]
fn a_clients_ctrl_c_stops_its_export_on_the_server_and_leaves_no_file() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("big.parquet");
    let client = s.spawn(&[
        "export",
        "--query",
        "SELECT i, md5(i::VARCHAR) h FROM range(40000000) t(i)",
        "--out",
        out.to_str().unwrap(),
    ]);
    let files = || -> Vec<String> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    eventually(Duration::from_secs(10), "the export to start writing", || {
        !files().is_empty()
    });
    std::thread::sleep(Duration::from_millis(1000));
    let pressed = Instant::now();
    crate::ctrl_c_ends_it_with_130(client);
    let limit = Duration::from_secs(3);
    while !files().is_empty() {
        assert!(
            pressed.elapsed() < limit,
            "{limit:?} after Ctrl-C the server still writes: {:?}; its log:\n{}",
            files(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!out.exists());
    assert!(
        server.log().contains("export cancelled by its client"),
        "{}",
        server.log()
    );
    // The server serves on, its shared lock free: another export goes through whole.
    let small = dir.join("small.parquet");
    s.cmd()
        .args(["export", "--query", "SELECT 1 AS x", "--out", small.to_str().unwrap()])
        .assert()
        .success();
    assert!(small.exists());
}

/// The server's CPU falls idle: less than half a second used in the 2 s from 1 s after now.
pub(crate) fn falls_idle(s: &Scratch, server: &Server, what: &str) {
    let pid = status_json(s)["pid"].as_u64().expect("status names the pid");
    std::thread::sleep(Duration::from_millis(1000));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.5,
        "{what}: the server used {used:.2} s of CPU in 2 s; its log:\n{}",
        server.log()
    );
}

/// Regression: `train` through a server went on after the client's Ctrl-C, in its SQL or in its
/// fit (Rust), and stored its model. Now it stops there as it would locally, storing nothing.
#[test]
fn a_clients_ctrl_c_stops_its_train_on_the_server_and_stores_no_model() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--no-capture"]);
    let in_sql = [
        "train",
        "iforest",
        "--on",
        "SELECT a.range AS x, b.range AS y FROM range(1000000) a, range(100000) b WHERE a.range * b.range = -1",
    ];
    let in_rust = crate::SLOW_AUTOENCODER_TRAIN;
    for args in [&in_sql[..], &in_rust[..]] {
        let client = s.spawn(args);
        std::thread::sleep(Duration::from_millis(2000));
        crate::ctrl_c_ends_it_with_130(client);
        falls_idle(&s, &server, args[1]);
        assert!(
            server.log().contains("train cancelled by its client"),
            "{}",
            server.log()
        );
    }
    assert_eq!(s.query("SELECT count(*) FROM models"), "0");
    assert_eq!(s.query("SELECT count(*) FROM model_runs"), "0");
}

/// A Flight client on the server's TCP listener (no TLS), sending the token and a session id.
struct TcpFlight {
    client: arrow_flight::flight_service_client::FlightServiceClient<tonic::transport::Channel>,
    token: String,
    session: &'static str,
}

impl TcpFlight {
    async fn connect(url: &str, token: &str, session: &'static str) -> TcpFlight {
        let url = url.replace("grpc://", "http://");
        let channel = tonic::transport::Endpoint::from_shared(url)
            .expect("a URL")
            .connect()
            .await
            .expect("connect on TCP");
        let client = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
        TcpFlight {
            client,
            token: token.trim().to_string(),
            session,
        }
    }

    fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        metadata.insert("x-netlens-session", self.session.parse().unwrap());
        request
    }

    async fn info(&mut self, sql: &str) -> arrow_flight::FlightInfo {
        use arrow_flight::sql::ProstMessageExt;
        let command = arrow_flight::sql::CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = arrow_flight::FlightDescriptor::new_cmd(prost::Message::encode_to_vec(&command.as_any()));
        let call = self.call(descriptor);
        self.client
            .get_flight_info(call)
            .await
            .expect("GetFlightInfo")
            .into_inner()
    }

    /// The rows' count of the ticket's results, or the call's status.
    async fn fetch(&mut self, info: &arrow_flight::FlightInfo) -> Result<usize, tonic::Status> {
        use futures::TryStreamExt;
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        let call = self.call(ticket);
        let stream = self.client.do_get(call).await?.into_inner();
        let batches: Vec<_> = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            stream.map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e))),
        )
        .try_collect()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    async fn action(&mut self, kind: &str, body: Vec<u8>) -> Result<(), tonic::Status> {
        use futures::TryStreamExt;
        let call = self.call(arrow_flight::Action {
            r#type: kind.to_string(),
            body: body.into(),
        });
        let results: Vec<_> = self.client.do_action(call).await?.into_inner().try_collect().await?;
        drop(results);
        Ok(())
    }
}

fn open_sessions(s: &Scratch) -> Option<u64> {
    status_json(s)["clients"]["sessions"].as_u64()
}

/// Regression: tickets were numbered 1, 2, 3, ..., and any client of the same kind (every TCP
/// client with the token) could fetch or cancel another's query, or close its session, by
/// guessing. Handles are random now and belong to the connection that made them; a client
/// connection that closes ends its sessions.
#[test]
fn another_client_cannot_fetch_cancel_or_close_what_is_not_its_own() {
    let s = Scratch::new();
    let _server = Server::start(&s, &["--no-capture", "--listen", "127.0.0.1:0"]);
    let url = status_json(&s)["listen"].as_str().expect("the listener").to_string();
    let token = std::fs::read_to_string(token_file(&s)).expect("token");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut owner = TcpFlight::connect(&url, &token, "same-id").await;
        let mut other = TcpFlight::connect(&url, &token, "same-id").await;
        let info = owner.info("SELECT * FROM range(3)").await;
        let ticket = info.endpoint[0].ticket.clone().unwrap().ticket;
        assert!(ticket.len() >= 16, "a ticket of {} bytes", ticket.len());

        let fetched = other.fetch(&info).await;
        assert_eq!(
            fetched.as_ref().map_err(|e| e.code()),
            Err(tonic::Code::NotFound),
            "another client's DoGet: {fetched:?}"
        );
        let cancel = arrow_flight::CancelFlightInfoRequest::new(info.clone());
        let cancelled = other
            .action("CancelFlightInfo", prost::Message::encode_to_vec(&cancel))
            .await;
        assert_eq!(
            cancelled.as_ref().map_err(|e| e.code()),
            Err(tonic::Code::NotFound),
            "another client's CancelFlightInfo: {cancelled:?}"
        );
        assert_eq!(open_sessions(&s), Some(1), "the owner's session");
        other
            .action("netlens.close_session", b"same-id".to_vec())
            .await
            .expect("closing its own (none)");
        assert_eq!(open_sessions(&s), Some(1), "another client closed the owner's session");

        assert_eq!(owner.fetch(&info).await.expect("the owner's DoGet"), 3);
        // A second ticket of the owner's, cancelled by the owner.
        let info = owner.info("SELECT 1").await;
        let cancel = arrow_flight::CancelFlightInfoRequest::new(info);
        owner
            .action("CancelFlightInfo", prost::Message::encode_to_vec(&cancel))
            .await
            .expect("the owner's cancel");
        drop(owner);
        drop(other);
    });
    eventually(Duration::from_secs(5), "the closed connection's session to end", || {
        open_sessions(&s) == Some(0)
    });
}

/// Regression: a client killed with SIGKILL left its session open (its connection, and any
/// transaction it held) until the hour's idle close. Its socket closing ends it now.
#[test]
fn a_killed_clients_session_ends_with_its_connection() {
    let s = Scratch::new();
    let _server = Server::start(&s, &["--no-capture"]);
    let script = format!("CREATE TEMP TABLE held AS SELECT 1; BEGIN; {}", long_query());
    let mut client = s.spawn(&["-c", &script]);
    eventually(Duration::from_secs(10), "the client's session and query", || {
        open_sessions(&s) == Some(1) && queries_running(&s) == Some(1)
    });
    client.kill().unwrap();
    client.wait().unwrap();
    eventually(Duration::from_secs(5), "the killed client's session to end", || {
        open_sessions(&s) == Some(0)
    });
    assert_eq!(s.query("SELECT 42"), "42");
}

/// Regression: `--http` (or `--listen`) on a port in use logged "serving" and wrote the token
/// file, then failed. The port is bound first: nothing is logged or written, and the error
/// names the address and what to do.
#[test]
fn a_port_in_use_fails_the_start_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for option in ["--http", "--listen"] {
        let s = Scratch::new();
        let out = s
            .cmd()
            .args(["serve", "--no-capture", option, &addr])
            .timeout(Duration::from_secs(30))
            .output()
            .expect("serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{option}: {stderr}");
        assert!(stderr.contains(&format!("{option} {addr}")), "{option}: {stderr}");
        assert!(stderr.contains("hint:"), "{option}: {stderr}");
        assert!(!stderr.contains("serving"), "{option}: {stderr}");
        assert!(!token_file(&s).exists(), "{option}: the token file was written");
    }
}

/// Regression: a command that stores its work in a transaction of its own (`detect`, `train`,
/// `retain`, ...) run after `BEGIN;` gave DuckDB's "cannot start a transaction within a
/// transaction". It says what happened and what to do, locally and through a server.
#[test]
fn a_command_inside_an_open_transaction_says_to_commit_or_roll_back_first() {
    let s = Scratch::new();
    s.replay_fixture();
    for through_server in [false, true] {
        let server = through_server.then(|| Server::start(&s, &["--no-capture"]));
        let report = s.path(&format!("report-{through_server}.html"));
        // The report's panels each read in a read-only transaction of their own: every one
        // met the open transaction (the report was written with an error in each panel).
        for command in [
            ".detect beacons".to_string(),
            format!(".report --out {}", report.display()),
        ] {
            let out = s.cmd().args(["-c", "BEGIN;", "-c", &command]).output().expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "server: {through_server}: {command}: {stderr}");
            assert!(
                stderr.contains("COMMIT or ROLLBACK first") && !stderr.contains("TransactionContext"),
                "server: {through_server}: {command}: {stderr}"
            );
        }
        assert!(!report.exists(), "a report of errors was written");
        // The refusal leaves the session's transaction as it was: a failed BEGIN inside it would
        // have aborted it, and its work gone at COMMIT.
        let table = format!("kept_{through_server}");
        let out = s
            .cmd()
            .args(["-c", "BEGIN;", "-c", &format!("CREATE TABLE {table} AS SELECT 1 AS x")])
            .args(["-c", ".detect beacons", "-c", "COMMIT"])
            .output()
            .expect("run");
        assert!(!out.status.success());
        assert_eq!(
            s.query(&format!(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = '{table}'"
            )),
            "1",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(server);
    }
}
