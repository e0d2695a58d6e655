-- netlens migration 32: analysts' suppressions of detector rows (issue 21).
--
-- A false_positive mark (feedback) on a detector row is the analyst saying "this is known and
-- benign", e.g. the hourly backup job flagged as a beacon. The detectors now look up the newest
-- mark of each row's suppression key (detector_suppressions) when they store a row: a row whose
-- key has a false_positive mark as its newest is stored as before (nothing hidden, is_beacon is
-- still the detector's judgement) but suppressed, with the mark that did it, and not counted as an
-- alarm. A newer true_positive mark on the same key lifts it for later runs. Rows of earlier runs
-- are never rewritten: their suppressed is NULL.

ALTER TABLE port_scans ADD COLUMN suppressed BOOLEAN;
ALTER TABLE port_scans ADD COLUMN suppressed_by BIGINT;
ALTER TABLE beacons ADD COLUMN suppressed BOOLEAN;
ALTER TABLE beacons ADD COLUMN suppressed_by BIGINT;
ALTER TABLE bursts ADD COLUMN suppressed BOOLEAN;
ALTER TABLE bursts ADD COLUMN suppressed_by BIGINT;
ALTER TABLE long_connections ADD COLUMN suppressed BOOLEAN;
ALTER TABLE long_connections ADD COLUMN suppressed_by BIGINT;

COMMENT ON COLUMN port_scans.suppressed IS 'True when an analyst''s false_positive mark is the newest mark on the row''s suppression key (scanner|kind|target|target_port|proto, its own key; a NULL column is an empty field) when the run stored it: kept, but not an alarm (see detector_suppressions); false otherwise; NULL for runs before migration 32.';
COMMENT ON COLUMN port_scans.suppressed_by IS 'The false_positive mark that suppressed the row (feedback.feedback_id); NULL when not suppressed.';
COMMENT ON COLUMN beacons.suppressed IS 'True when an analyst''s false_positive mark is the newest mark on the row''s suppression key (src|dst|dst_port|proto, its own key; a NULL column is an empty field) when the run stored it: kept, but not an alarm (see detector_suppressions); false otherwise; NULL for runs before migration 32.';
COMMENT ON COLUMN beacons.suppressed_by IS 'The false_positive mark that suppressed the row (feedback.feedback_id); NULL when not suppressed.';
COMMENT ON COLUMN bursts.suppressed IS 'True when an analyst''s false_positive mark is the newest mark on the row''s suppression key (entity_kind|entity|metric: its key without start_ts, so a mark covers the entity''s bursts of that metric at any time; a NULL column is an empty field) when the run stored it: kept, but not an alarm (see detector_suppressions); false otherwise; NULL for runs before migration 32.';
COMMENT ON COLUMN bursts.suppressed_by IS 'The false_positive mark that suppressed the row (feedback.feedback_id); NULL when not suppressed.';
COMMENT ON COLUMN long_connections.suppressed IS 'True when an analyst''s false_positive mark is the newest mark on the row''s suppression key (src|dst|dst_port|proto: the service, not the one connection, whose event_id never recurs; a NULL column is an empty field) when the run stored it: kept, but not an alarm (see detector_suppressions); false otherwise; NULL for runs before migration 32.';
COMMENT ON COLUMN long_connections.suppressed_by IS 'The false_positive mark that suppressed the row (feedback.feedback_id); NULL when not suppressed.';

-- The marks as the detectors read them: the newest mark of each table and suppression key, kept
-- when it is a false_positive. Marks on port_scans and beacons rows name the key itself; a bursts
-- mark's start_ts is dropped; a long_connections mark names an event_id, whose row gives the key,
-- or the key itself (it holds '|', an event id never does).
CREATE VIEW detector_suppressions AS
WITH marks AS (
    SELECT f.feedback_id, f.marked_at, f.subject, f.run_id, f.row_key, f.label, f.note, f.analyst,
           CASE f.subject
               WHEN 'bursts' THEN regexp_replace(f.row_key, '\|[^|]*$', '')
               WHEN 'long_connections' THEN CASE WHEN contains(f.row_key, '|') THEN f.row_key ELSE (
                   SELECT min(concat_ws('|', l.src, l.dst, coalesce(CAST(l.dst_port AS VARCHAR), ''), l.proto))
                   FROM long_connections l
                   WHERE l.event_id = f.row_key AND (f.run_id IS NULL OR l.run_id = f.run_id)) END
               ELSE f.row_key END AS suppress_key
    FROM feedback f
    WHERE f.subject IN ('port_scans', 'beacons', 'bursts', 'long_connections'))
SELECT subject, suppress_key, feedback_id, marked_at, run_id, row_key, note, analyst
FROM marks
WHERE suppress_key IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY subject, suppress_key ORDER BY feedback_id DESC) = 1
    AND label = 'false_positive';
