#!/usr/bin/env python3
"""Live capture rate on loopback: `netlens capture --packets lo` beside `tcpdump -w /dev/null`,
both capturing the same traffic in one run (issue 20's benchmark).

A generator process sends UDP datagrams (PAYLOAD bytes, source ports cycling over FLOWS sockets,
so the flow table has work) to 127.0.0.1 as fast as it can, or at RATE packets/s, for SECONDS.
Both capturers use the same BPF filter (the generator's destination port). At the end each
reports what the kernel handed it and what it dropped:
  netlens   packet_captures.packets / kernel_dropped (flows stored in a new DuckDB file)
  tcpdump   "N packets captured ... N packets dropped by kernel" (its stderr)
and the script prints the CPU time each used, and the offered rate and, for each, packets/s captured and drops.

GENERATORS=N runs N generator processes (each at RATE/N when paced).

Needs root and tcpdump. Usage: bench/live_capture.py [SECONDS] [RATE]   (default 10 s, unpaced)
       NETLENS=path/to/netlens bench/live_capture.py ...
"""
import multiprocessing, os, re, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/netlens-target"))
NETLENS = os.environ.get("NETLENS") or os.path.join(TARGET, "release", "netlens")
PAYLOAD = 64
FLOWS = 64


def generate(port, seconds, rate):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(FLOWS)]
    data = b"x" * PAYLOAD
    sent, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        burst = 256
        if rate:
            due = int((now - start) * rate)
            burst = min(due - sent, 256)
            if burst <= 0:
                time.sleep(0.0005)
                continue
        for i in range(burst):
            socks[(sent + i) % FLOWS].sendto(data, ("127.0.0.1", port))
        sent += burst
    return sent, time.perf_counter() - start


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    port = sink.getsockname()[1]
    filt = f"udp and dst port {port}"
    with tempfile.TemporaryDirectory() as work:
        db = os.path.join(work, "live.duckdb")
        marker = os.path.join(work, "started.pcap")
        netlens = subprocess.Popen(
            [NETLENS, "--db", db, "capture", "--packets", "lo", "--filter", filt, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-w", "/dev/null", filt],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        # Both open their capture within a few seconds (netlens opens its database first).
        time.sleep(4)
        n = int(os.environ.get("GENERATORS", "1"))
        with multiprocessing.Pool(n) as pool:
            results = pool.starmap(generate, [(port, seconds, rate // n)] * n)
        sent, took = sum(r[0] for r in results), max(r[1] for r in results)
        time.sleep(1)
        for p in (netlens, tcpdump):
            p.send_signal(2)
        n_err, t_err = netlens.stderr.read(), tcpdump.stderr.read()
        # CPU time of each (user + system), from the kernel's accounting of the child.
        (_, n_status, n_use), (_, _, t_use) = os.wait4(netlens.pid, 0), os.wait4(tcpdump.pid, 0)
        if n_status != 0:
            sys.exit(f"netlens failed: {n_err}")
        n_cpu, t_cpu = n_use.ru_utime + n_use.ru_stime, t_use.ru_utime + t_use.ru_stime
        row = subprocess.run(
            [NETLENS, "--db", db, "--format", "csv", "--no-headers", "-c",
             "SELECT c.packets, c.kernel_received, c.kernel_dropped, i.flows FROM packet_captures c JOIN imports i USING (import_id)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip().split(",")
        n_packets, n_recv, n_drop, n_flows = (int(v) for v in row)
        t_captured = int(re.search(r"(\d+) packets? captured", t_err).group(1))
        t_drop = int(re.search(r"(\d+) packets? dropped by kernel", t_err).group(1))
    offered = sent / took
    print(f"offered: {sent} UDP packets of {PAYLOAD} payload bytes over {FLOWS} flows in {took:.2f} s = {offered:,.0f} packets/s")
    print(f"netlens: {n_packets} captured ({n_packets / took:,.0f}/s), kernel dropped {n_drop}, {n_flows} flows stored")
    print(f"tcpdump: {t_captured} captured ({t_captured / took:,.0f}/s), kernel dropped {t_drop}")
    print(f"ratio netlens/tcpdump captured: {n_packets / max(t_captured, 1):.3f}")
    print(f"CPU seconds (user+sys, whole run): netlens {n_cpu:.2f}, tcpdump {t_cpu:.2f}")


if __name__ == "__main__":
    main()
