-- netlens migration 30: hourly rollups of TCP state counts, so the dashboard's TCP state panels
-- over a range of days read one row per hour and state instead of every socket row (issue 18:
-- every view within a second at 50 million socket rows).
--
-- `retain` fills tcp_state_rollups with the other rollups (migration 8), one bucket at a time.
-- Buckets rolled up before this migration are filled here from their raw rows; a bucket whose
-- raw rows were already deleted has none left to count, as the raw read has none.
-- tcp_state_buckets lists the buckets whose states are counted and how many snapshots were, so
-- a mean per snapshot divides by exactly the snapshots its numerator saw: a bucket whose raw
-- rows were deleted before this migration (or a retention run stopped halfway through one)
-- counts in neither, where rollup_buckets.snapshots would count every snapshot it ever had.

CREATE TABLE tcp_state_rollups (
    host          VARCHAR NOT NULL,
    bucket_start  TIMESTAMP NOT NULL,
    bucket_s      INTEGER NOT NULL,
    state         VARCHAR,
    sockets       BIGINT NOT NULL,
    snapshots     INTEGER NOT NULL
);
COMMENT ON TABLE tcp_state_rollups IS 'One row per host, bucket and TCP state seen in it: how many TCP socket rows of the bucket''s snapshots were in that state, and in how many of those snapshots (tcp_state_counts summed over the bucket).';
COMMENT ON COLUMN tcp_state_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN tcp_state_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN tcp_state_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN tcp_state_rollups.state IS 'TCP state (sockets.state).';
COMMENT ON COLUMN tcp_state_rollups.sockets IS 'TCP socket rows in that state over the bucket''s snapshots (the sum of tcp_state_counts.sockets).';
COMMENT ON COLUMN tcp_state_rollups.snapshots IS 'Snapshots of the bucket with at least one TCP socket in that state (the tcp_state_counts rows summed), so sockets / snapshots is the mean per such snapshot.';

INSERT INTO tcp_state_rollups
SELECT b.host, b.bucket_start, b.bucket_s, s.state, count(*), count(DISTINCT s.snapshot_id)
FROM rollup_buckets b
JOIN snapshots n ON n.host = b.host AND n.ts >= b.bucket_start AND n.ts < b.bucket_start + to_seconds(b.bucket_s)
JOIN sockets s ON s.snapshot_id = n.snapshot_id
WHERE s.proto = 'tcp'
GROUP BY b.host, b.bucket_start, b.bucket_s, s.state;

CREATE TABLE tcp_state_buckets (
    host          VARCHAR NOT NULL,
    bucket_start  TIMESTAMP NOT NULL,
    bucket_s      INTEGER NOT NULL,
    snapshots     INTEGER NOT NULL
);
COMMENT ON TABLE tcp_state_buckets IS 'One row per host and bucket whose TCP states tcp_state_rollups counts (a bucket with no TCP socket at all included): the denominator of a mean per snapshot over rolled hours. Buckets rolled up before migration 30 whose raw rows were gone by then have no row.';
COMMENT ON COLUMN tcp_state_buckets.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN tcp_state_buckets.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN tcp_state_buckets.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN tcp_state_buckets.snapshots IS 'Snapshots of the bucket whose sockets tcp_state_rollups counts.';

INSERT INTO tcp_state_buckets
SELECT b.host, b.bucket_start, b.bucket_s, count(*)
FROM rollup_buckets b
JOIN snapshots n ON n.host = b.host AND n.ts >= b.bucket_start AND n.ts < b.bucket_start + to_seconds(b.bucket_s)
GROUP BY b.host, b.bucket_start, b.bucket_s;

-- tcp_state_counts over [range_from, range_to] with the buckets starting in [rolled_from,
-- rolled_to) read from tcp_state_rollups: raw rows are one per snapshot and state (snapshots: 1),
-- rolled ones one per host, bucket and state at the bucket's start, so sum(sockets) /
-- sum(snapshots) is the mean over the snapshots that had the state, as avg(sockets) of the raw
-- rows is, and sum(sockets) over the range equals the raw sum.
CREATE MACRO tcp_state_counts_rolled(range_from, rolled_from, rolled_to, range_to) AS TABLE
SELECT ts, host, state, sockets, 1 AS snapshots
FROM tcp_state_counts_between(range_from, least(rolled_from - INTERVAL 1 MICROSECOND, range_to))
UNION ALL
SELECT bucket_start, host, state, sockets, snapshots
FROM tcp_state_rollups
WHERE bucket_start >= rolled_from AND bucket_start < rolled_to
UNION ALL
SELECT ts, host, state, sockets, 1
FROM tcp_state_counts_between(greatest(rolled_to, range_from), range_to);

-- Snapshots in [range_from, range_to], those of the buckets starting in [rolled_from, rolled_to)
-- counted from tcp_state_buckets: the denominator of a mean per snapshot over a rolled range.
CREATE MACRO snapshot_count_rolled(range_from, rolled_from, rolled_to, range_to) AS (
    (SELECT count(*) FROM snapshots
     WHERE ts BETWEEN range_from AND least(rolled_from - INTERVAL 1 MICROSECOND, range_to)
        OR ts BETWEEN greatest(rolled_to, range_from) AND range_to)
    + (SELECT coalesce(sum(snapshots), 0) FROM tcp_state_buckets
       WHERE bucket_start >= rolled_from AND bucket_start < rolled_to));

COMMENT ON MACRO TABLE tcp_state_counts_rolled IS 'TCP sockets per state (ts, host, state, sockets, snapshots) over [range_from, range_to]: tcp_state_counts rows (snapshots 1), with the buckets starting in [rolled_from, rolled_to) taken from tcp_state_rollups; rolled_from = rolled_to reads raw rows only.';
COMMENT ON MACRO snapshot_count_rolled IS 'Snapshots in [range_from, range_to], those of the buckets starting in [rolled_from, rolled_to) counted from tcp_state_buckets (the snapshots whose TCP states tcp_state_rollups counts).';
