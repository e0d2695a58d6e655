-- netlens migration 15: one run id space, and one meaning of latest_*.
--
-- Until now model_runs took ids from a sequence while detector_runs, geo_runs and retention_runs
-- each counted max(run_id) + 1 of their own table: four id spaces under one name. From here on
-- every run takes its id from the sequence run_ids. netlens skips the values at or below the
-- highest id any run already has (see store::runs), so ids stay unique across all run tables.
CREATE SEQUENCE run_ids START 1;
COMMENT ON SEQUENCE run_ids IS 'Every run''s run_id (model_runs, detector_runs, geo_runs, retention_runs): one sequence, so an id names one run.';
DROP SEQUENCE analysis_run_ids;

CREATE VIEW runs AS
SELECT run_id, 'analysis' AS kind, stage || ' ' || model_runs.kind AS what, started_at, rows_out AS result_rows FROM model_runs
UNION ALL
SELECT run_id, 'detect', detector, started_at, result_rows FROM detector_runs
UNION ALL
SELECT run_id, 'geo', command, started_at, found FROM geo_runs
UNION ALL
SELECT run_id, 'retention', 'retention', started_at, rows_deleted FROM retention_runs;
COMMENT ON VIEW runs IS 'Every run of every kind, one row each: the run ids of model_runs, detector_runs, geo_runs and retention_runs in one list.';
COMMENT ON COLUMN runs.run_id IS 'The run (unique across all run tables).';
COMMENT ON COLUMN runs.kind IS 'analysis (model_runs), detect (detector_runs), geo (geo_runs) or retention (retention_runs).';
COMMENT ON COLUMN runs.what IS 'Stage and kind (e.g. iforest train), detector, geo command, or retention.';
COMMENT ON COLUMN runs.started_at IS 'When the run started, UTC.';
COMMENT ON COLUMN runs.result_rows IS 'Rows the run wrote to its result table (geo: addresses found; retention: raw rows deleted).';

-- Which result tables each analysis run wrote, with how many rows: a run that wrote none still
-- counts as the newest of its kind, so latest_* shows its (empty) result instead of an older
-- run's rows.
CREATE TABLE run_outputs (
    run_id      BIGINT NOT NULL,
    table_name  VARCHAR NOT NULL,
    rows        BIGINT NOT NULL,
    PRIMARY KEY (run_id, table_name)
);
COMMENT ON TABLE run_outputs IS 'The result tables each analysis run wrote, zero rows included: a run''s stage table on every train, score and retrain; evaluation when a label column was read; a stage''s other tables (profiles, elbow, importance, baseline) when it wrote rows to them. The latest_* views of analysis results pick their run here.';
COMMENT ON COLUMN run_outputs.run_id IS 'The run (model_runs.run_id; for policy_baseline, the segments run it was recorded with).';
COMMENT ON COLUMN run_outputs.table_name IS 'Result table the run wrote.';
COMMENT ON COLUMN run_outputs.rows IS 'Rows it wrote there.';

INSERT INTO run_outputs SELECT run_id, 'segments', count(*) FROM segments GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'segment_profiles', count(*) FROM segment_profiles GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'kmeans_elbow', count(*) FROM kmeans_elbow GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'feature_importance', count(*) FROM feature_importance GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'anomaly_scores', count(*) FROM anomaly_scores GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'embedding', count(*) FROM embedding GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'clusters', count(*) FROM clusters GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'evaluation', count(*) FROM evaluation GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'verdicts', count(*) FROM verdicts GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'policy_baseline', count(*) FROM policy_baseline GROUP BY run_id;
INSERT INTO run_outputs SELECT run_id, 'ensemble_scores', count(*) FROM ensemble_scores GROUP BY run_id;

-- Each latest_* view of an analysis result now shows the newest run that wrote that table,
-- even when it wrote no rows (detectors' latest_* views already followed detector_runs).
-- Recreating a view drops its column comments, so they are restated as they were.

CREATE OR REPLACE VIEW latest_segments AS
SELECT * FROM segments WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'segments');
COMMENT ON VIEW latest_segments IS 'segments of the newest run that wrote segments (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_segments.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_segments.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_segments.id IS 'The source row''s id column as text (model_runs.id_column); NULL without one.';
COMMENT ON COLUMN latest_segments.segment IS 'Segment (cluster) number, 0 .. k-1.';
COMMENT ON COLUMN latest_segments.distance IS 'Euclidean distance to the segment centroid in scaled feature space.';

