-- netlens migration 19: feature rows oriented from the side that opened the connection, ports
-- as categories, and in-sample evaluations marked (issue 21).
--
-- flow_features and active_flow_features took local -> remote, so the "remote port" of an
-- accepted (inbound) connection was the client's ephemeral port and almost every inbound flow
-- looked like a new port. They now read src -> dst as connection_events does: the opener is src,
-- the accepting side dst, and the remote_port_* columns hold the accepting side's (service)
-- port, as imported_flow_features' responder ports always did. Port numbers are not quantities
-- (443 is not "near" 445): service_port names the service port as a category, and the analysis
-- stages no longer pick the port-number columns as numeric features by default.

CREATE MACRO service_port_category(proto, port) AS (
    CASE WHEN port IS NULL THEN NULL
         WHEN proto = 'icmp' THEN 'icmp'
         WHEN port IN (20, 21, 22, 23, 25, 53, 67, 68, 69, 80, 88, 110, 123, 135, 137, 138, 139, 143, 161, 162,
                       389, 443, 445, 465, 514, 587, 636, 853, 993, 995, 1433, 1521, 3306, 3389, 5353, 5432,
                       5900, 6379, 8080, 8443, 9200, 27017)
              THEN proto || '/' || CAST(port AS VARCHAR)
         WHEN port < 1024 THEN 'other well-known'
         WHEN port < 49152 THEN 'other registered'
         ELSE 'ephemeral' END
);
COMMENT ON MACRO service_port_category IS 'A service port as a category: proto/port for the common service ports (tcp/443, udp/53, tcp/22, ...), else other well-known (below 1024), other registered (below 49152) or ephemeral; icmp for ICMP; NULL without a port.';

CREATE OR REPLACE MACRO flow_features_by(width) AS TABLE
SELECT host || ' ' || src_h || ' -> ' || dst_h || ' @ ' || CAST(time_bucket(width, start_ts) AS VARCHAR) AS flow_id,
       time_bucket(width, start_ts) AS window_start,
       host,
       src_h AS src_ip,
       dst_h AS dst_ip,
       mode(proto) AS protocol,
       mode(direction) AS direction,
       mode(service_port_category(proto, dst_p)) AS service_port,
       count(*) AS connection_count,
       count(DISTINCT src_p) AS unique_local_ports,
       count(DISTINCT dst_p) AS unique_remote_ports,
       min(dst_p) AS remote_port_min,
       max(dst_p) AS remote_port_max,
       avg(dst_p) AS remote_port_mean,
       coalesce(stddev_pop(dst_p), 0) AS remote_port_std,
       avg(duration_s) AS mean_duration_s,
       max(duration_s) AS max_duration_s,
       sum(bytes_out) AS bytes_sent,
       sum(bytes_in) AS bytes_received,
       count(DISTINCT coalesce(process_name, CAST(pid AS VARCHAR))) AS distinct_processes,
       min(start_ts) AS first_seen,
       max(end_ts) AS last_seen
FROM connection_events
WHERE source = 'connections'
GROUP BY ALL;

