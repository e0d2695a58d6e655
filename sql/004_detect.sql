-- netlens migration 4: behaviour detectors and TCP/duration/direction analysis.
--
-- connection_events is the one normalised view every detector reads, so each detector works the
-- same on live history (connections) and on imported flows. The detectors (netlens detect NAME)
-- write port_scans, beacons, bursts and long_connections, keyed by run_id and recorded in
-- detector_runs; latest_<table> shows each table's newest run. The remaining views are the
-- reusable form of the TCP, duration, direction, process and protocol analyses.

-- Addresses that stay inside a site for direction purposes: loopback, RFC 1918, link-local,
-- IPv6 ULA, and multicast/broadcast destinations (they never leave the local network either).
-- Mirrors netlens's Rust classifier (netaddr::Scope::is_local_network) plus multicast.
CREATE MACRO flow_addr_is_local(a) AS (
    a LIKE '10.%' OR a LIKE '192.168.%' OR regexp_matches(a, '^172\.(1[6-9]|2[0-9]|3[01])\.')
    OR a LIKE '127.%' OR a LIKE '169.254.%' OR a = '255.255.255.255'
    OR regexp_matches(a, '^(22[4-9]|23[0-9])\.')
    OR lower(a) = '::1' OR regexp_matches(lower(a), '^f[cd][0-9a-f]{0,2}:') OR regexp_matches(lower(a), '^fe[89ab][0-9a-f]?:')
    OR regexp_matches(lower(a), '^ff[0-9a-f]{0,2}:')
    OR regexp_matches(lower(a), '^::ffff:(10\.|192\.168\.|127\.|169\.254\.|172\.(1[6-9]|2[0-9]|3[01])\.)')
);
COMMENT ON MACRO flow_addr_is_local IS 'True for loopback, private (RFC 1918, ULA), link-local, multicast and broadcast addresses given as text: addresses that stay inside the site.';

CREATE MACRO flow_direction(orig, resp) AS (
    CASE WHEN flow_addr_is_local(orig) AND flow_addr_is_local(resp) THEN 'internal'
         WHEN flow_addr_is_local(orig) THEN 'outbound'
         WHEN flow_addr_is_local(resp) THEN 'inbound'
         ELSE 'external' END
);
COMMENT ON MACRO flow_direction IS 'Direction of an imported flow from its originator and responder addresses: internal (both local), outbound (local originator), inbound (local responder), external (neither: transit traffic seen by a sensor).';

CREATE VIEW connection_events AS
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
UNION ALL
SELECT 'connections',
       c.connection_id::VARCHAR,
       c.host,
       c.first_seen,
       c.last_seen,
       c.duration_s,
       NOT c.closed,
       c.proto,
       CASE WHEN c.accepted THEN c.remote_addr ELSE c.local_addr END,
       CASE WHEN c.accepted THEN c.remote_port ELSE c.local_port END,
       CASE WHEN c.accepted THEN c.local_addr ELSE c.remote_addr END,
       CASE WHEN c.accepted THEN c.local_port ELSE c.remote_port END,
       c.direction,
       CASE WHEN c.accepted THEN c.bytes_received ELSE c.bytes_sent END,
       CASE WHEN c.accepted THEN c.bytes_sent ELSE c.bytes_received END,
       CASE WHEN c.accepted THEN c.segs_in ELSE c.segs_out END,
       CASE WHEN c.accepted THEN c.segs_out ELSE c.segs_in END,
       NULL::BIGINT,
       NULL::BIGINT,
       c.last_state,
       coalesce(c.last_state IN ('SYN_SENT', 'SYN_RECV'), false),
       c.pid, c.process_name
FROM (
    -- accepted: this host's side accepted the connection (inbound, or internal on a port it listens on)
    SELECT c.*, c.direction = 'inbound' OR (c.direction = 'internal' AND EXISTS (
               SELECT 1 FROM connections l WHERE l.direction = 'listen' AND l.host = c.host
               AND l.proto = c.proto AND l.local_port = c.local_port)) AS accepted
    FROM connections c
    WHERE c.direction <> 'listen' AND c.remote_addr IS NOT NULL) c
-- A connection between two local processes is seen from both ends; keep the opener's socket only.
WHERE NOT (c.accepted AND c.direction = 'internal' AND EXISTS (
    SELECT 1 FROM connection_lifetimes o WHERE o.host = c.host AND o.proto = c.proto
    AND o.local_addr = c.remote_addr AND o.local_port = c.remote_port
    AND o.remote_addr = c.local_addr AND o.remote_port = c.local_port));
COMMENT ON VIEW connection_events IS 'Every connection from both sources in one shape, oriented from the side that opened it (src) to the side that accepted it (dst): imported flows (source = flows) and live connection lifetimes (source = connections, listeners and peerless sockets left out; a connection between two local processes is kept once, from the opener''s socket). All detectors read this view, so each works on either source alike.';
COMMENT ON COLUMN connection_events.source IS 'flows (imported pcap/Zeek) or connections (live capture history).';
COMMENT ON COLUMN connection_events.event_id IS 'The connection: import_id:uid for flows, connection_id for live connections.';
COMMENT ON COLUMN connection_events.host IS 'Host the live connection was seen on; NULL for flows.';
COMMENT ON COLUMN connection_events.start_ts IS 'UTC start: first packet of a flow; first snapshot that saw a live connection (it opened up to one capture interval earlier).';
COMMENT ON COLUMN connection_events.end_ts IS 'UTC end: last packet of a flow; latest snapshot that saw a live connection.';
COMMENT ON COLUMN connection_events.duration_s IS 'end_ts - start_ts in seconds (for live connections the observed lifetime, a lower bound).';
COMMENT ON COLUMN connection_events.open IS 'True while a live connection is still open (its duration is still growing); always false for flows.';
COMMENT ON COLUMN connection_events.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN connection_events.src_h IS 'Address of the side that opened the connection: the flow originator, or for live connections the local address (outbound/internal) or the remote one (inbound).';
COMMENT ON COLUMN connection_events.src_p IS 'Port of the opening side (ICMP: message type, as in flows).';
COMMENT ON COLUMN connection_events.dst_h IS 'Address of the side that accepted the connection.';
COMMENT ON COLUMN connection_events.dst_p IS 'Port of the accepting side: the service port.';
COMMENT ON COLUMN connection_events.direction IS 'inbound, outbound, internal (live: as captured; flows: from the address ranges, see flow_direction) or external (flows between two non-local addresses).';
COMMENT ON COLUMN connection_events.bytes_out IS 'Payload bytes sent by src (flows: orig_bytes; live: the kernel counter of the opening side); NULL when unknown.';
COMMENT ON COLUMN connection_events.bytes_in IS 'Payload bytes sent by dst; NULL when unknown.';
COMMENT ON COLUMN connection_events.packets_out IS 'Packets sent by src (flows: orig_pkts; live TCP: segments, tcpi_segs_out/in); NULL when unknown.';
COMMENT ON COLUMN connection_events.packets_in IS 'Packets sent by dst; NULL when unknown.';
COMMENT ON COLUMN connection_events.wire_bytes_out IS 'IP-level bytes sent by src (flows only; NULL for live connections).';
COMMENT ON COLUMN connection_events.wire_bytes_in IS 'IP-level bytes sent by dst (flows only).';
COMMENT ON COLUMN connection_events.state IS 'Zeek conn_state for flows; last TCP state for live connections.';
COMMENT ON COLUMN connection_events.failed IS 'Failed or half-open attempt: conn_state S0, REJ, RSTOS0, RSTRH, SH or SHR in flows; last state SYN_SENT or SYN_RECV in live data.';
COMMENT ON COLUMN connection_events.pid IS 'Owning process id (live only; NULL for flows or when unreadable).';
COMMENT ON COLUMN connection_events.process_name IS 'Owning process name (live only).';

