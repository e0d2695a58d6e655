#!/bin/bash
# Two capturing servers side by side at 1 s (issue 17): the same host, the same minutes, so the
# load and the sockets they see are the same and only the binary or the options differ.
# ../shared/bench/open_sockets.py holds 1 000 loopback sockets and `sleep` processes bring the
# host to about 300 processes; VmRSS, RssAnon and RssFile (KiB) of each server every 5 s into
# side.rss, CPU from /proc/PID/stat over SECONDS after a 10 s start, and the medians printed.
# The two binaries are copied first: two processes of one file would share its pages, and the
# one that reclaims its executable's pages (`serve` does at start) could not.
#
#   A_ARGS="--commit-every 5s" B_ARGS="--commit-every 20s" \
#     bench/serve_side_by_side.sh BINARY_A BINARY_B SECONDS     (run in a scratch directory)
set -eu
binary_a=$1 binary_b=$2 seconds=$3
here=$(cd "$(dirname "$0")" && pwd)
cp "$binary_a" ./netlens-a && cp "$binary_b" ./netlens-b
python3 "$here/../../shared/bench/open_sockets.py" 500 $((seconds + 40)) >/dev/null 2>&1 & sockets=$!
sleepers=()
for _ in $(seq $((300 - $(ls -d /proc/[0-9]* 2>/dev/null | wc -l)))); do sleep 1000000 & sleepers+=($!); done
sleep 3
rm -f a.db a.db.wal b.db b.db.wal
# shellcheck disable=SC2086 # the options are words
./netlens-a --db a.db serve --interval 1s ${A_ARGS:-} 2>a.log & a=$!
# shellcheck disable=SC2086
./netlens-b --db b.db serve --interval 1s ${B_ARGS:-} 2>b.log & b=$!
sleep 10
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
memory() { awk '/VmRSS|RssAnon|RssFile/{printf "%s ", $2}' "/proc/$1/status"; }
ca=$(ticks $a) cb=$(ticks $b)
for i in $(seq $((seconds / 5))); do
  sleep 5
  echo "$((i * 5 + 10)) A $(memory $a) B $(memory $b)"
done > side.rss
ea=$(ticks $a) eb=$(ticks $b)
kill -INT $a $b; wait $a $b || true
kill $sockets "${sleepers[@]}" 2>/dev/null || true
python3 - "$((ea - ca))" "$((eb - cb))" "$seconds" <<'PY'
import statistics, sys
ticks_a, ticks_b, seconds = map(int, sys.argv[1:])
rows = [line.split() for line in open("side.rss")]
for name, at, ticks in (("A", 2, ticks_a), ("B", 6, ticks_b)):
    rss, anon, file = (statistics.median(int(r[at + k]) / 1024 for r in rows) for k in range(3))
    # Clock ticks of 1/100 s over the seconds: percent of one core.
    print(f"{name}: CPU {ticks / seconds:.2f} % of a core, median RSS {rss:.1f} MiB "
          f"(own {anon:.1f}, file pages {file:.1f}) over {len(rows)} samples")
PY