CREATE OR REPLACE VIEW flow_features AS SELECT * FROM flow_features_by(INTERVAL 5 MINUTE);
COMMENT ON VIEW flow_features IS 'Feature rows for the analysis stages from live capture: one row per host, opener -> accepting address and 5-minute window (by first_seen) of connections, oriented as connection_events (an inbound connection''s src_ip is the remote client; a connection between two local processes counts once). Other window widths: SELECT * FROM flow_features_by(INTERVAL 30 SECOND). flow_id, window_start, host, src_ip, dst_ip, first_seen and last_seen are keys, not features; the remote_port_* columns are port numbers, not picked as features by default (service_port is their category).';
COMMENT ON COLUMN flow_features.flow_id IS 'Row key: host, src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN flow_features.window_start IS 'Start of the time window (time_bucket of connections.first_seen), UTC.';
COMMENT ON COLUMN flow_features.host IS 'Host the connections were seen on.';
COMMENT ON COLUMN flow_features.src_ip IS 'Address of the side that opened the connections (connection_events.src_h): the local address for outbound ones, the remote client for inbound ones.';
COMMENT ON COLUMN flow_features.dst_ip IS 'Address of the side that accepted them (connection_events.dst_h).';
COMMENT ON COLUMN flow_features.protocol IS 'Most frequent transport protocol of the flow''s connections (tcp or udp); categorical feature.';
COMMENT ON COLUMN flow_features.direction IS 'Most frequent direction (inbound, outbound, internal); categorical feature.';
COMMENT ON COLUMN flow_features.service_port IS 'Most frequent service port of the accepting side as a category (service_port_category: tcp/443, udp/53, ..., other well-known, other registered, ephemeral); categorical feature.';
COMMENT ON COLUMN flow_features.connection_count IS 'Connections (socket lifetimes) of the flow first seen in the window.';
COMMENT ON COLUMN flow_features.unique_local_ports IS 'Distinct ports of the opening side (src_ip) among them: its ephemeral ports.';
COMMENT ON COLUMN flow_features.unique_remote_ports IS 'Distinct ports of the accepting side (dst_ip): its service ports.';
COMMENT ON COLUMN flow_features.remote_port_min IS 'Lowest service port (accepting side); a port number, not a default feature.';
COMMENT ON COLUMN flow_features.remote_port_max IS 'Highest service port; a port number, not a default feature.';
COMMENT ON COLUMN flow_features.remote_port_mean IS 'Mean service port; a port number, not a default feature.';
COMMENT ON COLUMN flow_features.remote_port_std IS 'Population standard deviation of the service ports (0 for one connection); not a default feature.';
COMMENT ON COLUMN flow_features.mean_duration_s IS 'Mean observed duration of the connections in seconds (connections.duration_s).';
COMMENT ON COLUMN flow_features.max_duration_s IS 'Longest observed duration in seconds.';
COMMENT ON COLUMN flow_features.bytes_sent IS 'Bytes the opening side sent (connection_events.bytes_out: the kernel''s counters, turned around for accepted connections); NULL when no counter was readable (UDP, non-Linux).';
COMMENT ON COLUMN flow_features.bytes_received IS 'Bytes the accepting side sent (connection_events.bytes_in); NULL as bytes_sent.';
COMMENT ON COLUMN flow_features.distinct_processes IS 'Distinct owning processes (by name, else pid).';
COMMENT ON COLUMN flow_features.first_seen IS 'Earliest first_seen of the connections.';
COMMENT ON COLUMN flow_features.last_seen IS 'Latest last_seen of the connections.';

-- Sockets seen in the window, turned around when this host's side accepted the connection (as
-- connection_events decides: inbound, or internal on a port the host listens on); of a
-- connection between two local processes only the opener's socket is kept.
CREATE OR REPLACE MACRO active_flow_features_by(width) AS TABLE
WITH per_connection AS (
    SELECT time_bucket(width, s.ts) AS window_start, l.host, s.local_addr, s.remote_addr, s.connection_id,
           any_value(s.proto) AS proto, any_value(s.local_port) AS local_port, any_value(s.remote_port) AS remote_port,
           arg_max(s.direction, s.ts) AS direction,
           min(l.first_seen) AS first_seen, max(s.ts) AS last_seen,
           max(s.bytes_sent) AS bytes_sent, max(s.bytes_received) AS bytes_received,
           any_value(coalesce(s.process_name, CAST(s.pid AS VARCHAR))) AS process
    FROM sockets s JOIN connection_lifetimes l USING (connection_id)
    WHERE s.remote_addr IS NOT NULL AND s.direction <> 'listen'
    GROUP BY ALL
),
marked AS (
    SELECT p.*, p.direction = 'inbound' OR (p.direction = 'internal' AND EXISTS (
               SELECT 1 FROM connections x WHERE x.direction = 'listen' AND x.host = p.host
               AND x.proto = p.proto AND x.local_port = p.local_port)) AS accepted
    FROM per_connection p
),
oriented AS (
    SELECT window_start, host, proto, direction, first_seen, last_seen, process,
           CASE WHEN accepted THEN remote_addr ELSE local_addr END AS src_ip,
           CASE WHEN accepted THEN remote_port ELSE local_port END AS src_port,
           CASE WHEN accepted THEN local_addr ELSE remote_addr END AS dst_ip,
           CASE WHEN accepted THEN local_port ELSE remote_port END AS dst_port,
           CASE WHEN accepted THEN bytes_received ELSE bytes_sent END AS bytes_out,
           CASE WHEN accepted THEN bytes_sent ELSE bytes_received END AS bytes_in
    FROM marked m
    WHERE NOT (m.accepted AND m.direction = 'internal' AND EXISTS (
        SELECT 1 FROM connection_lifetimes o WHERE o.host = m.host AND o.proto = m.proto
        AND o.local_addr = m.remote_addr AND o.local_port = m.remote_port
        AND o.remote_addr = m.local_addr AND o.remote_port = m.local_port))
)
SELECT host || ' ' || src_ip || ' -> ' || dst_ip || ' @ ' || CAST(window_start AS VARCHAR) AS flow_id,
       window_start,
       host,
       src_ip,
       dst_ip,
       mode(proto) AS protocol,
       mode(direction) AS direction,
       mode(service_port_category(proto, dst_port)) AS service_port,
       count(*) AS connection_count,
       count(DISTINCT src_port) AS unique_local_ports,
       count(DISTINCT dst_port) AS unique_remote_ports,
       min(dst_port) AS remote_port_min,
       max(dst_port) AS remote_port_max,
       avg(dst_port) AS remote_port_mean,
       coalesce(stddev_pop(dst_port), 0) AS remote_port_std,
       avg(epoch(last_seen) - epoch(first_seen)) AS mean_duration_s,
       max(epoch(last_seen) - epoch(first_seen)) AS max_duration_s,
       sum(bytes_out) AS bytes_sent,
       sum(bytes_in) AS bytes_received,
       count(DISTINCT process) AS distinct_processes,
       min(first_seen) AS first_seen,
       max(last_seen) AS last_seen
