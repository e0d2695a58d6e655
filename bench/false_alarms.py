#!/usr/bin/env python3
"""False-alarm benchmark of the detectors (issue 21).

For each data set, runs `netlens detect all` and counts alarms per day on ordinary traffic and
whether each planted behaviour was found. Data sets:
  - synthetic: a generated Zeek conn.log day (seeded) with busy-but-random pairs (Poisson, 1 000
    connections a day, DNS-sized and web-sized payloads), browsing fan-out (30 CDN hosts on 443
    within 2 minutes, every hour of the working day), a resolver asking 40 servers on udp/53 each
    hour, plus planted: a 60 s beacon with 10 % jitter all day, a SYN port scan (S0) and an
    address scan (REJ).
  - demo: `netlens demo --hours 24` (planted: beacon 203.0.113.66, port scan of 192.168.1.30,
    backup burst, long SSH session); and the same day after an analyst's one false-positive mark
    on the hourly rsync to the LAN backup server (`netlens feedback beacons
    '192.168.1.10|192.168.1.40|873|tcp' --false-positive`), made before the detectors run.
  - the shared pcaps (../shared/data/pcaps).

Rows an analyst's mark suppressed (migration 32's `suppressed`) are not alarms; a binary
without the column counts every row, as before.

Usage: bench/false_alarms.py NETLENS_BINARY [LABEL]
Prints a Markdown table.
"""
import functools, json, math, os, random, re, subprocess, sys, tempfile

BIN = sys.argv[1]
LABEL = sys.argv[2] if len(sys.argv) > 2 else BIN
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "pcaps")
DAY0 = 1_764_547_200.0  # 2025-12-01 00:00 UTC


def synthetic_log(path):
    rng = random.Random(21)
    rows = []
    uid = [0]

    def flow(ts, src, sport, dst, dport, proto, state, ob, rb, dur=0.2):
        uid[0] += 1
        rows.append({"ts": ts, "uid": f"C{uid[0]}", "id.orig_h": src, "id.orig_p": sport,
                     "id.resp_h": dst, "id.resp_p": dport, "proto": proto, "duration": dur,
                     "orig_bytes": ob, "resp_bytes": rb, "conn_state": state,
                     "orig_pkts": 4, "resp_pkts": 4, "orig_ip_bytes": ob + 160, "resp_ip_bytes": rb + 160})

    # busy-but-random pairs: Poisson, 1000 a day
    for i in range(12):
        src, dst = f"10.1.0.{10 + i}", f"198.18.{i}.1"
        dport, proto = (53, "udp") if i < 6 else (443, "tcp")
        t = DAY0 + rng.expovariate(1000 / 86400)
        while t < DAY0 + 86400:
            if proto == "udp":
                ob, rb = rng.randint(30, 60), rng.randint(60, 200)
                st = "SF"
            else:
                ob, rb = rng.randint(200, 3000), rng.randint(1000, 60000)
                st = "SF"
            flow(t, src, rng.randint(32768, 60999), dst, dport, proto, st, ob, rb)
            t += rng.expovariate(1000 / 86400)
    # browsing fan-out: a client reaches 30 CDN hosts on 443 within 2 minutes, each working hour
    for h in range(8, 18):
        base = DAY0 + h * 3600 + rng.uniform(0, 1800)
        for j in range(30):
            flow(base + rng.uniform(0, 120), "10.1.0.50", rng.randint(32768, 60999),
                 f"198.19.{h}.{j + 1}", 443, "tcp", "SF", rng.randint(500, 2000), rng.randint(5000, 500000), 5.0)
    # a resolver asking 40 authoritative servers on udp/53 every hour
    for h in range(24):
        base = DAY0 + h * 3600 + rng.uniform(0, 3000)
        for j in range(40):
            flow(base + rng.uniform(0, 200), "10.1.0.53", rng.randint(32768, 60999),
                 f"198.20.{h}.{j + 1}", 53, "udp", "SF", rng.randint(30, 60), rng.randint(60, 400), 0.05)
    # planted: 60 s beacon, 10 % jitter, all day
    t = DAY0 + rng.uniform(0, 60)
    while t < DAY0 + 86400:
        flow(t, "10.1.0.66", rng.randint(32768, 60999), "203.0.113.99", 8443, "tcp", "SF",
             rng.randint(300, 320), rng.randint(1000, 1100), 0.3)
        t += 60 * (1 + 0.1 * (2 * rng.random() - 1))
    # planted: SYN port scan (S0) of 200 ports in 30 s
    base = DAY0 + 13 * 3600
    for p in range(1, 201):
        flow(base + p * 0.15, "10.1.0.99", 40000 + p, "10.1.0.200", p, "tcp", "S0", 0, 0, 0.0)
    # planted: address scan (REJ) of 60 hosts on 22 in a minute
    base = DAY0 + 15 * 3600
    for j in range(60):
        flow(base + j, "10.1.0.98", 41000 + j, f"10.2.0.{j + 1}", 22, "tcp", "REJ", 0, 0, 0.0)
    rows.sort(key=lambda r: r["ts"])
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return len(rows)


