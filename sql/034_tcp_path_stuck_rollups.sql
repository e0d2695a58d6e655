-- netlens migration 34: rollups for the dashboard's TCP paths and stuck-connections panels, so
-- over a range of days they read a row per closed connection or per hour instead of every
-- transition and socket row of the history (issue 18: every view within a second at 50 million
-- socket rows).
--
-- `retain` fills both tables with the other rollups (migration 8), one bucket at a time.
-- Buckets rolled up before this migration are filled here from their raw rows; a bucket whose
-- raw rows were already deleted has none left to count, as the raw read has none.
--
-- tcp_path_rollups: a TCP connection's whole path once it is gone. A connection's transitions
-- end with its disappearance (to_state NULL; a connection seen again gets a new id), so the row
-- written when the bucket of that last transition is rolled up never changes.
-- tcp_stuck_rollups: per hour, the sightings of each connection in SYN_SENT or CLOSE_WAIT.

CREATE TABLE tcp_path_rollups (
    host           VARCHAR NOT NULL,
    bucket_start   TIMESTAMP NOT NULL,
    bucket_s       INTEGER NOT NULL,
    connection_id  BIGINT NOT NULL,
    transitions    BIGINT NOT NULL,
    path           VARCHAR NOT NULL,
    first_state    VARCHAR,
    last_state     VARCHAR,
    first_ts       TIMESTAMP NOT NULL,
    last_ts        TIMESTAMP NOT NULL
);
COMMENT ON TABLE tcp_path_rollups IS 'One row per TCP connection that disappeared in the bucket: its tcp_connection_transitions row (every transition of the connection, from its first sighting to its disappearance).';
COMMENT ON COLUMN tcp_path_rollups.host IS 'Host (snapshots.host) of the snapshot it disappeared in.';
COMMENT ON COLUMN tcp_path_rollups.bucket_start IS 'Start of the bucket it disappeared in, UTC (rollup_buckets).';
COMMENT ON COLUMN tcp_path_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN tcp_path_rollups.connection_id IS 'The connection.';
COMMENT ON COLUMN tcp_path_rollups.transitions IS 'State changes observed between two sightings (tcp_connection_transitions.transitions).';
COMMENT ON COLUMN tcp_path_rollups.path IS 'States in observed order joined by '' > '', ending in gone.';
COMMENT ON COLUMN tcp_path_rollups.first_state IS 'State at the first sighting.';
COMMENT ON COLUMN tcp_path_rollups.last_state IS 'Last state seen before it disappeared.';
COMMENT ON COLUMN tcp_path_rollups.first_ts IS 'Time of its first recorded transition.';
COMMENT ON COLUMN tcp_path_rollups.last_ts IS 'Time of its last (its disappearance).';

INSERT INTO tcp_path_rollups
WITH gone AS (
    SELECT b.host, b.bucket_start, b.bucket_s, t.connection_id
    FROM rollup_buckets b
    JOIN snapshots n ON n.host = b.host AND n.ts >= b.bucket_start AND n.ts < b.bucket_start + to_seconds(b.bucket_s)
    JOIN tcp_transitions t ON t.snapshot_id = n.snapshot_id
    WHERE t.to_state IS NULL)
SELECT g.host, g.bucket_start, g.bucket_s, t.connection_id,
       count(*) FILTER (WHERE t.from_state IS NOT NULL AND t.to_state IS NOT NULL),
       string_agg(coalesce(t.to_state, 'gone'), ' > ' ORDER BY t.snapshot_id),
       arg_min(t.to_state, t.snapshot_id), arg_max(coalesce(t.to_state, t.from_state), t.snapshot_id),
       min(t.ts), max(t.ts)
FROM tcp_transitions t JOIN gone g USING (connection_id)
GROUP BY g.host, g.bucket_start, g.bucket_s, t.connection_id;

CREATE TABLE tcp_stuck_rollups (
    host           VARCHAR NOT NULL,
    bucket_start   TIMESTAMP NOT NULL,
    bucket_s       INTEGER NOT NULL,
    connection_id  BIGINT NOT NULL,
    state          VARCHAR NOT NULL,
    sightings      BIGINT NOT NULL,
    first_ts       TIMESTAMP NOT NULL,
    last_ts        TIMESTAMP NOT NULL,
    process_name   VARCHAR,
    pid            INTEGER,
    remote_addr    VARCHAR,
    remote_port    INTEGER
);
COMMENT ON TABLE tcp_stuck_rollups IS 'One row per host, bucket, TCP connection and state (SYN_SENT or CLOSE_WAIT) seen in the bucket''s snapshots: the sightings tcp_stuck_connections counts, summed per bucket.';
COMMENT ON COLUMN tcp_stuck_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN tcp_stuck_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN tcp_stuck_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN tcp_stuck_rollups.connection_id IS 'The connection (sockets.connection_id).';
COMMENT ON COLUMN tcp_stuck_rollups.state IS 'SYN_SENT or CLOSE_WAIT.';
COMMENT ON COLUMN tcp_stuck_rollups.sightings IS 'Snapshots of the bucket that saw the connection in that state.';
COMMENT ON COLUMN tcp_stuck_rollups.first_ts IS 'First of those snapshots.';
COMMENT ON COLUMN tcp_stuck_rollups.last_ts IS 'Last of those snapshots.';
COMMENT ON COLUMN tcp_stuck_rollups.process_name IS 'Owning process at the first such sighting that names one.';
COMMENT ON COLUMN tcp_stuck_rollups.pid IS 'Owning process id, likewise.';
COMMENT ON COLUMN tcp_stuck_rollups.remote_addr IS 'Remote address, likewise.';
COMMENT ON COLUMN tcp_stuck_rollups.remote_port IS 'Remote port, likewise.';

