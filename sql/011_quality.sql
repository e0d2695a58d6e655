-- netlens migration 11: detection quality (issue 21).
--
-- Beacons: a score alone rewarded any pair busy all day, so each row now says what the pair is
-- (status) and, unless it is a confirmed beacon, why not (reason). Port scans count failed or
-- unanswered attempts only; the comments below say so. Earlier runs keep NULL in the new columns.

ALTER TABLE beacons ADD COLUMN status VARCHAR;
ALTER TABLE beacons ADD COLUMN reason VARCHAR;

COMMENT ON TABLE beacons IS 'Beacon candidates: every pair (src, dst:port, proto) with at least the minimum number of connections and 3 gaps of a second or more in the window, scored in the manner of RITA from the gaps between connection starts, the bytes sent, how evenly the connections fill the window''s bins and how long they persist, then gated: status says whether the pair is a beacon, a candidate or irregular, and reason why it is not confirmed. Ranked beacons first, then candidates, then by score.';
COMMENT ON COLUMN beacons.gap_skew_score IS '1 - |Bowley skew| of the gaps, (Q1 + Q3 - 2 Q2) / (Q3 - Q1), taken as 0 when Q3 = Q1, Q2 = Q1 or Q2 = Q3, quartiles within max(1 s, time_resolution_s) counting as equal as on RITA''s whole-second timestamps (symmetric gaps score 1). Gaps under 1 s (sessions opened together) are dropped first, as RITA drops zero gaps.';
COMMENT ON COLUMN beacons.bytes_skew_score IS '1 - |Bowley skew| of the bytes sent per connection, the skew taken as 0 when the quartiles are within 10 bytes (RITA''s floor on the spread); NULL when bytes are unknown.';
COMMENT ON COLUMN beacons.is_beacon IS 'status = ''beacon'' (runs before migration 11: score >= --beacon-threshold).';
COMMENT ON COLUMN beacons.status IS 'beacon: gap_score >= --beacon-min-gap-score (default 0.8), first to last connection >= --beacon-min-span (default 1 h), the period at least 2 x time_resolution_s, and score >= --beacon-threshold (default 0.8); candidate: regular gaps, but another of those fails (see reason); irregular: gap_score below --beacon-min-gap-score (busy, not periodic). NULL for runs before migration 11.';
COMMENT ON COLUMN beacons.reason IS 'Why the pair is not a confirmed beacon: every gate it failed, with its option (e.g. ''too short: connections span 2.0 min of the 1.0 h a beacon needs (--beacon-min-span)''); NULL for beacons.';

-- The view's column list was fixed when 004 created it: recreate it to show the new columns,
-- which drops its column comments, so they are restated here.
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
COMMENT ON COLUMN latest_beacons.is_beacon IS 'status = ''beacon''.';
COMMENT ON COLUMN latest_beacons.time_resolution_s IS 'How precisely the start times are known: 0.000001 for flows, the capture interval for live snapshots (deviations below it are not counted against the gaps).';
COMMENT ON COLUMN latest_beacons.processes IS 'Processes that owned the connections (live data), comma separated; NULL for flows.';
COMMENT ON COLUMN latest_beacons.status IS 'beacon, candidate (regular gaps, another gate fails: see reason) or irregular (gaps not regular); see beacons.status.';
COMMENT ON COLUMN latest_beacons.reason IS 'Why the pair is not a confirmed beacon; NULL for beacons.';

