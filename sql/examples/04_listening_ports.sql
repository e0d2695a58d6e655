-- Listening ports and who owns them, as of the newest snapshot; exposed = bound to all
-- addresses or to a non-loopback one.
SELECT s.proto, s.local_addr, s.local_port AS port, coalesce(s.process_name, '?') AS process, s.pid,
       p.user_name, p.exe,
       s.local_addr NOT IN ('127.0.0.1', '::1') AS exposed
FROM sockets s
LEFT JOIN processes p ON p.snapshot_id = s.snapshot_id AND p.pid = s.pid
WHERE s.snapshot_id = (SELECT max(snapshot_id) FROM snapshots)
  AND s.direction = 'listen'
ORDER BY port, s.proto;