-- Detector runs and results --------------------------------------------------------------

CREATE TABLE detector_runs (
    run_id             BIGINT PRIMARY KEY,
    detector           VARCHAR NOT NULL,
    source             VARCHAR NOT NULL,
    started_at         TIMESTAMP NOT NULL,
    elapsed_s          DOUBLE NOT NULL,
    window_start       TIMESTAMP NOT NULL,
    window_end         TIMESTAMP NOT NULL,
    events             BIGINT NOT NULL,
    result_rows        BIGINT NOT NULL,
    time_resolution_s  DOUBLE NOT NULL,
    params             VARCHAR NOT NULL,
    notes              VARCHAR
);
COMMENT ON TABLE detector_runs IS 'One row per detector run (netlens detect NAME): which detector, on which source and time window, with which thresholds, and how many rows it wrote. Result tables point here with run_id.';
COMMENT ON COLUMN detector_runs.run_id IS 'Run number, increasing; the run_id of the rows this run wrote.';
COMMENT ON COLUMN detector_runs.detector IS 'port_scans, beacons, bursts or long_connections: the table the run wrote.';
COMMENT ON COLUMN detector_runs.source IS 'What was analysed: flows or connections (chosen with --on; auto picks the one with rows).';
COMMENT ON COLUMN detector_runs.started_at IS 'UTC wall-clock time the run started.';
COMMENT ON COLUMN detector_runs.elapsed_s IS 'Seconds the run took.';
COMMENT ON COLUMN detector_runs.window_start IS 'Start of the analysed time window (data time, UTC).';
COMMENT ON COLUMN detector_runs.window_end IS 'End of the analysed time window (data time, UTC).';
COMMENT ON COLUMN detector_runs.events IS 'Connection events of the source in the window that the detector read.';
COMMENT ON COLUMN detector_runs.result_rows IS 'Rows the run wrote into its table (0: nothing found, stated explicitly).';
COMMENT ON COLUMN detector_runs.time_resolution_s IS 'How precisely start times are known: 0.000001 for flows (packet timestamps), the median capture interval for live snapshots.';
COMMENT ON COLUMN detector_runs.params IS 'Thresholds and options of the run as a JSON object.';
COMMENT ON COLUMN detector_runs.notes IS 'What the run could not do or assumed (e.g. missing byte counters); NULL when nothing needs saying.';

CREATE TABLE port_scans (
    run_id          BIGINT NOT NULL,
    kind            VARCHAR NOT NULL,
    scanner         VARCHAR NOT NULL,
    target          VARCHAR,
    target_port     INTEGER,
    proto           VARCHAR NOT NULL,
    distinct_ports  BIGINT NOT NULL,
    distinct_hosts  BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    failed          BIGINT NOT NULL,
    failed_share    DOUBLE NOT NULL,
    window_start    TIMESTAMP NOT NULL,
    window_end      TIMESTAMP NOT NULL,
    targets         VARCHAR,
    score           DOUBLE NOT NULL
);
COMMENT ON TABLE port_scans IS 'Port scans (one source touching many ports of one host) and address scans (one source touching one port on many hosts) within the scan window, as Zeek''s scan policy counts them. One row per scanner and target (host, or port for address scans), for the window where it touched the most.';
COMMENT ON COLUMN port_scans.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN port_scans.kind IS 'port_scan (many ports of one host, vertical) or address_scan (one port on many hosts, horizontal).';
COMMENT ON COLUMN port_scans.scanner IS 'Address that opened the connections.';
COMMENT ON COLUMN port_scans.target IS 'The scanned host (port_scan); NULL for address scans, whose hosts are in targets.';
COMMENT ON COLUMN port_scans.target_port IS 'The scanned port (address_scan); NULL for port scans.';
COMMENT ON COLUMN port_scans.proto IS 'tcp or udp.';
COMMENT ON COLUMN port_scans.distinct_ports IS 'Distinct destination ports touched in the window.';
COMMENT ON COLUMN port_scans.distinct_hosts IS 'Distinct destination hosts touched in the window.';
COMMENT ON COLUMN port_scans.attempts IS 'Connections in the window.';
COMMENT ON COLUMN port_scans.failed IS 'Of those, failed or half-open attempts (connection_events.failed).';
COMMENT ON COLUMN port_scans.failed_share IS 'failed / attempts: near 1 for SYN scans of mostly closed ports.';
COMMENT ON COLUMN port_scans.window_start IS 'First connection of the densest scan window.';
COMMENT ON COLUMN port_scans.window_end IS 'Last connection of the densest scan window (at most the scan window after window_start).';
COMMENT ON COLUMN port_scans.targets IS 'Address scans: the first 20 hosts touched, comma separated; port scans: the first 20 ports.';
COMMENT ON COLUMN port_scans.score IS '0..1: 0.6 x min(1, distinct / (4 x threshold)) + 0.4 x failed_share, distinct being ports (port_scan) or hosts (address_scan).';

