-- netlens core schema: raw capture tables (append-only) and the tables capture maintains.
-- Applied once as migration 1; later migrations live in sql/NNN_*.sql.

CREATE TABLE snapshots (
    snapshot_id     BIGINT PRIMARY KEY,
    ts              TIMESTAMP NOT NULL,
    host            VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    collect_ms      DOUBLE,
    socket_count    INTEGER NOT NULL,
    process_count   INTEGER NOT NULL,
    interface_count INTEGER NOT NULL,
    notes           VARCHAR
);
COMMENT ON TABLE snapshots IS 'One row per capture snapshot: when, on which host, from which source, and how long collection took. Every raw row carries its snapshot_id.';
COMMENT ON COLUMN snapshots.snapshot_id IS 'Snapshot number, increasing in capture order; key joined by sockets, processes, interfaces.';
COMMENT ON COLUMN snapshots.ts IS 'UTC time the snapshot was taken (every netlens timestamp is UTC).';
COMMENT ON COLUMN snapshots.host IS 'Host name of the machine the snapshot describes.';
COMMENT ON COLUMN snapshots.source IS 'Where the rows came from: live (this OS), fixture (a replayed recording) or demo (synthetic).';
COMMENT ON COLUMN snapshots.collect_ms IS 'Milliseconds spent reading the OS for this snapshot (before storage); NULL for replays.';
COMMENT ON COLUMN snapshots.socket_count IS 'Number of rows this snapshot added to sockets.';
COMMENT ON COLUMN snapshots.process_count IS 'Number of rows this snapshot added to processes.';
COMMENT ON COLUMN snapshots.interface_count IS 'Number of rows this snapshot added to interfaces.';
COMMENT ON COLUMN snapshots.notes IS 'Fields that were unavailable in this snapshot and why (missing privilege, old kernel, other OS); NULL when complete.';

