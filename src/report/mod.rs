//! Summaries of what the store holds, as SQL the shell renders: what a capture run saw, and
//! [`insights`] (findings and recommended actions from the latest runs). Reads only; the
//! queries are plain SQL so an analyst can copy and adapt them.

pub mod html;
pub mod insights;

/// Titled queries summarising the snapshots `first..=last`.
pub fn capture_summary(first: i64, last: i64) -> Vec<(&'static str, String)> {
    let window = format!("snapshot_id BETWEEN {first} AND {last}");
    // A connection's traffic in the run is what `socket_traffic` counted after the run's first
    // snapshot: the kernel's counters are cumulative, so their values include bytes that moved
    // before the run, and the first snapshot's rows count bytes since the one before it.
    let per_connection = format!(
        "SELECT connection_id, any_value(proto) AS proto, any_value(direction) AS direction, \
         any_value(pid) AS pid, any_value(process_name) AS process_name, any_value(remote_addr) AS remote_addr, \
         any_value(remote_port) AS remote_port, any_value(remote_scope) AS remote_scope, \
         bool_or(state = 'ESTABLISHED') AS established, CASE WHEN bool_or(sockets.bytes_sent IS NOT NULL) \
         THEN coalesce(any_value(t.sent), 0) END AS bytes_sent, CASE WHEN bool_or(sockets.bytes_received IS NOT NULL) \
         THEN coalesce(any_value(t.received), 0) END AS bytes_received FROM sockets \
         LEFT JOIN (SELECT connection_id, sum(bytes_sent) AS sent, sum(bytes_received) AS received \
                    FROM socket_traffic WHERE snapshot_id > {first} AND snapshot_id <= {last} \
                    GROUP BY connection_id) t USING (connection_id) \
         WHERE {window} GROUP BY connection_id"
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
            "Processes by traffic",
            format!(
                "WITH c AS ({per_connection}) SELECT coalesce(process_name, '?') AS process, pid, \
                 count(*) AS connections, count(*) FILTER (WHERE established) AS established, \
                 count(DISTINCT remote_addr) AS peers, sum(bytes_sent) AS bytes_sent, \
                 sum(bytes_received) AS bytes_received FROM c WHERE direction <> 'listen' \
                 GROUP BY ALL ORDER BY coalesce(sum(bytes_sent), 0) + coalesce(sum(bytes_received), 0) DESC, \
                 connections DESC, process LIMIT 10"
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

#[cfg(test)]
mod tests {
    use crate::store::{Location, Store};

    /// A connection already open before the run, with 1 000 bytes sent then, and 300 during it.
    #[test]
    fn a_run_counts_the_bytes_that_moved_during_it() {
        let store = Store::open(&Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "INSERT INTO snapshots VALUES (1, '2026-01-01 00:00:00', 'h', 'fixture', 1, 1, 0, 0, NULL), \
                 (2, '2026-01-01 00:00:05', 'h', 'fixture', 1, 1, 0, 0, NULL), \
                 (3, '2026-01-01 00:00:10', 'h', 'fixture', 1, 1, 0, 0, NULL); \
                 INSERT INTO sockets (snapshot_id, ts, connection_id, proto, family, local_addr, local_port, remote_addr, \
                   remote_port, state, direction, bytes_sent, bytes_received) \
                 SELECT snapshot_id, ts, 7, 'tcp', 'ipv4', '10.0.0.1', 5000, '192.0.2.1', 443, 'ESTABLISHED', 'outbound', \
                   b, 0 FROM (VALUES (1, TIMESTAMP '2026-01-01 00:00:00', 1000), (2, TIMESTAMP '2026-01-01 00:00:05', 1100), \
                   (3, TIMESTAMP '2026-01-01 00:00:10', 1300)) v(snapshot_id, ts, b); \
                 INSERT INTO socket_traffic VALUES (1, '2026-01-01 00:00:00', 7, 'curl', 400, 0), \
                   (2, '2026-01-01 00:00:05', 7, 'curl', 100, 0), (3, '2026-01-01 00:00:10', 7, 'curl', 200, 0);",
            )
            .unwrap();
        let (_, captured) = &super::capture_summary(1, 3)[0];
        let (sent, received): (i64, i64) = store
            .conn()
            .query_row(
                &format!("SELECT bytes_sent, bytes_received FROM ({captured})"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((sent, received), (300, 0));
    }

    /// The issue asks for the top processes by bytes: one connection that moved 5 000 bytes
    /// comes before three that moved 30.
    #[test]
    fn processes_are_ranked_by_traffic() {
        let store = Store::open(&Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "INSERT INTO snapshots VALUES (1, '2026-01-01 00:00:00', 'h', 'fixture', 4, 2, 0, 0, NULL), \
                 (2, '2026-01-01 00:00:05', 'h', 'fixture', 4, 2, 0, 0, NULL); \
                 INSERT INTO sockets (snapshot_id, ts, connection_id, proto, family, local_addr, local_port, remote_addr, \
                   remote_port, state, direction, pid, process_name, bytes_sent, bytes_received) \
                 SELECT s, t, c, 'tcp', 'ipv4', '10.0.0.1', 5000 + c, '192.0.2.' || c, 443, 'ESTABLISHED', 'outbound', \
                   CASE WHEN c = 4 THEN 20 ELSE 10 END, CASE WHEN c = 4 THEN 'backup' ELSE 'chatty' END, 0, 0 \
                 FROM (VALUES (1, TIMESTAMP '2026-01-01 00:00:00'), (2, TIMESTAMP '2026-01-01 00:00:05')) v(s, t), \
                   range(1, 5) r(c); \
                 INSERT INTO socket_traffic VALUES (2, '2026-01-01 00:00:05', 1, 'chatty', 10, 0), \
                   (2, '2026-01-01 00:00:05', 2, 'chatty', 10, 0), (2, '2026-01-01 00:00:05', 3, 'chatty', 10, 0), \
                   (2, '2026-01-01 00:00:05', 4, 'backup', 5000, 0);",
            )
            .unwrap();
        let (title, sql) = &super::capture_summary(1, 2)[1];
        assert_eq!(*title, "Processes by traffic");
        let first: String = store
            .conn()
            .query_row(&format!("SELECT process FROM ({sql}) LIMIT 1"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(first, "backup");
    }
}