CREATE TABLE beacons (
    run_id             BIGINT NOT NULL,
    src                VARCHAR NOT NULL,
    dst                VARCHAR NOT NULL,
    dst_port           INTEGER,
    proto              VARCHAR NOT NULL,
    connections        BIGINT NOT NULL,
    first_ts           TIMESTAMP NOT NULL,
    last_ts            TIMESTAMP NOT NULL,
    median_interval_s  DOUBLE NOT NULL,
    jitter_s           DOUBLE NOT NULL,
    jitter_ratio       DOUBLE,
    gap_skew_score     DOUBLE NOT NULL,
    gap_mad_score      DOUBLE NOT NULL,
    gap_score          DOUBLE NOT NULL,
    bytes_skew_score   DOUBLE,
    bytes_mad_score    DOUBLE,
    bytes_small_score  DOUBLE,
    bytes_score        DOUBLE,
    median_bytes       DOUBLE,
    bins_score         DOUBLE NOT NULL,
    persistence_score  DOUBLE NOT NULL,
    score              DOUBLE NOT NULL,
    is_beacon          BOOLEAN NOT NULL,
    time_resolution_s  DOUBLE NOT NULL,
    processes          VARCHAR
);
COMMENT ON TABLE beacons IS 'Beacon candidates: every pair (src, dst:port, proto) with at least the minimum number of connections in the window, scored in the manner of RITA from the gaps between connection starts, the bytes sent, how evenly the connections fill the window''s bins and how long they persist. Ranked by score; is_beacon marks those at or above the threshold.';
COMMENT ON COLUMN beacons.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN beacons.src IS 'Address that opened the connections.';
COMMENT ON COLUMN beacons.dst IS 'Address they went to.';
COMMENT ON COLUMN beacons.dst_port IS 'Destination port (with --beacon-by host: NULL, all ports of dst together).';
COMMENT ON COLUMN beacons.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN beacons.connections IS 'Connections of the pair in the window (at least --beacon-min-connections).';
COMMENT ON COLUMN beacons.first_ts IS 'Start of the pair''s first connection.';
COMMENT ON COLUMN beacons.last_ts IS 'Start of the pair''s last connection.';
COMMENT ON COLUMN beacons.median_interval_s IS 'Median gap between consecutive connection starts, seconds: the beacon period.';
COMMENT ON COLUMN beacons.jitter_s IS 'Median absolute deviation of the gaps from their median, seconds.';
COMMENT ON COLUMN beacons.jitter_ratio IS 'jitter_s / median_interval_s; NULL when the median gap is 0.';
COMMENT ON COLUMN beacons.gap_skew_score IS '1 - |Bowley skew| of the gaps, (Q1 + Q3 - 2 Q2) / (Q3 - Q1), taken as 0 when Q3 = Q1, Q2 = Q1 or Q2 = Q3, quartiles within max(1 s, time_resolution_s) counting as equal as on RITA''s whole-second timestamps (symmetric gaps score 1).';
COMMENT ON COLUMN beacons.gap_mad_score IS '1 - max(0, MAD - time_resolution_s) / median gap, clamped to 0..1 (0 when the median gap is 0): regular gaps score 1.';
COMMENT ON COLUMN beacons.gap_score IS 'Gap regularity, the mean of gap_skew_score and gap_mad_score (RITA''s timestamp score).';
COMMENT ON COLUMN beacons.bytes_skew_score IS '1 - |Bowley skew| of the bytes sent per connection; NULL when bytes are unknown.';
COMMENT ON COLUMN beacons.bytes_mad_score IS '1 - MAD / median of the bytes sent, clamped to 0..1 (0 when the median is below 1 byte); NULL when unknown.';
COMMENT ON COLUMN beacons.bytes_small_score IS '1 - mode of the bytes sent / 65535, clamped to 0..1: beacons send little; NULL when unknown.';
COMMENT ON COLUMN beacons.bytes_score IS 'Bytes regularity, the mean of the three bytes sub-scores (RITA''s data size score), over the connections whose bytes are known; NULL when fewer than 3 or fewer than half are known, and then left out of score.';
COMMENT ON COLUMN beacons.median_bytes IS 'Median bytes sent per connection; NULL when unknown.';
COMMENT ON COLUMN beacons.bins_score IS 'Connection-count evenness: the window is cut into --beacon-bins equal bins and the score is 1 - coefficient of variation (sd / mean) of the connections per bin, clamped to 0..1 (RITA''s histogram score).';
COMMENT ON COLUMN beacons.persistence_score IS 'max(coverage, consistency): coverage = (last_ts - first_ts) / window length; consistency = longest run of consecutive non-empty bins (wrapping around) / half the bins; clamped to 0..1 (RITA''s duration score).';
COMMENT ON COLUMN beacons.score IS 'Weighted mean of gap_score, bytes_score, bins_score and persistence_score with the run''s weights (default 0.25 each); a NULL sub-score is left out and the other weights renormalised.';
COMMENT ON COLUMN beacons.is_beacon IS 'score >= --beacon-threshold (default 0.8).';
COMMENT ON COLUMN beacons.time_resolution_s IS 'How precisely the start times are known: 0.000001 for flows, the capture interval for live snapshots (deviations below it are not counted against the gaps).';
COMMENT ON COLUMN beacons.processes IS 'Processes that owned the connections (live data), comma separated; NULL for flows.';

