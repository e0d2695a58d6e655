-- Processes with the most connections (listeners excluded), with how many peers they talk to
-- and how much they moved.
SELECT coalesce(process_name, '?') AS process, pid,
       count(*) AS connections,
       count(*) FILTER (WHERE NOT closed) AS open_now,
       count(DISTINCT remote_addr) AS remote_peers,
       sum(bytes_sent) AS bytes_sent, sum(bytes_received) AS bytes_received
FROM connections
WHERE direction <> 'listen'
GROUP BY ALL
ORDER BY connections DESC, bytes_received DESC NULLS LAST
LIMIT 20;