def nl(db, *args):
    out = subprocess.run([BIN, "--db", db, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{args}: {out.stderr}")
    return out.stdout


def q(db, sql):
    out = nl(db, "-c", ".mode csv", "-c", sql)
    lines = [l for l in out.strip().splitlines() if l]
    return lines[1:] if lines else []


LATEST = re.compile(r"\blatest_(beacons|port_scans|bursts|long_connections)\b")


@functools.lru_cache(maxsize=None)
def has_suppressed(db):
    return q(db, "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'beacons' AND column_name = 'suppressed'") != ["0"]


def count(db, sql):
    """count(*) of `sql` over the detectors' latest rows that are alarms: suppressed rows left out."""
    if has_suppressed(db):
        sql = LATEST.sub(lambda m: f"(SELECT * FROM {m.group(0)} WHERE NOT coalesce(suppressed, false))", sql)
    return int(q(db, sql)[0])


def suppressed(db):
    """Rows the latest runs stored suppressed by an analyst's mark (beacons: is_beacon ones)."""
    if not has_suppressed(db):
        return 0
    return int(q(db, "SELECT (SELECT count(*) FROM latest_beacons WHERE is_beacon AND suppressed)"
                     " + (SELECT count(*) FROM latest_port_scans WHERE suppressed)"
                     " + (SELECT count(*) FROM latest_bursts WHERE suppressed)"
                     " + (SELECT count(*) FROM latest_long_connections WHERE suppressed)")[0])


def alarms(db):
    """Alarms of the latest run of each detector, the window's length in days."""
    counts = {}
    counts["beacons"] = count(db, "SELECT count(*) FROM latest_beacons WHERE is_beacon")
    counts["port_scans"] = count(db, "SELECT count(*) FROM latest_port_scans")
    counts["bursts"] = count(db, "SELECT count(*) FROM latest_bursts")
    counts["long_connections"] = count(db, "SELECT count(*) FROM latest_long_connections")
    days = float(q(db, "SELECT max(epoch(window_end) - epoch(window_start)) / 86400 FROM detector_runs")[0])
    return counts, days


def main():
    results = []
    planted_syn = {
        "beacon 10.1.0.66 -> 203.0.113.99 flagged": "SELECT count(*) FROM latest_beacons WHERE is_beacon AND src = '10.1.0.66'",
        "port scan 10.1.0.99 -> 10.1.0.200": "SELECT count(*) FROM latest_port_scans WHERE scanner = '10.1.0.99' AND kind = 'port_scan'",
        "address scan 10.1.0.98 on 22": "SELECT count(*) FROM latest_port_scans WHERE scanner = '10.1.0.98' AND kind = 'address_scan'",
    }
    # ordinary alarms = alarms minus rows that belong to a planted behaviour
    ordinary_syn = {
        "beacons": "SELECT count(*) FROM latest_beacons WHERE is_beacon AND src <> '10.1.0.66'",
        "port_scans": "SELECT count(*) FROM latest_port_scans WHERE scanner NOT IN ('10.1.0.99', '10.1.0.98')",
        "bursts": "SELECT count(*) FROM latest_bursts WHERE entity NOT LIKE '10.1.0.99%' AND entity NOT LIKE '10.1.0.98%'",
        "long_connections": "SELECT count(*) FROM latest_long_connections",
    }

    def syn_setup(db, d):
        log = os.path.join(d, "conn.log")
        synthetic_log(log)
        nl(db, "import", "zeek", "-q", log)

    def demo_setup(db, d):
        nl(db, "demo", "--hours", "24", "-q")

    def demo_marked_setup(db, d):
        demo_setup(db, d)
        nl(db, "feedback", "beacons", "192.168.1.10|192.168.1.40|873|tcp", "--false-positive",
           "--note", "hourly rsync to the LAN backup server")

    # The demo's planted events, by time: the backup burst (the minute with the most rsync
    # connections), the port scan and the exfiltration upload (their first connection).
    events = ("(SELECT date_trunc('minute', first_seen) AS t, 'backup' AS what FROM connections WHERE remote_port = 873 "
              "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1) UNION ALL "
              "SELECT min(first_seen), CASE WHEN remote_addr = '192.168.1.30' THEN 'scan' ELSE 'exfil' END FROM connections "
              "WHERE remote_addr IN ('192.168.1.30', '198.51.100.77') GROUP BY remote_addr")
    near = "abs(epoch(b.start_ts) - epoch(p.t)) < 600"
    planted_demo = {
        "beacon -> 203.0.113.66 flagged": "SELECT count(*) FROM latest_beacons WHERE is_beacon AND dst = '203.0.113.66'",
        "port scan of 192.168.1.30": "SELECT count(*) FROM latest_port_scans WHERE target = '192.168.1.30'",
        "backup burst": f"SELECT count(*) FROM latest_bursts b, ({events}) p WHERE p.what = 'backup' AND {near}",
        "exfiltration upload burst": f"SELECT count(*) FROM latest_bursts b, ({events}) p WHERE p.what = 'exfil' AND {near}",
        "long SSH session": "SELECT count(*) FROM latest_long_connections WHERE dst_port = 22",
    }
    ordinary_demo = {
        "beacons": "SELECT count(*) FROM latest_beacons WHERE is_beacon AND dst <> '203.0.113.66'",
        "port_scans": "SELECT count(*) FROM latest_port_scans WHERE coalesce(target, '') <> '192.168.1.30'",
        "bursts": f"SELECT count(*) FROM latest_bursts b WHERE NOT EXISTS (SELECT 1 FROM ({events}) p WHERE {near})",
        "long_connections": "SELECT count(*) FROM latest_long_connections WHERE dst_port <> 22",
    }

    def pcap_setup(f):
        return lambda db, d: nl(db, "import", "pcap", "-q", os.path.join(DATA, f))

    sets = [
        ("synthetic day (Zeek log)", syn_setup, planted_syn, ordinary_syn),
        ("demo day", demo_setup, planted_demo, ordinary_demo),
        ("demo day, the rsync marked benign", demo_marked_setup, planted_demo, ordinary_demo),
        ("normal_alexa-app.pcapng", pcap_setup("normal_alexa-app.pcapng"), {}, None),
        ("normal_http_espn.pcapng", pcap_setup("normal_http_espn.pcapng"), {}, None),
        ("nmap_tcp_syn_scan.pcap", pcap_setup("nmap_tcp_syn_scan.pcap"),
         {"port scan 192.168.1.10 -> 192.168.1.25": "SELECT count(*) FROM latest_port_scans WHERE scanner = '192.168.1.10'"},
         {"beacons": "SELECT count(*) FROM latest_beacons WHERE is_beacon",
          "port_scans": "SELECT count(*) FROM latest_port_scans WHERE scanner <> '192.168.1.10'",
          "bursts": "SELECT count(*) FROM latest_bursts WHERE entity NOT LIKE '192.168.1.10%'",
          "long_connections": "SELECT count(*) FROM latest_long_connections"}),
        ("malware_ratinfected.pcapng", pcap_setup("malware_ratinfected.pcapng"),
         {"trojan pair ranks first among beacon candidates": "SELECT count(*) FROM (SELECT * FROM latest_beacons ORDER BY score DESC LIMIT 1) WHERE dst = '172.16.0.111' AND dst_port = 4433"},
         {"beacons": "SELECT count(*) FROM latest_beacons WHERE is_beacon AND dst <> '172.16.0.111'",
          "port_scans": "SELECT count(*) FROM latest_port_scans",
          "bursts": "SELECT count(*) FROM latest_bursts",
          "long_connections": "SELECT count(*) FROM latest_long_connections"}),
    ]
    print(f"### {LABEL}\n")
    print("| data | window (days) | beacons | port scans | bursts | long conns | suppressed | planted found |")
    print("|---|---|---|---|---|---|---|---|")
    for name, setup, planted, ordinary in sets:
        with tempfile.TemporaryDirectory() as d:
            db = os.path.join(d, "b.duckdb")
            setup(db, d)
            nl(db, "detect", "all", "--top", "0")
            counts, days = alarms(db)
            if ordinary:
                counts = {k: count(db, sql) for k, sql in ordinary.items()}
            found = []
            for k, sql in planted.items():
                n = count(db, sql)
                found.append(f"{k}: {'yes' if n > 0 else 'no'}")
            cells = [f"{counts[k]}" for k in ("beacons", "port_scans", "bursts", "long_connections")]
            cells.append(f"{suppressed(db)}")
            print(f"| {name} | {days:.4f} | " + " | ".join(cells) + " | " + "; ".join(found) + " |")
    print("\nCells are ordinary alarms in the window: rows not belonging to a planted behaviour"
          " (demo: bursts starting more than 10 minutes from a planted event); beacons count is_beacon rows."
          " Rows an analyst's mark suppressed are not alarms; 'suppressed' counts them (0 for a binary without"
          " suppressions).")


main()
