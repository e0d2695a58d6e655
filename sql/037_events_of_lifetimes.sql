-- netlens migration 37: the events of only some lifetimes, for a dashboard read that grows with the
-- capture (issue 18: every view within a second over the whole history, on a capturing server).
--
-- The dashboard keeps a range's connection_events in a table (src/shared_reads.rs). A lifetime
-- closed when that table was built never changes again, so after a snapshot the range's events
-- are the table's closed rows plus the events of the lifetimes open at the build or begun since.
-- connection_events_of gives those: connection_events_between's rows (migration 36's text, every
-- place that listens and every lifetime still joined for `accepted` and accepted_twice), limited,
-- when newest_id is not NULL, to the lifetimes numbered above newest_id or listed in open_ids, and
-- without imported flows. connection_events_between is restated as connection_events_of with no
-- limit: one text of the events, the same rows. Comments are restated because replacing a macro
-- drops them.

-- Where lifetimes listen, each place (host, protocol, local port) once, as the connections view says:
-- a closed lifetime's own direction, an open one's in its host's newest snapshot. Migration 36's
-- text, made a macro of its own so that what the dashboard's grown reads compare is this.
CREATE OR REPLACE MACRO listening_places() AS TABLE
WITH latest AS (SELECT host, max(snapshot_id) AS snapshot_id FROM snapshots GROUP BY host),
listening AS (
    SELECT host, proto, local_port FROM connection_lifetimes WHERE closed_at IS NOT NULL AND direction = 'listen'
    UNION ALL
    SELECT l.host, l.proto, l.local_port
    FROM connection_lifetimes l
    LEFT JOIN latest ON latest.host = l.host
    LEFT JOIN sockets s ON s.snapshot_id = latest.snapshot_id AND s.connection_id = l.connection_id
    WHERE l.closed_at IS NULL AND coalesce(s.direction, l.direction) = 'listen')
SELECT DISTINCT host, proto, local_port FROM listening;
COMMENT ON MACRO TABLE listening_places IS 'Each (host, proto, local_port) where a lifetime listens: a closed lifetime by its own direction, an open one by its direction in its host''s newest snapshot.';

CREATE OR REPLACE MACRO connection_events_of(start_from, start_to, end_from, newest_id, open_ids) AS TABLE
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
    WHERE newest_id IS NULL
      AND (start_from IS NULL OR f.ts >= start_from) AND (start_to IS NULL OR f.ts <= start_to)),
-- Every lifetime of the bounds; or, given newest_id, those numbered above it and those in open_ids
-- (two branches: each filter reaches the lifetimes' scan, where one OR of the two would not).
c AS NOT MATERIALIZED (
    SELECT * FROM connections_between(start_from, start_to, end_from) WHERE newest_id IS NULL
    UNION ALL
    SELECT * FROM connections_between(start_from, start_to, end_from)
    WHERE newest_id IS NOT NULL AND connection_id > newest_id
    UNION ALL
    SELECT * FROM connections_between(start_from, start_to, end_from)
    WHERE newest_id IS NOT NULL AND connection_id IN (SELECT unnest(open_ids))),
-- Each place that listens once (listening_places), to be joined with every lifetime of the range.
listening_keys AS (SELECT * FROM listening_places()),
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
COMMENT ON MACRO TABLE connection_events_of IS 'connection_events_between(start_from, start_to, end_from) rows; when newest_id is not NULL, only those of lifetimes numbered above newest_id or listed in open_ids (a list of connection ids), and no flows.';

CREATE OR REPLACE MACRO connection_events_between(start_from, start_to, end_from) AS TABLE
SELECT * FROM connection_events_of(start_from, start_to, end_from, NULL, NULL);
COMMENT ON MACRO TABLE connection_events_between IS 'connection_events rows with start_ts in [start_from, start_to] and end_ts >= end_from (a NULL bound is no bound), reading only the lifetimes and flows those bounds keep.';
