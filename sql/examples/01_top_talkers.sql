-- Top talkers: the connections that moved the most bytes, by the kernel's own counters
-- (tcpi_bytes_sent / tcpi_bytes_received, cumulative per connection, so the latest value is
-- the lifetime total as last seen).
SELECT coalesce(process_name, '?') AS process, pid, proto, local_addr || ':' || local_port AS local,
       remote_addr || ':' || remote_port AS remote, direction, bytes_sent, bytes_received,
       coalesce(bytes_sent, 0) + coalesce(bytes_received, 0) AS bytes_total, round(duration_s, 1) AS seconds
FROM connections
WHERE direction <> 'listen'
ORDER BY bytes_total DESC, seconds DESC
LIMIT 20;
