-- netlens migration 36: two range macros the dashboard reads over weeks, restated with cheaper plans
-- and the same rows (issue 18: every dashboard view within a second over the whole history).
--
-- connection_events_between (migration 35) decided whether this host accepted an internal
-- connection with a correlated EXISTS over the places that listen. DuckDB ran it as a mark join
-- against every lifetime of the range grouped by host, protocol and port: a second pass over the
-- range's lifetimes, and a third and fourth for accepted_twice, which reads `a` again. A LEFT JOIN
-- with the distinct places that listen answers the same for every row in the one pass that reads
-- the lifetimes; the other text is migration 35's. The dashboard builds its shared read of a
-- range's events from this macro. Comments are restated because replacing a macro drops them.

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
-- Each place that listens once, to be joined with every lifetime of the range.
listening_keys AS (SELECT DISTINCT host, proto, local_port FROM listening),
-- accepted: this host's side accepted the connection (inbound, or internal on a port it listens on).
-- A join with the distinct places that listen (at most one match a lifetime, so no row is
-- repeated; equal keys only, as the EXISTS of migration 35 matched them), not a correlated EXISTS:
-- DuckDB decorrelated that into a second pass over every lifetime of the range, grouped by
-- host, protocol and port, and did it again for accepted_twice.
a AS NOT MATERIALIZED (
    SELECT c.*, c.direction = 'inbound' OR (c.direction = 'internal' AND k.local_port IS NOT NULL) AS accepted
    FROM c
    LEFT JOIN listening_keys k ON k.host = c.host AND k.proto = c.proto AND k.local_port = c.local_port
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

-- tcp_stuck_connections_rolled (migration 34) without the set of every candidate connection: it
-- kept the sightings of the range's TCP connections and of the rolled buckets' connections by a
-- semi join with their union, made distinct (every TCP lifetime of a history of weeks, hashed
-- twice). Every rolled sighting is of a candidate by construction, so only the raw sightings, a
-- few rows from rolled_to on, are looked up, each by its connection. The same rows; the comment
-- is restated because replacing a macro drops it.
CREATE OR REPLACE MACRO tcp_stuck_connections_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT * FROM tcp_stuck_connections_overlapping(range_from, range_to)
WHERE rolled_to <= rolled_from
UNION ALL
SELECT * FROM (
    -- The sightings from rolled_to on, of each connection and state.
    WITH raw AS (
        SELECT connection_id, state, count(*) AS sightings, min(ts) AS first_ts, max(ts) AS last_ts,
               arg_min(process_name, ts) AS process_name, arg_min(pid, ts) AS pid,
               arg_min(remote_addr, ts) AS remote_addr, arg_min(remote_port, ts) AS remote_port
        FROM sockets
        WHERE ts >= rolled_to AND proto = 'tcp' AND state IN ('SYN_SENT', 'CLOSE_WAIT')
        GROUP BY connection_id, state),
    -- Those of the range's TCP connections and of every connection of the rolled buckets
    -- (retention deletes a closed lifetime with its raw rows, and its rolled sightings still
    -- count): every rolled sighting is one, so only the few raw ones are looked up.
    sightings AS (
        SELECT connection_id, state, sightings, first_ts, last_ts, process_name, pid, remote_addr, remote_port
        FROM tcp_stuck_rollups WHERE bucket_start < rolled_to
        UNION ALL
        SELECT * FROM raw r
        WHERE EXISTS (SELECT 1 FROM lifetimes_overlapping(range_from, range_to) l
                      WHERE l.proto = 'tcp' AND l.connection_id = r.connection_id)
           OR EXISTS (SELECT 1 FROM tcp_stuck_rollups s
                      WHERE s.bucket_start < rolled_to AND s.connection_id = r.connection_id))
    SELECT connection_id, arg_min(process_name, first_ts) AS process_name, arg_min(pid, first_ts) AS pid,
           arg_min(remote_addr, first_ts) AS remote_addr, arg_min(remote_port, first_ts) AS remote_port, state,
           sum(sightings)::BIGINT AS snapshots_in_state, min(first_ts) AS since, max(last_ts) AS until,
           epoch(max(last_ts)) - epoch(min(first_ts)) AS stuck_s
    FROM sightings
    GROUP BY connection_id, state
    HAVING sum(sightings) > 1)
WHERE rolled_to > rolled_from AND since <= range_to AND until >= range_from;
COMMENT ON MACRO TABLE tcp_stuck_connections_rolled IS 'tcp_stuck_connections rows that overlap [range_from, range_to], with the sightings in buckets before rolled_to taken from tcp_stuck_rollups and the later ones from sockets; rolled_from = rolled_to reads raw rows only.';