CREATE TABLE bursts (
    run_id        BIGINT NOT NULL,
    entity_kind   VARCHAR NOT NULL,
    entity        VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    bin_s         DOUBLE NOT NULL,
    start_ts      TIMESTAMP NOT NULL,
    end_ts        TIMESTAMP NOT NULL,
    bins          BIGINT NOT NULL,
    peak          DOUBLE NOT NULL,
    total         DOUBLE NOT NULL,
    baseline      DOUBLE NOT NULL,
    mad           DOUBLE NOT NULL,
    threshold     DOUBLE NOT NULL,
    factor        DOUBLE NOT NULL,
    mads_above    DOUBLE NOT NULL
);
COMMENT ON TABLE bursts IS 'Bursts: runs of consecutive bins in which a process''s, host''s or pair''s connection count or bytes exceeded its own baseline, median + k x MAD over every bin of the window (empty bins included).';
COMMENT ON COLUMN bursts.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN bursts.entity_kind IS 'process (live data only), host (the opening side, src) or pair (src -> dst).';
COMMENT ON COLUMN bursts.entity IS 'The process name, host address, or src -> dst.';
COMMENT ON COLUMN bursts.metric IS 'connections (connections started per bin) or bytes (bytes both ways per bin, each connection''s bytes spread evenly over its duration).';
COMMENT ON COLUMN bursts.bin_s IS 'Bin width in seconds (--burst-bin).';
COMMENT ON COLUMN bursts.start_ts IS 'Start of the first bin of the burst (bins are aligned to whole multiples of bin_s since the epoch: minute bins start on the minute).';
COMMENT ON COLUMN bursts.end_ts IS 'End of the last bin of the burst.';
COMMENT ON COLUMN bursts.bins IS 'Consecutive bins above the threshold.';
COMMENT ON COLUMN bursts.peak IS 'Largest bin value in the burst.';
COMMENT ON COLUMN bursts.total IS 'Sum of the bin values in the burst.';
COMMENT ON COLUMN bursts.baseline IS 'The entity''s median bin value over the window.';
COMMENT ON COLUMN bursts.mad IS 'The entity''s median absolute deviation of bin values, floored at 1 (connection or byte) so a flat series still has a scale.';
COMMENT ON COLUMN bursts.threshold IS 'baseline + k x mad; bins above it (and at least --burst-min-connections or --burst-min-bytes) are burst bins.';
COMMENT ON COLUMN bursts.factor IS 'peak / max(baseline, 1): how many times the usual level.';
COMMENT ON COLUMN bursts.mads_above IS '(peak - baseline) / mad: a robust z-score.';

CREATE TABLE long_connections (
    run_id        BIGINT NOT NULL,
    source        VARCHAR NOT NULL,
    event_id      VARCHAR NOT NULL,
    proto         VARCHAR NOT NULL,
    src           VARCHAR NOT NULL,
    src_port      INTEGER,
    dst           VARCHAR NOT NULL,
    dst_port      INTEGER,
    process_name  VARCHAR,
    pid           INTEGER,
    start_ts      TIMESTAMP NOT NULL,
    end_ts        TIMESTAMP NOT NULL,
    duration_s    DOUBLE NOT NULL,
    open          BOOLEAN NOT NULL,
    bytes_out     BIGINT,
    bytes_in      BIGINT,
    grade         VARCHAR NOT NULL,
    score         DOUBLE NOT NULL
);
COMMENT ON TABLE long_connections IS 'Connections that lasted at least --long-min (default 1 hour), graded by how far past it they went.';
COMMENT ON COLUMN long_connections.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN long_connections.source IS 'flows or connections.';
COMMENT ON COLUMN long_connections.event_id IS 'The connection (connection_events.event_id).';
COMMENT ON COLUMN long_connections.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN long_connections.src IS 'Address that opened the connection.';
COMMENT ON COLUMN long_connections.src_port IS 'Its port.';
COMMENT ON COLUMN long_connections.dst IS 'Address that accepted it.';
COMMENT ON COLUMN long_connections.dst_port IS 'Its port.';
COMMENT ON COLUMN long_connections.process_name IS 'Owning process (live data).';
COMMENT ON COLUMN long_connections.pid IS 'Owning process id (live data).';
COMMENT ON COLUMN long_connections.start_ts IS 'Start of the connection.';
COMMENT ON COLUMN long_connections.end_ts IS 'End of the connection (last sighting while open).';
COMMENT ON COLUMN long_connections.duration_s IS 'Duration in seconds (a lower bound while open).';
COMMENT ON COLUMN long_connections.open IS 'True when the live connection is still open.';
COMMENT ON COLUMN long_connections.bytes_out IS 'Bytes sent by src.';
COMMENT ON COLUMN long_connections.bytes_in IS 'Bytes sent by dst.';
COMMENT ON COLUMN long_connections.grade IS 'long (>= T), very_long (>= 4 T) or extreme (>= 24 T), T being --long-min.';
COMMENT ON COLUMN long_connections.score IS 'min(1, log(duration / T) / log(24)): 0 at the threshold, 1 from 24 x T.';

