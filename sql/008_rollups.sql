-- netlens migration 8: rollups, so a server can keep months of history in bounded space.
-- `retain` (and `serve --retain`) rolls each complete time bucket of raw rows up into these
-- tables before it deletes the raw rows older than the raw window; rollups are kept longer.

CREATE TABLE rollup_buckets (
    host          VARCHAR NOT NULL,
    bucket_start  TIMESTAMP NOT NULL,
    bucket_s      INTEGER NOT NULL,
    snapshots     INTEGER NOT NULL,
    first_ts      TIMESTAMP NOT NULL,
    last_ts       TIMESTAMP NOT NULL,
    rolled_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (host, bucket_start)
);
COMMENT ON TABLE rollup_buckets IS 'Time buckets of a host whose raw rows are rolled up into the *_rollups tables (once each); raw rows of a bucket are deleted only after it is listed here.';
COMMENT ON COLUMN rollup_buckets.host IS 'Host the snapshots were taken on (snapshots.host).';
COMMENT ON COLUMN rollup_buckets.bucket_start IS 'Start of the bucket, UTC (time_bucket of snapshots.ts, aligned to the epoch).';
COMMENT ON COLUMN rollup_buckets.bucket_s IS 'Width of the bucket in seconds (3600 unless retain was given another --bucket).';
COMMENT ON COLUMN rollup_buckets.snapshots IS 'Snapshots of the host in the bucket.';
COMMENT ON COLUMN rollup_buckets.first_ts IS 'Time of the first snapshot in the bucket, UTC.';
COMMENT ON COLUMN rollup_buckets.last_ts IS 'Time of the last snapshot in the bucket, UTC.';
COMMENT ON COLUMN rollup_buckets.rolled_at IS 'When the bucket was rolled up, UTC.';

CREATE TABLE connection_rollups (
    host            VARCHAR NOT NULL,
    bucket_start    TIMESTAMP NOT NULL,
    bucket_s        INTEGER NOT NULL,
    connection_id   BIGINT NOT NULL,
    proto           VARCHAR NOT NULL,
    local_addr      VARCHAR NOT NULL,
    local_port      INTEGER NOT NULL,
    remote_addr     VARCHAR,
    remote_port     INTEGER,
    direction       VARCHAR,
    remote_scope    VARCHAR,
    pid             INTEGER,
    process_name    VARCHAR,
    snapshots       INTEGER NOT NULL,
    first_seen      TIMESTAMP NOT NULL,
    last_seen       TIMESTAMP NOT NULL,
    last_state      VARCHAR,
    bytes_sent      BIGINT,
    bytes_received  BIGINT,
    bytes_sent_total      BIGINT,
    bytes_received_total  BIGINT,
    total_retrans   BIGINT,
    rtt_us_avg      DOUBLE
);
COMMENT ON TABLE connection_rollups IS 'One row per connection (socket lifetime) and bucket it was seen in: its identity, how often and when it was seen, and its traffic in the bucket.';
COMMENT ON COLUMN connection_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN connection_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN connection_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN connection_rollups.connection_id IS 'The socket lifetime (connection_lifetimes.connection_id, sockets.connection_id).';
COMMENT ON COLUMN connection_rollups.proto IS 'tcp or udp.';
COMMENT ON COLUMN connection_rollups.local_addr IS 'Local address.';
COMMENT ON COLUMN connection_rollups.local_port IS 'Local port.';
COMMENT ON COLUMN connection_rollups.remote_addr IS 'Remote address; NULL for listening and unconnected sockets.';
COMMENT ON COLUMN connection_rollups.remote_port IS 'Remote port; NULL for listening and unconnected sockets.';
COMMENT ON COLUMN connection_rollups.direction IS 'Direction in the bucket''s last snapshot (sockets.direction).';
COMMENT ON COLUMN connection_rollups.remote_scope IS 'Scope of the remote address (sockets.remote_scope).';
COMMENT ON COLUMN connection_rollups.pid IS 'Owning process in the bucket''s last snapshot; NULL when unknown.';
COMMENT ON COLUMN connection_rollups.process_name IS 'Name of the owning process in the bucket''s last snapshot; NULL when unknown.';
COMMENT ON COLUMN connection_rollups.snapshots IS 'Snapshots of the bucket the connection was in.';
COMMENT ON COLUMN connection_rollups.first_seen IS 'First snapshot time in the bucket, UTC.';
COMMENT ON COLUMN connection_rollups.last_seen IS 'Last snapshot time in the bucket, UTC.';
COMMENT ON COLUMN connection_rollups.last_state IS 'TCP state in the bucket''s last snapshot; NULL for UDP.';
COMMENT ON COLUMN connection_rollups.bytes_sent IS 'Bytes sent in the bucket: the kernel counter at its last snapshot minus the counter at the end of the connection''s previous bucket (or at its first snapshot in this bucket, when it has none); NULL without kernel counters.';
COMMENT ON COLUMN connection_rollups.bytes_received IS 'Bytes received in the bucket, as bytes_sent; NULL without kernel counters.';
COMMENT ON COLUMN connection_rollups.bytes_sent_total IS 'The kernel''s bytes_sent counter at the bucket''s last snapshot (since the socket opened).';
COMMENT ON COLUMN connection_rollups.bytes_received_total IS 'The kernel''s bytes_received counter at the bucket''s last snapshot (since the socket opened).';
COMMENT ON COLUMN connection_rollups.total_retrans IS 'Retransmitted segments counter at the bucket''s last snapshot (since the socket opened).';
COMMENT ON COLUMN connection_rollups.rtt_us_avg IS 'Mean smoothed round-trip time over the bucket''s snapshots, microseconds.';