CREATE OR REPLACE VIEW latest_segment_profiles AS
SELECT * FROM segment_profiles WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'segment_profiles');
COMMENT ON VIEW latest_segment_profiles IS 'segment_profiles of the newest run that wrote segment_profiles (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_segment_profiles.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_segment_profiles.segment IS 'Segment number.';
COMMENT ON COLUMN latest_segment_profiles.size IS 'Rows in the segment.';
COMMENT ON COLUMN latest_segment_profiles.share IS 'size / rows of the run.';
COMMENT ON COLUMN latest_segment_profiles.feature IS 'Encoded feature (numeric column, or column=value for a category).';
COMMENT ON COLUMN latest_segment_profiles.mean IS 'Mean of the feature over the segment in the source''s units (a category: the share of rows having it).';
COMMENT ON COLUMN latest_segment_profiles.overall_mean IS 'Mean of the feature over all training rows, same units.';
COMMENT ON COLUMN latest_segment_profiles.z IS '(segment mean - overall mean) / training standard deviation: how far, and in which direction, the segment sits from the whole.';
COMMENT ON COLUMN latest_segment_profiles.rank IS '1 for the feature with the largest |z| in this segment, 2 for the next, ...';

CREATE OR REPLACE VIEW latest_kmeans_elbow AS
SELECT * FROM kmeans_elbow WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'kmeans_elbow');
COMMENT ON VIEW latest_kmeans_elbow IS 'kmeans_elbow of the newest run that wrote kmeans_elbow (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_kmeans_elbow.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_kmeans_elbow.k IS 'Number of segments tried.';
COMMENT ON COLUMN latest_kmeans_elbow.inertia IS 'Sum of squared distances of the rows to their nearest centroid, scaled feature space.';
COMMENT ON COLUMN latest_kmeans_elbow.chosen IS 'True for the k the run kept.';

CREATE OR REPLACE VIEW latest_feature_importance AS
SELECT * FROM feature_importance WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'feature_importance');
COMMENT ON VIEW latest_feature_importance IS 'feature_importance of the newest run that wrote feature_importance (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_feature_importance.run_id IS 'Training run (model_runs.run_id).';
COMMENT ON COLUMN latest_feature_importance.stage IS 'Stage of the run.';
COMMENT ON COLUMN latest_feature_importance.feature IS 'Encoded feature name.';
COMMENT ON COLUMN latest_feature_importance.importance IS 'Importance, 0..1, larger matters more.';
COMMENT ON COLUMN latest_feature_importance.rank IS '1 for the most important feature.';

CREATE OR REPLACE VIEW latest_anomaly_scores AS
SELECT * FROM anomaly_scores WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'anomaly_scores');
COMMENT ON VIEW latest_anomaly_scores IS 'anomaly_scores of the newest run that wrote anomaly_scores (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_anomaly_scores.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_anomaly_scores.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_anomaly_scores.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_anomaly_scores.score IS 'Anomaly score, higher is more anomalous; its scale depends on the stage (see anomaly_scores.score).';
COMMENT ON COLUMN latest_anomaly_scores.is_anomaly IS 'score strictly above the model''s threshold (the training scores'' (1 - contamination) quantile).';

CREATE OR REPLACE VIEW latest_embedding AS
SELECT * FROM embedding WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'embedding');
COMMENT ON VIEW latest_embedding IS 'embedding of the newest run that wrote embedding (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_embedding.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_embedding.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_embedding.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_embedding.pc1 IS 'Coordinate on the first principal component (scaled feature space).';
COMMENT ON COLUMN latest_embedding.pc2 IS 'Coordinate on the second component; NULL when the model has one.';
COMMENT ON COLUMN latest_embedding.pc3 IS 'Coordinate on the third component; NULL when the model has fewer.';

CREATE OR REPLACE VIEW latest_clusters AS
SELECT * FROM clusters WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'clusters');
COMMENT ON VIEW latest_clusters IS 'clusters of the newest run that wrote clusters (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_clusters.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_clusters.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_clusters.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_clusters.cluster IS 'Cluster number 0, 1, ...; -1 for noise.';
COMMENT ON COLUMN latest_clusters.is_noise IS 'True when the row belongs to no cluster (cluster = -1).';
COMMENT ON COLUMN latest_clusters.in_sample IS 'True when the row was in the sample DBSCAN itself clustered.';

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

