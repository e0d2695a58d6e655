-- Remote peers first seen in the last hour of the history (relative to the newest snapshot,
-- so it also works on replays and old files): who this host started talking to recently.
WITH horizon AS (SELECT max(ts) - INTERVAL 1 HOUR AS since FROM snapshots),
first_contact AS (
    SELECT remote_addr, min(first_seen) AS first_seen, any_value(remote_scope) AS scope,
           string_agg(DISTINCT coalesce(process_name, '?'), ', ') AS processes,
           string_agg(DISTINCT remote_port::VARCHAR, ', ') AS ports
    FROM connections WHERE remote_addr IS NOT NULL GROUP BY remote_addr)
SELECT f.* FROM first_contact f, horizon h
WHERE f.first_seen >= h.since
ORDER BY f.first_seen DESC;