CREATE TABLE process_rollups (
    host                VARCHAR NOT NULL,
    bucket_start        TIMESTAMP NOT NULL,
    bucket_s            INTEGER NOT NULL,
    pid                 INTEGER NOT NULL,
    name                VARCHAR NOT NULL,
    exe                 VARCHAR,
    user_name           VARCHAR,
    snapshots           INTEGER NOT NULL,
    cpu_percent_avg     DOUBLE,
    cpu_percent_max     DOUBLE,
    memory_rss_avg      DOUBLE,
    memory_rss_max      BIGINT,
    disk_read_bytes     BIGINT,
    disk_written_bytes  BIGINT,
    sockets_avg         DOUBLE
);
COMMENT ON TABLE process_rollups IS 'One row per process (pid and name) and bucket it ran in: CPU, memory, disk and sockets over the bucket.';
COMMENT ON COLUMN process_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN process_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN process_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN process_rollups.pid IS 'Process id.';
COMMENT ON COLUMN process_rollups.name IS 'Process name.';
COMMENT ON COLUMN process_rollups.exe IS 'Executable path in the bucket''s last snapshot; NULL when unreadable.';
COMMENT ON COLUMN process_rollups.user_name IS 'User in the bucket''s last snapshot; NULL when unknown.';
COMMENT ON COLUMN process_rollups.snapshots IS 'Snapshots of the bucket the process was in.';
COMMENT ON COLUMN process_rollups.cpu_percent_avg IS 'Mean CPU % (of one core) over its snapshots in the bucket.';
COMMENT ON COLUMN process_rollups.cpu_percent_max IS 'Highest CPU % in the bucket.';
COMMENT ON COLUMN process_rollups.memory_rss_avg IS 'Mean resident memory, bytes.';
COMMENT ON COLUMN process_rollups.memory_rss_max IS 'Highest resident memory, bytes.';
COMMENT ON COLUMN process_rollups.disk_read_bytes IS 'Increase of the read counter over the bucket (last minus first snapshot); NULL when unreadable.';
COMMENT ON COLUMN process_rollups.disk_written_bytes IS 'Increase of the written counter over the bucket (last minus first snapshot); NULL when unreadable.';
COMMENT ON COLUMN process_rollups.sockets_avg IS 'Mean number of sockets the process owned per snapshot of the bucket it was in.';

CREATE TABLE interface_rollups (
    host          VARCHAR NOT NULL,
    bucket_start  TIMESTAMP NOT NULL,
    bucket_s      INTEGER NOT NULL,
    name          VARCHAR NOT NULL,
    snapshots     INTEGER NOT NULL,
    rx_bytes      BIGINT,
    tx_bytes      BIGINT,
    rx_packets    BIGINT,
    tx_packets    BIGINT,
    rx_errors     BIGINT,
    tx_errors     BIGINT
);
COMMENT ON TABLE interface_rollups IS 'One row per interface and bucket: its traffic in the bucket (sums of the per-snapshot deltas).';
COMMENT ON COLUMN interface_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN interface_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN interface_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN interface_rollups.name IS 'Interface name.';
COMMENT ON COLUMN interface_rollups.snapshots IS 'Snapshots of the bucket the interface was in.';
COMMENT ON COLUMN interface_rollups.rx_bytes IS 'Bytes received in the bucket (sum of interfaces.rx_bytes_delta).';
COMMENT ON COLUMN interface_rollups.tx_bytes IS 'Bytes sent in the bucket (sum of interfaces.tx_bytes_delta).';
COMMENT ON COLUMN interface_rollups.rx_packets IS 'Packets received in the bucket.';
COMMENT ON COLUMN interface_rollups.tx_packets IS 'Packets sent in the bucket.';
COMMENT ON COLUMN interface_rollups.rx_errors IS 'Receive errors in the bucket.';
COMMENT ON COLUMN interface_rollups.tx_errors IS 'Send errors in the bucket.';