CREATE TABLE sockets (
    snapshot_id        BIGINT NOT NULL,
    ts                 TIMESTAMP NOT NULL,
    connection_id      BIGINT NOT NULL,
    proto              VARCHAR NOT NULL,
    family             VARCHAR NOT NULL,
    local_addr         VARCHAR NOT NULL,
    local_port         INTEGER NOT NULL,
    remote_addr        VARCHAR,
    remote_port        INTEGER,
    state              VARCHAR,
    direction          VARCHAR NOT NULL,
    remote_scope       VARCHAR,
    pid                INTEGER,
    pids               INTEGER[],
    process_name       VARCHAR,
    uid                INTEGER,
    inode              BIGINT,
    recv_queue         BIGINT,
    send_queue         BIGINT,
    bytes_sent         BIGINT,
    bytes_acked        BIGINT,
    bytes_received     BIGINT,
    bytes_retrans      BIGINT,
    segs_out           BIGINT,
    segs_in            BIGINT,
    data_segs_out      BIGINT,
    data_segs_in       BIGINT,
    rtt_us             INTEGER,
    rttvar_us          INTEGER,
    min_rtt_us         INTEGER,
    retransmits        INTEGER,
    total_retrans      BIGINT,
    lost               INTEGER,
    unacked            INTEGER,
    snd_cwnd           INTEGER,
    delivery_rate_bps  BIGINT,
    last_data_sent_ms  BIGINT,
    last_data_recv_ms  BIGINT
);
COMMENT ON TABLE sockets IS 'Every TCP and UDP socket (IPv4 and IPv6) seen in each snapshot, with its owning process and, for TCP on Linux, the kernel''s own per-socket counters (sock_diag INET_DIAG_INFO). Counters are cumulative over the socket''s life. NULL means the value was unavailable, never zero-filled.';
COMMENT ON COLUMN sockets.snapshot_id IS 'Snapshot this row belongs to (snapshots.snapshot_id).';
COMMENT ON COLUMN sockets.ts IS 'UTC time of the snapshot.';
COMMENT ON COLUMN sockets.connection_id IS 'Lifetime this socket belongs to (connections.connection_id): the same socket across snapshots shares one id.';
COMMENT ON COLUMN sockets.proto IS 'Transport protocol: tcp or udp.';
COMMENT ON COLUMN sockets.family IS 'Address family: ipv4 or ipv6.';
COMMENT ON COLUMN sockets.local_addr IS 'Local IP address (text form; 0.0.0.0 or :: when bound to all addresses).';
COMMENT ON COLUMN sockets.local_port IS 'Local port.';
COMMENT ON COLUMN sockets.remote_addr IS 'Remote IP address; NULL when the socket has no peer (listening TCP, unconnected UDP).';
COMMENT ON COLUMN sockets.remote_port IS 'Remote port; NULL when the socket has no peer.';
COMMENT ON COLUMN sockets.state IS 'TCP state as the kernel names it (ESTABLISHED, LISTEN, SYN_SENT, TIME_WAIT, CLOSE_WAIT, ...); for UDP: UNCONN (no peer) or CONNECTED.';
COMMENT ON COLUMN sockets.direction IS 'listen (TCP LISTEN or unconnected UDP), internal (both ends loopback, or both ends private/link-local), inbound (local port is one this host listens on), outbound (anything else). Rules applied in that order.';
COMMENT ON COLUMN sockets.remote_scope IS 'Kind of the remote address: loopback, private (RFC 1918 / ULA), link_local, cgnat, multicast, documentation, unspecified, reserved or public; NULL without a peer.';
COMMENT ON COLUMN sockets.pid IS 'Owning process id (the lowest when several processes share the socket); NULL when it could not be read (another user''s process without root).';
COMMENT ON COLUMN sockets.pids IS 'Every process holding the socket open (shared after fork); NULL when unknown.';
COMMENT ON COLUMN sockets.process_name IS 'Name of the process in pid, from the same snapshot''s process table.';
COMMENT ON COLUMN sockets.uid IS 'User id owning the socket, from the kernel.';
COMMENT ON COLUMN sockets.inode IS 'Kernel socket inode; distinguishes two lifetimes of the same address pair.';
COMMENT ON COLUMN sockets.recv_queue IS 'Bytes received but not yet read by the process (LISTEN: current accept backlog).';
COMMENT ON COLUMN sockets.send_queue IS 'Bytes sent but not yet acknowledged by the peer (LISTEN: maximum backlog).';
COMMENT ON COLUMN sockets.bytes_sent IS 'TCP payload bytes sent, retransmissions included (tcpi_bytes_sent, Linux 4.19+).';
COMMENT ON COLUMN sockets.bytes_acked IS 'TCP payload bytes acknowledged by the peer (tcpi_bytes_acked).';
COMMENT ON COLUMN sockets.bytes_received IS 'TCP payload bytes received in order (tcpi_bytes_received).';
COMMENT ON COLUMN sockets.bytes_retrans IS 'TCP payload bytes retransmitted (tcpi_bytes_retrans, Linux 4.19+).';
COMMENT ON COLUMN sockets.segs_out IS 'TCP segments sent, retransmissions and pure ACKs included (tcpi_segs_out).';
COMMENT ON COLUMN sockets.segs_in IS 'TCP segments received (tcpi_segs_in).';
COMMENT ON COLUMN sockets.data_segs_out IS 'TCP segments sent that carried data (tcpi_data_segs_out).';
COMMENT ON COLUMN sockets.data_segs_in IS 'TCP segments received that carried data (tcpi_data_segs_in).';
COMMENT ON COLUMN sockets.rtt_us IS 'Smoothed round-trip time in microseconds (tcpi_rtt).';
COMMENT ON COLUMN sockets.rttvar_us IS 'Round-trip time variation in microseconds (tcpi_rttvar).';
COMMENT ON COLUMN sockets.min_rtt_us IS 'Minimum round-trip time seen, microseconds (tcpi_min_rtt).';
COMMENT ON COLUMN sockets.retransmits IS 'Consecutive retransmission timeouts right now (tcpi_retransmits).';
COMMENT ON COLUMN sockets.total_retrans IS 'Segments retransmitted over the socket''s life (tcpi_total_retrans).';
COMMENT ON COLUMN sockets.lost IS 'Segments currently presumed lost (tcpi_lost).';
COMMENT ON COLUMN sockets.unacked IS 'Segments sent and not yet acknowledged (tcpi_unacked).';
COMMENT ON COLUMN sockets.snd_cwnd IS 'Congestion window in segments (tcpi_snd_cwnd).';
COMMENT ON COLUMN sockets.delivery_rate_bps IS 'Most recent delivery rate estimate in bytes per second (tcpi_delivery_rate).';
COMMENT ON COLUMN sockets.last_data_sent_ms IS 'Milliseconds since data was last sent (tcpi_last_data_sent).';
COMMENT ON COLUMN sockets.last_data_recv_ms IS 'Milliseconds since data was last received (tcpi_last_data_recv).';

