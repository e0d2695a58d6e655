//! Benchmark (issue 17): `SELECT *` of N socket rows through the server's Flight SQL socket
//! against the same query in-process, both read to the last Arrow record batch.
//!
//! usage: cargo run --release --example flight_throughput [-- ROWS [RUNS]]   (default 5000000 3)
//! It builds the database once (synthetic rows, every column filled as a live capture fills it)
//! in $TMPDIR, then times RUNS in-process reads, RUNS reads through `netlens serve --no-capture`,
//! and RUNS in-process reads again, and prints medians and the ratios: of wall time, and of CPU
//! time (in-process: this process; through the server: this client and the server together),
//! which a busy machine disturbs less. Results: bench/RESULTS.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netlens::serve::client::Client;
use netlens::store::{Location, Store};

const SQL: &str = "SELECT * FROM sockets";

fn build(db: &Path, rows: u64) {
    let store = Store::open(&Location::File(db.to_path_buf()), false).expect("open");
    store
        .conn()
        .execute_batch(&format!(
            "INSERT INTO snapshots SELECT i, TIMESTAMP '2026-12-01' + i * INTERVAL 1 SECOND, 'bench', 'live', 20.0, 1000, 300, 3, NULL \
             FROM range({snapshots}) t(i);
             INSERT INTO sockets SELECT i // 1000, TIMESTAMP '2026-12-01' + (i // 1000) * INTERVAL 1 SECOND, i % 50000, \
               CASE WHEN i % 7 = 0 THEN 'udp' ELSE 'tcp' END, 'ipv4', '10.0.0.' || (i % 250), 1024 + i % 60000, \
               '203.0.113.' || (i % 200), 443, 'ESTABLISHED', 'outbound', 'public', 1000 + i % 300, [1000 + i % 300], \
               'proc' || (i % 300), 1000, i, 0, 0, i * 10, i * 10, i * 20, 0, i, i, i // 2, i // 2, 20000, 5000, 15000, \
               0, 0, 0, 0, 10, 1000000, 100, 100 FROM range({rows}) t(i);
             CHECKPOINT;",
            snapshots = rows / 1000 + 1
        ))
        .expect("build");
}

fn count_rows(
    batches: &mut dyn Iterator<Item = netlens::error::Result<duckdb::arrow::record_batch::RecordBatch>>,
) -> u64 {
    batches.map(|b| b.expect("batch").num_rows() as u64).sum()
}

/// CPU time (user + system) this process has used, all its threads.
fn own_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) process `pid` has used, from /proc/PID/stat.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    Duration::from_secs_f64((field(11) + field(12)) / ticks)
}

/// Wall time, CPU time spent on it, and rows read.
struct Run {
    wall: Duration,
    cpu: Duration,
    rows: u64,
}

fn in_process(db: &Path) -> Run {
    let store = Store::open(&Location::File(db.to_path_buf()), true).expect("open");
    let cpu = own_cpu();
    let started = Instant::now();
    let conn = store.conn();
    let mut stmt = conn.prepare(SQL).expect("prepare");
    let rows = stmt
        .stream_arrow([])
        .expect("stream")
        .map(|b| b.expect("batch").num_rows() as u64)
        .sum();
    Run {
        wall: started.elapsed(),
        cpu: own_cpu() - cpu,
        rows,
    }
}

/// Reads the result through the server; the CPU time is the client's and the server's
/// (`server` is its pid; 0 when it is not known).
fn through_server(socket: &Path, server: u32) -> Run {
    let mut client = Client::connect(socket).expect("connect");
    let cpu = own_cpu() + cpu_of(server);
    let started = Instant::now();
    let mut rows = 0;
    client
        .query(SQL, &mut |_, batches| {
            rows = count_rows(batches);
            Ok(())
        })
        .expect("query");
    Run {
        wall: started.elapsed(),
        cpu: own_cpu() + cpu_of(server) - cpu,
        rows,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Against a server already running (for profiling one side): only the remote reads.
    if let Ok(socket) = std::env::var("NETLENS_BENCH_SOCKET") {
        let rows: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
        let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let run = through_server(Path::new(&socket), 0);
                assert_eq!(run.rows, rows);
                run.wall
            })
            .collect();
        println!(
            "through {socket}: median {:.3} s of {runs}",
            median(times).as_secs_f64()
        );
        return;
    }
    let rows: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("netlens-flight-bench-{rows}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("bench.duckdb");
    if !db.exists() {
        eprintln!("building {rows} socket rows in {}", db.display());
        build(&db, rows);
    }
    let binary: PathBuf = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("netlens"))
        .expect("target dir");
    let mut local = Vec::new();
    for _ in 0..runs {
        let run = in_process(&db);
        assert_eq!(run.rows, rows);
        local.push(run);
    }
    let mut server = std::process::Command::new(&binary)
        .arg("--db")
        .arg(&db)
        .args(["serve", "--no-capture"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("netlens serve (build it first: cargo build --release)");
    let socket = netlens::serve::socket_path(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Client::probe(&socket) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut remote = Vec::new();
    for _ in 0..runs {
        let run = through_server(&socket, server.id());
        assert_eq!(run.rows, rows);
        remote.push(run);
    }
    // SAFETY: kill sends SIGTERM to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    for _ in 0..runs {
        local.push(in_process(&db));
    }
    let wall = |v: &[Run]| median(v.iter().map(|r| r.wall).collect()).as_secs_f64();
    let cpu = |v: &[Run]| median(v.iter().map(|r| r.cpu).collect()).as_secs_f64();
    let (l, r) = (wall(&local), wall(&remote));
    let (lc, rc) = (cpu(&local), cpu(&remote));
    println!(
        "SELECT * of {rows} socket rows: in-process {l:.3} s, through the server {r:.3} s (medians of {runs}+{runs} / {runs} runs): ratio {:.2}; \
         CPU in-process {lc:.3} s, server + client {rc:.3} s: ratio {:.2}",
        r / l,
        rc / lc
    );
}
