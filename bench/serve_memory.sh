#!/bin/bash
# A capturing server's memory over an accelerated run (issue 17): `serve --interval 10ms` on a
# new file while ../shared/bench/open_sockets.py holds 1 000 loopback sockets; VmRSS, RssAnon
# (KiB) and CPU ticks every 10 s into TAG.rss, then the snapshots and socket rows stored.
#
#   bench/serve_memory.sh BINARY TAG SECONDS     (run in a scratch directory)
set -eu
binary=$1 tag=$2 seconds=$3
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/../../shared/bench/open_sockets.py" 500 $((seconds + 30)) & sockets=$!
sleep 3
rm -f "$tag.db" "$tag.db.wal"
"$binary" --db "$tag.db" serve --interval 10ms 2>"$tag.log" & server=$!
for i in $(seq $((seconds / 10))); do
  sleep 10
  echo "$((i * 10)) $(awk '/VmRSS|RssAnon/{printf "%s ", $2}' /proc/$server/status) $(awk '{print $14+$15}' /proc/$server/stat)"
done > "$tag.rss"
"$binary" --db "$tag.db" -c "SELECT count(*) AS snapshots, (SELECT count(*) FROM sockets) AS socket_rows FROM snapshots" >> "$tag.rss" 2>&1
kill -INT $server; wait $server || true; kill $sockets 2>/dev/null || true
