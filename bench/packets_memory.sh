#!/bin/bash
# The live packet capture's memory under loopback connection churn (issue 17):
# `capture --packets lo --packet-rows` for SECONDS on a new file while a Python loop opens and
# closes loopback connections as fast as it can; VmRSS and RssAnon (KiB) every 5 s into TAG.rss,
# then the flows and packet rows stored. Needs root (or CAP_NET_RAW).
#
#   bench/packets_memory.sh BINARY TAG SECONDS     (run in a scratch directory)
set -eu
binary=$1 tag=$2 seconds=$3
rm -f "$tag.db" "$tag.db.wal"
"$binary" --db "$tag.db" capture --packets lo --packet-rows --duration "${seconds}s" 2>"$tag.log" & capture=$!
sleep 2
python3 - "$((seconds - 4))" <<'PY' & churn=$!
import socket, sys, threading, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(512)
port = server.getsockname()[1]
def answer():
    while True:
        c, _ = server.accept()
        c.sendall(b"x" * 100)
        c.close()
threading.Thread(target=answer, daemon=True).start()
end = time.time() + float(sys.argv[1])
while time.time() < end:
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(200)
    s.close()
PY
for i in $(seq $(((seconds - 4) / 5))); do
  sleep 5
  echo "$((i * 5)) $(awk '/VmRSS|RssAnon/{printf "%s ", $2}' /proc/$capture/status)"
done > "$tag.rss"
wait $churn; wait $capture
"$binary" --db "$tag.db" -c "SELECT (SELECT count(*) FROM flows) AS flows, (SELECT count(*) FROM packets) AS packet_rows" >> "$tag.rss"
