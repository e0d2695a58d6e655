-- Processes that hold sockets, with their CPU and memory over the history: who is busy and
-- talking at the same time.
WITH socket_owners AS (SELECT pid, count(DISTINCT connection_id) AS connections FROM sockets
                       WHERE pid IS NOT NULL GROUP BY pid)
SELECT p.pid, any_value(p.name) AS name, any_value(p.user_name) AS user_name, o.connections,
       round(avg(p.cpu_percent), 1) AS avg_cpu_percent, round(max(p.cpu_percent), 1) AS max_cpu_percent,
       round(max(p.memory_rss_bytes) / 1048576, 1) AS max_rss_mib, any_value(p.cmdline) AS cmdline
FROM processes p JOIN socket_owners o USING (pid)
GROUP BY p.pid, o.connections
ORDER BY avg_cpu_percent DESC NULLS LAST, connections DESC
LIMIT 20;