FROM oriented
GROUP BY window_start, host, src_ip, dst_ip;

CREATE OR REPLACE VIEW active_flow_features AS SELECT * FROM active_flow_features_by(INTERVAL 1 MINUTE);
COMMENT ON VIEW active_flow_features IS 'Feature rows of flows ACTIVE in each 1-minute window (every connection seen in a snapshot of the window counts, however old), with the columns of flow_features and oriented as it is (opener -> accepting side); watch judges these. Other widths: SELECT * FROM active_flow_features_by(INTERVAL 5 SECOND). Durations run from the connection''s first_seen to its last sighting in the window; bytes are the kernel''s cumulative counters at that sighting.';
COMMENT ON COLUMN active_flow_features.flow_id IS 'Row key: host, src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN active_flow_features.window_start IS 'Start of the window (time_bucket of the snapshot time), UTC.';
COMMENT ON COLUMN active_flow_features.host IS 'Host the connections were seen on.';
COMMENT ON COLUMN active_flow_features.src_ip IS 'Address of the side that opened the connections (the remote client for inbound ones).';
COMMENT ON COLUMN active_flow_features.dst_ip IS 'Address of the side that accepted them.';
COMMENT ON COLUMN active_flow_features.protocol IS 'Most frequent transport protocol (tcp or udp); categorical feature.';
COMMENT ON COLUMN active_flow_features.direction IS 'Most frequent direction (inbound, outbound, internal) at the connections'' last sighting in the window; categorical feature.';
COMMENT ON COLUMN active_flow_features.service_port IS 'Most frequent service port of the accepting side as a category (service_port_category); categorical feature.';
COMMENT ON COLUMN active_flow_features.connection_count IS 'Connections of the flow seen in the window.';
COMMENT ON COLUMN active_flow_features.unique_local_ports IS 'Distinct ports of the opening side among them.';
COMMENT ON COLUMN active_flow_features.unique_remote_ports IS 'Distinct ports of the accepting side (service ports).';
COMMENT ON COLUMN active_flow_features.remote_port_min IS 'Lowest service port; a port number, not a default feature.';
COMMENT ON COLUMN active_flow_features.remote_port_max IS 'Highest service port; a port number, not a default feature.';
COMMENT ON COLUMN active_flow_features.remote_port_mean IS 'Mean service port; a port number, not a default feature.';
COMMENT ON COLUMN active_flow_features.remote_port_std IS 'Population standard deviation of the service ports; not a default feature.';
COMMENT ON COLUMN active_flow_features.mean_duration_s IS 'Mean age in seconds of the connections at their last sighting in the window.';
COMMENT ON COLUMN active_flow_features.max_duration_s IS 'Oldest connection''s age in seconds.';
COMMENT ON COLUMN active_flow_features.bytes_sent IS 'Bytes the opening side sent: sum over the connections of the kernel''s cumulative counter at their last sighting in the window (turned around for accepted connections); NULL without counters.';
COMMENT ON COLUMN active_flow_features.bytes_received IS 'As bytes_sent, for the accepting side.';
COMMENT ON COLUMN active_flow_features.distinct_processes IS 'Distinct owning processes (by name, else pid).';
COMMENT ON COLUMN active_flow_features.first_seen IS 'Earliest first_seen of the connections.';
COMMENT ON COLUMN active_flow_features.last_seen IS 'Latest sighting in the window.';