CREATE VIEW latest_port_scans AS
SELECT * FROM port_scans WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'port_scans');
COMMENT ON VIEW latest_port_scans IS 'port_scans of the newest port_scans run.';
CREATE VIEW latest_beacons AS
SELECT * FROM beacons WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'beacons');
COMMENT ON VIEW latest_beacons IS 'beacons of the newest beacons run.';
CREATE VIEW latest_bursts AS
SELECT * FROM bursts WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'bursts');
COMMENT ON VIEW latest_bursts IS 'bursts of the newest bursts run.';
CREATE VIEW latest_long_connections AS
SELECT * FROM long_connections WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'long_connections');
COMMENT ON VIEW latest_long_connections IS 'long_connections of the newest long_connections run.';
COMMENT ON COLUMN latest_port_scans.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN latest_port_scans.kind IS 'port_scan (many ports of one host, vertical) or address_scan (one port on many hosts, horizontal).';
COMMENT ON COLUMN latest_port_scans.scanner IS 'Address that opened the connections.';
COMMENT ON COLUMN latest_port_scans.target IS 'The scanned host (port_scan); NULL for address scans, whose hosts are in targets.';
COMMENT ON COLUMN latest_port_scans.target_port IS 'The scanned port (address_scan); NULL for port scans.';
COMMENT ON COLUMN latest_port_scans.proto IS 'tcp or udp.';
COMMENT ON COLUMN latest_port_scans.distinct_ports IS 'Distinct destination ports touched in the window.';
COMMENT ON COLUMN latest_port_scans.distinct_hosts IS 'Distinct destination hosts touched in the window.';
COMMENT ON COLUMN latest_port_scans.attempts IS 'Connections in the window.';
COMMENT ON COLUMN latest_port_scans.failed IS 'Of those, failed or half-open attempts (connection_events.failed).';
COMMENT ON COLUMN latest_port_scans.failed_share IS 'failed / attempts: near 1 for SYN scans of mostly closed ports.';
COMMENT ON COLUMN latest_port_scans.window_start IS 'First connection of the densest scan window.';
COMMENT ON COLUMN latest_port_scans.window_end IS 'Last connection of the densest scan window (at most the scan window after window_start).';
COMMENT ON COLUMN latest_port_scans.targets IS 'Address scans: the first 20 hosts touched, comma separated; port scans: the first 20 ports.';
COMMENT ON COLUMN latest_port_scans.score IS '0..1: 0.6 x min(1, distinct / (4 x threshold)) + 0.4 x failed_share, distinct being ports (port_scan) or hosts (address_scan).';
COMMENT ON COLUMN latest_beacons.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN latest_beacons.src IS 'Address that opened the connections.';
COMMENT ON COLUMN latest_beacons.dst IS 'Address they went to.';
COMMENT ON COLUMN latest_beacons.dst_port IS 'Destination port (with --beacon-by host: NULL, all ports of dst together).';
COMMENT ON COLUMN latest_beacons.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN latest_beacons.connections IS 'Connections of the pair in the window (at least --beacon-min-connections).';
COMMENT ON COLUMN latest_beacons.first_ts IS 'Start of the pair''s first connection.';
COMMENT ON COLUMN latest_beacons.last_ts IS 'Start of the pair''s last connection.';
COMMENT ON COLUMN latest_beacons.median_interval_s IS 'Median gap between consecutive connection starts, seconds: the beacon period.';
COMMENT ON COLUMN latest_beacons.jitter_s IS 'Median absolute deviation of the gaps from their median, seconds.';
COMMENT ON COLUMN latest_beacons.jitter_ratio IS 'jitter_s / median_interval_s; NULL when the median gap is 0.';
COMMENT ON COLUMN latest_beacons.gap_skew_score IS '1 - |Bowley skew| of the gaps, (Q1 + Q3 - 2 Q2) / (Q3 - Q1), taken as 0 when Q3 = Q1, Q2 = Q1 or Q2 = Q3, quartiles within max(1 s, time_resolution_s) counting as equal as on RITA''s whole-second timestamps (symmetric gaps score 1).';
COMMENT ON COLUMN latest_beacons.gap_mad_score IS '1 - max(0, MAD - time_resolution_s) / median gap, clamped to 0..1 (0 when the median gap is 0): regular gaps score 1.';
COMMENT ON COLUMN latest_beacons.gap_score IS 'Gap regularity, the mean of gap_skew_score and gap_mad_score (RITA''s timestamp score).';
COMMENT ON COLUMN latest_beacons.bytes_skew_score IS '1 - |Bowley skew| of the bytes sent per connection; NULL when bytes are unknown.';
COMMENT ON COLUMN latest_beacons.bytes_mad_score IS '1 - MAD / median of the bytes sent, clamped to 0..1 (0 when the median is below 1 byte); NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bytes_small_score IS '1 - mode of the bytes sent / 65535, clamped to 0..1: beacons send little; NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bytes_score IS 'Bytes regularity, the mean of the three bytes sub-scores (RITA''s data size score), over the connections whose bytes are known; NULL when fewer than 3 or fewer than half are known, and then left out of score.';
COMMENT ON COLUMN latest_beacons.median_bytes IS 'Median bytes sent per connection; NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bins_score IS 'Connection-count evenness: the window is cut into --beacon-bins equal bins and the score is 1 - coefficient of variation (sd / mean) of the connections per bin, clamped to 0..1 (RITA''s histogram score).';
COMMENT ON COLUMN latest_beacons.persistence_score IS 'max(coverage, consistency): coverage = (last_ts - first_ts) / window length; consistency = longest run of consecutive non-empty bins (wrapping around) / half the bins; clamped to 0..1 (RITA''s duration score).';
COMMENT ON COLUMN latest_beacons.score IS 'Weighted mean of gap_score, bytes_score, bins_score and persistence_score with the run''s weights (default 0.25 each); a NULL sub-score is left out and the other weights renormalised.';
COMMENT ON COLUMN latest_beacons.is_beacon IS 'score >= --beacon-threshold (default 0.8).';
COMMENT ON COLUMN latest_beacons.time_resolution_s IS 'How precisely the start times are known: 0.000001 for flows, the capture interval for live snapshots (deviations below it are not counted against the gaps).';
COMMENT ON COLUMN latest_beacons.processes IS 'Processes that owned the connections (live data), comma separated; NULL for flows.';
COMMENT ON COLUMN latest_bursts.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN latest_bursts.entity_kind IS 'process (live data only), host (the opening side, src) or pair (src -> dst).';
COMMENT ON COLUMN latest_bursts.entity IS 'The process name, host address, or src -> dst.';
COMMENT ON COLUMN latest_bursts.metric IS 'connections (connections started per bin) or bytes (bytes both ways per bin, each connection''s bytes spread evenly over its duration).';
COMMENT ON COLUMN latest_bursts.bin_s IS 'Bin width in seconds (--burst-bin).';
COMMENT ON COLUMN latest_bursts.start_ts IS 'Start of the first bin of the burst (bins are aligned to whole multiples of bin_s since the epoch: minute bins start on the minute).';
COMMENT ON COLUMN latest_bursts.end_ts IS 'End of the last bin of the burst.';
COMMENT ON COLUMN latest_bursts.bins IS 'Consecutive bins above the threshold.';
COMMENT ON COLUMN latest_bursts.peak IS 'Largest bin value in the burst.';
COMMENT ON COLUMN latest_bursts.total IS 'Sum of the bin values in the burst.';
COMMENT ON COLUMN latest_bursts.baseline IS 'The entity''s median bin value over the window.';
COMMENT ON COLUMN latest_bursts.mad IS 'The entity''s median absolute deviation of bin values, floored at 1 (connection or byte) so a flat series still has a scale.';
COMMENT ON COLUMN latest_bursts.threshold IS 'baseline + k x mad; bins above it (and at least --burst-min-connections or --burst-min-bytes) are burst bins.';
COMMENT ON COLUMN latest_bursts.factor IS 'peak / max(baseline, 1): how many times the usual level.';
COMMENT ON COLUMN latest_bursts.mads_above IS '(peak - baseline) / mad: a robust z-score.';
COMMENT ON COLUMN latest_long_connections.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN latest_long_connections.source IS 'flows or connections.';
COMMENT ON COLUMN latest_long_connections.event_id IS 'The connection (connection_events.event_id).';
COMMENT ON COLUMN latest_long_connections.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN latest_long_connections.src IS 'Address that opened the connection.';
COMMENT ON COLUMN latest_long_connections.src_port IS 'Its port.';
COMMENT ON COLUMN latest_long_connections.dst IS 'Address that accepted it.';
COMMENT ON COLUMN latest_long_connections.dst_port IS 'Its port.';
COMMENT ON COLUMN latest_long_connections.process_name IS 'Owning process (live data).';
COMMENT ON COLUMN latest_long_connections.pid IS 'Owning process id (live data).';
COMMENT ON COLUMN latest_long_connections.start_ts IS 'Start of the connection.';
COMMENT ON COLUMN latest_long_connections.end_ts IS 'End of the connection (last sighting while open).';
COMMENT ON COLUMN latest_long_connections.duration_s IS 'Duration in seconds (a lower bound while open).';
COMMENT ON COLUMN latest_long_connections.open IS 'True when the live connection is still open.';
COMMENT ON COLUMN latest_long_connections.bytes_out IS 'Bytes sent by src.';
COMMENT ON COLUMN latest_long_connections.bytes_in IS 'Bytes sent by dst.';
COMMENT ON COLUMN latest_long_connections.grade IS 'long (>= T), very_long (>= 4 T) or extreme (>= 24 T), T being --long-min.';
COMMENT ON COLUMN latest_long_connections.score IS 'min(1, log(duration / T) / log(24)): 0 at the threshold, 1 from 24 x T.';

