-- netlens migration 3: analysis. Feature views that turn history into one row per flow and
-- time window, the model registry (models, model_runs) and the result tables the stages write
-- (segments, segment_profiles, kmeans_elbow, feature_importance, anomaly_scores, embedding,
-- clusters, evaluation), each with a latest_<table> view of its newest run.

-- Live flows: local address -> remote address per host and time window, from connections
-- (prototype 000's src_ip -> dst_ip features). Listening and unconnected sockets have no peer
-- and are not flows.
CREATE MACRO flow_features_by(width) AS TABLE
SELECT host || ' ' || local_addr || ' -> ' || remote_addr || ' @ ' || CAST(time_bucket(width, first_seen) AS VARCHAR) AS flow_id,
       time_bucket(width, first_seen) AS window_start,
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
       avg(duration_s) AS mean_duration_s,
       max(duration_s) AS max_duration_s,
       sum(bytes_sent) AS bytes_sent,
       sum(bytes_received) AS bytes_received,
       count(DISTINCT coalesce(process_name, CAST(pid AS VARCHAR))) AS distinct_processes,
       min(first_seen) AS first_seen,
       max(last_seen) AS last_seen
FROM connections
WHERE remote_addr IS NOT NULL AND direction <> 'listen'
GROUP BY ALL;

CREATE VIEW flow_features AS SELECT * FROM flow_features_by(INTERVAL 5 MINUTE);
COMMENT ON VIEW flow_features IS 'Feature rows for the analysis stages from live capture: one row per host, local address -> remote address and 5-minute window (by first_seen) of connections, as in prototype 000. Other window widths: SELECT * FROM flow_features_by(INTERVAL 30 SECOND). flow_id, window_start, host, src_ip, dst_ip, first_seen and last_seen are keys, not features.';
COMMENT ON COLUMN flow_features.flow_id IS 'Row key: host, src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN flow_features.window_start IS 'Start of the time window (time_bucket of connections.first_seen), UTC.';
COMMENT ON COLUMN flow_features.host IS 'Host the connections were seen on.';
COMMENT ON COLUMN flow_features.src_ip IS 'Local address of the connections.';
COMMENT ON COLUMN flow_features.dst_ip IS 'Remote address of the connections.';
COMMENT ON COLUMN flow_features.protocol IS 'Most frequent transport protocol of the flow''s connections (tcp or udp); categorical feature.';
COMMENT ON COLUMN flow_features.connection_count IS 'Connections (socket lifetimes) of the flow first seen in the window.';
COMMENT ON COLUMN flow_features.unique_local_ports IS 'Distinct local ports among them.';
COMMENT ON COLUMN flow_features.unique_remote_ports IS 'Distinct remote ports among them.';
COMMENT ON COLUMN flow_features.remote_port_min IS 'Lowest remote port.';
COMMENT ON COLUMN flow_features.remote_port_max IS 'Highest remote port.';
COMMENT ON COLUMN flow_features.remote_port_mean IS 'Mean remote port.';
COMMENT ON COLUMN flow_features.remote_port_std IS 'Population standard deviation of the remote ports (0 for one connection).';
COMMENT ON COLUMN flow_features.mean_duration_s IS 'Mean observed duration of the connections in seconds (connections.duration_s).';
COMMENT ON COLUMN flow_features.max_duration_s IS 'Longest observed duration in seconds.';
COMMENT ON COLUMN flow_features.bytes_sent IS 'Sum of the kernel''s tcpi_bytes_sent over the connections; NULL when no counter was readable (UDP, non-Linux).';
COMMENT ON COLUMN flow_features.bytes_received IS 'Sum of the kernel''s tcpi_bytes_received; NULL as bytes_sent.';
COMMENT ON COLUMN flow_features.distinct_processes IS 'Distinct owning processes (by name, else pid).';
COMMENT ON COLUMN flow_features.first_seen IS 'Earliest first_seen of the connections.';
COMMENT ON COLUMN flow_features.last_seen IS 'Latest last_seen of the connections.';

-- Imported flows (pcap / Zeek): originator -> responder per time window, with the same column
-- names where the meaning is the same, so a model trained on one can read the other.
CREATE MACRO imported_flow_features_by(width) AS TABLE
SELECT orig_h || ' -> ' || resp_h || ' @ ' || CAST(time_bucket(width, ts) AS VARCHAR) AS flow_id,
       time_bucket(width, ts) AS window_start,
       orig_h AS src_ip,
       resp_h AS dst_ip,
       mode(proto) AS protocol,
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

CREATE VIEW imported_flow_features AS SELECT * FROM imported_flow_features_by(INTERVAL 5 MINUTE);
COMMENT ON VIEW imported_flow_features IS 'Feature rows from imported flows (pcap, Zeek): one row per originator -> responder and 5-minute window (by flows.ts). Other widths: SELECT * FROM imported_flow_features_by(INTERVAL 1 MINUTE). flow_id, window_start, src_ip, dst_ip, first_seen and last_seen are keys, not features.';
COMMENT ON COLUMN imported_flow_features.flow_id IS 'Row key: src_ip -> dst_ip and the window start, as text.';
COMMENT ON COLUMN imported_flow_features.window_start IS 'Start of the time window (time_bucket of flows.ts), UTC.';
COMMENT ON COLUMN imported_flow_features.src_ip IS 'Originator address (flows.orig_h).';
COMMENT ON COLUMN imported_flow_features.dst_ip IS 'Responder address (flows.resp_h).';
COMMENT ON COLUMN imported_flow_features.protocol IS 'Most frequent protocol (tcp, udp, icmp); categorical feature.';
COMMENT ON COLUMN imported_flow_features.connection_count IS 'Flows between the two addresses starting in the window.';
COMMENT ON COLUMN imported_flow_features.unique_local_ports IS 'Distinct originator ports.';
COMMENT ON COLUMN imported_flow_features.unique_remote_ports IS 'Distinct responder ports.';
COMMENT ON COLUMN imported_flow_features.remote_port_min IS 'Lowest responder port.';
COMMENT ON COLUMN imported_flow_features.remote_port_max IS 'Highest responder port.';
COMMENT ON COLUMN imported_flow_features.remote_port_mean IS 'Mean responder port.';
COMMENT ON COLUMN imported_flow_features.remote_port_std IS 'Population standard deviation of the responder ports.';
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

CREATE SEQUENCE analysis_run_ids START 1;

CREATE TABLE model_runs (
    run_id        BIGINT PRIMARY KEY,
    kind          VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    params        VARCHAR NOT NULL,
    input         VARCHAR NOT NULL,
    id_column     VARCHAR,
    label_column  VARCHAR,
    features      INTEGER NOT NULL,
    rows_in       BIGINT NOT NULL,
    rows_out      BIGINT NOT NULL,
    imputed       BIGINT NOT NULL,
    load_ms       DOUBLE NOT NULL,
    fit_ms        DOUBLE,
    score_ms      DOUBLE NOT NULL,
    write_ms      DOUBLE NOT NULL,
    metrics       VARCHAR NOT NULL,
    into_table    VARCHAR,
    started_at    TIMESTAMP NOT NULL
);
COMMENT ON TABLE model_runs IS 'One row per stage run (netlens train, score, retrain): which stage and model, the parameters, the input, row counts, timings and the metrics. Every result row carries the run_id of the run that wrote it.';
COMMENT ON COLUMN model_runs.run_id IS 'Run number, increasing; the run_id of every result row.';
COMMENT ON COLUMN model_runs.kind IS 'train (a model was fitted, then applied to its training rows), retrain (the same, with a stored model''s request) or score (a stored model applied to a source).';
COMMENT ON COLUMN model_runs.stage IS 'Stage: kmeans, iforest, pca, dbscan, ...';
COMMENT ON COLUMN model_runs.model IS 'Model name (models.name).';
COMMENT ON COLUMN model_runs.version IS 'Model version (models.version) fitted or applied.';
COMMENT ON COLUMN model_runs.params IS 'Stage parameters in effect, as a JSON object (defaults filled in).';
COMMENT ON COLUMN model_runs.input IS 'Source read: a table or view name, or the SQL query.';
COMMENT ON COLUMN model_runs.id_column IS 'Source column copied into the result rows'' id; NULL when rows are identified by position only (row_id).';
COMMENT ON COLUMN model_runs.label_column IS 'Source column holding ground truth, used for evaluation only; NULL without one.';
COMMENT ON COLUMN model_runs.features IS 'Number of encoded feature columns the model reads (one per numeric column, one per category of each categorical column).';
COMMENT ON COLUMN model_runs.rows_in IS 'Rows read from the source.';
COMMENT ON COLUMN model_runs.rows_out IS 'Result rows written to the stage''s table.';
COMMENT ON COLUMN model_runs.imputed IS 'Numeric cells that were NULL, NaN or infinite and were replaced with the training mean.';
COMMENT ON COLUMN model_runs.load_ms IS 'Milliseconds to read and encode the source (query, Arrow transfer, one-hot, scaling).';
COMMENT ON COLUMN model_runs.fit_ms IS 'Milliseconds to fit the model; NULL for score runs.';
COMMENT ON COLUMN model_runs.score_ms IS 'Milliseconds to apply the model to the rows.';
COMMENT ON COLUMN model_runs.write_ms IS 'Milliseconds to write the results (and the model) into the store.';
COMMENT ON COLUMN model_runs.metrics IS 'Stage metrics as a JSON object: inertia and k (kmeans), explained variance (pca), eps, min_points, sample size and noise (dbscan), threshold and anomalies (iforest), ...';
COMMENT ON COLUMN model_runs.into_table IS 'Table that score --into created with the source''s rows and the model''s columns; NULL otherwise.';
COMMENT ON COLUMN model_runs.started_at IS 'UTC time the run started.';

CREATE TABLE models (
    name        VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    stage       VARCHAR NOT NULL,
    run_id      BIGINT NOT NULL,
    params      VARCHAR NOT NULL,
    request     VARCHAR NOT NULL,
    features    VARCHAR[] NOT NULL,
    encoding    VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (name, version)
);
COMMENT ON TABLE models IS 'Fitted models, named and versioned: everything needed to score new data later (also after a restart) without refitting. Training again under the same name adds a version; nothing is overwritten.';
COMMENT ON COLUMN models.name IS 'Model name (train --model, default the stage name).';
COMMENT ON COLUMN models.version IS 'Version under that name, 1, 2, ...; score NAME uses the newest, NAME@V a given one.';
COMMENT ON COLUMN models.stage IS 'Stage that fitted it.';
COMMENT ON COLUMN models.run_id IS 'The training run (model_runs.run_id).';
COMMENT ON COLUMN models.params IS 'Stage parameters as a JSON object (defaults filled in).';
COMMENT ON COLUMN models.request IS 'The training request as JSON (source, feature selection, label, id column, seed, parameters): what retrain repeats on the newest data.';
COMMENT ON COLUMN models.features IS 'Encoded feature names in model order: numeric columns by name, categories as column=value.';
COMMENT ON COLUMN models.encoding IS 'JSON of the input encoding: per source column, numeric (training mean and standard deviation) or categorical (training categories).';
COMMENT ON COLUMN models.model IS 'JSON of the fitted model (centroids, components, core points, trees, ...).';
COMMENT ON COLUMN models.created_at IS 'UTC time it was fitted.';

CREATE TABLE segments (
    run_id    BIGINT NOT NULL,
    row_id    BIGINT NOT NULL,
    id        VARCHAR,
    segment   INTEGER NOT NULL,
    distance  DOUBLE NOT NULL
);
COMMENT ON TABLE segments IS 'K-Means segment of every row a kmeans run read (training rows for train, the source''s rows for score).';
COMMENT ON COLUMN segments.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN segments.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN segments.id IS 'The source row''s id column as text (model_runs.id_column); NULL without one.';
COMMENT ON COLUMN segments.segment IS 'Segment (cluster) number, 0 .. k-1.';
COMMENT ON COLUMN segments.distance IS 'Euclidean distance to the segment centroid in scaled feature space.';

CREATE TABLE segment_profiles (
    run_id        BIGINT NOT NULL,
    segment       INTEGER NOT NULL,
    size          BIGINT NOT NULL,
    share         DOUBLE NOT NULL,
    feature       VARCHAR NOT NULL,
    mean          DOUBLE NOT NULL,
    overall_mean  DOUBLE NOT NULL,
    z             DOUBLE NOT NULL,
    rank          INTEGER NOT NULL
);
COMMENT ON TABLE segment_profiles IS 'Profile of each segment of a kmeans training run: its size and, per feature, its mean next to the overall mean; rank 1 is the feature that sets the segment apart most (largest |z|).';
COMMENT ON COLUMN segment_profiles.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN segment_profiles.segment IS 'Segment number.';
COMMENT ON COLUMN segment_profiles.size IS 'Rows in the segment.';
COMMENT ON COLUMN segment_profiles.share IS 'size / rows of the run.';
COMMENT ON COLUMN segment_profiles.feature IS 'Encoded feature (numeric column, or column=value for a category).';
COMMENT ON COLUMN segment_profiles.mean IS 'Mean of the feature over the segment in the source''s units (a category: the share of rows having it).';
COMMENT ON COLUMN segment_profiles.overall_mean IS 'Mean of the feature over all training rows, same units.';
COMMENT ON COLUMN segment_profiles.z IS '(segment mean - overall mean) / training standard deviation: how far, and in which direction, the segment sits from the whole.';
COMMENT ON COLUMN segment_profiles.rank IS '1 for the feature with the largest |z| in this segment, 2 for the next, ...';

CREATE TABLE kmeans_elbow (
    run_id   BIGINT NOT NULL,
    k        INTEGER NOT NULL,
    inertia  DOUBLE NOT NULL,
    chosen   BOOLEAN NOT NULL
);
COMMENT ON TABLE kmeans_elbow IS 'Inertia curve of a kmeans run with k=auto (elbow method): one row per k tried; the chosen k is the point farthest from the chord between the first and last point.';
COMMENT ON COLUMN kmeans_elbow.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN kmeans_elbow.k IS 'Number of segments tried.';
COMMENT ON COLUMN kmeans_elbow.inertia IS 'Sum of squared distances of the rows to their nearest centroid, scaled feature space.';
COMMENT ON COLUMN kmeans_elbow.chosen IS 'True for the k the run kept.';

CREATE TABLE feature_importance (
    run_id      BIGINT NOT NULL,
    stage       VARCHAR NOT NULL,
    feature     VARCHAR NOT NULL,
    importance  DOUBLE NOT NULL,
    rank        INTEGER NOT NULL
);
COMMENT ON TABLE feature_importance IS 'How much each feature matters to a training run''s result. kmeans: share of the feature''s variance explained by the segments (between-segment sum of squares / total, 0..1, as in prototype 004).';
COMMENT ON COLUMN feature_importance.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN feature_importance.stage IS 'Stage of the run.';
COMMENT ON COLUMN feature_importance.feature IS 'Encoded feature name.';
COMMENT ON COLUMN feature_importance.importance IS 'Importance, 0..1, larger matters more.';
COMMENT ON COLUMN feature_importance.rank IS '1 for the most important feature.';

CREATE TABLE anomaly_scores (
    run_id      BIGINT NOT NULL,
    row_id      BIGINT NOT NULL,
    id          VARCHAR,
    score       DOUBLE NOT NULL,
    is_anomaly  BOOLEAN NOT NULL
);
COMMENT ON TABLE anomaly_scores IS 'Isolation Forest score of every row an iforest run read.';
COMMENT ON COLUMN anomaly_scores.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN anomaly_scores.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN anomaly_scores.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN anomaly_scores.score IS 'Anomaly score 2^(-E[h(x)]/c(n)) in 0..1 (Liu, Ting and Zhou 2008): higher is more anomalous, about 0.5 and below is ordinary.';
COMMENT ON COLUMN anomaly_scores.is_anomaly IS 'score at or above the model''s threshold (the training scores'' (1 - contamination) quantile).';

CREATE TABLE embedding (
    run_id  BIGINT NOT NULL,
    row_id  BIGINT NOT NULL,
    id      VARCHAR,
    pc1     DOUBLE NOT NULL,
    pc2     DOUBLE,
    pc3     DOUBLE
);
COMMENT ON TABLE embedding IS 'PCA coordinates of every row a pca run read (for 2D/3D plots of the feature space).';
COMMENT ON COLUMN embedding.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN embedding.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN embedding.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN embedding.pc1 IS 'Coordinate on the first principal component (scaled feature space).';
COMMENT ON COLUMN embedding.pc2 IS 'Coordinate on the second component; NULL when the model has one.';
COMMENT ON COLUMN embedding.pc3 IS 'Coordinate on the third component; NULL when the model has fewer.';

CREATE TABLE clusters (
    run_id     BIGINT NOT NULL,
    row_id     BIGINT NOT NULL,
    id         VARCHAR,
    cluster    INTEGER NOT NULL,
    is_noise   BOOLEAN NOT NULL,
    in_sample  BOOLEAN NOT NULL
);
COMMENT ON TABLE clusters IS 'DBSCAN cluster of every row a dbscan run read. Rows in the fitted sample get DBSCAN''s own label; every other row (rows beyond the sample, score runs) joins the cluster of its nearest core point within eps, else is noise.';
COMMENT ON COLUMN clusters.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN clusters.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN clusters.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN clusters.cluster IS 'Cluster number 0, 1, ...; -1 for noise.';
COMMENT ON COLUMN clusters.is_noise IS 'True when the row belongs to no cluster (cluster = -1).';
COMMENT ON COLUMN clusters.in_sample IS 'True when the row was in the sample DBSCAN itself clustered.';

CREATE TABLE evaluation (
    run_id        BIGINT NOT NULL,
    model         VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    label_column  VARCHAR NOT NULL,
    rows          BIGINT NOT NULL,
    positives     BIGINT NOT NULL,
    tp            BIGINT NOT NULL,
    fp            BIGINT NOT NULL,
    tn            BIGINT NOT NULL,
    fn            BIGINT NOT NULL,
    precision     DOUBLE,
    recall        DOUBLE,
    f1            DOUBLE,
    accuracy      DOUBLE NOT NULL,
    roc_auc       DOUBLE
);
COMMENT ON TABLE evaluation IS 'Quality of an anomaly run against a label column of its source: confusion matrix and metrics, positive = anomalous. A label is anomalous when it is true (BOOLEAN), non-zero (numbers), or any text other than normal, benign, legit, 0 or false (case-insensitive, trailing dot ignored).';
COMMENT ON COLUMN evaluation.run_id IS 'The run evaluated (model_runs.run_id).';
COMMENT ON COLUMN evaluation.model IS 'Model name.';
COMMENT ON COLUMN evaluation.version IS 'Model version.';
COMMENT ON COLUMN evaluation.label_column IS 'Source column holding the ground truth.';
COMMENT ON COLUMN evaluation.rows IS 'Rows evaluated.';
COMMENT ON COLUMN evaluation.positives IS 'Rows labelled anomalous.';
COMMENT ON COLUMN evaluation.tp IS 'True positives: labelled anomalous, flagged.';
COMMENT ON COLUMN evaluation.fp IS 'False positives: labelled normal, flagged.';
COMMENT ON COLUMN evaluation.tn IS 'True negatives: labelled normal, not flagged.';
COMMENT ON COLUMN evaluation.fn IS 'False negatives: labelled anomalous, not flagged.';
COMMENT ON COLUMN evaluation.precision IS 'tp / (tp + fp); NULL when nothing was flagged.';
COMMENT ON COLUMN evaluation.recall IS 'tp / (tp + fn).';
COMMENT ON COLUMN evaluation.f1 IS '2 precision recall / (precision + recall); NULL when undefined.';
COMMENT ON COLUMN evaluation.accuracy IS '(tp + tn) / rows.';
COMMENT ON COLUMN evaluation.roc_auc IS 'Area under the ROC curve of the continuous score (Mann-Whitney, ties counted half); NULL for stages without a score (dbscan).';

CREATE VIEW latest_model_runs AS SELECT * FROM model_runs WHERE run_id = (SELECT max(run_id) FROM model_runs);
COMMENT ON VIEW latest_model_runs IS 'The newest row of model_runs.';
CREATE VIEW latest_segments AS SELECT * FROM segments WHERE run_id = (SELECT max(run_id) FROM segments);
COMMENT ON VIEW latest_segments IS 'segments of the newest run that wrote segments.';
CREATE VIEW latest_segment_profiles AS SELECT * FROM segment_profiles WHERE run_id = (SELECT max(run_id) FROM segment_profiles);
COMMENT ON VIEW latest_segment_profiles IS 'segment_profiles of the newest kmeans training run.';
CREATE VIEW latest_kmeans_elbow AS SELECT * FROM kmeans_elbow WHERE run_id = (SELECT max(run_id) FROM kmeans_elbow);
COMMENT ON VIEW latest_kmeans_elbow IS 'kmeans_elbow of the newest k=auto run.';
CREATE VIEW latest_feature_importance AS SELECT * FROM feature_importance WHERE run_id = (SELECT max(run_id) FROM feature_importance);
COMMENT ON VIEW latest_feature_importance IS 'feature_importance of the newest run that wrote it.';
CREATE VIEW latest_anomaly_scores AS SELECT * FROM anomaly_scores WHERE run_id = (SELECT max(run_id) FROM anomaly_scores);
COMMENT ON VIEW latest_anomaly_scores IS 'anomaly_scores of the newest iforest run.';
CREATE VIEW latest_embedding AS SELECT * FROM embedding WHERE run_id = (SELECT max(run_id) FROM embedding);
COMMENT ON VIEW latest_embedding IS 'embedding of the newest pca run.';
CREATE VIEW latest_clusters AS SELECT * FROM clusters WHERE run_id = (SELECT max(run_id) FROM clusters);
COMMENT ON VIEW latest_clusters IS 'clusters of the newest dbscan run.';
CREATE VIEW latest_evaluation AS SELECT * FROM evaluation WHERE run_id = (SELECT max(run_id) FROM evaluation);
COMMENT ON VIEW latest_evaluation IS 'evaluation of the newest evaluated run.';
CREATE VIEW latest_models AS SELECT m.* FROM models m WHERE version = (SELECT max(version) FROM models n WHERE n.name = m.name);
COMMENT ON VIEW latest_models IS 'The newest version of every model name.';

-- The latest_ views document their columns as their tables do.
COMMENT ON COLUMN latest_model_runs.run_id IS 'Run number, increasing; the run_id of every result row.';
COMMENT ON COLUMN latest_model_runs.kind IS 'train (a model was fitted, then applied to its training rows), retrain (the same, with a stored model''s request) or score (a stored model applied to a source).';
COMMENT ON COLUMN latest_model_runs.stage IS 'Stage: kmeans, iforest, pca, dbscan, ...';
COMMENT ON COLUMN latest_model_runs.model IS 'Model name (models.name).';
COMMENT ON COLUMN latest_model_runs.version IS 'Model version (models.version) fitted or applied.';
COMMENT ON COLUMN latest_model_runs.params IS 'Stage parameters in effect, as a JSON object (defaults filled in).';
COMMENT ON COLUMN latest_model_runs.input IS 'Source read: a table or view name, or the SQL query.';
COMMENT ON COLUMN latest_model_runs.id_column IS 'Source column copied into the result rows'' id; NULL when rows are identified by position only (row_id).';
COMMENT ON COLUMN latest_model_runs.label_column IS 'Source column holding ground truth, used for evaluation only; NULL without one.';
COMMENT ON COLUMN latest_model_runs.features IS 'Number of encoded feature columns the model reads (one per numeric column, one per category of each categorical column).';
COMMENT ON COLUMN latest_model_runs.rows_in IS 'Rows read from the source.';
COMMENT ON COLUMN latest_model_runs.rows_out IS 'Result rows written to the stage''s table.';
COMMENT ON COLUMN latest_model_runs.imputed IS 'Numeric cells that were NULL, NaN or infinite and were replaced with the training mean.';
COMMENT ON COLUMN latest_model_runs.load_ms IS 'Milliseconds to read and encode the source (query, Arrow transfer, one-hot, scaling).';
COMMENT ON COLUMN latest_model_runs.fit_ms IS 'Milliseconds to fit the model; NULL for score runs.';
COMMENT ON COLUMN latest_model_runs.score_ms IS 'Milliseconds to apply the model to the rows.';
COMMENT ON COLUMN latest_model_runs.write_ms IS 'Milliseconds to write the results (and the model) into the store.';
COMMENT ON COLUMN latest_model_runs.metrics IS 'Stage metrics as a JSON object: inertia and k (kmeans), explained variance (pca), eps, min_points, sample size and noise (dbscan), threshold and anomalies (iforest), ...';
COMMENT ON COLUMN latest_model_runs.into_table IS 'Table that score --into created with the source''s rows and the model''s columns; NULL otherwise.';
COMMENT ON COLUMN latest_model_runs.started_at IS 'UTC time the run started.';
COMMENT ON COLUMN latest_segments.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_segments.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_segments.id IS 'The source row''s id column as text (model_runs.id_column); NULL without one.';
COMMENT ON COLUMN latest_segments.segment IS 'Segment (cluster) number, 0 .. k-1.';
COMMENT ON COLUMN latest_segments.distance IS 'Euclidean distance to the segment centroid in scaled feature space.';
COMMENT ON COLUMN latest_segment_profiles.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_segment_profiles.segment IS 'Segment number.';
COMMENT ON COLUMN latest_segment_profiles.size IS 'Rows in the segment.';
COMMENT ON COLUMN latest_segment_profiles.share IS 'size / rows of the run.';
COMMENT ON COLUMN latest_segment_profiles.feature IS 'Encoded feature (numeric column, or column=value for a category).';
COMMENT ON COLUMN latest_segment_profiles.mean IS 'Mean of the feature over the segment in the source''s units (a category: the share of rows having it).';
COMMENT ON COLUMN latest_segment_profiles.overall_mean IS 'Mean of the feature over all training rows, same units.';
COMMENT ON COLUMN latest_segment_profiles.z IS '(segment mean - overall mean) / training standard deviation: how far, and in which direction, the segment sits from the whole.';
COMMENT ON COLUMN latest_segment_profiles.rank IS '1 for the feature with the largest |z| in this segment, 2 for the next, ...';
COMMENT ON COLUMN latest_kmeans_elbow.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_kmeans_elbow.k IS 'Number of segments tried.';
COMMENT ON COLUMN latest_kmeans_elbow.inertia IS 'Sum of squared distances of the rows to their nearest centroid, scaled feature space.';
COMMENT ON COLUMN latest_kmeans_elbow.chosen IS 'True for the k the run kept.';
COMMENT ON COLUMN latest_feature_importance.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_feature_importance.stage IS 'Stage of the run.';
COMMENT ON COLUMN latest_feature_importance.feature IS 'Encoded feature name.';
COMMENT ON COLUMN latest_feature_importance.importance IS 'Importance, 0..1, larger matters more.';
COMMENT ON COLUMN latest_feature_importance.rank IS '1 for the most important feature.';
COMMENT ON COLUMN latest_anomaly_scores.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_anomaly_scores.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_anomaly_scores.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_anomaly_scores.score IS 'Anomaly score 2^(-E[h(x)]/c(n)) in 0..1 (Liu, Ting and Zhou 2008): higher is more anomalous, about 0.5 and below is ordinary.';
COMMENT ON COLUMN latest_anomaly_scores.is_anomaly IS 'score at or above the model''s threshold (the training scores'' (1 - contamination) quantile).';
COMMENT ON COLUMN latest_embedding.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_embedding.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_embedding.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_embedding.pc1 IS 'Coordinate on the first principal component (scaled feature space).';
COMMENT ON COLUMN latest_embedding.pc2 IS 'Coordinate on the second component; NULL when the model has one.';
COMMENT ON COLUMN latest_embedding.pc3 IS 'Coordinate on the third component; NULL when the model has fewer.';
COMMENT ON COLUMN latest_clusters.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_clusters.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_clusters.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_clusters.cluster IS 'Cluster number 0, 1, ...; -1 for noise.';
COMMENT ON COLUMN latest_clusters.is_noise IS 'True when the row belongs to no cluster (cluster = -1).';
COMMENT ON COLUMN latest_clusters.in_sample IS 'True when the row was in the sample DBSCAN itself clustered.';
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
COMMENT ON COLUMN latest_models.name IS 'Model name (train --model, default the stage name).';
COMMENT ON COLUMN latest_models.version IS 'Version under that name, 1, 2, ...; score NAME uses the newest, NAME@V a given one.';
COMMENT ON COLUMN latest_models.stage IS 'Stage that fitted it.';
COMMENT ON COLUMN latest_models.run_id IS 'The training run (model_runs.run_id).';
COMMENT ON COLUMN latest_models.params IS 'Stage parameters as a JSON object (defaults filled in).';
COMMENT ON COLUMN latest_models.request IS 'The training request as JSON (source, feature selection, label, id column, seed, parameters): what retrain repeats on the newest data.';
COMMENT ON COLUMN latest_models.features IS 'Encoded feature names in model order: numeric columns by name, categories as column=value.';
COMMENT ON COLUMN latest_models.encoding IS 'JSON of the input encoding: per source column, numeric (training mean and standard deviation) or categorical (training categories).';
COMMENT ON COLUMN latest_models.model IS 'JSON of the fitted model (centroids, components, core points, trees, ...).';
COMMENT ON COLUMN latest_models.created_at IS 'UTC time it was fitted.';
