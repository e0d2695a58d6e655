#!/usr/bin/env python3
"""pcap import throughput against tshark, side by side in one run (issue 4's benchmark).

Builds large classic-pcap captures by repeating the shared captures (../shared/data/pcaps/,
converted to pcap with editcap) round after round, each round shifted later in time and moved
to other IPv4/IPv6 addresses so that every round makes new flows. Then, on the same file:
  netlens   `netlens import pcap FILE` into a new DuckDB file (flows written and committed)
  tshark    `tshark -r FILE -q -z conv,tcp -z conv,udp` (conversation statistics only)
and reports wall time (median of 5 runs each, interleaved), packets/s, MB/s, the ratio, and peak
RSS (GNU time) for each size. The netlens time is given three ways:
  new        into a new database, its creation included: a copy of the empty-schema template
             the first database saved in the cache directory (one is made before timing starts)
  existing   into an empty database that exists already
  first new  into a new database with an empty cache directory, as the very first import on a
             machine: the schema is made by the migrations and saved as the template
Each binary (netlens and the anchor) has a cache directory of its own: a build keeps only its own
template in a cache, so two builds of different schemas sharing one would each delete the other's,
and every "new" run would in fact be a "first new" one.
netlens is run once more with DuckDB's memory_limit at 128 MB: DuckDB otherwise keeps the flows it
wrote cached (up to 80% of RAM), and the capped RSS shows netlens's own memory does not grow
with the file. Needs tshark and editcap (Debian: tshark).

Usage: bench/pcap_import.py [PACKETS ...]   (default: 1000000 2000000 4000000)
       NETLENS=path/to/netlens bench/pcap_import.py ...   (that binary, no cargo build)
       ANCHOR=path/to/other/netlens bench/pcap_import.py ...   (also times that binary's import
           into a new database, interleaved with the others, and prints netlens / anchor)
"""
import glob, os, re, shutil, statistics, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PCAPS = os.path.join(ROOT, "..", "shared", "data", "pcaps")
RUNS = 5
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/netlens-target"))
# NETLENS=/path/to/netlens benchmarks that binary as it is (no cargo build).
NETLENS = os.environ.get("NETLENS") or os.path.join(TARGET, "release", "netlens")
# ANCHOR=/path/to/netlens: a second build (say, before a change) timed side by side.
ANCHOR = os.environ.get("ANCHOR")


