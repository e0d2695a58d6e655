-- netlens migration 25: the dashboard's time range below the aggregation (issue 18).
--
-- connections, connection_events, flow_features, traffic_rates, connection_traffic,
-- tcp_connection_transitions and tcp_stuck_connections are views over the whole history: a filter on their output (a time
-- range) comes after a full pass over every lifetime, transition or socket row, so a panel over
-- the last 15 minutes cost as much as one over the whole history (seconds at 50 million socket
-- rows). These table macros give the same rows for a time range, but choose the lifetimes of
-- that range first. Each returns exactly what the view it names returns under the same filter
-- (tests compare the two on a demo database), so the views stay as they are for everything else.

-- The rows of the connections view whose first_seen lies in [start_from, start_to] and whose
-- last_seen is at or after end_from; a NULL bound is no bound. The view's text with the bounds
-- applied to connection_lifetimes first: a closed lifetime's row is its own (the view joins only
-- open ones with the newest snapshot), so its bounds are plain filters that the scan applies.
CREATE MACRO connections_between(start_from, start_to, end_from) AS TABLE
WITH latest AS (SELECT host, max(snapshot_id) AS snapshot_id FROM snapshots GROUP BY host)
SELECT l.connection_id, l.host, l.proto, l.family, l.local_addr, l.local_port, l.remote_addr, l.remote_port,
       l.pid, l.process_name, l.inode, l.direction, l.remote_scope,
       l.first_seen, l.last_seen,
       epoch(l.last_seen) - epoch(l.first_seen) AS duration_s,
       l.first_snapshot_id, l.last_snapshot_id,
       l.first_state, l.last_state,
       true AS closed, l.closed_at,
       l.bytes_sent, l.bytes_acked, l.bytes_received, l.segs_out, l.segs_in, l.total_retrans, l.rtt_us
FROM connection_lifetimes l
WHERE l.closed_at IS NOT NULL
  AND (start_from IS NULL OR l.first_seen >= start_from) AND (start_to IS NULL OR l.first_seen <= start_to)
  AND (end_from IS NULL OR l.last_seen >= end_from)
UNION ALL
SELECT * FROM (
    SELECT l.connection_id, l.host, l.proto, l.family, l.local_addr, l.local_port, l.remote_addr, l.remote_port,
           l.pid, coalesce(s.process_name, l.process_name) AS process_name, l.inode,
           coalesce(s.direction, l.direction) AS direction, l.remote_scope,
           l.first_seen, coalesce(s.ts, l.last_seen) AS last_seen,
           epoch(coalesce(s.ts, l.last_seen)) - epoch(l.first_seen) AS duration_s,
           l.first_snapshot_id, coalesce(s.snapshot_id, l.last_snapshot_id) AS last_snapshot_id,
           l.first_state, coalesce(s.state, l.last_state) AS last_state,
           false AS closed, l.closed_at,
           coalesce(s.bytes_sent, l.bytes_sent) AS bytes_sent,
           coalesce(s.bytes_acked, l.bytes_acked) AS bytes_acked,
           coalesce(s.bytes_received, l.bytes_received) AS bytes_received,
           coalesce(s.segs_out, l.segs_out) AS segs_out,
           coalesce(s.segs_in, l.segs_in) AS segs_in,
           coalesce(s.total_retrans, l.total_retrans) AS total_retrans,
           coalesce(s.rtt_us, l.rtt_us) AS rtt_us
    FROM connection_lifetimes l
    LEFT JOIN latest ON latest.host = l.host
    LEFT JOIN sockets s ON s.snapshot_id = latest.snapshot_id AND s.connection_id = l.connection_id
    WHERE l.closed_at IS NULL
      AND (start_from IS NULL OR l.first_seen >= start_from) AND (start_to IS NULL OR l.first_seen <= start_to))
WHERE end_from IS NULL OR last_seen >= end_from;

-- The rows of the connections view that overlap [range_from, range_to] (first_seen <= range_to
-- and last_seen >= range_from).
CREATE MACRO connections_overlapping(range_from, range_to) AS TABLE
SELECT * FROM connections_between(NULL, range_to, range_from);

