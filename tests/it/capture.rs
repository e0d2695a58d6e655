//! Capture: replayed fixtures (connections, transitions, deltas) and a live snapshot of our
//! own loopback connection with its kernel byte counters.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::Scratch;

#[test]
fn replay_builds_lifetimes_transitions_and_deltas() {
    let s = Scratch::new();
    s.replay_fixture();
    assert_eq!(
        s.query("SELECT count(*), min(source), min(host) FROM snapshots"),
        "4,fixture,fixture-host"
    );
    // The curl download: handshake, transfer, TIME_WAIT remnant (no pid, no inode), gone.
    assert_eq!(
        s.query(
            "SELECT string_agg(coalesce(to_state, 'gone'), '>' ORDER BY snapshot_id) FROM tcp_transitions \
             JOIN connections USING (connection_id) WHERE remote_port = 443"
        ),
        "SYN_SENT>ESTABLISHED>TIME_WAIT>gone"
    );
    assert_eq!(
        s.query(
            "SELECT pid, process_name, bytes_received, closed, duration_s FROM connections WHERE remote_port = 443"
        ),
        "300,curl,2500000,true,20.0"
    );
    // Direction rules on the fixture's sockets.
    assert_eq!(
        s.query("SELECT string_agg(DISTINCT local_port || ':' || direction, ' ' ORDER BY local_port || ':' || direction) FROM connections"),
        "22:inbound 22:listen 41000:outbound 41001:outbound 43000:internal 53000:outbound 5432:internal 5432:listen 68:listen"
    );
    // The resolver's UDP socket closed between snapshots 1 and 2.
    assert_eq!(
        s.query("SELECT closed, closed_at FROM connections WHERE proto = 'udp' AND remote_port = 53"),
        "true,2026-11-21 09:00:10"
    );
    // Interface deltas against the previous snapshot.
    assert_eq!(
        s.query("SELECT string_agg(coalesce(rx_bytes_delta::VARCHAR, '-'), '|' ORDER BY snapshot_id) FROM interfaces WHERE name = 'eth0'"),
        "-|2550000|100000|10000"
    );
    // Lifetimes open at the end: the listeners and the half-closed app connection.
    assert_eq!(s.query("SELECT count(*) FROM connections WHERE NOT closed"), "5");
}

#[test]
fn replaying_twice_continues_instead_of_duplicating() {
    let s = Scratch::new();
    s.replay_fixture();
    s.replay_fixture();
    assert_eq!(s.query("SELECT count(*) FROM snapshots"), "8");
    // Listeners continue across the two replays: one lifetime each.
    assert_eq!(
        s.query("SELECT count(*) FROM connections WHERE direction = 'listen'"),
        "3"
    );
}

#[test]
fn live_snapshot_sees_our_own_loopback_connection_and_its_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let payload = vec![7u8; 100_000];
    client.write_all(&payload).unwrap();
    let mut received = vec![0u8; payload.len()];
    server.read_exact(&mut received).unwrap();
    server.write_all(b"thanks").unwrap();
    let mut reply = [0u8; 6];
    client.read_exact(&mut reply).unwrap();
    let client_port = client.local_addr().unwrap().port();

    let s = Scratch::new();
    s.cmd().args(["capture", "--count", "1", "--quiet"]).assert().success();
    let me = std::process::id();
    let client_row = s.query(&format!(
        "SELECT pid, state, direction, remote_port, bytes_sent >= 100000, bytes_acked >= 100000, bytes_received >= 6, \
         segs_out > 0, rtt_us IS NOT NULL FROM sockets WHERE proto = 'tcp' AND local_port = {client_port} \
         AND remote_port = {server_port}"
    ));
    assert_eq!(
        client_row,
        format!("{me},ESTABLISHED,internal,{server_port},true,true,true,true,true")
    );
    let server_row = s.query(&format!(
        "SELECT pid, state, direction, bytes_received >= 100000, bytes_sent >= 6 FROM sockets \
         WHERE proto = 'tcp' AND local_port = {server_port} AND remote_port = {client_port}"
    ));
    assert_eq!(server_row, format!("{me},ESTABLISHED,internal,true,true"));
    let listener_row = s.query(&format!(
        "SELECT pid, state, direction, remote_addr IS NULL FROM sockets WHERE local_port = {server_port} AND state = 'LISTEN'"
    ));
    assert_eq!(listener_row, format!("{me},LISTEN,listen,true"));
    // The process table of the same snapshot knows us.
    assert_eq!(
        s.query(&format!(
            "SELECT count(*) FROM processes WHERE pid = {me} AND memory_rss_bytes > 0"
        )),
        "1"
    );
    assert_eq!(s.query("SELECT count(*) > 0 FROM interfaces WHERE name = 'lo'"), "true");
    drop((client, server, listener));
}

