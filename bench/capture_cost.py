#!/usr/bin/env python3
"""What `netlens serve --interval 1s` costs an ordinary host (issue 17's capture-cost benchmark).

An ordinary host here: ../shared/bench/open_sockets.py holds N loopback connections (about 2N
sockets) and idle `sleep` processes bring the host to P processes. Each binary given runs
`serve --interval 1s` on a fresh database for SECONDS, alternating, ROUNDS times; from the
server's /proc/PID/stat (user + system ticks) and status (VmRSS, RssAnon) every 5 s we report the
share of one core and the RSS, with the part of it that is the process's own memory (anonymous:
the rest is the binary's code and other file pages, clean and shared with any other netlens), and from its database the mean collect time (`snapshots.collect_ms`),
the snapshots stored, and how many came more than 1.5 intervals after the one before.

With --ss, each round also runs iproute2's `ss -tuapnie` (every TCP and UDP socket with its
kernel counters and owning processes: the socket table a snapshot reads, from the same kernel
interfaces) once a second for SECONDS, and reports its CPU (user + system of the `ss` children)
as a row of its own: what reading the host's sockets costs the standard tool, without storing.

Usage: bench/capture_cost.py [--sockets N] [--processes P] [--seconds S] [--rounds R] [--ss] BINARY...
The first binary is the anchor: ratios are to it.
"""
import argparse, os, resource, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "bench", "open_sockets.py")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def process_count():
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def run(binary, seconds, workdir):
    db = os.path.join(workdir, f"cost-{time.monotonic_ns()}.db")
    server = subprocess.Popen([binary, "--db", db, "serve", "--interval", "1s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(5)  # start-up (migrations, the first snapshot's full fd walk) is not the steady cost
    if server.poll() is not None:
        sys.exit(f"{binary} serve exited: {server.stderr.read().decode()}")
    t0, c0 = time.monotonic(), cpu_ticks(server.pid)
    rss, anon = [], []
    while time.monotonic() - t0 < seconds:
        time.sleep(5)
        rss.append(rss_mib(server.pid))
        anon.append(rss_mib(server.pid, "RssAnon"))
    t1, c1 = time.monotonic(), cpu_ticks(server.pid)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    query = ("SELECT avg(collect_ms), count(*), "
             "count(*) FILTER (WHERE gap > INTERVAL 1500 MILLISECOND), avg(socket_count), avg(process_count) "
             "FROM (SELECT *, ts - lag(ts) OVER (ORDER BY ts) AS gap FROM snapshots)")
    out = subprocess.run([binary, "--db", db, "--format", "csv", "-c", query], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1].split(",")
    os.remove(db)
    return {
        "cpu": (c1 - c0) / TICKS / (t1 - t0) * 100,
        "rss": statistics.median(rss),
        "rss_max": max(rss),
        "anon": statistics.median(anon),
        "collect": float(out[0]),
        "snapshots": int(out[1]),
        "late": int(out[2]),
        "sockets": float(out[3]),
        "processes": float(out[4]),
    }


def run_ss(seconds):
    """CPU share of `ss -tuapnie` run once a second for SECONDS (its children's rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    tick = 0
    while time.monotonic() - t0 < seconds:
        subprocess.run(["ss", "-tuapnie"], stdout=subprocess.DEVNULL, check=True)
        tick += 1
        time.sleep(max(0.0, t0 + tick - time.monotonic()))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": used / (time.monotonic() - t0) * 100, "runs": tick}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=250, help="loopback connections held open")
    ap.add_argument("--processes", type=int, default=300, help="processes on the host")
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ss", action="store_true", help="also time `ss -tuapnie` once a second")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    # Its own process group: the holder forks, and killing the parent alone left the forked
    # half holding its sockets (and counted by every later run on the host).
    holder = subprocess.Popen([sys.executable, SHARED, str(a.sockets), str(10 ** 6)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sleepers = [subprocess.Popen(["sleep", "1000000"])
                for _ in range(max(0, a.processes - process_count()))]
    results = {b: [] for b in a.binaries}
    ss_runs = []
    try:
        time.sleep(3)
        with tempfile.TemporaryDirectory() as workdir:
            for _ in range(a.rounds):
                for b in a.binaries:
                    results[b].append(run(b, a.seconds, workdir))
                if a.ss:
                    ss_runs.append(run_ss(a.seconds))
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        for s in sleepers:
            s.kill()
    anchor = statistics.median(r["cpu"] for r in results[a.binaries[0]])
    print(f"{a.rounds} x {a.seconds} s of `serve --interval 1s` each, alternating")
    print("| binary | sockets | processes | CPU % of one core | / anchor | RSS MiB (median, max) | anonymous MiB | collect ms | snapshots | late |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b, rs in results.items():
        cpu = statistics.median(r["cpu"] for r in rs)
        print(f"| {b} | {statistics.mean(r['sockets'] for r in rs):.0f} | "
              f"{statistics.mean(r['processes'] for r in rs):.0f} | {cpu:.2f} | {cpu / anchor:.2f} | "
              f"{statistics.median(r['rss'] for r in rs):.1f}, {max(r['rss_max'] for r in rs):.1f} | "
              f"{statistics.median(r['anon'] for r in rs):.1f} | {statistics.median(r['collect'] for r in rs):.1f} | {sum(r['snapshots'] for r in rs)} | "
              f"{sum(r['late'] for r in rs)} |")
    if ss_runs:
        cpu = statistics.median(r["cpu"] for r in ss_runs)
        print(f"| ss -tuapnie, once a second (no storing) | | | {cpu:.2f} | {cpu / anchor:.2f} | | | | "
              f"{sum(r['runs'] for r in ss_runs)} runs | |")


if __name__ == "__main__":
    main()
