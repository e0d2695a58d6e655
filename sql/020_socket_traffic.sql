-- netlens migration 20: each connection's traffic per snapshot, stored when captured (issue 18).
--
-- The kernel's byte counters in `sockets` are cumulative over a socket's life, so "bytes sent
-- by firefox between 10:00 and 11:00" needed each row's difference from the same connection's
-- previous row: a window function over every socket row in the range, which grows with the
-- history (several seconds at tens of millions of rows). The capture's tracker knows each open
-- connection's previous counters, so it stores the difference once, and only where bytes moved
-- (idle sockets, listeners and UDP get no rows).
-- Rows already stored are filled in here, with the capture's rule.

CREATE TABLE socket_traffic (
    snapshot_id     BIGINT NOT NULL,
    ts              TIMESTAMP NOT NULL,
    connection_id   BIGINT NOT NULL,
    process_name    VARCHAR,
    bytes_sent      BIGINT NOT NULL,
    bytes_received  BIGINT NOT NULL
);
COMMENT ON TABLE socket_traffic IS 'Bytes each connection moved since its previous sighting, one row per snapshot and connection that moved any (written by capture; a connection without a row in a snapshot moved nothing, or has no kernel counters). Sums over a time range are the traffic of that range.';
COMMENT ON COLUMN socket_traffic.snapshot_id IS 'Snapshot the bytes were counted at (snapshots.snapshot_id, sockets.snapshot_id).';
COMMENT ON COLUMN socket_traffic.ts IS 'UTC time of the snapshot; the bytes moved after the host''s previous snapshot and up to this time.';
COMMENT ON COLUMN socket_traffic.connection_id IS 'The socket lifetime (connection_lifetimes.connection_id, sockets.connection_id).';
COMMENT ON COLUMN socket_traffic.process_name IS 'Owning process name in this snapshot (sockets.process_name); NULL when unknown.';
COMMENT ON COLUMN socket_traffic.bytes_sent IS 'Change of the socket''s bytes_sent counter since its previous row in sockets; for a connection that opened since the host''s previous snapshot, its whole counter. A connection in a host''s very first snapshot has no row: when its bytes moved is not known.';
COMMENT ON COLUMN socket_traffic.bytes_received IS 'Change of the socket''s bytes_received counter, as bytes_sent.';

INSERT INTO socket_traffic
WITH hosts AS (SELECT host, min(snapshot_id) AS first_snapshot_id FROM snapshots GROUP BY host),
rows AS (
    SELECT s.snapshot_id, s.ts, s.connection_id, s.process_name, s.bytes_sent, s.bytes_received,
           lag(s.snapshot_id) OVER w AS previous_snapshot_id,
           lag(s.bytes_sent) OVER w AS previous_sent, lag(s.bytes_received) OVER w AS previous_received,
           h.first_snapshot_id
    FROM sockets s JOIN snapshots n USING (snapshot_id) JOIN hosts h ON h.host = n.host
    WINDOW w AS (PARTITION BY s.connection_id ORDER BY s.snapshot_id)),
moved AS (
    SELECT snapshot_id, ts, connection_id, process_name,
           CASE WHEN previous_snapshot_id IS NOT NULL THEN bytes_sent - previous_sent
                WHEN snapshot_id > first_snapshot_id THEN bytes_sent END AS sent,
           CASE WHEN previous_snapshot_id IS NOT NULL THEN bytes_received - previous_received
                WHEN snapshot_id > first_snapshot_id THEN bytes_received END AS received
    FROM rows
    WHERE bytes_sent IS NOT NULL AND bytes_received IS NOT NULL)
SELECT snapshot_id, ts, connection_id, process_name, sent, received
FROM moved
WHERE sent >= 0 AND received >= 0 AND (sent > 0 OR received > 0)
ORDER BY snapshot_id, connection_id;

CREATE VIEW connection_traffic AS
SELECT t.snapshot_id, t.ts, t.connection_id, l.host, l.proto, l.pid,
       coalesce(t.process_name, '?') AS process, l.remote_addr, l.remote_port, l.remote_scope,
       t.bytes_sent, t.bytes_received
FROM socket_traffic t JOIN connection_lifetimes l USING (connection_id);
COMMENT ON VIEW connection_traffic IS 'socket_traffic with each connection''s identity: who moved how many bytes with whom, per snapshot. What the dashboard''s bandwidth panels sum.';
COMMENT ON COLUMN connection_traffic.snapshot_id IS 'As socket_traffic.snapshot_id.';
COMMENT ON COLUMN connection_traffic.ts IS 'As socket_traffic.ts.';
COMMENT ON COLUMN connection_traffic.connection_id IS 'As socket_traffic.connection_id.';
COMMENT ON COLUMN connection_traffic.host IS 'Host of the connection (connection_lifetimes.host).';
COMMENT ON COLUMN connection_traffic.proto IS 'tcp or udp.';
COMMENT ON COLUMN connection_traffic.pid IS 'Owning process id; NULL when unknown.';
COMMENT ON COLUMN connection_traffic.process IS 'Owning process name, ''?'' when unknown.';
COMMENT ON COLUMN connection_traffic.remote_addr IS 'Remote address; NULL for unconnected sockets.';
COMMENT ON COLUMN connection_traffic.remote_port IS 'Remote port; NULL for unconnected sockets.';
COMMENT ON COLUMN connection_traffic.remote_scope IS 'Scope of the remote address (sockets.remote_scope).';
COMMENT ON COLUMN connection_traffic.bytes_sent IS 'As socket_traffic.bytes_sent.';
COMMENT ON COLUMN connection_traffic.bytes_received IS 'As socket_traffic.bytes_received.';
