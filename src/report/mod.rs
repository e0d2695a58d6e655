//! Summaries of what the store holds, as SQL the shell renders: what a capture run saw, and
//! [`insights`] (findings and recommended actions from the latest runs). Reads only; the
//! queries are plain SQL so an analyst can copy and adapt them.

pub mod html;
pub mod insights;

/// Titled queries summarising the snapshots `first..=last`.
pub fn capture_summary(first: i64, last: i64) -> Vec<(&'static str, String)> {
    let window = format!("snapshot_id BETWEEN {first} AND {last}");
    // Kernel byte counters are cumulative per socket: a connection's traffic in the window
    // is its largest counter there (the counter at its last sighting).
    let per_connection = format!(
        "SELECT connection_id, any_value(proto) AS proto, any_value(direction) AS direction, \
         any_value(pid) AS pid, any_value(process_name) AS process_name, any_value(remote_addr) AS remote_addr, \
         any_value(remote_port) AS remote_port, any_value(remote_scope) AS remote_scope, \
         bool_or(state = 'ESTABLISHED') AS established, max(bytes_sent) AS bytes_sent, \
         max(bytes_received) AS bytes_received FROM sockets WHERE {window} GROUP BY connection_id"
    );
    vec![
        (
            "Captured",
            format!(
                "WITH c AS ({per_connection}) SELECT \
                 (SELECT count(*) FROM snapshots WHERE {window}) AS snapshots, \
                 (SELECT round(epoch(max(ts)) - epoch(min(ts)), 1) FROM snapshots WHERE {window}) AS seconds, \
                 (SELECT count(*) FROM sockets WHERE {window}) AS socket_rows, \
                 count(*) FILTER (WHERE direction <> 'listen') AS connections, \
                 count(*) FILTER (WHERE direction = 'listen') AS listening, \
                 count(DISTINCT remote_addr) AS remote_peers, \
                 count(DISTINCT pid) AS processes, \
                 sum(bytes_sent) AS bytes_sent, sum(bytes_received) AS bytes_received \
                 FROM c"
            ),
        ),
        (
            "Processes with the most connections",
            format!(
                "WITH c AS ({per_connection}) SELECT coalesce(process_name, '?') AS process, pid, \
                 count(*) AS connections, count(*) FILTER (WHERE established) AS established, \
                 count(DISTINCT remote_addr) AS peers, sum(bytes_sent) AS bytes_sent, \
                 sum(bytes_received) AS bytes_received FROM c WHERE direction <> 'listen' \
                 GROUP BY ALL ORDER BY connections DESC, bytes_received DESC NULLS LAST LIMIT 10"
            ),
        ),
        (
            "Listening ports",
            format!(
                "SELECT DISTINCT proto, local_addr, local_port AS port, coalesce(process_name, '?') AS process, pid \
                 FROM sockets WHERE {window} AND direction = 'listen' AND NOT (proto = 'udp' AND local_port = 0) \
                 ORDER BY port, proto, local_addr LIMIT 25"
            ),
        ),
        (
            "Remote peers by traffic",
            format!(
                "WITH c AS ({per_connection}) SELECT remote_addr, any_value(remote_scope) AS scope, \
                 count(*) AS connections, string_agg(DISTINCT remote_port::VARCHAR, ',') AS ports, \
                 string_agg(DISTINCT process_name, ',') AS processes, \
                 sum(bytes_sent) AS bytes_sent, sum(bytes_received) AS bytes_received \
                 FROM c WHERE remote_addr IS NOT NULL GROUP BY remote_addr \
                 ORDER BY coalesce(sum(bytes_sent), 0) + coalesce(sum(bytes_received), 0) DESC, connections DESC LIMIT 10"
            ),
        ),
        (
            "New remote peers (never seen before this run)",
            format!(
                "WITH c AS ({per_connection}) SELECT remote_addr, any_value(remote_scope) AS scope, \
                 string_agg(DISTINCT remote_port::VARCHAR, ',') AS ports, \
                 string_agg(DISTINCT process_name, ',') AS processes, count(*) AS connections \
                 FROM c WHERE remote_addr IS NOT NULL AND remote_addr NOT IN \
                 (SELECT remote_addr FROM sockets WHERE snapshot_id < {first} AND remote_addr IS NOT NULL) \
                 GROUP BY remote_addr ORDER BY connections DESC, remote_addr LIMIT 10"
            ),
        ),
        (
            "Worth a look: connection attempts never answered, and listeners new in this run",
            format!(
                "SELECT 'unanswered attempts' AS what, remote_addr AS target, \
                 string_agg(DISTINCT remote_port::VARCHAR, ',') AS ports, \
                 string_agg(DISTINCT process_name, ',') AS processes, count(DISTINCT connection_id) AS count \
                 FROM sockets WHERE {window} AND state = 'SYN_SENT' GROUP BY remote_addr \
                 UNION ALL \
                 SELECT 'new listener', local_addr || ':' || local_port, proto, any_value(process_name), count(DISTINCT connection_id) \
                 FROM sockets s WHERE {window} AND direction = 'listen' AND NOT (proto = 'udp' AND local_port = 0) \
                 AND NOT EXISTS (SELECT 1 FROM sockets o WHERE o.snapshot_id < {first} AND o.direction = 'listen' \
                   AND o.proto = s.proto AND o.local_port = s.local_port) \
                 AND EXISTS (SELECT 1 FROM snapshots WHERE snapshot_id < {first}) \
                 GROUP BY local_addr, local_port, proto ORDER BY what, count DESC LIMIT 20"
            ),
        ),
    ]
}
