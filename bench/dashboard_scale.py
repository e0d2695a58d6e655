#!/usr/bin/env python3
"""Every dashboard panel on a large history (issue 18: at most 1 s a view at 50 million socket rows).

Builds (or reuses) a database: `netlens demo --hours 24 --interval 10s`, then the day copied
DAYS times back in time and, within each day, every connection copied CONNS times with new
connection ids and local ports, so the host has CONNS times the demo's sockets over DAYS days.
Then `netlens serve --no-capture --http` holds it and every panel of every view is asked once
over each range (the newest 15 minutes, hour and day, and the whole history), timed by this
client; a view's time is the sum of its panels (the page asks them in parallel, so this is the
worst case).

Usage: bench/dashboard_scale.py BINARY DB [--days D] [--conns C] [--build-with BINARY] [--views a,b] [--ranges '15 min,1 h']
                                [--anchor BINARY --anchor-db DB] [--panels] [--as-page] [--after S] [--binary-first]
With --build-with, the database is built by that (older) binary when DB does not exist yet:
the first open by BINARY then also measures the upgrade.
With --anchor, a second server runs the anchor binary on its own copy of the database (a newer
binary upgrades the file, which an older one may then refuse), and every panel is asked of the
anchor and then of BINARY, one after the other, so both see the same machine load; the table
gives both times and after / before, and any panel whose rows differ between the two is named.
--panels adds one line per panel.
With --binary-first, BINARY is asked before the anchor (so that, on fresh servers, its first panel
comes as soon as it has started, not after the anchor's answers).
With --after S, the panels are asked S seconds after both servers printed their URL (what a visitor
who comes after a server's start-up work waits; without it, the first panel is asked at once).
With --as-page, a view's time is instead what the page waits: its panels asked four at a time in
their order (as assets/dashboard/app.js asks them), from the first request to the last answer.
With --capture, the servers capture this host once a second while they serve (`serve --interval
1s` in place of `--no-capture`): every commit changes the data under the panels, as on a live
server. Each runs in a UTS namespace of its own named as the database's host (`unshare --uts`),
so it records the same host's history further, as a server recording its own host would. They
write to the database, so give them a copy. --rounds N asks every view N times,
--pause S seconds apart (a page refreshing while the capture goes on). At the end, each
server's CPU time (user + system) from the first question to the last answer is printed, with
the part of one core it is over that time (capture, answers and whatever else it did).
"""
import argparse, json, os, re, shutil, subprocess, sys, time, urllib.request

RANGES = [("15 min", 15 * 60), ("1 h", 3600), ("24 h", 86400), ("all", None)]


def sql(binary, db, text):
    out = subprocess.run([binary, "--db", db, "--format", "csv", "-c", text], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} -c failed: {out.stderr}")
    return out.stdout.strip().splitlines()