#[test]
fn record_then_replay_gives_the_same_rows() {
    let s = Scratch::new();
    let rec = s.path("rec.jsonl");
    s.cmd()
        .args(["capture", "--count", "2", "--interval", "100ms", "--quiet", "--record"])
        .arg(&rec)
        .assert()
        .success();
    let replayed = Scratch::new();
    replayed
        .cmd()
        .args(["capture", "--quiet", "--replay"])
        .arg(&rec)
        .assert()
        .success();
    let digest = "SELECT count(*), sum(local_port), count(DISTINCT connection_id), sum(hash(state)) FROM sockets";
    assert_eq!(s.query(digest), replayed.query(digest));
    assert_eq!(
        replayed.query("SELECT string_agg(DISTINCT source) FROM snapshots"),
        "fixture"
    );
}

#[test]
fn every_example_query_runs_on_captured_data() {
    let s = Scratch::new();
    s.replay_fixture();
    s.cmd()
        .args(["capture", "--count", "2", "--interval", "200ms", "--quiet"])
        .assert()
        .success();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 12, "a dozen examples, found {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("--"),
            "{} starts with a comment saying what it shows",
            file.display()
        );
        let out = s
            .cmd()
            .args(["--format", "csv", "--bail", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{} printed nothing", file.display());
    }
    // On the fixture alone, some examples say something specific.
    let s = Scratch::new();
    s.replay_fixture();
    let top = s
        .cmd()
        .args(["--format", "csv", "-f"])
        .arg(dir.join("01_top_talkers.sql"))
        .output()
        .unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.lines().nth(1).unwrap().starts_with("curl,300,tcp"), "{top}");
    let paths = s
        .cmd()
        .args(["--format", "csv", "-f"])
        .arg(dir.join("13_state_paths.sql"))
        .output()
        .unwrap();
    assert!(String::from_utf8(paths.stdout)
        .unwrap()
        .contains("SYN_SENT > ESTABLISHED > TIME_WAIT > gone,1"));
}