COMMENT ON VIEW detector_suppressions IS 'What the detectors suppress: per detector table and suppression key, the newest analyst''s mark (feedback) when it is a false_positive. A detector run stores a row with this key as suppressed (suppressed_by = feedback_id); a newer true_positive mark on the key takes it out of here.';
COMMENT ON COLUMN detector_suppressions.subject IS 'The detector table: port_scans, beacons, bursts or long_connections.';
COMMENT ON COLUMN detector_suppressions.suppress_key IS 'Rows with this key are suppressed. port_scans: scanner|kind|target|target_port|proto; beacons: src|dst|dst_port|proto; bursts: entity_kind|entity|metric (any start_ts); long_connections: src|dst|dst_port|proto. A NULL field is empty.';
COMMENT ON COLUMN detector_suppressions.feedback_id IS 'The false_positive mark (feedback.feedback_id): suppressed_by of the rows it suppresses.';
COMMENT ON COLUMN detector_suppressions.marked_at IS 'When the mark was made, UTC.';
COMMENT ON COLUMN detector_suppressions.run_id IS 'Run of the marked row; NULL for a mark made without one (it suppresses alike).';
COMMENT ON COLUMN detector_suppressions.row_key IS 'The mark''s row_key as given (see feedback.row_key).';
COMMENT ON COLUMN detector_suppressions.note IS 'The analyst''s note: why the rows are benign.';
COMMENT ON COLUMN detector_suppressions.analyst IS 'Who marked it.';

-- Marks on long_connections may name the key instead of an event id.
COMMENT ON COLUMN feedback.row_key IS 'The row within its table and run: anomaly_scores.row_id or ensemble_scores.row_id, verdicts.flow_id, long_connections.event_id (or src|dst|dst_port|proto for every connection to that service), or for port_scans, beacons and bursts their identifying columns joined by | (scanner|kind|target|target_port|proto; src|dst|dst_port|proto; entity_kind|entity|metric|start_ts), a NULL column as an empty field. A false_positive mark on a detector row suppresses later runs'' rows with its key (detector_suppressions).';
COMMENT ON COLUMN latest_feedback.row_key IS 'The row within its table and run (see feedback.row_key).';

-- Each latest_ view's column list was fixed when it was created: recreate them to show the new
-- columns, which drops their comments, so they are restated here.
CREATE OR REPLACE VIEW latest_port_scans AS
SELECT * FROM port_scans WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'port_scans');
COMMENT ON VIEW latest_port_scans IS 'port_scans of the newest port_scans run.';
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
SELECT * FROM beacons WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'beacons');
COMMENT ON VIEW latest_beacons IS 'beacons of the newest beacons run.';
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
SELECT * FROM bursts WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'bursts');
COMMENT ON VIEW latest_bursts IS 'bursts of the newest bursts run.';
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
SELECT * FROM long_connections WHERE run_id = (SELECT max(run_id) FROM detector_runs WHERE detector = 'long_connections');
COMMENT ON VIEW latest_long_connections IS 'long_connections of the newest long_connections run.';
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