def build(binary, db, days, conns):
    t = time.monotonic()
    # The demo day takes minutes: kept beside DB and copied for the next build.
    demo = db + ".demo"
    if not os.path.exists(demo):
        subprocess.run([binary, "--db", demo, "demo", "--hours", "24", "--interval", "10s"], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.copyfile(demo, db)
    # Day copies first (every table keyed by snapshot), then connection copies of everything.
    day = "INTERVAL 1 DAY"
    steps = [
        f"INSERT INTO snapshots SELECT t.* REPLACE (snapshot_id + k * 100000 AS snapshot_id, ts - k * {day} AS ts) FROM snapshots t, range(1, {days}) r(k)",
        f"INSERT INTO processes SELECT t.* REPLACE (snapshot_id + k * 100000 AS snapshot_id, ts - k * {day} AS ts, start_time - k * {day} AS start_time) FROM processes t, range(1, {days}) r(k)",
        f"INSERT INTO interfaces SELECT t.* REPLACE (snapshot_id + k * 100000 AS snapshot_id, ts - k * {day} AS ts) FROM interfaces t, range(1, {days}) r(k)",
        # Lifetimes still open on the newest day close at its end in each older copy.
        f"INSERT INTO connection_lifetimes SELECT t.* REPLACE (connection_id + k * 10000000 AS connection_id, first_seen - k * {day} AS first_seen, first_snapshot_id + k * 100000 AS first_snapshot_id, coalesce(closed_at, n.ts) - k * {day} AS closed_at, coalesce(last_seen, n.ts) - k * {day} AS last_seen, coalesce(last_snapshot_id, n.id) + k * 100000 AS last_snapshot_id, coalesce(last_state, first_state) AS last_state) FROM connection_lifetimes t, range(1, {days}) r(k), (SELECT max(ts) AS ts, max(snapshot_id) AS id FROM snapshots) n",
        f"INSERT INTO sockets SELECT s.* REPLACE (snapshot_id + k * 100000 AS snapshot_id, ts - k * {day} AS ts, connection_id + k * 10000000 AS connection_id) FROM sockets s, range(1, {days}) r(k)",
        f"INSERT INTO tcp_transitions SELECT t.* REPLACE (snapshot_id + k * 100000 AS snapshot_id, ts - k * {day} AS ts, connection_id + k * 10000000 AS connection_id) FROM tcp_transitions t, range(1, {days}) r(k)",
        f"INSERT INTO connection_lifetimes SELECT t.* REPLACE (connection_id + c * 1000000000 AS connection_id, local_port + c AS local_port) FROM connection_lifetimes t, range(1, {conns}) r(c) WHERE local_port + {conns} < 65536",
        f"INSERT INTO sockets SELECT t.* REPLACE (connection_id + c * 1000000000 AS connection_id, local_port + c AS local_port) FROM sockets t, range(1, {conns}) r(c) WHERE local_port + {conns} < 65536",
        f"INSERT INTO tcp_transitions SELECT t.* REPLACE (connection_id + c * 1000000000 AS connection_id) FROM tcp_transitions t, range(1, {conns}) r(c) WHERE connection_id IN (SELECT connection_id FROM connection_lifetimes WHERE local_port + {conns} < 65536)",
        "UPDATE snapshots SET socket_count = n FROM (SELECT snapshot_id, count(*) AS n FROM sockets GROUP BY ALL) c WHERE c.snapshot_id = snapshots.snapshot_id",
        "CHECKPOINT",
    ]
    for step in steps:
        sql(binary, db, step)
    print(f"built {db} in {time.monotonic() - t:.0f} s", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("db")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--conns", type=int, default=27)
    ap.add_argument("--build-with")
    ap.add_argument("--port", type=int, default=18787)
    ap.add_argument("--views", help="comma-separated view ids (default: every view)")
    ap.add_argument("--anchor", help="binary to compare against (the before), on --anchor-db")
    ap.add_argument("--anchor-db", help="the anchor's own copy of the database")
    ap.add_argument("--panels", action="store_true", help="also print every panel's time")
    ap.add_argument("--ranges", help="comma-separated ranges of: 15 min,1 h,24 h,all (default: all four)")
    ap.add_argument("--binary-first", action="store_true",
                    help="ask BINARY before the anchor (its first panel then comes right after its start)")
    ap.add_argument("--after", type=float, default=0,
                    help="seconds to wait once the servers have started before asking (a server that warms up)")
    ap.add_argument("--as-page", action="store_true",
                    help="time each view as the page waits for it: panels asked four at a time")
    ap.add_argument("--capture", action="store_true",
                    help="the servers capture once a second while serving (they write to the database: use a copy)")
    ap.add_argument("--rounds", type=int, default=1, help="ask every view this many times")
    ap.add_argument("--pause", type=float, default=5, help="seconds between rounds")
    a = ap.parse_args()
    if bool(a.anchor) != bool(a.anchor_db):
        sys.exit("--anchor and --anchor-db go together")
    ranges = [r for r in RANGES if not a.ranges or r[0] in a.ranges.split(",")]
    if not os.path.exists(a.db):
        build(a.build_with or a.binary, a.db, a.days, a.conns)
    t = time.monotonic()
    rows = sql(a.binary, a.db, "SELECT (SELECT count(*) FROM sockets), (SELECT count(*) FROM snapshots), "
               "(SELECT count(*) FROM connection_lifetimes), (SELECT max(ts) FROM snapshots)")
    opened = time.monotonic() - t
    sockets, snapshots, lifetimes, newest = rows[-1].split(",")
    print(f"{int(sockets):,} socket rows, {int(snapshots):,} snapshots, {int(lifetimes):,} lifetimes; "
          f"first open and count {opened:.1f} s", file=sys.stderr)

    def start(binary, db, port):
        capture = ["--interval", "1s"] if a.capture else ["--no-capture"]
        command = [binary, "--db", db, "serve", *capture, "--http", f"127.0.0.1:{port}"]
        if a.capture:
            found = sql(binary, db, "SELECT host FROM snapshots ORDER BY ts DESC LIMIT 1")
            if len(found) < 2:
                sys.exit(f"--capture: {db} has no snapshot to name its host")
            host = found[-1]
            command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, *command]
        server = subprocess.Popen(command,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        token = None
        deadline = time.monotonic() + 600
        said = []
        while token is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                sys.exit(f"serve ({binary}) exited before printing its URL: " + "".join(said))
            said.append(line)
            m = re.search(r"token=([0-9a-zA-Z_-]+)", line)
            token = m and m.group(1)

        def get(path):
            req = urllib.request.Request(f"http://127.0.0.1:{port}" + path, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.read()

        return server, get

    servers = []
    if a.anchor:
        servers.append(start(a.anchor, a.anchor_db, a.port + 1))
    servers.append(start(a.binary, a.db, a.port))
    get = servers[-1][1]
    # Which server is asked first, panel by panel (or view by view with --as-page).
    order = list(enumerate(servers))
    if a.binary_first:
        order.reverse()
    time.sleep(a.after)

    def cpu_seconds(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    cpu_before = [cpu_seconds(server.pid) for server, _ in servers]
    asked_at = time.monotonic()

    def rows(body):
        table = json.loads(body)
        table.pop("elapsed_ms", None)
        # Which part was read from the rollups is not a difference in the rows.
        table.pop("rolled", None)
        return table

    try:
        views = json.loads(get("/api/views"))
        if a.views:
            views = [v for v in views if v["id"] in a.views.split(",")]
        newest_ts = newest.replace(" ", "T")
        from datetime import datetime, timedelta
        end = datetime.fromisoformat(newest_ts)
        names = ["before", "after"] if a.anchor else ["time"]
        header = [f"{r} {n}" for r, _ in ranges for n in names] + ([f"{r} after / before" for r, _ in ranges] if a.anchor else [])
        print("| view | " + " | ".join(header) + " |")
        print("|---|" + "---|" * len(header))
        slowest = {}
        per_panel = []
        differ = []
        for round_, view in [(r, v) for r in range(a.rounds) for v in views]:
            if round_ > 0 and view is views[0]:
                time.sleep(a.pause)
            totals = {}
            for label, span in ranges:
                # "all" as the page asks for it (ALL_SINCE and ALL_UNTIL in assets/dashboard/app.js).
                q = ("&since=1970-01-01T00:00:00&until=9999-12-31T23:59:59" if span is None
                     else "&since=" + (end - timedelta(seconds=span)).isoformat() + "&until=" + end.isoformat())
                if a.as_page:
                    from concurrent.futures import ThreadPoolExecutor
                    answers = []
                    for i, (_, ask) in order:
                        t = time.monotonic()
                        with ThreadPoolExecutor(max_workers=4) as pool:
                            answers.append(list(pool.map(
                                lambda p: ask(f"/api/panel?view={view['id']}&panel={p['id']}{q}"), view["panels"])))
                        totals[(label, i)] = time.monotonic() - t
                    if len(answers) == 2:
                        differ += [f"{view['id']}/{p['id']} ({label})" for p, b0, b1 in zip(view["panels"], *answers)
                                   if rows(b0) != rows(b1)]
                    continue
                for panel in view["panels"]:
                    bodies = []
                    for i, (_, ask) in order:
                        t = time.monotonic()
                        bodies.append(ask(f"/api/panel?view={view['id']}&panel={panel['id']}{q}"))
                        took = time.monotonic() - t
                        totals[(label, i)] = totals.get((label, i), 0.0) + took
                        shown = view["id"] + "/" + panel["id"] + (f" (round {round_ + 1})" if a.rounds > 1 else "")
                        per_panel.append((shown, label, names[i], took))
                        if i == len(servers) - 1:
                            key = (label, view["id"] + "/" + panel["id"])
                            slowest[key] = max(slowest.get(key, 0.0), took)
                    if len(bodies) == 2 and rows(bodies[0]) != rows(bodies[1]):
                        differ.append(f"{view['id']}/{panel['id']} ({label})")
            cells = [f"{totals[(label, i)]:.2f}" for label, _ in ranges for i in range(len(servers))]
            if a.anchor:
                cells += [f"{totals[(label, 1)] / max(totals[(label, 0)], 1e-9):.2f}" for label, _ in ranges]
            name = view["id"] if a.rounds == 1 else f"{view['id']} (round {round_ + 1})"
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        for label, _ in ranges if not a.as_page else []:
            worst = sorted(((v, k[1]) for k, v in slowest.items() if k[0] == label), reverse=True)[:3]
            print(f"slowest panels, {label}: " + ", ".join(f"{p} {v:.2f} s" for v, p in worst))
        if a.panels:
            for panel, label, name, took in per_panel:
                print(f"{panel} {label} {name} {took:.3f} s")
        if a.anchor and a.capture:
            print("rows not compared with the anchor's: each server records its own snapshots")
        elif a.anchor:
            print("panels whose rows differ from the anchor's: " + (", ".join(differ) or "none"))
        took = time.monotonic() - asked_at
        for (server, _), before, name in zip(servers, cpu_before, ["anchor", "binary"] if a.anchor else ["binary"]):
            used = cpu_seconds(server.pid) - before
            print(f"{name} server CPU while asked: {used:.2f} s over {took:.1f} s ({used / took * 100:.0f}% of a core)")
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(timeout=120)


if __name__ == "__main__":
    main()