#[test]
fn capture_prints_a_summary_in_display_modes() {
    let s = Scratch::new();
    let out = s
        .cmd()
        .args(["--format", "table", "capture", "--replay"])
        .arg(crate::fixture("host_a.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for title in [
        "Captured",
        "Processes by traffic",
        "Listening ports",
        "Remote peers by traffic",
    ] {
        assert!(stdout.contains(title), "{title} missing from:\n{stdout}");
    }
    assert!(stdout.contains("sshd"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("stored 4 snapshots"));
    assert!(stderr.contains("detectors over this capture"), "{stderr}");
}

#[test]
fn netstat2_backend_stores_sockets_without_kernel_counters_and_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = Scratch::new();
    let out = s
        .cmd()
        .args(["capture", "--count", "1", "--quiet", "--sockets", "netstat2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stderr).unwrap().contains("netstat2"));
    assert_eq!(
        s.query(&format!(
            "SELECT pid, state, bytes_sent IS NULL FROM sockets WHERE local_port = {port} AND state = 'LISTEN'"
        )),
        format!("{},LISTEN,true", std::process::id())
    );
    assert!(s.query("SELECT notes FROM snapshots").contains("netstat2"));
    drop(listener);
}

/// Regression: sysinfo listed every process's threads, and they were stored as processes of
/// their own (16 % of the rows on a server). Every stored pid still alive is a thread group
/// leader (its Tgid is itself), while this multi-threaded test process runs beside it.
#[test]
fn threads_are_not_stored_as_processes() {
    let s = Scratch::new();
    let _threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(5))))
        .collect();
    s.cmd().args(["capture", "--quiet", "--count", "1"]).assert().success();
    let pids = s.query("SELECT pid FROM processes");
    let mut checked = 0;
    for pid in pids.lines() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue; // gone since
        };
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .map(str::trim)
            .unwrap_or("");
        assert_eq!(tgid, pid, "pid {pid} is a thread of {tgid}, stored as a process");
        checked += 1;
    }
    assert!(checked > 0);
    let ours = std::process::id().to_string();
    assert!(pids.lines().any(|p| p == ours), "this test process was stored");
}