CREATE TABLE processes (
    snapshot_id           BIGINT NOT NULL,
    ts                    TIMESTAMP NOT NULL,
    pid                   INTEGER NOT NULL,
    ppid                  INTEGER,
    name                  VARCHAR NOT NULL,
    exe                   VARCHAR,
    cmdline               VARCHAR,
    user_name             VARCHAR,
    uid                   INTEGER,
    status                VARCHAR,
    cpu_percent           DOUBLE,
    memory_rss_bytes      BIGINT,
    memory_virtual_bytes  BIGINT,
    start_time            TIMESTAMP,
    disk_read_bytes       BIGINT,
    disk_written_bytes    BIGINT
);
COMMENT ON TABLE processes IS 'Every process seen in each snapshot (sysinfo), so sockets can be joined to what owns them and resource use followed over time.';
COMMENT ON COLUMN processes.snapshot_id IS 'Snapshot this row belongs to.';
COMMENT ON COLUMN processes.ts IS 'UTC time of the snapshot.';
COMMENT ON COLUMN processes.pid IS 'Process id.';
COMMENT ON COLUMN processes.ppid IS 'Parent process id; NULL for the root of the tree or when unknown.';
COMMENT ON COLUMN processes.name IS 'Process name (the kernel''s comm on Linux).';
COMMENT ON COLUMN processes.exe IS 'Path of the executable; NULL when unreadable (another user''s process without root, kernel threads).';
COMMENT ON COLUMN processes.cmdline IS 'Command line, arguments joined by single spaces; NULL when unreadable or empty.';
COMMENT ON COLUMN processes.user_name IS 'Name of the process''s user; NULL when the uid has no name on this host.';
COMMENT ON COLUMN processes.uid IS 'Real user id of the process.';
COMMENT ON COLUMN processes.status IS 'Scheduler status (Run, Sleep, Idle, Zombie, ...).';
COMMENT ON COLUMN processes.cpu_percent IS 'CPU use since the previous snapshot of the same capture run, in percent of one core (can exceed 100). NULL in a run''s first snapshot: one sample cannot give a rate.';
COMMENT ON COLUMN processes.memory_rss_bytes IS 'Resident memory in bytes.';
COMMENT ON COLUMN processes.memory_virtual_bytes IS 'Virtual memory in bytes.';
COMMENT ON COLUMN processes.start_time IS 'UTC time the process started.';
COMMENT ON COLUMN processes.disk_read_bytes IS 'Bytes read from storage over the process''s life; NULL when unreadable.';
COMMENT ON COLUMN processes.disk_written_bytes IS 'Bytes written to storage over the process''s life; NULL when unreadable.';