-- TCP, duration, direction, process and protocol analysis ----------------------------------

CREATE VIEW tcp_state_counts AS
SELECT s.snapshot_id, s.ts, n.host, s.state, count(*) AS sockets
FROM sockets s JOIN snapshots n USING (snapshot_id)
WHERE s.proto = 'tcp'
GROUP BY ALL;
COMMENT ON VIEW tcp_state_counts IS 'TCP sockets per state in every snapshot (long form: one row per snapshot and state), for state counts over time; PIVOT it for one column per state.';
COMMENT ON COLUMN tcp_state_counts.snapshot_id IS 'The snapshot.';
COMMENT ON COLUMN tcp_state_counts.ts IS 'UTC time of the snapshot.';
COMMENT ON COLUMN tcp_state_counts.host IS 'Host of the snapshot.';
COMMENT ON COLUMN tcp_state_counts.state IS 'TCP state (ESTABLISHED, LISTEN, SYN_SENT, TIME_WAIT, CLOSE_WAIT, ...).';
COMMENT ON COLUMN tcp_state_counts.sockets IS 'TCP sockets in that state in that snapshot.';

CREATE VIEW tcp_connection_transitions AS
SELECT connection_id,
       count(*) FILTER (WHERE from_state IS NOT NULL AND to_state IS NOT NULL) AS transitions,
       string_agg(coalesce(to_state, 'gone'), ' > ' ORDER BY snapshot_id) AS path,
       arg_min(to_state, snapshot_id) AS first_state,
       arg_max(coalesce(to_state, from_state), snapshot_id) AS last_state,
       min(ts) AS first_ts, max(ts) AS last_ts
FROM tcp_transitions
GROUP BY connection_id;
COMMENT ON VIEW tcp_connection_transitions IS 'Per TCP connection: how many state changes were observed and the path of states in order (first sighting ... gone).';
COMMENT ON COLUMN tcp_connection_transitions.connection_id IS 'The connection (connections.connection_id).';
COMMENT ON COLUMN tcp_connection_transitions.transitions IS 'State changes observed between two sightings (first sighting and disappearance not counted).';
COMMENT ON COLUMN tcp_connection_transitions.path IS 'States in observed order joined by '' > '', ending in gone once the connection disappeared.';
COMMENT ON COLUMN tcp_connection_transitions.first_state IS 'State at the first sighting.';
COMMENT ON COLUMN tcp_connection_transitions.last_state IS 'Last state seen before it disappeared (or now, while open).';
COMMENT ON COLUMN tcp_connection_transitions.first_ts IS 'Time of the first recorded transition (the first sighting).';
COMMENT ON COLUMN tcp_connection_transitions.last_ts IS 'Time of the last recorded transition.';

CREATE VIEW tcp_transition_counts AS
SELECT coalesce(from_state, '(new)') AS from_state, coalesce(to_state, '(gone)') AS to_state,
       count(*) AS transitions, count(DISTINCT connection_id) AS connections
FROM tcp_transitions
GROUP BY ALL;
COMMENT ON VIEW tcp_transition_counts IS 'The observed TCP state transition matrix: how often each from -> to step was seen.';
COMMENT ON COLUMN tcp_transition_counts.from_state IS 'State before ((new) for a first sighting).';
COMMENT ON COLUMN tcp_transition_counts.to_state IS 'State after ((gone) when the connection disappeared).';
COMMENT ON COLUMN tcp_transition_counts.transitions IS 'Times the step was observed.';
COMMENT ON COLUMN tcp_transition_counts.connections IS 'Distinct connections that took the step.';

CREATE VIEW tcp_stuck_connections AS
SELECT s.connection_id, any_value(s.process_name) AS process_name, any_value(s.pid) AS pid,
       any_value(s.remote_addr) AS remote_addr, any_value(s.remote_port) AS remote_port, s.state,
       count(*) AS snapshots_in_state, min(s.ts) AS since, max(s.ts) AS until,
       epoch(max(s.ts)) - epoch(min(s.ts)) AS stuck_s
