-- netlens migration 38: the connections that retention took the lifetimes of, from the hourly
-- rollups, so that Overview's "connections" over a range of days counts them.
--
-- Retention deletes a finished lifetime once it closed before the raw window's cutoff, and with it
-- the connection from connection_events and every macro built on the lifetimes; the connection's
-- hours stay in connection_rollups. This macro gives those connections back: one row per
-- connection seen in the buckets starting in [rolled_from, rolled_to) whose lifetime is gone, with
-- its identity and direction as its newest bucket there saw them, and with the rule of
-- connection_events for a connection between two local processes: it is counted once. So the
-- count of connection_events over a range plus this macro's rows over the range's rolled buckets
-- is what connection_events counted before retention ran (a unit test compares them). Every
-- table it reads is filtered by `rolled_to > rolled_from` as well: with nothing rolled (a range of
-- a day or less, which the live dashboard asks for every few seconds) DuckDB folds that to false
-- and reads nothing, where the joins alone still scanned every lifetime and rollup.

CREATE MACRO connections_without_lifetime_rolled(rolled_from, rolled_to) AS TABLE
WITH gone AS (
    SELECT host, connection_id,
           arg_max(proto, bucket_start) AS proto,
           arg_max(local_addr, bucket_start) AS local_addr,
           arg_max(local_port, bucket_start) AS local_port,
           arg_max(remote_addr, bucket_start) AS remote_addr,
           arg_max(remote_port, bucket_start) AS remote_port,
           arg_max(direction, bucket_start) AS direction,
           arg_max(process_name, bucket_start) AS process_name,
           min(first_seen) AS first_seen,
           max(last_seen) AS last_seen
    FROM connection_rollups
    WHERE bucket_start >= rolled_from AND bucket_start < rolled_to
      AND connection_id NOT IN (SELECT connection_id FROM connection_lifetimes WHERE rolled_to > rolled_from)
    GROUP BY host, connection_id),
-- Where the host listens: closed lifetimes that listened, and listeners seen in any rolled bucket
-- (an open lifetime's direction is only in its sockets rows; one that accepted a connection of the
-- rolled hours listened in them).
listening_keys AS (
    SELECT DISTINCT host, proto, local_port FROM connection_lifetimes
    WHERE rolled_to > rolled_from AND closed_at IS NOT NULL AND direction = 'listen'
    UNION
    SELECT DISTINCT host, proto, local_port FROM connection_rollups WHERE rolled_to > rolled_from AND direction = 'listen'),
a AS (
    SELECT g.*, g.direction = 'inbound' OR (g.direction = 'internal' AND k.local_port IS NOT NULL) AS accepted
    FROM gone g
    LEFT JOIN listening_keys k ON k.host = g.host AND k.proto = g.proto AND k.local_port = g.local_port
    WHERE g.direction <> 'listen' AND g.remote_addr IS NOT NULL),
-- The other end of an internal connection, wherever it is kept: a lifetime (any: an open one's
-- direction is NULL until it closes), or a rollup row.
other_ends AS (
    SELECT l.host, l.proto, l.local_addr, l.local_port, l.remote_addr, l.remote_port, true AS has_lifetime,
           k.local_port IS NOT NULL AS accepted
    FROM connection_lifetimes l
    LEFT JOIN listening_keys k ON k.host = l.host AND k.proto = l.proto AND k.local_port = l.local_port
    WHERE rolled_to > rolled_from AND l.remote_addr IS NOT NULL
    UNION ALL
    SELECT DISTINCT host, proto, local_addr, local_port, remote_addr, remote_port, false, NULL
    FROM connection_rollups
    WHERE rolled_to > rolled_from AND direction = 'internal'
      AND connection_id NOT IN (SELECT connection_id FROM connection_lifetimes WHERE rolled_to > rolled_from)),
-- connection_events leaves out the accepting end of an internal connection whose opener is a
-- lifetime: so is the accepting end here, when its opener is kept anywhere. And the opening end
-- whose accepting end is still a lifetime is left out here, as connection_events counts that one.
counted_elsewhere AS (
    SELECT DISTINCT c.connection_id
    FROM a c JOIN other_ends o
      ON o.host = c.host AND o.proto = c.proto
     AND o.local_addr = c.remote_addr AND o.local_port = c.remote_port
     AND o.remote_addr = c.local_addr AND o.remote_port = c.local_port
    WHERE c.direction = 'internal' AND (c.accepted OR (o.has_lifetime AND o.accepted)))
SELECT host, connection_id, proto, local_addr, local_port, remote_addr, remote_port, direction,
       process_name, first_seen, last_seen, accepted
FROM a
WHERE connection_id NOT IN (SELECT connection_id FROM counted_elsewhere);
COMMENT ON MACRO TABLE connections_without_lifetime_rolled IS 'Connections seen in the buckets starting in [rolled_from, rolled_to) of connection_rollups whose lifetime retention deleted (listeners left out, a connection between two local processes once, as connection_events counts them): with connection_events over a range, every connection of it.';