-- The rows of connection_events whose start_ts lies in [start_from, start_to] and whose end_ts
-- is at or after end_from; a NULL bound is no bound. The view's text, reading the live part from
-- connections_between (a live event's start and end are its connection's first and last_seen).
-- Which ports listen and which internal connections were seen from both ends are found from
-- the range's rows, not by a pass over every lifetime joined with the newest snapshot.
CREATE MACRO connection_events_between(start_from, start_to, end_from) AS TABLE
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
c AS (SELECT * FROM connections_between(start_from, start_to, end_from)),
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
a AS (
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

-- The rows of connection_events that overlap [range_from, range_to] (start_ts <= range_to and
-- end_ts >= range_from): what a panel over that range counts.
CREATE MACRO connection_events_overlapping(range_from, range_to) AS TABLE
SELECT * FROM connection_events_between(NULL, range_to, range_from);

-- flow_features_by(width) for the windows that start in [range_from, range_to], from the connections
-- that started in those windows only.
CREATE MACRO flow_features_between(width, range_from, range_to) AS TABLE
SELECT host || ' ' || src_h || ' -> ' || dst_h || ' @ ' || CAST(time_bucket(width, start_ts) AS VARCHAR) AS flow_id,
       time_bucket(width, start_ts) AS window_start,
       host,
       src_h AS src_ip,
       dst_h AS dst_ip,
       mode(proto) AS protocol,
       mode(direction) AS direction,
       mode(service_port_category(proto, dst_p)) AS service_port,
       count(*) AS connection_count,
       count(DISTINCT src_p) AS unique_local_ports,
       count(DISTINCT dst_p) AS unique_remote_ports,
       min(dst_p) AS remote_port_min,
       max(dst_p) AS remote_port_max,
       avg(dst_p) AS remote_port_mean,
       coalesce(stddev_pop(dst_p), 0) AS remote_port_std,
       avg(duration_s) AS mean_duration_s,
       max(duration_s) AS max_duration_s,
       sum(bytes_out) AS bytes_sent,
       sum(bytes_in) AS bytes_received,
       count(DISTINCT coalesce(process_name, CAST(pid AS VARCHAR))) AS distinct_processes,
       min(start_ts) AS first_seen,
       max(end_ts) AS last_seen
-- A window starting at or before range_to holds connections that started before range_to + width.
FROM connection_events_between(range_from, range_to + width, NULL)
WHERE source = 'connections' AND time_bucket(width, start_ts) BETWEEN range_from AND range_to
GROUP BY ALL;

-- traffic_rates for the minutes in [range_from, range_to].
CREATE MACRO traffic_rates_between(range_from, range_to) AS TABLE
SELECT source, date_trunc('minute', start_ts) AS minute, count(*) AS connections,
       count(*) FILTER (WHERE failed) AS failed,
       sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) AS bytes,
       round(count(*) / 60, 3) AS connections_per_s,
       round(sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) / 60, 1) AS bytes_per_s,
       count(DISTINCT src_h) AS sources, count(DISTINCT dst_h) AS destinations
FROM connection_events_between(range_from, range_to + INTERVAL 1 MINUTE, NULL)
WHERE date_trunc('minute', start_ts) BETWEEN range_from AND range_to
GROUP BY ALL;

-- The connections whose lifetime overlaps [range_from, range_to] (first_seen to closed_at, or open):
-- every tcp_transitions and sockets row of a connection lies within its lifetime, so these are
-- the only connections whose transitions or stuck sightings can overlap the range.
CREATE MACRO lifetimes_overlapping(range_from, range_to) AS TABLE
SELECT * FROM connection_lifetimes
WHERE first_seen <= range_to AND (closed_at IS NULL OR closed_at >= range_from);

-- connection_traffic for the snapshots in [range_from, range_to]: a connection's traffic rows lie
-- within its lifetime, so only the range's lifetimes are joined (the view joins every lifetime).
CREATE MACRO connection_traffic_between(range_from, range_to) AS TABLE
SELECT t.snapshot_id, t.ts, t.connection_id, l.host, l.proto, l.pid,
       coalesce(t.process_name, '?') AS process, l.remote_addr, l.remote_port, l.remote_scope,
       t.bytes_sent, t.bytes_received
FROM socket_traffic t JOIN lifetimes_overlapping(range_from, range_to) l USING (connection_id)
WHERE t.ts BETWEEN range_from AND range_to;

-- The rows of tcp_connection_transitions that overlap [range_from, range_to] (first_ts <= range_to and
-- last_ts >= range_from), each over all of its connection's transitions as in the view.
CREATE MACRO tcp_connection_transitions_overlapping(range_from, range_to) AS TABLE
SELECT * FROM (
    SELECT connection_id,
           count(*) FILTER (WHERE from_state IS NOT NULL AND to_state IS NOT NULL) AS transitions,
           string_agg(coalesce(to_state, 'gone'), ' > ' ORDER BY snapshot_id) AS path,
           arg_min(to_state, snapshot_id) AS first_state,
           arg_max(coalesce(to_state, from_state), snapshot_id) AS last_state,
           min(ts) AS first_ts, max(ts) AS last_ts
    FROM tcp_transitions
    WHERE connection_id IN (SELECT connection_id FROM lifetimes_overlapping(range_from, range_to))
      AND ts >= (SELECT min(first_seen) FROM lifetimes_overlapping(range_from, range_to))
    GROUP BY connection_id)