FROM sockets s
WHERE s.proto = 'tcp' AND s.state IN ('SYN_SENT', 'CLOSE_WAIT')
GROUP BY s.connection_id, s.state
HAVING count(*) > 1;
COMMENT ON VIEW tcp_stuck_connections IS 'Connections seen in SYN_SENT (unanswered attempt) or CLOSE_WAIT (peer closed, the application did not) in more than one snapshot.';
COMMENT ON COLUMN tcp_stuck_connections.connection_id IS 'The connection.';
COMMENT ON COLUMN tcp_stuck_connections.process_name IS 'Owning process.';
COMMENT ON COLUMN tcp_stuck_connections.pid IS 'Owning process id.';
COMMENT ON COLUMN tcp_stuck_connections.remote_addr IS 'Remote address.';
COMMENT ON COLUMN tcp_stuck_connections.remote_port IS 'Remote port.';
COMMENT ON COLUMN tcp_stuck_connections.state IS 'SYN_SENT or CLOSE_WAIT.';
COMMENT ON COLUMN tcp_stuck_connections.snapshots_in_state IS 'Snapshots that saw it in that state.';
COMMENT ON COLUMN tcp_stuck_connections.since IS 'First snapshot in that state.';
COMMENT ON COLUMN tcp_stuck_connections.until IS 'Last snapshot in that state.';
COMMENT ON COLUMN tcp_stuck_connections.stuck_s IS 'Seconds between the two (a lower bound on the time stuck).';

CREATE VIEW connection_duration_stats AS
SELECT source, proto, count(*) AS connections,
       count(*) FILTER (WHERE duration_s < 10) AS short_lived,
       count(*) FILTER (WHERE duration_s >= 3600) AS long_lived,
       round(count(*) FILTER (WHERE duration_s < 10) / count(*), 4) AS short_share,
       round(count(*) FILTER (WHERE duration_s >= 3600) / count(*), 4) AS long_share,
       min(duration_s) AS min_s, quantile_cont(duration_s, 0.25) AS p25_s, median(duration_s) AS median_s,
       quantile_cont(duration_s, 0.75) AS p75_s, quantile_cont(duration_s, 0.9) AS p90_s,
       quantile_cont(duration_s, 0.99) AS p99_s, max(duration_s) AS max_s, avg(duration_s) AS mean_s
FROM connection_events
GROUP BY ALL;
COMMENT ON VIEW connection_duration_stats IS 'Connection duration statistics per source and protocol: short-lived (< 10 s) versus long-lived (>= 1 h) counts and shares, and quantiles.';
COMMENT ON COLUMN connection_duration_stats.source IS 'flows or connections.';
COMMENT ON COLUMN connection_duration_stats.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN connection_duration_stats.connections IS 'Connections.';
COMMENT ON COLUMN connection_duration_stats.short_lived IS 'Connections shorter than 10 s.';
COMMENT ON COLUMN connection_duration_stats.long_lived IS 'Connections of 1 hour or more.';
COMMENT ON COLUMN connection_duration_stats.short_share IS 'short_lived / connections.';
COMMENT ON COLUMN connection_duration_stats.long_share IS 'long_lived / connections.';
COMMENT ON COLUMN connection_duration_stats.min_s IS 'Shortest duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.p25_s IS '25th percentile duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.median_s IS 'Median duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.p75_s IS '75th percentile duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.p90_s IS '90th percentile duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.p99_s IS '99th percentile duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.max_s IS 'Longest duration, seconds.';
COMMENT ON COLUMN connection_duration_stats.mean_s IS 'Mean duration, seconds.';

CREATE VIEW connection_duration_histogram AS
WITH buckets(bucket_no, bucket, lower_s, upper_s) AS (VALUES
    (1, '< 1 s', 0.0, 1.0), (2, '1-10 s', 1.0, 10.0), (3, '10-60 s', 10.0, 60.0), (4, '1-10 min', 60.0, 600.0),
    (5, '10-60 min', 600.0, 3600.0), (6, '1-24 h', 3600.0, 86400.0), (7, '>= 1 day', 86400.0, NULL))
SELECT e.source, e.proto, b.bucket_no, b.bucket, b.lower_s, b.upper_s, count(*) AS connections,
       round(count(*) / sum(count(*)) OVER (PARTITION BY e.source, e.proto), 4) AS share
FROM connection_events e
JOIN buckets b ON e.duration_s >= b.lower_s AND (b.upper_s IS NULL OR e.duration_s < b.upper_s)
GROUP BY e.source, e.proto, b.bucket_no, b.bucket, b.lower_s, b.upper_s;
COMMENT ON VIEW connection_duration_histogram IS 'Connections per duration bucket (log-spaced: < 1 s, 1-10 s, 10-60 s, 1-10 min, 10-60 min, 1-24 h, >= 1 day) per source and protocol; empty buckets have no row.';
COMMENT ON COLUMN connection_duration_histogram.source IS 'flows or connections.';
COMMENT ON COLUMN connection_duration_histogram.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN connection_duration_histogram.bucket_no IS 'Bucket order, 1 (shortest) to 7; sort by it.';
COMMENT ON COLUMN connection_duration_histogram.bucket IS 'Bucket label.';
COMMENT ON COLUMN connection_duration_histogram.lower_s IS 'Lower bound, seconds (inclusive).';
COMMENT ON COLUMN connection_duration_histogram.upper_s IS 'Upper bound, seconds (exclusive); NULL for the open last bucket.';
COMMENT ON COLUMN connection_duration_histogram.connections IS 'Connections in the bucket.';
COMMENT ON COLUMN connection_duration_histogram.share IS 'Share of the source''s and protocol''s connections.';

CREATE VIEW traffic_direction_shares AS
SELECT source, direction, count(*) AS connections,
       round(count(*) / sum(count(*)) OVER (PARTITION BY source), 4) AS connection_share,
       sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) AS bytes,
       round(sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0))
             / nullif(sum(sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0))) OVER (PARTITION BY source), 0), 4) AS byte_share
FROM connection_events
GROUP BY source, direction;
COMMENT ON VIEW traffic_direction_shares IS 'Connections and bytes by direction (inbound, outbound, internal, external) per source, with their shares.';
COMMENT ON COLUMN traffic_direction_shares.source IS 'flows or connections.';
COMMENT ON COLUMN traffic_direction_shares.direction IS 'inbound, outbound, internal or external (see connection_events.direction).';
COMMENT ON COLUMN traffic_direction_shares.connections IS 'Connections in that direction.';
COMMENT ON COLUMN traffic_direction_shares.connection_share IS 'Share of the source''s connections.';
COMMENT ON COLUMN traffic_direction_shares.bytes IS 'Payload bytes both ways (unknown counters count as 0).';
COMMENT ON COLUMN traffic_direction_shares.byte_share IS 'Share of the source''s bytes; NULL when no bytes are known.';

