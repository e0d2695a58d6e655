//! Live packet capture (`capture --packets`) on loopback: known traffic captured by netlens and,
//! at the same time, by tcpdump; the live flows must equal the flows of importing tcpdump's
//! file. Needs root (or CAP_NET_RAW) and tcpdump (.ci/run installs it).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::Scratch;

fn can_capture() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tcpdump = Process::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    crate::prerequisite(
        root && tcpdump,
        "root (for packet capture) and tcpdump (Debian: apt-get install tcpdump; .ci/run installs it)",
    )
}

/// A free port on 127.0.0.1 of the given kind (bound, read, released).
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn netlens(s: &Scratch) -> Process {
    let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("netlens"));
    cmd.env("NETLENS_DB", s.db())
        .env("XDG_DATA_HOME", s.dir.path().join("xdg"))
        .env("XDG_CACHE_HOME", crate::test_cache())
        .env_remove("NETLENS_FORMAT");
    cmd
}

fn wait_for_file(path: &Path, child: &mut Child, what: &str) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} ended before capturing ({status}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start capturing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(child: &Child) {
    // SAFETY: kill sends a signal to our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

/// One TCP exchange of known sizes: the client sends `up` bytes, the server answers `down` and
/// both close.
fn exchange(port: u16, up: usize, down: usize) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = vec![0u8; up];
        c.read_exact(&mut got).unwrap();
        c.write_all(&vec![b'd'; down]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&vec![b'u'; up]).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), down);
    drop(c);
    server.join().unwrap();
}

/// The flows of import `id`, one line each, without what differs between two captures of
/// the same packets (the import, the source).
fn flows_of(s: &Scratch, import_id: i64) -> String {
    s.query(&format!(
        "SELECT uid, epoch_ns(ts), orig_h, orig_p, resp_h, resp_p, proto, service, duration, orig_bytes, resp_bytes, \
         conn_state, history, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, orig_frame_bytes, resp_frame_bytes \
         FROM flows WHERE import_id = {import_id} ORDER BY ts, orig_p, resp_p"
    ))
}

#[test]
fn live_flows_equal_the_flows_of_a_tcpdump_capture_of_the_same_traffic() {
    if !can_capture() {
        return;
    }
    // tcpdump is the reference, not under test. In a busy full test run it has kept only part of
    // the traffic while netlens kept all of it (the live flows were the ones sent): such a
    // comparison says nothing, so it is run again, at most three times in all.
    let mut reference_failures = Vec::new();
    for _ in 0..3 {
        match capture_beside_tcpdump() {
            Ok(()) => return,
            Err(why) => reference_failures.push(why),
        }
    }
    panic!("tcpdump missed packets in every attempt: {reference_failures:#?}");
}