INSERT INTO tcp_stuck_rollups
SELECT b.host, b.bucket_start, b.bucket_s, s.connection_id, s.state, count(*), min(s.ts), max(s.ts),
       arg_min(s.process_name, s.ts), arg_min(s.pid, s.ts), arg_min(s.remote_addr, s.ts), arg_min(s.remote_port, s.ts)
FROM rollup_buckets b
JOIN snapshots n ON n.host = b.host AND n.ts >= b.bucket_start AND n.ts < b.bucket_start + to_seconds(b.bucket_s)
JOIN sockets s ON s.snapshot_id = n.snapshot_id
WHERE s.proto = 'tcp' AND s.state IN ('SYN_SENT', 'CLOSE_WAIT')
GROUP BY b.host, b.bucket_start, b.bucket_s, s.connection_id, s.state;

-- tcp_connection_transitions_overlapping(range_from, range_to) with the connections gone in a
-- bucket that starts before rolled_to read from tcp_path_rollups (their rows are the raw ones:
-- nothing is added to a connection after it is gone), and the others (gone later, or not yet)
-- aggregated from their transitions. rolled_from = rolled_to reads the raw macro alone.
CREATE MACRO tcp_connection_transitions_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT * FROM tcp_connection_transitions_overlapping(range_from, range_to)
WHERE rolled_to <= rolled_from
UNION ALL
SELECT * FROM (
    WITH rolled AS (
        SELECT connection_id, transitions, path, first_state, last_state, first_ts, last_ts
        FROM tcp_path_rollups WHERE bucket_start < rolled_to),
    rest AS (
        SELECT connection_id FROM lifetimes_overlapping(range_from, range_to)
        WHERE connection_id NOT IN (SELECT connection_id FROM rolled))
    SELECT * FROM rolled
    UNION ALL
    SELECT connection_id,
           count(*) FILTER (WHERE from_state IS NOT NULL AND to_state IS NOT NULL) AS transitions,
           string_agg(coalesce(to_state, 'gone'), ' > ' ORDER BY snapshot_id) AS path,
           arg_min(to_state, snapshot_id) AS first_state,
           arg_max(coalesce(to_state, from_state), snapshot_id) AS last_state,
           min(ts) AS first_ts, max(ts) AS last_ts
    FROM tcp_transitions
    WHERE connection_id IN (SELECT connection_id FROM rest)
    GROUP BY connection_id)
WHERE rolled_to > rolled_from AND first_ts <= range_to AND last_ts >= range_from;

-- tcp_stuck_connections_overlapping(range_from, range_to) with every sighting in a bucket that
-- starts before rolled_to read from tcp_stuck_rollups, and the sightings from rolled_to on from
-- the raw rows. A connection stuck across hours sums its sightings over them, so its count, first
-- and last sighting are the raw ones; its process, pid and remote end are those of its first
-- sighting that names them. rolled_from = rolled_to (the dashboard's "nothing rolled") reads the
-- raw macro alone. Every bucket before rolled_to is rolled up (a host's buckets are rolled in
-- order from its first snapshot), so no sighting is read twice or missed.
CREATE MACRO tcp_stuck_connections_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT * FROM tcp_stuck_connections_overlapping(range_from, range_to)
WHERE rolled_to <= rolled_from
UNION ALL
SELECT * FROM (
    -- The range's TCP connections, and every connection of the rolled buckets: retention
    -- deletes a closed lifetime with its raw rows, and its rolled sightings still count.
    WITH candidates AS (
        SELECT connection_id FROM lifetimes_overlapping(range_from, range_to) WHERE proto = 'tcp'
        UNION
        SELECT connection_id FROM tcp_stuck_rollups WHERE bucket_start < rolled_to),
    sightings AS (
        SELECT connection_id, state, sightings, first_ts, last_ts, process_name, pid, remote_addr, remote_port
        FROM tcp_stuck_rollups WHERE bucket_start < rolled_to
        UNION ALL
        SELECT connection_id, state, count(*), min(ts), max(ts),
               arg_min(process_name, ts), arg_min(pid, ts), arg_min(remote_addr, ts), arg_min(remote_port, ts)
        FROM sockets
        WHERE ts >= rolled_to AND proto = 'tcp' AND state IN ('SYN_SENT', 'CLOSE_WAIT')
        GROUP BY connection_id, state)
    SELECT connection_id, arg_min(process_name, first_ts) AS process_name, arg_min(pid, first_ts) AS pid,
           arg_min(remote_addr, first_ts) AS remote_addr, arg_min(remote_port, first_ts) AS remote_port, state,
           sum(sightings)::BIGINT AS snapshots_in_state, min(first_ts) AS since, max(last_ts) AS until,
           epoch(max(last_ts)) - epoch(min(first_ts)) AS stuck_s
    FROM sightings
    WHERE connection_id IN (SELECT connection_id FROM candidates)
    GROUP BY connection_id, state
    HAVING sum(sightings) > 1)
WHERE rolled_to > rolled_from AND since <= range_to AND until >= range_from;

COMMENT ON MACRO TABLE tcp_connection_transitions_rolled IS 'tcp_connection_transitions rows that overlap [range_from, range_to], the connections gone in buckets before rolled_to taken from tcp_path_rollups; rolled_from = rolled_to reads raw rows only.';
COMMENT ON MACRO TABLE tcp_stuck_connections_rolled IS 'tcp_stuck_connections rows that overlap [range_from, range_to], with the sightings in buckets before rolled_to taken from tcp_stuck_rollups and the later ones from sockets; rolled_from = rolled_to reads raw rows only.';
