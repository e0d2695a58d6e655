#!/usr/bin/env python3
"""Snapshot cost at scale, side by side in one run (issue 2's benchmark).

For each N, ../shared/bench/open_sockets.py holds N loopback connections (2N sockets) while we
time, alternating, R runs each of:
  netlens   a snapshot inside a `netlens capture` run (sockets with pids and kernel counters,
            processes, interfaces, appended to a DuckDB file): steady, and the first of a run
            (which reads every fd table); also one whole `netlens capture --count 1` process
  ss        `ss -tanpi` (same socket information, no storage), output to /dev/null
  psutil    `psutil.net_connections("inet")`, timed inside Python (interpreter start excluded)
and report medians, ratios, and peak RSS (GNU time). Then the append throughput (socket rows/s
over netlens's own store time) and the database growth per 1 000 snapshots of this host at
rest. Usage: bench/snapshot_cost.py [N ...]   (default: 10000 25000 50000)
"""
import os, re, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "bench", "open_sockets.py")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/netlens-target"))
NETLENS = os.path.join(TARGET, "release", "netlens")
RUNS = int(os.environ.get("RUNS", "7"))


def setup():
    if not os.path.exists(SHARED):
        sys.exit(f"missing {SHARED}: run from a checkout with shared/ beside it")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    try:
        import psutil  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "psutil"], check=True)
    if not os.path.exists("/usr/bin/time"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=True, stdout=subprocess.DEVNULL)


def timed(cmd, env=None):
    """Wall seconds and peak RSS (MiB) of one process run, plus its stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M"] + cmd, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr}")
    rss = int(re.search(r"maxrss_kb=(\d+)", p.stderr).group(1)) / 1024
    return wall, rss, p.stderr


PSUTIL = """
import psutil, time, resource
t0 = time.perf_counter(); c = psutil.net_connections("inet"); t = time.perf_counter() - t0
print(t, len(c), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def settle():
    """Waits (at most 90 s) for TIME_WAIT sockets of an earlier round to expire, so each round
    sees the sockets it holds and not the remnants of the previous one."""
    for _ in range(90):
        tw = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True, text=True).stdout.count("\n")
        if tw < 100:
            return
        time.sleep(1)


