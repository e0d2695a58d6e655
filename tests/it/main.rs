//! Integration tests: the real `netlens` binary on fixtures, on this host's own loopback
//! sockets, and on bad input. One test binary so the bundled DuckDB links once.

mod analysis;
mod bad_input;
mod capture;
mod dashboard;
mod datasets;
mod detect;
mod explain;
mod export;
mod geo;
mod ingest;
mod oneshot;
mod packets;
mod policy;
mod serve;
mod shell;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A query that runs for about 20 s on any machine unless stopped, one row out: a count over
/// 10^10 pairs per core. DuckDB spreads it over every core of the host (its default threads),
/// so a fixed count would end in a moment on a large machine, before the tests that stop it
/// (Ctrl-C, a killed client) could see it run; stopped, it costs them nothing.
pub fn long_query() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "SELECT count(*) FROM range({}) a, range(100000) b WHERE a.range * b.range % 7 = 3",
        100_000 * cores
    )
}

/// A scratch directory holding one database.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("netlens.duckdb")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `netlens --db <scratch db>` with a private data directory, and the tests' own cache
    /// directory (shared by all of them, so the schema template is made once per run).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("netlens").expect("binary");
        cmd.env("NETLENS_DB", self.db())
            .env("XDG_DATA_HOME", self.dir.path().join("xdg"))
            .env("XDG_CACHE_HOME", test_cache())
            .env_remove("NETLENS_FORMAT");
        cmd
    }

    /// Starts `netlens ARGS` as [`Scratch::cmd`] would run it, stdout discarded and stderr kept,
    /// for a test that presses Ctrl-C while it runs.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("netlens"))
            .env("NETLENS_DB", self.db())
            .env("XDG_DATA_HOME", self.dir.path().join("xdg"))
            .env("XDG_CACHE_HOME", test_cache())
            .env_remove("NETLENS_FORMAT")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start netlens")
    }

    /// Runs one query and returns its CSV output without the header.
    pub fn query(&self, sql: &str) -> String {
        let out = self
            .cmd()
            .args(["--format", "csv", "--no-headers", "-c", sql])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "query failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8").trim_end().to_string()
    }

    /// Replays the fixture recording into the database.
    pub fn replay_fixture(&self) {
        self.cmd()
            .args(["capture", "--quiet", "--replay"])
            .arg(fixture("host_a.jsonl"))
            .assert()
            .success();
    }
}

/// A `train` whose fit runs minutes in Rust (thousands of epochs, no SQL to interrupt) after
/// reading its 20 000 rows: for tests that stop a fit midway.
pub const SLOW_AUTOENCODER_TRAIN: [&str; 10] = [
    "train",
    "autoencoder",
    "--on",
    "SELECT range AS id, (range * 7919) % 1000 AS x, (range * 104729) % 997 AS y FROM range(20000)",
    "--set",
    "epochs=10000",
    "--set",
    "patience=10000",
    "--set",
    "tol=0",
];

/// A cache directory for the tests, never the developer's own.
pub fn test_cache() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("netlens-test-cache");
    std::fs::create_dir_all(&dir).expect("test cache directory");
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A scratch database holding NSL-KDD's KDDTrain+ and KDDTest+ as `kdd_train` and `kdd_test`,
/// imported as bench/analysis_bench.py does; `None` (a failure in CI) without the data.
pub fn nsl_kdd() -> Option<Scratch> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nsl-kdd");
    if !prerequisite(
        dir.join("KDDTest+.txt").exists(),
        "../shared/data/nsl-kdd beside this checkout",
    ) {
        return None;
    }
    let s = Scratch::new();
    for (table, file) in [("kdd_train", "KDDTrain+.txt"), ("kdd_test", "KDDTest+.txt")] {
        s.cmd()
            .args(["import", "csv"])
            .arg(dir.join(file))
            .args(["--table", table, "--no-header", "--columns-file"])
            .arg(dir.join("columns.txt"))
            .assert()
            .success();
    }
    Some(s)
}

/// A test's prerequisite (shared data beside the checkout, a tool, root): true when present.
/// Missing, it fails the test in CI (`CI=true`, where `.ci/run` installs or provides every
/// prerequisite), and elsewhere the test says it is ignored and why, and does nothing.
pub fn prerequisite(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if cfg!(ci) {
        panic!("prerequisite missing in CI: {what}");
    }
    eprintln!("IGNORED (prerequisite missing): {what}");
    false
}

/// Presses Ctrl-C (SIGINT) in `child` and checks that it ends within 20 s with exit status 130
/// (killing it otherwise, so a failing test does not hang).
pub fn ctrl_c_ends_it_with_130(mut child: std::process::Child) {
    let pressed = std::time::Instant::now();
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    while child.try_wait().unwrap().is_none() {
        if pressed.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("still running 20 s after Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