CREATE OR REPLACE MACRO imported_flow_features_by(width) AS TABLE
SELECT orig_h || ' -> ' || resp_h || ' @ ' || CAST(time_bucket(width, ts) AS VARCHAR) AS flow_id,
       time_bucket(width, ts) AS window_start,
       orig_h AS src_ip,
       resp_h AS dst_ip,
       mode(proto) AS protocol,
       any_value(flow_direction(orig_h, resp_h)) AS direction,
       mode(service_port_category(proto, resp_p)) AS service_port,
       count(*) AS connection_count,
       count(DISTINCT orig_p) AS unique_local_ports,
       count(DISTINCT resp_p) AS unique_remote_ports,
       min(resp_p) AS remote_port_min,
       max(resp_p) AS remote_port_max,
       avg(resp_p) AS remote_port_mean,
       coalesce(stddev_pop(resp_p), 0) AS remote_port_std,
       avg(duration) AS mean_duration_s,
       max(duration) AS max_duration_s,
       sum(orig_bytes) AS bytes_sent,
       sum(resp_bytes) AS bytes_received,
       sum(orig_pkts) AS packets_sent,
       sum(resp_pkts) AS packets_received,
       count(DISTINCT service) AS distinct_services,
       avg(CASE WHEN conn_state IN ('S0', 'REJ', 'RSTOS0', 'RSTRH', 'SH', 'SHR') THEN 1.0 ELSE 0.0 END) AS failed_share,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM flows
GROUP BY ALL;

CREATE OR REPLACE VIEW imported_flow_features AS SELECT * FROM imported_flow_features_by(INTERVAL 5 MINUTE);
COMMENT ON VIEW imported_flow_features IS 'Feature rows from imported flows (pcap, Zeek): one row per originator -> responder and 5-minute window (by flows.ts). Other widths: SELECT * FROM imported_flow_features_by(INTERVAL 1 MINUTE). flow_id, window_start, src_ip, dst_ip, first_seen and last_seen are keys, not features; the remote_port_* columns are port numbers, not picked as features by default (service_port is their category).';
COMMENT ON COLUMN imported_flow_features.flow_id IS 'Row key: src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN imported_flow_features.window_start IS 'Start of the time window (time_bucket of flows.ts), UTC.';
COMMENT ON COLUMN imported_flow_features.src_ip IS 'Originator address (flows.orig_h).';
COMMENT ON COLUMN imported_flow_features.dst_ip IS 'Responder address (flows.resp_h).';
COMMENT ON COLUMN imported_flow_features.protocol IS 'Most frequent protocol (tcp, udp, icmp); categorical feature.';
COMMENT ON COLUMN imported_flow_features.direction IS 'flow_direction of the two addresses (internal, outbound, inbound, external); categorical feature.';
COMMENT ON COLUMN imported_flow_features.service_port IS 'Most frequent responder port as a category (service_port_category); categorical feature.';
COMMENT ON COLUMN imported_flow_features.connection_count IS 'Flows between the two addresses starting in the window.';
COMMENT ON COLUMN imported_flow_features.unique_local_ports IS 'Distinct originator ports.';
COMMENT ON COLUMN imported_flow_features.unique_remote_ports IS 'Distinct responder ports.';
COMMENT ON COLUMN imported_flow_features.remote_port_min IS 'Lowest responder port; a port number, not a default feature.';
COMMENT ON COLUMN imported_flow_features.remote_port_max IS 'Highest responder port; a port number, not a default feature.';
COMMENT ON COLUMN imported_flow_features.remote_port_mean IS 'Mean responder port; a port number, not a default feature.';
COMMENT ON COLUMN imported_flow_features.remote_port_std IS 'Population standard deviation of the responder ports; not a default feature.';
COMMENT ON COLUMN imported_flow_features.mean_duration_s IS 'Mean flow duration in seconds.';
COMMENT ON COLUMN imported_flow_features.max_duration_s IS 'Longest flow duration in seconds.';
COMMENT ON COLUMN imported_flow_features.bytes_sent IS 'Payload bytes the originator sent (sum of orig_bytes).';
COMMENT ON COLUMN imported_flow_features.bytes_received IS 'Payload bytes the responder sent (sum of resp_bytes).';
COMMENT ON COLUMN imported_flow_features.packets_sent IS 'Packets the originator sent.';
COMMENT ON COLUMN imported_flow_features.packets_received IS 'Packets the responder sent.';
COMMENT ON COLUMN imported_flow_features.distinct_services IS 'Distinct services (flows.service) among the flows.';
COMMENT ON COLUMN imported_flow_features.failed_share IS 'Share of flows that never completed a handshake (conn_state S0, REJ, RSTOS0, RSTRH, SH, SHR).';
COMMENT ON COLUMN imported_flow_features.first_seen IS 'Start of the earliest flow.';
COMMENT ON COLUMN imported_flow_features.last_seen IS 'Start of the latest flow.';