/// One side-by-side capture; Err when tcpdump, the reference, kept fewer packets than netlens.
fn capture_beside_tcpdump() -> Result<(), String> {
    let s = Scratch::new();
    let (p1, p2, refused) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let udp_server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_server.local_addr().unwrap().port();
    let filter = format!("port {p1} or port {p2} or port {refused} or port {udp_port}");
    let (theirs, ours) = (s.path("tcpdump.pcap"), s.path("netlens.pcap"));
    let mut tcpdump = Process::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-n",
            "-U",
            "--immediate-mode",
            "--time-stamp-precision=nano",
            "-w",
        ])
        .arg(&theirs)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut capture = netlens(&s)
        .args([
            "capture",
            "--packets",
            "lo",
            "--packet-rows",
            "--filter",
            &filter,
            "--write-pcap",
        ])
        .arg(&ours)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&theirs, &mut tcpdump, "tcpdump");
    wait_for_file(&ours, &mut capture, "netlens capture");
    std::thread::sleep(Duration::from_millis(300));

    // Known traffic: two complete connections, a refused one, and a UDP request and answer.
    exchange(p1, 1000, 2000);
    exchange(p2, 70_000, 0);
    let err = TcpStream::connect(("127.0.0.1", refused)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(&[7u8; 300], ("127.0.0.1", udp_port)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = udp_server.recv_from(&mut buf).unwrap();
    assert_eq!(
        (n, from),
        (
            300,
            SocketAddr::from((Ipv4Addr::LOCALHOST, client.local_addr().unwrap().port()))
        )
    );
    udp_server.send_to(&[9u8; 40], from).unwrap();
    // Stopped at once: the last packets are still in the kernel's unfinished block, which the
    // capture must wait for and read at its stop (it once lost them).
    std::thread::sleep(Duration::from_millis(20));

    interrupt(&capture);
    // tcpdump is the reference, not under test: it stops without draining what the kernel still
    // holds, so it gets until its file (written per packet, -U) has stopped growing.
    let mut size = 0;
    let mut steady = std::time::Instant::now();
    let waited = std::time::Instant::now();
    while steady.elapsed() < Duration::from_millis(500) && waited.elapsed() < Duration::from_secs(15) {
        let now = std::fs::metadata(&theirs).map_or(0, |m| m.len());
        if now != size {
            size = now;
            steady = std::time::Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt(&tcpdump);
    let out = capture.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "capture failed: {stderr}");
    assert!(stderr.contains("stopped by Ctrl-C"), "{stderr}");
    let tcpdump = tcpdump.wait_with_output().unwrap();
    assert!(tcpdump.status.success());

    s.cmd()
        .args(["import", "pcap", "--quiet"])
        .arg(&theirs)
        .assert()
        .success();
    let imports = s.query("SELECT import_id, path, packets, flows FROM imports ORDER BY import_id");
    let kept = s.query(
        "SELECT (SELECT packets FROM imports WHERE import_id = 2) < (SELECT packets FROM imports WHERE import_id = 1)",
    );
    if kept == "true" {
        return Err(format!(
            "imports {imports}; tcpdump said: {}",
            String::from_utf8_lossy(&tcpdump.stderr).trim()
        ));
    }
    // Each capture socket has the kernel stamp its packets on its own, so tcpdump's times
    // differ from netlens's by a few microseconds; so do the uids, made from the first packet's
    // time. Everything else is equal.
    let compared = "orig_h, orig_p, resp_h, resp_p, proto, service, orig_bytes, resp_bytes, conn_state, history, \
                    orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, orig_frame_bytes, resp_frame_bytes";
    let live = s.query(&format!(
        "SELECT {compared} FROM flows WHERE import_id = 1 ORDER BY ts, orig_p"
    ));
    let imported = s.query(&format!(
        "SELECT {compared} FROM flows WHERE import_id = 2 ORDER BY ts, orig_p"
    ));
    assert_eq!(
        live, imported,
        "live flows differ from tcpdump's capture imported ({imports})"
    );
    let times = s.query(
        "SELECT count(*), max(abs(epoch_us(a.ts) - epoch_us(b.ts))) < 1000, max(abs(a.duration - b.duration)) < 0.001 \
         FROM flows a JOIN flows b USING (orig_p, resp_p, proto) WHERE a.import_id = 1 AND b.import_id = 2",
    );
    assert_eq!(times, "4,true,true");
    // And the traffic is what was sent.
    let summary =
        s.query("SELECT proto, conn_state, orig_bytes, resp_bytes FROM flows WHERE import_id = 1 ORDER BY ts");
    assert_eq!(
        summary, "tcp,SF,1000,2000\ntcp,SF,70000,0\ntcp,REJ,0,0\nudp,SF,300,40",
        "{summary}"
    );
    // netlens's own pcap holds the same packets, so it imports to the same flows too.
    s.cmd()
        .args(["import", "pcap", "--quiet"])
        .arg(&ours)
        .assert()
        .success();
    assert_eq!(flows_of(&s, 3), flows_of(&s, 1));
    // Every packet read is counted, none dropped, and each has its row.
    let run = s.query(
        "SELECT c.interface, c.stop_reason, c.kernel_dropped, c.packets = i.packets, c.packets = \
         (SELECT count(*) FROM packets WHERE import_id = 1), i.format, i.complete \
         FROM packet_captures c JOIN imports i USING (import_id)",
    );
    assert_eq!(run, "lo,ctrl-c,0,true,true,live,true");
    let tcpdump_packets = s.query("SELECT packets FROM imports WHERE import_id = 2");
    let live_packets = s.query("SELECT packets FROM imports WHERE import_id = 1");
    assert_eq!(live_packets, tcpdump_packets);
    Ok(())
}

/// Bad options fail before anything is captured, saying what to do.
#[test]
fn a_missing_interface_or_a_bad_filter_is_refused_clearly() {
    if !can_capture() {
        return;
    }
    let s = Scratch::new();
    let out = s
        .cmd()
        .args(["capture", "--packets", "no-such-if0", "--duration", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-if0") && err.contains("interfaces here: "),
        "{err}"
    );
    let out = s
        .cmd()
        .args([
            "capture",
            "--packets",
            "lo",
            "--filter",
            "port banana",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("port banana") && err.contains("BPF"), "{err}");
    // --filter without --packets is a usage error, and so are the snapshot options with it.
    s.cmd().args(["capture", "--filter", "tcp"]).assert().code(2);
    s.cmd()
        .args(["capture", "--packets", "lo", "--count", "3"])
        .assert()
        .code(2);
    s.cmd()
        .args(["capture", "--packets", "lo", "--interval", "5s"])
        .assert()
        .code(2);
}

/// --duration stops a capture on a quiet interface (no packet wakes the reader).
#[test]
fn a_capture_with_a_duration_stops_on_a_quiet_interface() {
    if !can_capture() {
        return;
    }
    let s = Scratch::new();
    let port = free_tcp_port();
    let start = Instant::now();
    s.cmd()
        .args([
            "capture",
            "--packets",
            "lo",
            "--filter",
            &format!("port {port}"),
            "--duration",
            "1s",
        ])
        .assert()
        .success();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(
        s.query("SELECT stop_reason, packets FROM packet_captures"),
        "duration,0"
    );
}

/// `serve --packets` captures packets beside the socket snapshots: a connection's flow is in the
/// database, for the server's clients, once it finishes (5 s after its close), while the server
/// goes on; the server's stop ends the capture like Ctrl-C.
#[test]
fn serve_captures_packets_beside_the_snapshots_and_stores_flows_as_they_finish() {
    if !can_capture() {
        return;
    }
    let s = Scratch::new();
    let port = free_tcp_port();
    let filter = format!("tcp port {port}");
    let server = crate::serve::Server::start(&s, &["--interval", "200ms", "--packets", "lo", "--filter", &filter]);
    // The capture opens on its own thread: wait for its imports row.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.query("SELECT count(*) FROM imports WHERE format = 'live'") != "1" {
        assert!(
            Instant::now() < deadline,
            "no live capture started; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    exchange(port, 1234, 4321);
    let deadline = Instant::now() + Duration::from_secs(30);
    let flow = loop {
        let flow = s.query("SELECT conn_state, orig_bytes, resp_bytes FROM flows");
        if !flow.is_empty() {
            break flow;
        }
        assert!(
            Instant::now() < deadline,
            "no flow stored while serving; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(flow, "SF,1234,4321");
    assert_ne!(s.query("SELECT count(*) FROM snapshots"), "0");
    // `status` shows the running capture with the counters its packet_captures row will get
    // (refreshed about once a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let out = s.cmd().arg("status").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("packets "))
            .unwrap_or("")
            .to_string();
        if line.contains(", 1 flows stored") || Instant::now() >= deadline {
            break line;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        line.starts_with(&format!("packets     lo ({filter}), running: ")) && line.contains(", 1 flows stored"),
        "{line}"
    );
    let packets: u64 = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(packets >= 10, "{line}");
    assert!(
        !line.contains("unknown") && line.contains(" dropped; import id "),
        "{line}"
    );
    assert!(server.stop(Duration::from_secs(30)).success());
    assert_eq!(
        s.query("SELECT c.interface, c.stop_reason, i.flows, i.complete FROM packet_captures c JOIN imports i USING (import_id)"),
        "lo,ctrl-c,1,true"
    );
}

/// An interface that disappears mid-capture ends it cleanly: what was captured is stored, the
/// run says why it stopped, and the command fails saying so (a tap interface is made and
/// deleted; needs `ip` and /dev/net/tun).
#[test]
fn a_vanished_interface_ends_the_capture_with_its_reason() {
    if !can_capture() {
        return;
    }
    let name = format!("nlt{}", std::process::id() % 100_000);
    let ip = |args: &[&str]| Process::new("ip").args(args).output().is_ok_and(|o| o.status.success());
    if !crate::prerequisite(
        ip(&["tuntap", "add", "dev", &name, "mode", "tap"]) && ip(&["link", "set", &name, "up"]),
        "a tap interface (ip tuntap, /dev/net/tun)",
    ) {
        return;
    }
    let s = Scratch::new();
    // The pcap file is created once the interface is open.
    let pcap = s.path("tap.pcap");
    let mut capture = netlens(&s)
        .args(["capture", "--packets", &name, "--write-pcap"])
        .arg(&pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&pcap, &mut capture, "netlens capture");
    assert!(ip(&["tuntap", "del", "dev", &name, "mode", "tap"]));
    let out = capture.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the packet capture stopped: reading packets failed"),
        "{stderr}"
    );
    let run = s.query(
        "SELECT c.stop_reason LIKE 'reading packets failed: %', i.complete, i.notes LIKE '%capture stopped%' \
         FROM packet_captures c JOIN imports i USING (import_id)",
    );
    assert_eq!(run, "true,false,true");
}