CREATE TABLE interfaces (
    snapshot_id       BIGINT NOT NULL,
    ts                TIMESTAMP NOT NULL,
    name              VARCHAR NOT NULL,
    mac               VARCHAR,
    addresses         VARCHAR,
    rx_bytes          BIGINT,
    tx_bytes          BIGINT,
    rx_packets        BIGINT,
    tx_packets        BIGINT,
    rx_errors         BIGINT,
    tx_errors         BIGINT,
    interval_s        DOUBLE,
    rx_bytes_delta    BIGINT,
    tx_bytes_delta    BIGINT,
    rx_packets_delta  BIGINT,
    tx_packets_delta  BIGINT,
    rx_errors_delta   BIGINT,
    tx_errors_delta   BIGINT
);
COMMENT ON TABLE interfaces IS 'Per-interface traffic counters in each snapshot, with the change since the same interface''s previous snapshot on this host.';
COMMENT ON COLUMN interfaces.snapshot_id IS 'Snapshot this row belongs to.';
COMMENT ON COLUMN interfaces.ts IS 'UTC time of the snapshot.';
COMMENT ON COLUMN interfaces.name IS 'Interface name (eth0, lo, ...).';
COMMENT ON COLUMN interfaces.mac IS 'Hardware address; NULL when the interface has none.';
COMMENT ON COLUMN interfaces.addresses IS 'IP networks on the interface, comma separated, in address/prefix form.';
COMMENT ON COLUMN interfaces.rx_bytes IS 'Bytes received since the interface came up (cumulative counter).';
COMMENT ON COLUMN interfaces.tx_bytes IS 'Bytes transmitted since the interface came up.';
COMMENT ON COLUMN interfaces.rx_packets IS 'Packets received since the interface came up.';
COMMENT ON COLUMN interfaces.tx_packets IS 'Packets transmitted since the interface came up.';
COMMENT ON COLUMN interfaces.rx_errors IS 'Receive errors since the interface came up.';
COMMENT ON COLUMN interfaces.tx_errors IS 'Transmit errors since the interface came up.';
COMMENT ON COLUMN interfaces.interval_s IS 'Seconds since this interface''s previous row on this host; NULL for its first row.';
COMMENT ON COLUMN interfaces.rx_bytes_delta IS 'rx_bytes minus the previous row''s; NULL for the first row or after a counter reset (reboot, interface re-created).';
COMMENT ON COLUMN interfaces.tx_bytes_delta IS 'tx_bytes minus the previous row''s; NULL as for rx_bytes_delta.';
COMMENT ON COLUMN interfaces.rx_packets_delta IS 'rx_packets minus the previous row''s; NULL as for rx_bytes_delta.';
COMMENT ON COLUMN interfaces.tx_packets_delta IS 'tx_packets minus the previous row''s; NULL as for rx_bytes_delta.';
COMMENT ON COLUMN interfaces.rx_errors_delta IS 'rx_errors minus the previous row''s; NULL as for rx_bytes_delta.';
COMMENT ON COLUMN interfaces.tx_errors_delta IS 'tx_errors minus the previous row''s; NULL as for rx_bytes_delta.';