CREATE VIEW process_traffic AS
SELECT coalesce(process_name, '?') AS process_name, count(DISTINCT pid) AS pids, count(*) AS connections,
       count(*) FILTER (WHERE open) AS open_now, count(*) FILTER (WHERE proto = 'tcp') AS tcp,
       count(*) FILTER (WHERE proto = 'udp') AS udp, count(DISTINCT CASE WHEN direction = 'inbound' THEN src_h ELSE dst_h END) AS peers,
       sum(CASE WHEN direction = 'inbound' THEN bytes_in ELSE bytes_out END) AS bytes_sent,
       sum(CASE WHEN direction = 'inbound' THEN bytes_out ELSE bytes_in END) AS bytes_received,
       min(start_ts) AS first_seen, max(end_ts) AS last_seen
FROM connection_events
WHERE source = 'connections'
GROUP BY 1;
COMMENT ON VIEW process_traffic IS 'Per process (live history): connections, how many are open, TCP/UDP split, distinct peers and bytes sent and received by this host.';
COMMENT ON COLUMN process_traffic.process_name IS 'Process name (? when unreadable).';
COMMENT ON COLUMN process_traffic.pids IS 'Distinct process ids with that name.';
COMMENT ON COLUMN process_traffic.connections IS 'Connections (listeners excluded).';
COMMENT ON COLUMN process_traffic.open_now IS 'Of those, still open.';
COMMENT ON COLUMN process_traffic.tcp IS 'TCP connections.';
COMMENT ON COLUMN process_traffic.udp IS 'UDP connections.';
COMMENT ON COLUMN process_traffic.peers IS 'Distinct remote addresses.';
COMMENT ON COLUMN process_traffic.bytes_sent IS 'Bytes this host sent on them (kernel counters; NULL when none known).';
COMMENT ON COLUMN process_traffic.bytes_received IS 'Bytes this host received on them.';
COMMENT ON COLUMN process_traffic.first_seen IS 'Start of its first connection.';
COMMENT ON COLUMN process_traffic.last_seen IS 'Latest sighting of its connections.';

CREATE VIEW protocol_comparison AS
SELECT source, proto, count(*) AS connections,
       sum(bytes_out) AS bytes_out, sum(bytes_in) AS bytes_in,
       sum(packets_out) + sum(packets_in) AS packets,
       round((sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) FILTER (WHERE packets_out IS NOT NULL))
             / nullif(sum(packets_out + packets_in), 0), 1) AS payload_bytes_per_packet,
       round(sum(wire_bytes_out + wire_bytes_in) / nullif(sum(packets_out + packets_in) FILTER (WHERE wire_bytes_out IS NOT NULL), 0), 1) AS wire_bytes_per_packet,
       round(avg(duration_s), 3) AS mean_duration_s,
       round(count(*) FILTER (WHERE failed) / count(*), 4) AS failed_share
FROM connection_events
GROUP BY ALL;
COMMENT ON VIEW protocol_comparison IS 'Protocols compared per source: connections, bytes, packets and bytes per packet where packets are known (flows; live TCP counts segments), mean duration and share of failed attempts.';
COMMENT ON COLUMN protocol_comparison.source IS 'flows or connections.';
COMMENT ON COLUMN protocol_comparison.proto IS 'tcp, udp or icmp.';
COMMENT ON COLUMN protocol_comparison.connections IS 'Connections.';
COMMENT ON COLUMN protocol_comparison.bytes_out IS 'Payload bytes sent by the opening sides.';
COMMENT ON COLUMN protocol_comparison.bytes_in IS 'Payload bytes sent by the accepting sides.';
COMMENT ON COLUMN protocol_comparison.packets IS 'Packets both ways (NULL when unknown).';
COMMENT ON COLUMN protocol_comparison.payload_bytes_per_packet IS 'Payload bytes per packet over connections with known packet counts.';
COMMENT ON COLUMN protocol_comparison.wire_bytes_per_packet IS 'IP-level bytes per packet (flows only): headers included, so the protocol''s overhead shows against payload_bytes_per_packet.';
COMMENT ON COLUMN protocol_comparison.mean_duration_s IS 'Mean connection duration, seconds.';
COMMENT ON COLUMN protocol_comparison.failed_share IS 'Share of failed or half-open attempts.';

CREATE VIEW traffic_rates AS
SELECT source, date_trunc('minute', start_ts) AS minute, count(*) AS connections,
       count(*) FILTER (WHERE failed) AS failed,
       sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) AS bytes,
       round(count(*) / 60, 3) AS connections_per_s,
       round(sum(coalesce(bytes_out, 0) + coalesce(bytes_in, 0)) / 60, 1) AS bytes_per_s,
       count(DISTINCT src_h) AS sources, count(DISTINCT dst_h) AS destinations
FROM connection_events
GROUP BY ALL;
COMMENT ON VIEW traffic_rates IS 'Rates over time per source: connections started per minute and their bytes (counted in the minute the connection started), with per-second rates; minutes without connections have no row.';
COMMENT ON COLUMN traffic_rates.source IS 'flows or connections.';
COMMENT ON COLUMN traffic_rates.minute IS 'UTC minute.';
COMMENT ON COLUMN traffic_rates.connections IS 'Connections that started in the minute.';
COMMENT ON COLUMN traffic_rates.failed IS 'Of those, failed or half-open attempts.';
COMMENT ON COLUMN traffic_rates.bytes IS 'Their payload bytes both ways.';
COMMENT ON COLUMN traffic_rates.connections_per_s IS 'connections / 60.';
COMMENT ON COLUMN traffic_rates.bytes_per_s IS 'bytes / 60.';
COMMENT ON COLUMN traffic_rates.sources IS 'Distinct opening addresses.';
COMMENT ON COLUMN traffic_rates.destinations IS 'Distinct accepting addresses.';
