-- netlens migration 37: each latest_ detector view shows the newest run over each source.
--
-- A detector run reads one source, live `connections` or imported `flows`, and the latest_ views
-- showed the newest run of all: a server's scheduled `detect` on its live connections hid, within
-- minutes, the port scan an analyst had just found in an imported capture (the dashboard's and
-- insights' scans fell to 0 while port_scans still held it). The two sources hold different
-- traffic, so the newest run over each is current: the views now show both.
-- CREATE OR REPLACE drops a view's comments, so they are restated (as migration 32 left them).

CREATE OR REPLACE VIEW latest_port_scans AS
SELECT * FROM port_scans WHERE run_id IN (SELECT max(run_id) FROM detector_runs WHERE detector = 'port_scans' GROUP BY source);
COMMENT ON VIEW latest_port_scans IS 'port_scans of the newest port_scans run over each source (live connections, imported flows).';
COMMENT ON COLUMN latest_port_scans.run_id IS 'The run (detector_runs.run_id).';
COMMENT ON COLUMN latest_port_scans.kind IS 'port_scan (many ports of one host, vertical) or address_scan (one port on many hosts, horizontal).';
COMMENT ON COLUMN latest_port_scans.scanner IS 'Address that opened the connections.';
COMMENT ON COLUMN latest_port_scans.target IS 'The scanned host (port_scan); NULL for address scans, whose hosts are in targets.';
COMMENT ON COLUMN latest_port_scans.target_port IS 'The scanned port (address_scan); NULL for port scans.';
COMMENT ON COLUMN latest_port_scans.proto IS 'tcp or udp.';
COMMENT ON COLUMN latest_port_scans.distinct_ports IS 'Distinct destination ports with a failed attempt in the window.';
COMMENT ON COLUMN latest_port_scans.distinct_hosts IS 'Distinct destination hosts with a failed attempt in the window.';
COMMENT ON COLUMN latest_port_scans.attempts IS 'Connections of the scanner to the target in the window, failed and successful (context).';
COMMENT ON COLUMN latest_port_scans.failed IS 'Of those, failed or unanswered attempts.';
COMMENT ON COLUMN latest_port_scans.failed_share IS 'failed / attempts: near 1 for SYN scans of mostly closed ports.';
COMMENT ON COLUMN latest_port_scans.window_start IS 'First connection of the densest scan window.';
COMMENT ON COLUMN latest_port_scans.window_end IS 'Last connection of the densest scan window (at most the scan window after window_start).';
COMMENT ON COLUMN latest_port_scans.targets IS 'Address scans: the first 20 hosts with a failed attempt; port scans: the first 20 such ports.';
COMMENT ON COLUMN latest_port_scans.score IS '0..1: 0.6 x min(1, distinct / (4 x threshold)) + 0.4 x failed_share, distinct being ports (port_scan) or hosts (address_scan).';
COMMENT ON COLUMN latest_port_scans.suppressed IS 'True when an analyst''s false_positive mark suppressed the row: kept, not an alarm; see port_scans.suppressed.';
COMMENT ON COLUMN latest_port_scans.suppressed_by IS 'The mark that suppressed it (feedback.feedback_id); NULL when not suppressed.';

CREATE OR REPLACE VIEW latest_beacons AS
SELECT * FROM beacons WHERE run_id IN (SELECT max(run_id) FROM detector_runs WHERE detector = 'beacons' GROUP BY source);
COMMENT ON VIEW latest_beacons IS 'beacons of the newest beacons run over each source (live connections, imported flows).';
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
COMMENT ON COLUMN latest_beacons.gap_mad_score IS '1 - max(0, MAD - time_resolution_s / 2) / median gap, clamped to 0..1 (0 when the median gap is 0); see beacons.gap_mad_score.';
COMMENT ON COLUMN latest_beacons.gap_score IS 'Gap regularity, the mean of gap_skew_score and gap_mad_score (RITA''s timestamp score).';
COMMENT ON COLUMN latest_beacons.bytes_skew_score IS '1 - |Bowley skew| of the bytes sent per connection; NULL when bytes are unknown.';
COMMENT ON COLUMN latest_beacons.bytes_mad_score IS '1 - MAD / median of the bytes sent, clamped to 0..1 (0 when the median is below 1 byte); NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bytes_small_score IS '1 - mode of the bytes sent / 65535, clamped to 0..1: beacons send little; NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bytes_score IS 'Bytes regularity, the mean of the three bytes sub-scores (RITA''s data size score), over the connections whose bytes are known; NULL when fewer than 3 or fewer than half are known, and then left out of score.';
COMMENT ON COLUMN latest_beacons.median_bytes IS 'Median bytes sent per connection; NULL when unknown.';
COMMENT ON COLUMN latest_beacons.bins_score IS 'RITA''s histogram score: the better of evenness (1 - sd / mean of connections per bin) and the two-mode fit; see beacons.bins_score.';
COMMENT ON COLUMN latest_beacons.persistence_score IS 'max(coverage, consistency), RITA''s duration score; 0 when the pair is active in fewer than a quarter of the bins; see beacons.persistence_score.';
COMMENT ON COLUMN latest_beacons.score IS 'Weighted mean of gap_score, bytes_score, bins_score and persistence_score with the run''s weights (default 0.25 each); a NULL sub-score is left out and the other weights renormalised.';
COMMENT ON COLUMN latest_beacons.is_beacon IS 'status = ''beacon''.';
COMMENT ON COLUMN latest_beacons.time_resolution_s IS 'How precisely the start times are known: 0.000001 for flows, the capture interval for live snapshots (deviations below it are not counted against the gaps).';
COMMENT ON COLUMN latest_beacons.processes IS 'Processes that owned the connections (live data), comma separated; NULL for flows.';
COMMENT ON COLUMN latest_beacons.status IS 'beacon, candidate (regular gaps, another gate fails: see reason) or irregular (gaps not regular); see beacons.status.';
COMMENT ON COLUMN latest_beacons.reason IS 'Why the pair is not a confirmed beacon; NULL for beacons.';
COMMENT ON COLUMN latest_beacons.suppressed IS 'True when an analyst''s false_positive mark suppressed the row: kept, not an alarm; see beacons.suppressed.';
COMMENT ON COLUMN latest_beacons.suppressed_by IS 'The mark that suppressed it (feedback.feedback_id); NULL when not suppressed.';

CREATE OR REPLACE VIEW latest_bursts AS
SELECT * FROM bursts WHERE run_id IN (SELECT max(run_id) FROM detector_runs WHERE detector = 'bursts' GROUP BY source);
COMMENT ON VIEW latest_bursts IS 'bursts of the newest bursts run over each source (live connections, imported flows).';
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
COMMENT ON COLUMN latest_bursts.baseline IS 'Median of the baseline''s bin values: the whole window, or the same UTC hour of day when the window spans 3 days or more (see bursts.baseline).';
COMMENT ON COLUMN latest_bursts.mad IS '1.4826 x MAD of the baseline''s bins, floored at --burst-floor-connections or --burst-floor-bytes (see bursts.mad).';
COMMENT ON COLUMN latest_bursts.threshold IS 'baseline + k x mad; bins above it (and at least --burst-min-connections or --burst-min-bytes) are burst bins.';
COMMENT ON COLUMN latest_bursts.factor IS 'peak / max(baseline, 1): how many times the usual level.';
COMMENT ON COLUMN latest_bursts.mads_above IS '(peak - baseline) / mad: a robust z-score.';
COMMENT ON COLUMN latest_bursts.suppressed IS 'True when an analyst''s false_positive mark suppressed the row: kept, not an alarm; see bursts.suppressed.';
COMMENT ON COLUMN latest_bursts.suppressed_by IS 'The mark that suppressed it (feedback.feedback_id); NULL when not suppressed.';

CREATE OR REPLACE VIEW latest_long_connections AS
SELECT * FROM long_connections WHERE run_id IN (SELECT max(run_id) FROM detector_runs WHERE detector = 'long_connections' GROUP BY source);
COMMENT ON VIEW latest_long_connections IS 'long_connections of the newest long_connections run over each source (live connections, imported flows).';
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
COMMENT ON COLUMN latest_long_connections.suppressed IS 'True when an analyst''s false_positive mark suppressed the row: kept, not an alarm; see long_connections.suppressed.';
COMMENT ON COLUMN latest_long_connections.suppressed_by IS 'The mark that suppressed it (feedback.feedback_id); NULL when not suppressed.';