CREATE TABLE connection_lifetimes (
    connection_id     BIGINT NOT NULL,
    host              VARCHAR NOT NULL,
    proto             VARCHAR NOT NULL,
    family            VARCHAR NOT NULL,
    local_addr        VARCHAR NOT NULL,
    local_port        INTEGER NOT NULL,
    remote_addr       VARCHAR,
    remote_port       INTEGER,
    pid               INTEGER,
    inode             BIGINT,
    remote_scope      VARCHAR,
    first_seen        TIMESTAMP NOT NULL,
    first_snapshot_id BIGINT NOT NULL,
    first_state       VARCHAR,
    closed_at         TIMESTAMP,
    last_seen         TIMESTAMP,
    last_snapshot_id  BIGINT,
    last_state        VARCHAR,
    direction         VARCHAR,
    process_name      VARCHAR,
    bytes_sent        BIGINT,
    bytes_acked       BIGINT,
    bytes_received    BIGINT,
    segs_out          BIGINT,
    segs_in           BIGINT,
    total_retrans     BIGINT,
    rtt_us            INTEGER
);
COMMENT ON TABLE connection_lifetimes IS 'Storage behind the connections view: one row per socket lifetime, written when it opens and completed when it closes. While a lifetime is open its latest values live in that snapshot''s sockets row, so no row is rewritten per snapshot. Query connections instead.';
COMMENT ON COLUMN connection_lifetimes.connection_id IS 'Identifier of the lifetime (sockets.connection_id).';
COMMENT ON COLUMN connection_lifetimes.host IS 'Host the lifetime was seen on.';
COMMENT ON COLUMN connection_lifetimes.proto IS 'tcp or udp.';
COMMENT ON COLUMN connection_lifetimes.family IS 'ipv4 or ipv6.';
COMMENT ON COLUMN connection_lifetimes.local_addr IS 'Local IP address.';
COMMENT ON COLUMN connection_lifetimes.local_port IS 'Local port.';
COMMENT ON COLUMN connection_lifetimes.remote_addr IS 'Remote IP address; NULL without a peer.';
COMMENT ON COLUMN connection_lifetimes.remote_port IS 'Remote port; NULL without a peer.';
COMMENT ON COLUMN connection_lifetimes.pid IS 'Owning process id when first seen (NULL when unreadable).';
COMMENT ON COLUMN connection_lifetimes.inode IS 'Kernel socket inode when first seen.';
COMMENT ON COLUMN connection_lifetimes.remote_scope IS 'Kind of the remote address.';
COMMENT ON COLUMN connection_lifetimes.first_seen IS 'Time of the first snapshot that saw it.';
COMMENT ON COLUMN connection_lifetimes.first_snapshot_id IS 'First snapshot that saw it.';
COMMENT ON COLUMN connection_lifetimes.first_state IS 'State when first seen.';
COMMENT ON COLUMN connection_lifetimes.closed_at IS 'Time of the first snapshot that no longer saw it; NULL while open.';
COMMENT ON COLUMN connection_lifetimes.last_seen IS 'Time of its last sighting; set at close (NULL while open).';
COMMENT ON COLUMN connection_lifetimes.last_snapshot_id IS 'Snapshot of its last sighting; set at close.';
COMMENT ON COLUMN connection_lifetimes.last_state IS 'State at its last sighting; set at close.';
COMMENT ON COLUMN connection_lifetimes.direction IS 'Direction at its last sighting; set at close.';
COMMENT ON COLUMN connection_lifetimes.process_name IS 'Owning process name at its last sighting; set at close.';
COMMENT ON COLUMN connection_lifetimes.bytes_sent IS 'Last known tcpi_bytes_sent: set at close, or when a sighting without counters (a TIME_WAIT remnant) continues the lifetime.';
COMMENT ON COLUMN connection_lifetimes.bytes_acked IS 'Last known tcpi_bytes_acked (as bytes_sent).';
COMMENT ON COLUMN connection_lifetimes.bytes_received IS 'Last known tcpi_bytes_received (as bytes_sent).';
COMMENT ON COLUMN connection_lifetimes.segs_out IS 'Last known tcpi_segs_out (as bytes_sent).';
COMMENT ON COLUMN connection_lifetimes.segs_in IS 'Last known tcpi_segs_in (as bytes_sent).';
COMMENT ON COLUMN connection_lifetimes.total_retrans IS 'Last known tcpi_total_retrans (as bytes_sent).';
COMMENT ON COLUMN connection_lifetimes.rtt_us IS 'Last known smoothed RTT in microseconds (as bytes_sent).';

-- An open lifetime is, by definition, seen in every snapshot of its host since it opened, so
-- its latest values are its row in the host's newest snapshot.
CREATE VIEW connections AS
WITH latest AS (SELECT host, max(snapshot_id) AS snapshot_id FROM snapshots GROUP BY host)
SELECT l.connection_id, l.host, l.proto, l.family, l.local_addr, l.local_port, l.remote_addr, l.remote_port,
       l.pid, coalesce(s.process_name, l.process_name) AS process_name, l.inode,
       coalesce(s.direction, l.direction) AS direction, l.remote_scope,
       l.first_seen, coalesce(s.ts, l.last_seen) AS last_seen,
       epoch(coalesce(s.ts, l.last_seen)) - epoch(l.first_seen) AS duration_s,
       l.first_snapshot_id, coalesce(s.snapshot_id, l.last_snapshot_id) AS last_snapshot_id,
       l.first_state, coalesce(s.state, l.last_state) AS last_state,
       l.closed_at IS NOT NULL AS closed, l.closed_at,
       coalesce(s.bytes_sent, l.bytes_sent) AS bytes_sent,
       coalesce(s.bytes_acked, l.bytes_acked) AS bytes_acked,
       coalesce(s.bytes_received, l.bytes_received) AS bytes_received,
       coalesce(s.segs_out, l.segs_out) AS segs_out,
       coalesce(s.segs_in, l.segs_in) AS segs_in,
       coalesce(s.total_retrans, l.total_retrans) AS total_retrans,
       coalesce(s.rtt_us, l.rtt_us) AS rtt_us