CREATE OR REPLACE VIEW latest_verdicts AS
SELECT * FROM verdicts WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'verdicts');
COMMENT ON VIEW latest_verdicts IS 'verdicts of the newest run that wrote verdicts (run_outputs), empty when that run wrote no rows.';
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
COMMENT ON COLUMN latest_verdicts.is_anomaly IS 'score > the model''s threshold (the baseline scores'' 1 - contamination quantile).';
COMMENT ON COLUMN latest_verdicts.new_flow IS 'The host and src -> dst pair never occurs in the baseline.';
COMMENT ON COLUMN latest_verdicts.new_port IS 'remote_port_min or remote_port_max is a port no baseline row had (when the source has those columns).';
COMMENT ON COLUMN latest_verdicts.new_protocol IS 'The protocol never occurs in the baseline (when the source has a protocol column).';
COMMENT ON COLUMN latest_verdicts.drift IS 'Known flow in another segment than its usual baseline segment.';
COMMENT ON COLUMN latest_verdicts.processes IS 'Processes owning the flow''s connections in the window (live history only).';
COMMENT ON COLUMN latest_verdicts.verdict IS 'Anomalous, New Flow, Segment Drift or Trusted: the first that applies, in that order.';
COMMENT ON COLUMN latest_verdicts.risk IS 'Risk score 0..100 (formula in the table comment); 60 and above is high risk.';
COMMENT ON COLUMN latest_verdicts.reason IS 'Why, in words, starting with what decided the verdict; novelties that did not decide it follow as notes.';

CREATE OR REPLACE VIEW latest_policy_baseline AS
SELECT * FROM policy_baseline WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'policy_baseline');
COMMENT ON VIEW latest_policy_baseline IS 'policy_baseline of the newest run that wrote policy_baseline (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_policy_baseline.run_id IS 'The baseline: the run_id of its K-Means training run (verdicts.baseline_run).';
COMMENT ON COLUMN latest_policy_baseline.kind IS 'flow, protocol or port.';
COMMENT ON COLUMN latest_policy_baseline.value IS 'The flow (host src -> dst), protocol name or port number, as text.';
COMMENT ON COLUMN latest_policy_baseline.segment IS 'For flows: the most frequent baseline segment; NULL otherwise.';
COMMENT ON COLUMN latest_policy_baseline.windows IS 'For flows: baseline windows (rows) the flow appeared in; NULL otherwise.';

CREATE OR REPLACE VIEW latest_ensemble_scores AS
SELECT * FROM ensemble_scores WHERE run_id = (SELECT max(run_id) FROM run_outputs WHERE table_name = 'ensemble_scores');
COMMENT ON VIEW latest_ensemble_scores IS 'ensemble_scores of the newest run that wrote ensemble_scores (run_outputs), empty when that run wrote no rows.';
COMMENT ON COLUMN latest_ensemble_scores.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN latest_ensemble_scores.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN latest_ensemble_scores.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_ensemble_scores.score IS 'Ranking score, 0 to ln(1001): mean over the members of -ln(tail share of the member''s score among its training scores), Fisher''s combination; exp(-score) is the geometric mean tail share. Higher is more anomalous; ROC-AUC and top-k use it.';
COMMENT ON COLUMN latest_ensemble_scores.is_anomaly IS 'votes at or above the model''s min_votes (default: a majority of the members).';
COMMENT ON COLUMN latest_ensemble_scores.votes IS 'Members whose score is strictly above their own threshold (their contamination quantile of their training scores).';
COMMENT ON COLUMN latest_ensemble_scores.confidence IS 'Share of the members agreeing with is_anomaly, 0..1.';
COMMENT ON COLUMN latest_ensemble_scores.severity IS 'critical (every member votes and exp(-score) <= 0.01), high (is_anomaly and exp(-score) <= 0.05), medium (is_anomaly), low (some votes, too few), none (no votes).';
COMMENT ON COLUMN latest_ensemble_scores.iforest_score IS 'The Isolation Forest member''s score (as anomaly_scores.score); NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.iforest_vote IS 'Whether the Isolation Forest member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.ocsvm_score IS 'The one-class SVM member''s score; NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.ocsvm_vote IS 'Whether the one-class SVM member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.lof_score IS 'The Local Outlier Factor member''s score (the LOF); NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.lof_vote IS 'Whether the Local Outlier Factor member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.autoencoder_score IS 'The autoencoder member''s score (reconstruction error); NULL when it is not a member.';
COMMENT ON COLUMN latest_ensemble_scores.autoencoder_vote IS 'Whether the autoencoder member voted anomaly; NULL when it is not a member.';
