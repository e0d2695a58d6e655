//! Benchmark (issue 17): `SELECT *` of N socket rows through the server's Flight SQL socket
//! against the same query in-process, both read to the last Arrow record batch.
//!
//! usage: cargo run --release --example flight_throughput [-- ROWS [RUNS]]   (default 5000000 3)
//! It builds the database once (synthetic rows, every column filled as a live capture fills it)
//! in $TMPDIR, then times RUNS in-process reads, RUNS reads through `netlens serve --no-capture`,
//! and RUNS in-process reads again, and prints medians and the ratio. Results: bench/RESULTS.md.

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

fn in_process(db: &Path) -> (Duration, u64) {
    let store = Store::open(&Location::File(db.to_path_buf()), true).expect("open");
    let started = Instant::now();
    let conn = store.conn();
    let mut stmt = conn.prepare(SQL).expect("prepare");
    let rows = stmt
        .stream_arrow([])
        .expect("stream")
        .map(|b| b.expect("batch").num_rows() as u64)
        .sum();
    (started.elapsed(), rows)
}

fn through_server(socket: &Path) -> (Duration, u64) {
    let mut client = Client::connect(socket).expect("connect");
    let started = Instant::now();
    let mut rows = 0;
    client
        .query(SQL, &mut |_, batches| {
            rows = count_rows(batches);
            Ok(())
        })
        .expect("query");
    (started.elapsed(), rows)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
        let (t, n) = in_process(&db);
        assert_eq!(n, rows);
        local.push(t);
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
        let (t, n) = through_server(&socket);
        assert_eq!(n, rows);
        remote.push(t);
    }
    // SAFETY: kill sends SIGTERM to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    for _ in 0..runs {
        local.push(in_process(&db).0);
    }
    let (l, r) = (median(local), median(remote));
    println!(
        "SELECT * of {rows} socket rows: in-process {:.3} s, through the server {:.3} s (medians of {runs}+{runs} / {runs} runs): ratio {:.2}",
        l.as_secs_f64(),
        r.as_secs_f64(),
        r.as_secs_f64() / l.as_secs_f64()
    );
}