WHERE first_ts <= range_to AND last_ts >= range_from;

-- The rows of tcp_stuck_connections that overlap [range_from, range_to] (since <= range_to and
-- until >= range_from), each counted over all of its sightings in that state as in the view.
-- A connection's first sighting in a state is a tcp_transitions row into that state, so no
-- sighting in SYN_SENT or CLOSE_WAIT of the range's connections is older than the first such
-- transition among them, and only snapshots from then on are read. A lifetime older than every
-- transition left (retention removed its first sightings) counts from its first_seen.
CREATE MACRO tcp_stuck_connections_overlapping(range_from, range_to) AS TABLE
WITH candidates AS (
    SELECT connection_id, first_seen FROM lifetimes_overlapping(range_from, range_to) WHERE proto = 'tcp'),
entered AS (
    SELECT t.connection_id, t.ts FROM tcp_transitions t
    WHERE t.to_state IN ('SYN_SENT', 'CLOSE_WAIT')
      AND t.connection_id IN (SELECT connection_id FROM candidates)
    UNION ALL
    SELECT connection_id, first_seen FROM candidates
    -- No transition left at all (retention removed every one): every candidate counts.
    WHERE first_seen < coalesce((SELECT min(ts) FROM tcp_transitions), 'infinity'::TIMESTAMP)),
snaps AS (SELECT snapshot_id FROM snapshots WHERE ts >= (SELECT min(ts) FROM entered))
SELECT * FROM (
    SELECT s.connection_id, any_value(s.process_name) AS process_name, any_value(s.pid) AS pid,
           any_value(s.remote_addr) AS remote_addr, any_value(s.remote_port) AS remote_port, s.state,
           count(*) AS snapshots_in_state, min(s.ts) AS since, max(s.ts) AS until,
           epoch(max(s.ts)) - epoch(min(s.ts)) AS stuck_s
    FROM sockets s JOIN snaps USING (snapshot_id)
    WHERE s.proto = 'tcp' AND s.state IN ('SYN_SENT', 'CLOSE_WAIT')
      AND s.connection_id IN (SELECT connection_id FROM entered)
    GROUP BY s.connection_id, s.state
    HAVING count(*) > 1) t
WHERE t.since <= range_to AND t.until >= range_from;

COMMENT ON MACRO TABLE connections_between IS 'connections rows with first_seen in [start_from, start_to] and last_seen >= end_from (a NULL bound is no bound), reading only the lifetimes those bounds keep.';
COMMENT ON MACRO TABLE connections_overlapping IS 'connections rows that overlap [range_from, range_to]: first_seen <= range_to and last_seen >= range_from.';
COMMENT ON MACRO TABLE connection_events_between IS 'connection_events rows with start_ts in [start_from, start_to] and end_ts >= end_from (a NULL bound is no bound), reading only the lifetimes and flows those bounds keep.';
COMMENT ON MACRO TABLE connection_events_overlapping IS 'connection_events rows that overlap [range_from, range_to]: start_ts <= range_to and end_ts >= range_from.';
COMMENT ON MACRO TABLE flow_features_between IS 'flow_features_by(width) rows whose window_start lies in [range_from, range_to], from the connections of those windows only.';
COMMENT ON MACRO TABLE traffic_rates_between IS 'traffic_rates rows whose minute lies in [range_from, range_to], from the connections of those minutes only.';
COMMENT ON MACRO TABLE lifetimes_overlapping IS 'connection_lifetimes rows whose lifetime (first_seen to closed_at, or still open) overlaps [range_from, range_to].';
COMMENT ON MACRO TABLE connection_traffic_between IS 'connection_traffic rows whose ts lies in [range_from, range_to], joined with the lifetimes of that range only.';
COMMENT ON MACRO TABLE tcp_connection_transitions_overlapping IS 'tcp_connection_transitions rows that overlap [range_from, range_to] (first_ts <= range_to and last_ts >= range_from), aggregated over the range''s connections only.';
COMMENT ON MACRO TABLE tcp_stuck_connections_overlapping IS 'tcp_stuck_connections rows that overlap [range_from, range_to] (since <= range_to and until >= range_from), from the snapshots that can hold their sightings only.';