COMMENT ON TABLE port_scans IS 'Port scans (one source failing to reach many ports of one host) and address scans (one source failing to reach one port on many hosts) within the scan window, as Zeek''s scan policy counts them: only failed or unanswered attempts count toward the thresholds (flows: conn_state S0, REJ, RSTOS0, RSTRH, SH, SHR, or RSTO/RSTR before any payload; live: a connection last seen in SYN_SENT or SYN_RECV, never established); successful connections in the window are kept as context in attempts. One row per scanner and target (host, or port for address scans), for the window where it failed the most.';
COMMENT ON COLUMN port_scans.distinct_ports IS 'Distinct destination ports with a failed attempt in the window.';
COMMENT ON COLUMN port_scans.distinct_hosts IS 'Distinct destination hosts with a failed attempt in the window.';
COMMENT ON COLUMN port_scans.attempts IS 'Connections of the scanner to the target in the window, failed and successful (context).';
COMMENT ON COLUMN port_scans.failed IS 'Of those, failed or unanswered attempts (see the table comment).';
COMMENT ON COLUMN port_scans.targets IS 'Address scans: the first 20 hosts with a failed attempt, comma separated; port scans: the first 20 such ports.';
COMMENT ON COLUMN latest_port_scans.distinct_ports IS 'Distinct destination ports with a failed attempt in the window.';
COMMENT ON COLUMN latest_port_scans.distinct_hosts IS 'Distinct destination hosts with a failed attempt in the window.';
COMMENT ON COLUMN latest_port_scans.attempts IS 'Connections of the scanner to the target in the window, failed and successful (context).';
COMMENT ON COLUMN latest_port_scans.failed IS 'Of those, failed or unanswered attempts.';
COMMENT ON COLUMN latest_port_scans.targets IS 'Address scans: the first 20 hosts with a failed attempt; port scans: the first 20 such ports.';

COMMENT ON COLUMN bursts.mad IS 'The spread the threshold uses: 1.4826 x the median absolute deviation of the baseline''s bin values (a standard deviation for normal data), floored at --burst-floor-connections (default 1 connection) or --burst-floor-bytes (default 1000000 bytes) per bin, so a mostly idle entity still has a scale of its own unit. Runs before migration 11: the unscaled MAD floored at 1.';
COMMENT ON COLUMN bursts.baseline IS 'Median of the baseline''s bin values, empty bins counted: every bin of the window, or when the window spans 3 days or more (and bins are at most an hour) the bins of the same UTC hour of day as the peak.';
COMMENT ON COLUMN bursts.threshold IS 'baseline + k x mad; bins above it (and at least --burst-min-connections or --burst-min-bytes) are burst bins.';
COMMENT ON COLUMN bursts.mads_above IS '(peak - baseline) / mad: a robust z-score.';
COMMENT ON COLUMN latest_bursts.mad IS '1.4826 x MAD of the baseline''s bins, floored at --burst-floor-connections or --burst-floor-bytes (see bursts.mad).';
COMMENT ON COLUMN latest_bursts.baseline IS 'Median of the baseline''s bin values: the whole window, or the same UTC hour of day when the window spans 3 days or more (see bursts.baseline).';
COMMENT ON TABLE bursts IS 'Bursts: runs of consecutive bins in which a process''s, host''s or pair''s connection count or bytes exceeded its own baseline, median + k x max(1.4826 x MAD, floor) over every bin of the window (empty bins included), or over the same hour of day on the other days when the window spans 3 days or more.';

-- Anomalies are rows strictly above the threshold (scikit-learn's predict), so ties at the
-- threshold no longer push the flagged share above the contamination.
COMMENT ON COLUMN anomaly_scores.is_anomaly IS 'score strictly above the model''s threshold (the training scores'' (1 - contamination) quantile; runs before migration 11: at or above). On rows like the training rows about the contamination share is flagged by construction.';
COMMENT ON COLUMN latest_anomaly_scores.is_anomaly IS 'score strictly above the model''s threshold (the training scores'' (1 - contamination) quantile).';
COMMENT ON COLUMN verdicts.is_anomaly IS 'score > the model''s threshold (the baseline scores'' 1 - contamination quantile): on traffic like the baseline about the contamination share of windows is Anomalous by construction.';
COMMENT ON COLUMN latest_verdicts.is_anomaly IS 'score > the model''s threshold (the baseline scores'' 1 - contamination quantile).';
COMMENT ON COLUMN verdicts.reason IS 'Why, in words, starting with what decided the verdict: the score against the threshold (Anomalous), the unseen flow (New Flow), the segment change (Segment Drift), or for Trusted ''known flow in its usual segment, score ... at or below threshold ...''; a new port or protocol that did not decide it follows as a note. Runs before migration 11 listed every observation, so a Trusted row could name a new port.';
COMMENT ON COLUMN latest_verdicts.reason IS 'Why, in words, starting with what decided the verdict; novelties that did not decide it follow as notes.';
