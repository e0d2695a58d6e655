-- The TCP state path of each connection, in observed order (first seen ... gone), with the
-- most common paths first.
WITH paths AS (
    SELECT connection_id,
           string_agg(coalesce(to_state, 'gone'), ' > ' ORDER BY snapshot_id) AS path
    FROM tcp_transitions GROUP BY connection_id)
SELECT path, count(*) AS connections
FROM paths
GROUP BY path
ORDER BY connections DESC, path;
