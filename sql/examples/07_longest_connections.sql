-- Longest-lived connections (observed lifetime: a lower bound), open ones first.
SELECT connection_id, coalesce(process_name, '?') AS process, pid, proto,
       local_addr || ':' || local_port AS local, remote_addr || ':' || remote_port AS remote,
       first_seen, last_seen, round(duration_s) AS seconds, last_state, closed
FROM connections
WHERE direction <> 'listen'
ORDER BY closed, duration_s DESC
LIMIT 20;