def measure(n):
    settle()
    holder = subprocess.Popen([sys.executable, SHARED, str(n), "900"], stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    if not line.startswith("ready"):
        sys.exit(f"open_sockets.py did not get ready: {line}")
    db = os.path.join(tempfile.mkdtemp(), "bench.duckdb")
    env = dict(os.environ, NETLENS_DB=db)
    # Warm file: schema made, every held connection's lifetime already open, as in a running capture.
    subprocess.run([NETLENS, "capture", "--count", "1", "--quiet"], env=env, check=True)
    res = {"netlens": [], "netlens_cold": [], "netlens_process": [], "ss": [], "psutil": []}
    rss = {"netlens": 0.0, "ss": 0.0, "psutil": 0.0}
    store_ms, rows = [], []
    for _ in range(RUNS):
        # The per-snapshot cost inside a capture run (collect + store), as netlens runs in
        # practice: 4 snapshots a second apart. The store time is netlens's own average; the
        # collect time of each snapshot is in `snapshots.collect_ms`. The first snapshot of a run
        # reads every process's fd table (cold owner cache), the others only the tables that
        # changed: reported apart, as "steady" and "first of a run".
        wall, r, err = timed([NETLENS, "--format", "csv", "capture", "--count", "4", "--interval", "1s"], env)
        m = re.search(r"stored 4 snapshots \(ids (\d+)\.\.(\d+)\).*?: (\d+) socket rows.*store ([\d.]+) ms", err)
        first, last = int(m.group(1)), int(m.group(2))
        rows.append(int(m.group(3)) / 4); store = float(m.group(4)); store_ms.append(store)
        collect = [float(x) for x in subprocess.run(
            [NETLENS, "--format", "csv", "--no-headers", "-c",
             f"SELECT collect_ms FROM snapshots WHERE snapshot_id BETWEEN {first} AND {last} ORDER BY snapshot_id"],
            env=env, capture_output=True, text=True, check=True).stdout.split()]
        res["netlens"].append((statistics.median(collect[1:]) + store) / 1000)
        res["netlens_cold"].append((collect[0] + store) / 1000)
        rss["netlens"] = max(rss["netlens"], r)
        # Also a whole one-snapshot process: start, open, resume lifetimes, snapshot, checkpoint, exit.
        wall, r, _ = timed([NETLENS, "capture", "--count", "1", "--quiet"], env)
        res["netlens_process"].append(wall)
        wall, r, _ = timed(["ss", "-tanpi"])
        res["ss"].append(wall); rss["ss"] = max(rss["ss"], r)
        out = subprocess.run([sys.executable, "-c", PSUTIL], capture_output=True, text=True, check=True).stdout.split()
        res["psutil"].append(float(out[0])); rss["psutil"] = max(rss["psutil"], float(out[2]))
    # A longer run: its peak RSS should be that of the short runs (DuckDB's cache of written
    # blocks is emptied after each snapshot), not grow with the number of snapshots.
    _, long_rss, _ = timed([NETLENS, "capture", "--count", "30", "--interval", "200ms", "--quiet"], env)
    holder.terminate(); holder.wait()
    shutil.rmtree(os.path.dirname(db))
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\n## {line.split()[1]} sockets held (N = {n} connections), median of {RUNS} runs")
    print("| measured | time (ms) | netlens snapshot / this | peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| netlens snapshot in a capture run, steady (collect + store) | {med['netlens']*1000:.1f} | 1.00 | {rss['netlens']:.1f} |")
    print(f"| netlens first snapshot of a run (cold /proc fd walk) | {med['netlens_cold']*1000:.1f} | {med['netlens']/med['netlens_cold']:.2f} | |")
    print(f"| netlens whole process, one snapshot | {med['netlens_process']*1000:.1f} | {med['netlens']/med['netlens_process']:.2f} | |")
    print(f"| ss -tanpi (whole process) | {med['ss']*1000:.1f} | {med['netlens']/med['ss']:.2f} | {rss['ss']:.1f} |")
    print(f"| psutil.net_connections (call only) | {med['psutil']*1000:.1f} | {med['netlens']/med['psutil']:.2f} | {rss['psutil']:.1f} |")
    print(f"first snapshot of a run / ss: {med['netlens_cold']/med['ss']:.2f}, / psutil: {med['netlens_cold']/med['psutil']:.2f}")
    r, s = statistics.median(rows), statistics.median(store_ms)
    print(f"netlens rows per snapshot {r:.0f}, store {s:.1f} ms -> append throughput {r / (s / 1000):,.0f} socket rows/s")
    print(f"netlens peak RSS over a 30-snapshot run: {long_rss:.1f} MiB (4-snapshot runs: {rss['netlens']:.1f} MiB)")


def growth():
    d = tempfile.mkdtemp()
    db = os.path.join(d, "growth.duckdb")
    env = dict(os.environ, NETLENS_DB=db)
    subprocess.run([NETLENS, "capture", "--count", "1", "--quiet"], env=env, check=True)
    base = os.path.getsize(db)
    k = 200
    subprocess.run([NETLENS, "capture", "--count", str(k), "--interval", "100ms", "--quiet"], env=env, check=True)
    subprocess.run([NETLENS, "-c", "CHECKPOINT"], env=env, check=True, stdout=subprocess.DEVNULL)
    grown = os.path.getsize(db) - base
    q = subprocess.run([NETLENS, "--format", "csv", "--no-headers", "-c",
                        "SELECT round(avg(socket_count)), round(avg(process_count)), round(avg(interface_count)) FROM snapshots"],
                       env=env, capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(d)
    print(f"\n## database growth: {grown / k * 1000 / 2**20:.1f} MiB per 1 000 snapshots of this host "
          f"(avg sockets, processes, interfaces per snapshot: {q})")


if __name__ == "__main__":
    setup()
    ns = [int(a) for a in sys.argv[1:]] or [10000, 25000, 50000]
    print(f"netlens snapshot cost, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    settle()
    growth()  # first, while the host is at rest (held sockets linger in TIME_WAIT afterwards)
    for n in ns:
        measure(n)