/// The end of a live capture points at what is new: a listener opened since the last run is
/// listed as worth a look, with its owner; one that was there before is not.
#[test]
fn a_capture_names_listeners_new_since_the_last_run() {
    let s = Scratch::new();
    let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.cmd().args(["capture", "--quiet", "--count", "1"]).assert().success();
    let new = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = s
        .cmd()
        .args(["--format", "table", "capture", "--count", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let section = stdout.split("Worth a look").nth(1).expect("the section is shown");
    let port = |l: &std::net::TcpListener| format!("127.0.0.1:{}", l.local_addr().unwrap().port());
    assert!(section.contains(&port(&new)), "{section}");
    assert!(!section.contains(&port(&old)), "{section}");
}

/// A symbolic link planted at the --record path (in /tmp, by anyone) is not written through:
/// the capture refuses before it stores anything, and the link's target is untouched.
#[test]
fn record_never_writes_through_a_planted_symlink() {
    let s = Scratch::new();
    let victim = s.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let planted = s.path("rec.jsonl");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    s.cmd()
        .args(["capture", "--count", "1", "--quiet", "--record"])
        .arg(&planted)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Command lines can hold secrets of any user's processes: by default only the program is
/// stored, `--cmdline full` keeps the arguments, `none` nothing. netlens's own process (whose
/// arguments are known) is in every snapshot.
#[test]
fn process_arguments_are_stored_only_when_asked_for() {
    let own = "SELECT count(*) FROM processes WHERE name LIKE 'netlens%'";
    let with_arguments = "SELECT count(*) FROM processes WHERE cmdline LIKE '% %'";
    for (policy, expect_arguments) in [
        (None, false),
        (Some("name"), false),
        (Some("full"), true),
        (Some("none"), false),
    ] {
        let s = Scratch::new();
        let mut cmd = s.cmd();
        cmd.args(["capture", "--count", "1", "--quiet", "--record"])
            .arg(s.path("rec.jsonl"));
        if let Some(policy) = policy {
            cmd.args(["--cmdline", policy]);
        }
        cmd.assert().success();
        assert_ne!(s.query(own), "0", "{policy:?}: netlens's own process was not captured");
        let stored = s.query(with_arguments);
        assert_eq!(
            stored != "0",
            expect_arguments,
            "{policy:?}: {stored} command lines with arguments"
        );
        let recorded = std::fs::read_to_string(s.path("rec.jsonl")).unwrap();
        assert_eq!(
            recorded.contains("--cmdline") || recorded.contains("--count 1"),
            expect_arguments,
            "{policy:?}: the recording"
        );
        if policy == Some("none") {
            assert_eq!(s.query("SELECT count(cmdline) FROM processes"), "0");
        } else {
            assert_ne!(s.query("SELECT count(cmdline) FROM processes"), "0", "{policy:?}");
        }
    }
}

/// The end of a capture says what the detectors would flag in it (issue 18, "At the end of a
/// capture"), without storing a detector run: a process that tried 20 ports of one host within
/// the capture is named as a port scan; `--quiet` runs no detector.
#[test]
fn a_capture_ends_with_what_the_detectors_would_flag() {
    let s = Scratch::new();
    let socket = |port: u16, remote: Option<(&str, u16)>, state: &str, inode: u64| {
        serde_json::json!({
            "proto": "tcp", "local_addr": "10.0.0.2", "local_port": port,
            "remote_addr": remote.map(|r| r.0), "remote_port": remote.map(|r| r.1), "state": state,
            "pids": [300], "uid": 0, "inode": inode, "recv_queue": 0, "send_queue": 0, "tcp": null
        })
    };
    let process = serde_json::json!({
        "pid": 300, "ppid": null, "name": "nmap", "exe": "/usr/bin/nmap", "cmdline": "nmap",
        "user_name": "root", "uid": 0, "status": "Run", "cpu_percent": 1.0, "memory_rss_bytes": 1000000,
        "memory_virtual_bytes": 2000000, "start_time": "2026-11-21T08:59:00Z",
        "disk_read_bytes": 0, "disk_written_bytes": 0
    });
    let mut lines = String::new();
    for i in 0..3u16 {
        let mut sockets = vec![socket(22, None, "LISTEN", 1)];
        if i == 0 {
            // 20 attempts, each to another port of 10.0.0.9, none answered.
            sockets.extend(
                (0..20).map(|p| socket(40_000 + p, Some(("10.0.0.9", 1000 + p)), "SYN_SENT", 100 + u64::from(p))),
            );
        }
        let snapshot = serde_json::json!({
            "ts": format!("2026-11-21T09:00:0{i}Z"), "host": "fixture-host", "collect_ms": null,
            "sockets": sockets, "processes": [process.clone()], "interfaces": [], "gaps": []
        });
        lines.push_str(&format!("{snapshot}\n"));
    }
    let recording = s.path("scan.jsonl");
    std::fs::write(&recording, lines).unwrap();
    let quiet = Scratch::new()
        .cmd()
        .args(["capture", "--quiet", "--replay"])
        .arg(&recording)
        .output()
        .unwrap();
    assert!(quiet.status.success(), "{}", String::from_utf8_lossy(&quiet.stderr));
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("detectors"));
    let out = s
        .cmd()
        .args(["--format", "table", "capture", "--replay"])
        .arg(&recording)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("detectors over this capture (2026-11-21 09:00:00 .. 2026-11-21 09:00:02 UTC"),
        "{stderr}"
    );
    assert!(
        stderr.contains("port_scans: 1 scan found; top: 10.0.0.2 -> 10.0.0.9 (20 ports"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`netlens detect all --since '2026-11-21 09:00:00' --until '2026-11-21 09:00:02'`"),
        "{stderr}"
    );
    for detector in ["beacons: ", "bursts: ", "long_connections: "] {
        assert!(stderr.contains(detector), "{detector} missing from:\n{stderr}");
    }
    // Nothing was stored: no detector run, no scan row.
    assert_eq!(
        s.query("SELECT (SELECT count(*) FROM detector_runs) + (SELECT count(*) FROM port_scans)"),
        "0"
    );
    // The command it names finds and stores the same scan.
    let stored = s
        .cmd()
        .args([
            "detect",
            "all",
            "--since",
            "2026-11-21 09:00:00",
            "--until",
            "2026-11-21 09:00:02",
        ])
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    assert_eq!(
        s.query("SELECT scanner || ' ' || target FROM latest_port_scans"),
        "10.0.0.2 10.0.0.9"
    );
}