CREATE TABLE peer_rollups (
    host            VARCHAR NOT NULL,
    bucket_start    TIMESTAMP NOT NULL,
    bucket_s        INTEGER NOT NULL,
    remote_addr     VARCHAR NOT NULL,
    remote_scope    VARCHAR,
    connections     INTEGER NOT NULL,
    remote_ports    INTEGER NOT NULL,
    processes       VARCHAR,
    bytes_sent      BIGINT,
    bytes_received  BIGINT
);
COMMENT ON TABLE peer_rollups IS 'One row per remote address and bucket: how many connections the host had with it, on how many ports, from which processes, and the traffic (sums over connection_rollups).';
COMMENT ON COLUMN peer_rollups.host IS 'Host (snapshots.host).';
COMMENT ON COLUMN peer_rollups.bucket_start IS 'Start of the bucket, UTC (rollup_buckets).';
COMMENT ON COLUMN peer_rollups.bucket_s IS 'Width of the bucket in seconds.';
COMMENT ON COLUMN peer_rollups.remote_addr IS 'Remote address.';
COMMENT ON COLUMN peer_rollups.remote_scope IS 'Scope of the remote address (sockets.remote_scope).';
COMMENT ON COLUMN peer_rollups.connections IS 'Connections with the peer seen in the bucket.';
COMMENT ON COLUMN peer_rollups.remote_ports IS 'Distinct remote ports of those connections.';
COMMENT ON COLUMN peer_rollups.processes IS 'Names of the processes that owned them, comma-separated, sorted.';
COMMENT ON COLUMN peer_rollups.bytes_sent IS 'Bytes sent to the peer in the bucket (sum of connection_rollups.bytes_sent); NULL without kernel counters.';
COMMENT ON COLUMN peer_rollups.bytes_received IS 'Bytes received from the peer in the bucket; NULL without kernel counters.';

CREATE TABLE retention_runs (
    run_id             BIGINT PRIMARY KEY,
    started_at         TIMESTAMP NOT NULL,
    finished_at        TIMESTAMP NOT NULL,
    raw_cutoff         TIMESTAMP,
    rollup_cutoff      TIMESTAMP,
    buckets_rolled     INTEGER NOT NULL,
    snapshots_deleted  BIGINT NOT NULL,
    rows_deleted       BIGINT NOT NULL,
    rollups_deleted    BIGINT NOT NULL
);
COMMENT ON TABLE retention_runs IS 'Each retain run (by hand or serve --retain) that changed something: what it rolled up and deleted.';
COMMENT ON COLUMN retention_runs.run_id IS 'Run number, increasing.';
COMMENT ON COLUMN retention_runs.started_at IS 'Start of the run, UTC.';
COMMENT ON COLUMN retention_runs.finished_at IS 'End of the run, UTC.';
COMMENT ON COLUMN retention_runs.raw_cutoff IS 'Raw rows older than this were deleted (their buckets rolled up first); NULL when raw rows were kept.';
COMMENT ON COLUMN retention_runs.rollup_cutoff IS 'Rollup rows of buckets older than this were deleted; NULL when rollups were kept.';
COMMENT ON COLUMN retention_runs.buckets_rolled IS 'Buckets rolled up by the run.';
COMMENT ON COLUMN retention_runs.snapshots_deleted IS 'Snapshots deleted (with their sockets, processes, interfaces and TCP transitions).';
COMMENT ON COLUMN retention_runs.rows_deleted IS 'Rows deleted from snapshots, sockets, processes, interfaces, tcp_transitions and connection_lifetimes together.';
COMMENT ON COLUMN retention_runs.rollups_deleted IS 'Rows deleted from the rollup tables and rollup_buckets together.';