def setup(work):
    for tool in ("tshark", "editcap"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install tshark)")
    if not os.path.exists("/usr/bin/time"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=True, stdout=subprocess.DEVNULL)
    if not os.environ.get("NETLENS"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    sources = sorted(glob.glob(os.path.join(PCAPS, "*.pcap*")))
    if not sources:
        sys.exit(f"no captures in {PCAPS}: run from a checkout with shared/ beside it")
    packets = []  # (relative ts in us, orig_len, data), per source file, ethernet only
    for src in sources:
        plain = os.path.join(work, os.path.basename(src) + ".pcap")
        subprocess.run(["editcap", "-F", "pcap", src, plain], check=True, stderr=subprocess.DEVNULL)
        with open(plain, "rb") as f:
            head = f.read(24)
            magic = struct.unpack("<I", head[:4])[0]
            endian = "<" if magic == 0xA1B2C3D4 else ">"
            recs, first = [], None
            while True:
                h = f.read(16)
                if len(h) < 16:
                    break
                sec, usec, incl, orig = struct.unpack(endian + "IIII", h)
                data = f.read(incl)
                ts = sec * 1_000_000 + usec
                first = ts if first is None else first
                recs.append((ts - first, orig, data))
        packets.append(recs)
    return packets


def shifted(data, k):
    """Moves an Ethernet frame's IPv4/IPv6 addresses into round k's own range."""
    if len(data) < 14:
        return data
    et = data[12:14]
    b = bytearray(data)
    if et == b"\x08\x00" and len(b) >= 34:
        for at in (26, 30):  # src, dst: second and third octets carry the round
            b[at + 1] = (b[at + 1] + k) & 0xFF
            b[at + 2] = (b[at + 2] + (k >> 8)) & 0xFF
    elif et == b"\x86\xdd" and len(b) >= 54:
        for at in (22, 38):
            b[at + 2] = (b[at + 2] + k) & 0xFF
            b[at + 3] = (b[at + 3] + (k >> 8)) & 0xFF
    return bytes(b)


def build(path, packets, target):
    """Writes rounds of all sources until `target` packets; returns (packets, bytes)."""
    n, base = 0, 1_600_000_000 * 1_000_000
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        k = 0
        while n < target:
            for recs in packets:
                span = recs[-1][0] if recs else 0
                for rel, orig, data in recs:
                    ts = base + rel
                    out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), orig))
                    out.write(shifted(data, k))
                    n += 1
                    if n >= target:
                        break
                base += span + 1_000_000
                if n >= target:
                    break
            k += 1
    return n, os.path.getsize(path)


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


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 2_000_000, 4_000_000]
    work = tempfile.mkdtemp(prefix="pcap_bench_")
    try:
        packets = setup(work)
        # A cache directory per binary (see the module doc).
        cached = {}
        for i, binary in enumerate([NETLENS] + ([ANCHOR] if ANCHOR else [])):
            cached.setdefault(binary, dict(os.environ, XDG_CACHE_HOME=os.path.join(work, f"cache_{i}")))
        print(f"netlens {NETLENS}; {subprocess.run(['tshark', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
        print(f"{'packets':>9} {'MB':>7} | {'netlens s':>9} {'pkt/s':>10} {'MB/s':>7} {'RSS MiB':>8} {'flows':>8} "
              f"{'RSS@128MB':>9} {'existing s':>10} {'first new s':>11} | {'tshark s':>8} {'pkt/s':>9} {'RSS MiB':>8} | "
              f"{'ratio':>6} {'existing':>8} {'first new':>9}")
        for target in sizes:
            cap = os.path.join(work, f"big_{target}.pcap")
            n, size = build(cap, packets, target)
            db = os.path.join(work, f"bench_{target}.duckdb")

            def fresh(schema):
                """Removes the database; with `schema`, creates it empty again."""
                for f in (db, db + ".wal"):
                    if os.path.exists(f):
                        os.remove(f)
                if schema:
                    subprocess.run([NETLENS, "--db", db, "-c", "SELECT 1"], check=True, stdout=subprocess.DEVNULL,
                                   env=cached[NETLENS])

            # Each binary's cache gets its template before timing.
            if ANCHOR:
                fresh(False)
                subprocess.run([ANCHOR, "--db", db, "-c", "SELECT 1"], check=True, stdout=subprocess.DEVNULL,
                               env=cached[ANCHOR])
            fresh(True)
            # Median of RUNS runs each: the machine is shared, and one run can be off by 30 %.
            new_runs, existing_runs, tshark_runs, first_runs, anchor_runs = [], [], [], [], []
            for _ in range(RUNS):
                if ANCHOR:
                    fresh(False)
                    anchor_runs.append(timed([ANCHOR, "--db", db, "import", "pcap", cap], env=cached[ANCHOR]))
                fresh(False)
                new_runs.append(timed([NETLENS, "--db", db, "import", "pcap", cap], env=cached[NETLENS]))
                # Into a store that already exists (its schema made before the clock starts).
                fresh(True)
                existing_runs.append(timed([NETLENS, "--db", db, "import", "pcap", cap], env=cached[NETLENS]))
                # The first import on a machine: no template in the cache yet.
                fresh(False)
                with tempfile.TemporaryDirectory(prefix="cache_", dir=work) as cache:
                    first_runs.append(timed([NETLENS, "--db", db, "import", "pcap", cap],
                                            env=dict(os.environ, XDG_CACHE_HOME=cache)))
                tshark_runs.append(timed(["tshark", "-r", cap, "-q", "-z", "conv,tcp", "-z", "conv,udp"]))
            wall, rss, err = sorted(new_runs)[RUNS // 2]
            e_wall = statistics.median(r[0] for r in existing_runs)
            f_wall = statistics.median(r[0] for r in first_runs)
            t_wall, t_rss, _ = sorted(tshark_runs)[RUNS // 2]
            flows = re.search(r"(\d+) flows", err)
            # Again with DuckDB's buffer pool capped: what is left is netlens's own memory.
            fresh(False)
            _, capped_rss, _ = timed([NETLENS, "--db", db, "-c", "SET memory_limit = '128MB'",
                                      "-c", f".import pcap --quiet {cap}"], env=cached[NETLENS])
            mb = size / 1e6
            print(f"{n:>9} {mb:>7.1f} | {wall:>9.2f} {n / wall:>10.0f} {mb / wall:>7.1f} {rss:>8.1f} "
                  f"{flows.group(1) if flows else '?':>8} {capped_rss:>9.1f} {e_wall:>10.2f} {f_wall:>11.2f} | {t_wall:>8.2f} "
                  f"{n / t_wall:>9.0f} {t_rss:>8.1f} | {t_wall / wall:>5.1f}x {t_wall / e_wall:>7.1f}x "
                  f"{t_wall / f_wall:>8.1f}x", flush=True)
            if ANCHOR:
                a_wall = statistics.median(r[0] for r in anchor_runs)
                a_flows = re.search(r"(\d+) flows", sorted(anchor_runs)[RUNS // 2][2])
                print(f"{'':>17} anchor {ANCHOR}: {a_wall:.2f} s ({n / a_wall:.0f} pkt/s, "
                      f"{a_flows.group(1) if a_flows else '?'} flows, tshark/anchor {t_wall / a_wall:.1f}x); "
                      f"netlens / anchor time {wall / a_wall:.3f}", flush=True)
            os.remove(cap)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