-- An evaluation on the rows a model was fitted on flatters it: say so.
ALTER TABLE evaluation ADD COLUMN in_sample BOOLEAN;
COMMENT ON COLUMN evaluation.in_sample IS 'True when the evaluated rows are the rows the model was fitted on (train and retrain runs, or score on the training source): an in-sample, optimistic figure; false for a score run on another source; NULL for runs before migration 19.';

-- latest_evaluation's column list was fixed when 015 recreated it: recreate it as 015 did to show
-- the new column (which drops its column comments, restated here).
CREATE OR REPLACE VIEW latest_evaluation AS
SELECT * FROM evaluation WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'evaluation');
COMMENT ON VIEW latest_evaluation IS 'evaluation of the newest run that wrote evaluation (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_evaluation.run_id IS 'The run evaluated (model_runs.run_id).';
COMMENT ON COLUMN latest_evaluation.model IS 'Model name.';
COMMENT ON COLUMN latest_evaluation.version IS 'Model version.';
COMMENT ON COLUMN latest_evaluation.label_column IS 'Source column holding the ground truth.';
COMMENT ON COLUMN latest_evaluation.rows IS 'Rows evaluated.';
COMMENT ON COLUMN latest_evaluation.positives IS 'Rows labelled anomalous.';
COMMENT ON COLUMN latest_evaluation.tp IS 'True positives: labelled anomalous, flagged.';
COMMENT ON COLUMN latest_evaluation.fp IS 'False positives: labelled normal, flagged.';
COMMENT ON COLUMN latest_evaluation.tn IS 'True negatives: labelled normal, not flagged.';
COMMENT ON COLUMN latest_evaluation.fn IS 'False negatives: labelled anomalous, not flagged.';
COMMENT ON COLUMN latest_evaluation.precision IS 'tp / (tp + fp); NULL when nothing was flagged.';
COMMENT ON COLUMN latest_evaluation.recall IS 'tp / (tp + fn).';
COMMENT ON COLUMN latest_evaluation.f1 IS '2 precision recall / (precision + recall); NULL when undefined.';
COMMENT ON COLUMN latest_evaluation.accuracy IS '(tp + tn) / rows.';
COMMENT ON COLUMN latest_evaluation.roc_auc IS 'Area under the ROC curve of the continuous score (Mann-Whitney, ties counted half); NULL for stages without a score (dbscan).';
COMMENT ON COLUMN latest_evaluation.in_sample IS 'True when the evaluated rows are the rows the model was fitted on (an in-sample, optimistic figure); see evaluation.in_sample.';