FROM connection_lifetimes l
LEFT JOIN latest ON l.closed_at IS NULL AND latest.host = l.host
LEFT JOIN sockets s ON s.snapshot_id = latest.snapshot_id AND s.connection_id = l.connection_id;
COMMENT ON VIEW connections IS 'One row per socket lifetime (protocol, both endpoints, pid and kernel inode), always up to date: when it was first and last seen, its first and last state, whether and when it closed, and its latest byte counters. Listening and unconnected UDP sockets are lifetimes too (direction = listen).';
COMMENT ON COLUMN connections.connection_id IS 'Identifier of the lifetime; sockets.connection_id and tcp_transitions.connection_id refer to it.';
COMMENT ON COLUMN connections.host IS 'Host the connection was seen on.';
COMMENT ON COLUMN connections.proto IS 'tcp or udp.';
COMMENT ON COLUMN connections.family IS 'ipv4 or ipv6.';
COMMENT ON COLUMN connections.local_addr IS 'Local IP address.';
COMMENT ON COLUMN connections.local_port IS 'Local port.';
COMMENT ON COLUMN connections.remote_addr IS 'Remote IP address; NULL without a peer.';
COMMENT ON COLUMN connections.remote_port IS 'Remote port; NULL without a peer.';
COMMENT ON COLUMN connections.pid IS 'Owning process id (NULL when unreadable).';
COMMENT ON COLUMN connections.process_name IS 'Owning process name, the latest seen.';
COMMENT ON COLUMN connections.inode IS 'Kernel socket inode, when known.';
COMMENT ON COLUMN connections.direction IS 'listen, inbound, outbound or internal, as in sockets.direction (latest).';
COMMENT ON COLUMN connections.remote_scope IS 'Kind of the remote address, as in sockets.remote_scope.';
COMMENT ON COLUMN connections.first_seen IS 'Time of the first snapshot that saw it (it opened at most one capture interval before).';
COMMENT ON COLUMN connections.last_seen IS 'Time of the latest snapshot that saw it.';
COMMENT ON COLUMN connections.duration_s IS 'last_seen - first_seen in seconds: observed lifetime, a lower bound on the real one.';
COMMENT ON COLUMN connections.first_snapshot_id IS 'First snapshot that saw it.';
COMMENT ON COLUMN connections.last_snapshot_id IS 'Latest snapshot that saw it.';
COMMENT ON COLUMN connections.first_state IS 'State when first seen.';
COMMENT ON COLUMN connections.last_state IS 'State when last seen.';
COMMENT ON COLUMN connections.closed IS 'True once a later snapshot of the same host no longer saw it.';
COMMENT ON COLUMN connections.closed_at IS 'Time of the first snapshot that no longer saw it (it closed between last_seen and closed_at); NULL while open.';
COMMENT ON COLUMN connections.bytes_sent IS 'Latest tcpi_bytes_sent (cumulative, so the lifetime total as last seen).';
COMMENT ON COLUMN connections.bytes_acked IS 'Latest tcpi_bytes_acked.';
COMMENT ON COLUMN connections.bytes_received IS 'Latest tcpi_bytes_received.';
COMMENT ON COLUMN connections.segs_out IS 'Latest tcpi_segs_out.';
COMMENT ON COLUMN connections.segs_in IS 'Latest tcpi_segs_in.';
COMMENT ON COLUMN connections.total_retrans IS 'Latest tcpi_total_retrans.';
COMMENT ON COLUMN connections.rtt_us IS 'Latest smoothed round-trip time in microseconds.';

CREATE TABLE tcp_transitions (
    connection_id  BIGINT NOT NULL,
    snapshot_id    BIGINT NOT NULL,
    ts             TIMESTAMP NOT NULL,
    from_state     VARCHAR,
    to_state       VARCHAR
);
COMMENT ON TABLE tcp_transitions IS 'Every TCP state change observed between two snapshots of a connection, including its first observation (from_state NULL) and its disappearance (to_state NULL). Changes faster than the capture interval are seen as one step.';
COMMENT ON COLUMN tcp_transitions.connection_id IS 'The connection (connections.connection_id).';
COMMENT ON COLUMN tcp_transitions.snapshot_id IS 'Snapshot in which the new state was observed.';
COMMENT ON COLUMN tcp_transitions.ts IS 'UTC time of that snapshot.';
COMMENT ON COLUMN tcp_transitions.from_state IS 'State in the previous snapshot; NULL when the connection was first seen.';
COMMENT ON COLUMN tcp_transitions.to_state IS 'State in this snapshot; NULL when the connection was no longer seen.';
