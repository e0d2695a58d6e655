-- netlens migration 35: connection_events_between (migration 25) with its CTEs c and a inlined
-- (issue 18: every dashboard view within a second over the whole history).
--
-- DuckDB materialises a CTE that is referenced more than once. Here c (every lifetime of the
-- range with its latest counters) and a (c with `accepted`) were each written out whole, every
-- lifetime of the range with every column, before the events were read, though the rows the
-- macro returns need them only once and accepted_twice reads just the few accepted internal
-- connections of a.
-- Inlined, the same rows come out without the two copies; the dashboard builds its shared read
-- of a range's events from this macro. The text is otherwise migration 25's; its comment is
-- restated because replacing a macro drops it.

CREATE OR REPLACE MACRO connection_events_between(start_from, start_to, end_from) AS TABLE
WITH f AS (
    SELECT 'flows' AS source,
           f.import_id::VARCHAR || ':' || f.uid AS event_id,
           NULL::VARCHAR AS host,
           f.ts AS start_ts,
           f.ts + to_microseconds(CAST(round(coalesce(f.duration, 0) * 1e6) AS BIGINT)) AS end_ts,
           coalesce(f.duration, 0)::DOUBLE AS duration_s,
           false AS open,
           f.proto,
           f.orig_h AS src_h, f.orig_p AS src_p, f.resp_h AS dst_h, f.resp_p AS dst_p,
           flow_direction(f.orig_h, f.resp_h) AS direction,
           f.orig_bytes AS bytes_out, f.resp_bytes AS bytes_in,
           f.orig_pkts AS packets_out, f.resp_pkts AS packets_in,
           f.orig_ip_bytes AS wire_bytes_out, f.resp_ip_bytes AS wire_bytes_in,
           f.conn_state AS state,
           coalesce(f.conn_state IN ('S0', 'REJ', 'RSTOS0', 'RSTRH', 'SH', 'SHR'), false) AS failed,
           NULL::INTEGER AS pid, NULL::VARCHAR AS process_name
    FROM flows f
    WHERE (start_from IS NULL OR f.ts >= start_from) AND (start_to IS NULL OR f.ts <= start_to)),
latest AS (SELECT host, max(snapshot_id) AS snapshot_id FROM snapshots GROUP BY host),
c AS NOT MATERIALIZED (SELECT * FROM connections_between(start_from, start_to, end_from)),
-- Where a lifetime listens, as the connections view says: a closed lifetime's own direction, an
-- open one's in the newest snapshot (few rows, where the view joins every lifetime).
listening AS (
    SELECT host, proto, local_port FROM connection_lifetimes WHERE closed_at IS NOT NULL AND direction = 'listen'
    UNION ALL
    SELECT l.host, l.proto, l.local_port
    FROM connection_lifetimes l
    LEFT JOIN latest ON latest.host = l.host
    LEFT JOIN sockets s ON s.snapshot_id = latest.snapshot_id AND s.connection_id = l.connection_id
    WHERE l.closed_at IS NULL AND coalesce(s.direction, l.direction) = 'listen'),
-- accepted: this host's side accepted the connection (inbound, or internal on a port it listens on)
a AS NOT MATERIALIZED (
    SELECT c.*, c.direction = 'inbound' OR (c.direction = 'internal' AND EXISTS (
               SELECT 1 FROM listening l WHERE l.host = c.host
               AND l.proto = c.proto AND l.local_port = c.local_port)) AS accepted
    FROM c
    WHERE c.direction <> 'listen' AND c.remote_addr IS NOT NULL),
-- A connection between two local processes is seen from both ends; the accepting socket of one
-- whose opener's socket is a lifetime too is left out. Joined from the few accepted internal
-- connections of the range, not from every lifetime.
accepted_twice AS (
    SELECT DISTINCT c.connection_id
    FROM a c JOIN connection_lifetimes o
      ON o.host = c.host AND o.proto = c.proto
     AND o.local_addr = c.remote_addr AND o.local_port = c.remote_port
     AND o.remote_addr = c.local_addr AND o.remote_port = c.local_port
    WHERE c.accepted AND c.direction = 'internal'),
live AS (
    SELECT 'connections' AS source,
           c.connection_id::VARCHAR AS event_id,
           c.host,
           c.first_seen AS start_ts,
           c.last_seen AS end_ts,
           c.duration_s,
           NOT c.closed AS open,
           c.proto,
           CASE WHEN c.accepted THEN c.remote_addr ELSE c.local_addr END AS src_h,
           CASE WHEN c.accepted THEN c.remote_port ELSE c.local_port END AS src_p,
           CASE WHEN c.accepted THEN c.local_addr ELSE c.remote_addr END AS dst_h,
           CASE WHEN c.accepted THEN c.local_port ELSE c.remote_port END AS dst_p,
           c.direction,
           CASE WHEN c.accepted THEN c.bytes_received ELSE c.bytes_sent END AS bytes_out,
           CASE WHEN c.accepted THEN c.bytes_sent ELSE c.bytes_received END AS bytes_in,
           CASE WHEN c.accepted THEN c.segs_in ELSE c.segs_out END AS packets_out,
           CASE WHEN c.accepted THEN c.segs_out ELSE c.segs_in END AS packets_in,
           NULL::BIGINT AS wire_bytes_out,
           NULL::BIGINT AS wire_bytes_in,
           c.last_state AS state,
           coalesce(c.last_state IN ('SYN_SENT', 'SYN_RECV'), false) AS failed,
           c.pid, c.process_name
    FROM a c
    WHERE c.connection_id NOT IN (SELECT connection_id FROM accepted_twice)),
e AS (SELECT * FROM f UNION ALL SELECT * FROM live)
SELECT * FROM e WHERE end_from IS NULL OR end_ts >= end_from;
COMMENT ON MACRO TABLE connection_events_between IS 'connection_events rows with start_ts in [start_from, start_to] and end_ts >= end_from (a NULL bound is no bound), reading only the lifetimes and flows those bounds keep.';
