-- Connections stuck in a handshake or half-closed: seen in SYN_SENT or CLOSE_WAIT in more
-- than one snapshot (unanswered connection attempts; applications not closing sockets).
SELECT c.connection_id, coalesce(c.process_name, '?') AS process, c.pid,
       c.remote_addr || ':' || c.remote_port AS remote, s.state,
       count(*) AS snapshots_in_state, min(s.ts) AS since, max(s.ts) AS until
FROM sockets s JOIN connections c USING (connection_id)
WHERE s.proto = 'tcp' AND s.state IN ('SYN_SENT', 'CLOSE_WAIT')
GROUP BY ALL
HAVING count(*) > 1
ORDER BY snapshots_in_state DESC;
