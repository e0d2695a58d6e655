-- netlens migration 7: policy verdicts (prototype 000's policy inference). `train policy`
-- learns a baseline from the older rows of a flow feature source and judges the newer ones.

CREATE TABLE verdicts (
    run_id            BIGINT NOT NULL,
    baseline_run      BIGINT NOT NULL,
    flow_id           VARCHAR NOT NULL,
    window_start      TIMESTAMP,
    host              VARCHAR,
    src_ip            VARCHAR NOT NULL,
    dst_ip            VARCHAR NOT NULL,
    protocol          VARCHAR,
    segment           INTEGER NOT NULL,
    baseline_segment  INTEGER,
    score             DOUBLE NOT NULL,
    is_anomaly        BOOLEAN NOT NULL,
    new_flow          BOOLEAN NOT NULL,
    new_port          BOOLEAN NOT NULL,
    new_protocol      BOOLEAN NOT NULL,
    drift             BOOLEAN NOT NULL,
    processes         VARCHAR,
    verdict           VARCHAR NOT NULL,
    risk              INTEGER NOT NULL,
    reason            VARCHAR NOT NULL
);
COMMENT ON TABLE verdicts IS 'Policy verdicts (train policy, watch): each flow of the judged windows as Anomalous, New Flow, Segment Drift or Trusted against a baseline, with a risk score. risk = round(100 * (0.5*a + 0.3*n + 0.2*d)): a = clamp((score - median baseline score) / (threshold - median baseline score), 0, 1); n = 1 for a new flow, 0.5 for a known flow on a port or protocol the baseline never used, else 0; d = 1 on segment drift.';
COMMENT ON COLUMN verdicts.run_id IS 'The policy run (model_runs.run_id, stage policy).';
COMMENT ON COLUMN verdicts.baseline_run IS 'The baseline judged against: its K-Means training run (policy_baseline.run_id, model_runs.run_id).';
COMMENT ON COLUMN verdicts.flow_id IS 'Row key of the source row (flow_features.flow_id: host, src -> dst and window).';
COMMENT ON COLUMN verdicts.window_start IS 'Start of the judged time window, UTC.';
COMMENT ON COLUMN verdicts.host IS 'Host the flow was seen on ('''' when the source has no host column).';
COMMENT ON COLUMN verdicts.src_ip IS 'Source (local) address.';
COMMENT ON COLUMN verdicts.dst_ip IS 'Destination (remote) address.';
COMMENT ON COLUMN verdicts.protocol IS 'The flow''s protocol when the source has one.';
COMMENT ON COLUMN verdicts.segment IS 'Segment the baseline K-Means model assigns the row.';
COMMENT ON COLUMN verdicts.baseline_segment IS 'The flow''s most frequent segment in the baseline; NULL for a new flow.';
COMMENT ON COLUMN verdicts.score IS 'Isolation Forest score of the row (0..1, higher = more anomalous), from the model trained on the baseline.';
COMMENT ON COLUMN verdicts.is_anomaly IS 'score >= the model''s threshold (the baseline scores'' 1 - contamination quantile).';
COMMENT ON COLUMN verdicts.new_flow IS 'The host and src -> dst pair never occurs in the baseline.';
COMMENT ON COLUMN verdicts.new_port IS 'remote_port_min or remote_port_max is a port no baseline row had (when the source has those columns).';
COMMENT ON COLUMN verdicts.new_protocol IS 'The protocol never occurs in the baseline (when the source has a protocol column).';
COMMENT ON COLUMN verdicts.drift IS 'Known flow in another segment than its usual baseline segment.';
COMMENT ON COLUMN verdicts.processes IS 'Processes owning the flow''s connections in the window (live history only).';
COMMENT ON COLUMN verdicts.verdict IS 'Anomalous, New Flow, Segment Drift or Trusted: the first that applies, in that order.';
COMMENT ON COLUMN verdicts.risk IS 'Risk score 0..100 (formula in the table comment); 60 and above is high risk.';
COMMENT ON COLUMN verdicts.reason IS 'Why, in words: the score against the threshold, novelty, the segment change.';

CREATE VIEW latest_verdicts AS
SELECT * FROM verdicts WHERE run_id = (SELECT max(run_id) FROM verdicts);
COMMENT ON VIEW latest_verdicts IS 'The verdicts of the newest policy run.';
COMMENT ON COLUMN latest_verdicts.run_id IS 'The policy run (model_runs.run_id, stage policy).';
COMMENT ON COLUMN latest_verdicts.baseline_run IS 'The baseline judged against: its K-Means training run (policy_baseline.run_id, model_runs.run_id).';
COMMENT ON COLUMN latest_verdicts.flow_id IS 'Row key of the source row (flow_features.flow_id: host, src -> dst and window).';
COMMENT ON COLUMN latest_verdicts.window_start IS 'Start of the judged time window, UTC.';
COMMENT ON COLUMN latest_verdicts.host IS 'Host the flow was seen on ('''' when the source has no host column).';
COMMENT ON COLUMN latest_verdicts.src_ip IS 'Source (local) address.';
COMMENT ON COLUMN latest_verdicts.dst_ip IS 'Destination (remote) address.';
COMMENT ON COLUMN latest_verdicts.protocol IS 'The flow''s protocol when the source has one.';
COMMENT ON COLUMN latest_verdicts.segment IS 'Segment the baseline K-Means model assigns the row.';
COMMENT ON COLUMN latest_verdicts.baseline_segment IS 'The flow''s most frequent segment in the baseline; NULL for a new flow.';
COMMENT ON COLUMN latest_verdicts.score IS 'Isolation Forest score of the row (0..1, higher = more anomalous), from the model trained on the baseline.';
COMMENT ON COLUMN latest_verdicts.is_anomaly IS 'score >= the model''s threshold (the baseline scores'' 1 - contamination quantile).';
COMMENT ON COLUMN latest_verdicts.new_flow IS 'The host and src -> dst pair never occurs in the baseline.';
COMMENT ON COLUMN latest_verdicts.new_port IS 'remote_port_min or remote_port_max is a port no baseline row had (when the source has those columns).';
COMMENT ON COLUMN latest_verdicts.new_protocol IS 'The protocol never occurs in the baseline (when the source has a protocol column).';
COMMENT ON COLUMN latest_verdicts.drift IS 'Known flow in another segment than its usual baseline segment.';
COMMENT ON COLUMN latest_verdicts.processes IS 'Processes owning the flow''s connections in the window (live history only).';
COMMENT ON COLUMN latest_verdicts.verdict IS 'Anomalous, New Flow, Segment Drift or Trusted: the first that applies, in that order.';
COMMENT ON COLUMN latest_verdicts.risk IS 'Risk score 0..100 (formula in the table comment); 60 and above is high risk.';
COMMENT ON COLUMN latest_verdicts.reason IS 'Why, in words: the score against the threshold, novelty, the segment change.';

CREATE TABLE policy_baseline (
    run_id   BIGINT NOT NULL,
    kind     VARCHAR NOT NULL,
    value    VARCHAR,
    segment  INTEGER,
    windows  BIGINT
);
COMMENT ON TABLE policy_baseline IS 'What a policy baseline trusts, written once when it is trained: every baseline flow (with its usual segment and how many windows it appeared in), protocol and remote port.';
COMMENT ON COLUMN policy_baseline.run_id IS 'The baseline: the run_id of its K-Means training run (verdicts.baseline_run).';
COMMENT ON COLUMN policy_baseline.kind IS 'flow, protocol or port.';
COMMENT ON COLUMN policy_baseline.value IS 'The flow (host src -> dst), protocol name or port number, as text.';
COMMENT ON COLUMN policy_baseline.segment IS 'For flows: the most frequent baseline segment; NULL otherwise.';
COMMENT ON COLUMN policy_baseline.windows IS 'For flows: baseline windows (rows) the flow appeared in; NULL otherwise.';

CREATE VIEW latest_policy_baseline AS
SELECT * FROM policy_baseline WHERE run_id = (SELECT max(run_id) FROM policy_baseline);
COMMENT ON VIEW latest_policy_baseline IS 'The newest policy baseline.';
COMMENT ON COLUMN latest_policy_baseline.run_id IS 'The baseline: the run_id of its K-Means training run (verdicts.baseline_run).';
COMMENT ON COLUMN latest_policy_baseline.kind IS 'flow, protocol or port.';
COMMENT ON COLUMN latest_policy_baseline.value IS 'The flow (host src -> dst), protocol name or port number, as text.';
COMMENT ON COLUMN latest_policy_baseline.segment IS 'For flows: the most frequent baseline segment; NULL otherwise.';
COMMENT ON COLUMN latest_policy_baseline.windows IS 'For flows: baseline windows (rows) the flow appeared in; NULL otherwise.';

-- Flows active in each window (from the sockets seen in the window's snapshots), with the
-- columns of flow_features: what watch judges, since a long-lived connection belongs to every
-- window it is seen in, not only to the window it opened in.
CREATE MACRO active_flow_features_by(width) AS TABLE
WITH per_connection AS (
    SELECT time_bucket(width, s.ts) AS window_start, l.host, s.local_addr, s.remote_addr, s.connection_id,
           any_value(s.proto) AS proto, any_value(s.local_port) AS local_port, any_value(s.remote_port) AS remote_port,
           min(l.first_seen) AS first_seen, max(s.ts) AS last_seen,
           max(s.bytes_sent) AS bytes_sent, max(s.bytes_received) AS bytes_received,
           any_value(coalesce(s.process_name, CAST(s.pid AS VARCHAR))) AS process
    FROM sockets s JOIN connection_lifetimes l USING (connection_id)
    WHERE s.remote_addr IS NOT NULL AND s.direction <> 'listen'
    GROUP BY ALL
)
SELECT host || ' ' || local_addr || ' -> ' || remote_addr || ' @ ' || CAST(window_start AS VARCHAR) AS flow_id,
       window_start,
       host,
       local_addr AS src_ip,
       remote_addr AS dst_ip,
       mode(proto) AS protocol,
       count(*) AS connection_count,
       count(DISTINCT local_port) AS unique_local_ports,
       count(DISTINCT remote_port) AS unique_remote_ports,
       min(remote_port) AS remote_port_min,
       max(remote_port) AS remote_port_max,
       avg(remote_port) AS remote_port_mean,
       coalesce(stddev_pop(remote_port), 0) AS remote_port_std,
       avg(epoch(last_seen) - epoch(first_seen)) AS mean_duration_s,
       max(epoch(last_seen) - epoch(first_seen)) AS max_duration_s,
       sum(bytes_sent) AS bytes_sent,
       sum(bytes_received) AS bytes_received,
       count(DISTINCT process) AS distinct_processes,
       min(first_seen) AS first_seen,
       max(last_seen) AS last_seen
FROM per_connection
GROUP BY window_start, host, local_addr, remote_addr;

CREATE VIEW active_flow_features AS SELECT * FROM active_flow_features_by(INTERVAL 1 MINUTE);
COMMENT ON VIEW active_flow_features IS 'Feature rows of flows ACTIVE in each 1-minute window (every connection seen in a snapshot of the window counts, however old), with the columns of flow_features; watch judges these. Other widths: SELECT * FROM active_flow_features_by(INTERVAL 5 SECOND). Durations run from the connection''s first_seen to its last sighting in the window; bytes are the kernel''s cumulative counters at that sighting.';
COMMENT ON COLUMN active_flow_features.flow_id IS 'Row key: host, src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN active_flow_features.window_start IS 'Start of the window (time_bucket of the snapshot time), UTC.';
COMMENT ON COLUMN active_flow_features.host IS 'Host the connections were seen on.';
COMMENT ON COLUMN active_flow_features.src_ip IS 'Local address.';
COMMENT ON COLUMN active_flow_features.dst_ip IS 'Remote address.';
COMMENT ON COLUMN active_flow_features.protocol IS 'Most frequent transport protocol (tcp or udp); categorical feature.';
COMMENT ON COLUMN active_flow_features.connection_count IS 'Connections of the flow seen in the window.';
COMMENT ON COLUMN active_flow_features.unique_local_ports IS 'Distinct local ports among them.';
COMMENT ON COLUMN active_flow_features.unique_remote_ports IS 'Distinct remote ports among them.';
COMMENT ON COLUMN active_flow_features.remote_port_min IS 'Lowest remote port.';
COMMENT ON COLUMN active_flow_features.remote_port_max IS 'Highest remote port.';
COMMENT ON COLUMN active_flow_features.remote_port_mean IS 'Mean remote port.';
COMMENT ON COLUMN active_flow_features.remote_port_std IS 'Population standard deviation of the remote ports.';
COMMENT ON COLUMN active_flow_features.mean_duration_s IS 'Mean age in seconds of the connections at their last sighting in the window.';
COMMENT ON COLUMN active_flow_features.max_duration_s IS 'Oldest connection''s age in seconds.';
COMMENT ON COLUMN active_flow_features.bytes_sent IS 'Sum over the connections of the kernel''s cumulative bytes sent at their last sighting in the window; NULL without counters.';
COMMENT ON COLUMN active_flow_features.bytes_received IS 'As bytes_sent, received.';
COMMENT ON COLUMN active_flow_features.distinct_processes IS 'Distinct owning processes (by name, else pid).';
COMMENT ON COLUMN active_flow_features.first_seen IS 'Earliest first_seen of the connections.';
COMMENT ON COLUMN active_flow_features.last_seen IS 'Latest sighting in the window.';
