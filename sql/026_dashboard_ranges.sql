-- netlens migration 26: the rest of the dashboard's panels read their range, and ranges of days
-- read the hourly rollups (issue 18).
--
-- Like migration 25's macros, the `_between` and `_overlapping` ones here return exactly what
-- the view they name returns under the same filter (a test compares them on a demo database),
-- reading only the range's rows. The `_rolled` ones read the rollup tables (migration 8) for the
-- whole buckets in [rolled_from, rolled_to) and raw rows for the rest of [range_from, range_to]:
-- the dashboard passes rolled_from = rolled_to = range_from (raw rows only) unless the range is
-- longer than a day and buckets of it are rolled up (src/dashboard.rs decides; a test checks the
-- totals of both reads are equal).

-- tcp_state_counts for the snapshots in [range_from, range_to]: the snapshots of the range are
-- chosen first, and the socket rows by their time (zone maps skip the rest).
CREATE MACRO tcp_state_counts_between(range_from, range_to) AS TABLE
SELECT s.snapshot_id, s.ts, n.host, s.state, count(*) AS sockets
FROM sockets s
JOIN (SELECT snapshot_id, host FROM snapshots WHERE ts BETWEEN range_from AND range_to) n USING (snapshot_id)
WHERE s.proto = 'tcp' AND s.ts BETWEEN range_from AND range_to
GROUP BY ALL;

-- connections_geo for the connections that overlap [range_from, range_to].
CREATE MACRO connections_geo_overlapping(range_from, range_to) AS TABLE
SELECT c.connection_id, c.host, c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port,
       c.pid, c.process_name, c.direction, c.remote_scope, c.first_seen, c.last_seen, c.duration_s,
       c.last_state, c.bytes_sent, c.bytes_received,
       g.country_code AS remote_country_code, g.country AS remote_country, g.city AS remote_city,
       g.asn AS remote_asn, g.org AS remote_org, g.status AS geo_status
FROM connections_overlapping(range_from, range_to) c
LEFT JOIN geo g ON g.ip = c.remote_addr;

-- connection_traffic over [range_from, range_to], with the buckets starting in
-- [rolled_from, rolled_to) read from connection_rollups: one row per connection and bucket that
-- moved bytes, at the bucket's start (snapshot_id NULL), with the connection's identity as the
-- bucket's last snapshot saw it. The bytes are the same sums (migration 23), so totals over the
-- range are equal; a connection that changed process within an hour counts for the last one.
CREATE MACRO connection_traffic_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT * FROM connection_traffic_between(range_from, least(rolled_from - INTERVAL 1 MICROSECOND, range_to))
UNION ALL
SELECT NULL::BIGINT AS snapshot_id, r.bucket_start AS ts, r.connection_id, r.host, r.proto, r.pid,
       coalesce(r.process_name, '?') AS process, r.remote_addr, r.remote_port, r.remote_scope,
       coalesce(r.bytes_sent, 0) AS bytes_sent, coalesce(r.bytes_received, 0) AS bytes_received
FROM connection_rollups r
WHERE r.bucket_start >= rolled_from AND r.bucket_start < rolled_to
  AND (coalesce(r.bytes_sent, 0) > 0 OR coalesce(r.bytes_received, 0) > 0)
UNION ALL
SELECT * FROM connection_traffic_between(greatest(rolled_to, range_from), range_to);

-- Bytes each interface moved each way over [range_from, range_to] (the interfaces table's
-- per-snapshot deltas), with the buckets starting in [rolled_from, rolled_to) read from
-- interface_rollups (one row per interface and bucket, at its start, over its width).
CREATE MACRO interface_traffic_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT ts, name, interval_s, rx_bytes_delta AS rx_bytes, tx_bytes_delta AS tx_bytes
FROM interfaces WHERE ts BETWEEN range_from AND least(rolled_from - INTERVAL 1 MICROSECOND, range_to)
UNION ALL
SELECT bucket_start, name, bucket_s::DOUBLE, rx_bytes, tx_bytes
FROM interface_rollups
WHERE bucket_start >= rolled_from AND bucket_start < rolled_to
UNION ALL
SELECT ts, name, interval_s, rx_bytes_delta, tx_bytes_delta
FROM interfaces WHERE ts BETWEEN greatest(rolled_to, range_from) AND range_to;

-- Sockets per direction in each snapshot of [range_from, range_to] (sockets: how many rows,
-- snapshots: 1), with the buckets starting in [rolled_from, rolled_to) read from
-- connection_rollups (sockets: sightings in the bucket, snapshots: the bucket's snapshots), so
-- sum(sockets) / sum(snapshots) is a mean per snapshot: over the snapshots that had the direction
-- for raw rows (as the panel always counted), over every snapshot of the bucket for rollups.
CREATE MACRO socket_directions_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT ts, direction, count(*) AS sockets, 1 AS snapshots
FROM sockets WHERE ts BETWEEN range_from AND least(rolled_from - INTERVAL 1 MICROSECOND, range_to)
GROUP BY snapshot_id, ts, direction
UNION ALL
SELECT r.bucket_start, r.direction, sum(r.snapshots) AS sockets, any_value(b.snapshots) AS snapshots
FROM connection_rollups r
JOIN rollup_buckets b ON b.host = r.host AND b.bucket_start = r.bucket_start
WHERE r.bucket_start >= rolled_from AND r.bucket_start < rolled_to
GROUP BY r.host, r.bucket_start, r.direction
UNION ALL
SELECT ts, direction, count(*), 1
FROM sockets WHERE ts BETWEEN greatest(rolled_to, range_from) AND range_to
GROUP BY snapshot_id, ts, direction;

COMMENT ON MACRO TABLE tcp_state_counts_between IS 'tcp_state_counts rows whose ts lies in [range_from, range_to], reading only the socket rows of that range.';
COMMENT ON MACRO TABLE connections_geo_overlapping IS 'connections_geo rows that overlap [range_from, range_to]: first_seen <= range_to and last_seen >= range_from (connections_overlapping with geo joined).';
COMMENT ON MACRO TABLE connection_traffic_rolled IS 'connection_traffic rows of [range_from, range_to], with the buckets starting in [rolled_from, rolled_to) taken from connection_rollups (one row per connection and bucket, ts the bucket start, snapshot_id NULL); rolled_from = rolled_to reads raw rows only.';
COMMENT ON MACRO TABLE interface_traffic_rolled IS 'Bytes per interface (ts, name, interval_s, rx_bytes, tx_bytes) over [range_from, range_to]: interfaces deltas, with the buckets starting in [rolled_from, rolled_to) taken from interface_rollups (interval_s the bucket width).';
COMMENT ON MACRO TABLE socket_directions_rolled IS 'Sockets per direction (ts, direction, sockets, snapshots) over [range_from, range_to]: one row per snapshot and direction from sockets, with the buckets starting in [rolled_from, rolled_to) taken from connection_rollups (sightings and the bucket''s snapshots); sum(sockets) / sum(snapshots) is the mean per snapshot.';
