-- netlens migration 29: analysts' marks on an ensemble's rows, and marks that find their row
-- again when the run's source has changed since.
-- feedback.subject now also takes ensemble_scores (the comments of migrations 9 and 13 list the
-- tables); scored_row_keys holds a key of each row's values for runs of a source without an id
-- column, where row_id (the position) is all a mark could name before.

COMMENT ON COLUMN feedback.subject IS 'Table of the marked row: anomaly_scores, ensemble_scores, verdicts, port_scans, beacons, bursts or long_connections.';
COMMENT ON COLUMN feedback.row_key IS 'The row within its table and run: anomaly_scores.row_id or ensemble_scores.row_id, verdicts.flow_id, long_connections.event_id, or for port_scans, beacons and bursts their identifying columns joined by | (scanner|kind|target|target_port|proto; src|dst|dst_port|proto; entity_kind|entity|metric|start_ts).';
COMMENT ON COLUMN latest_feedback.subject IS 'Table of the marked row: anomaly_scores, ensemble_scores, verdicts, port_scans, beacons, bursts or long_connections.';
COMMENT ON COLUMN latest_feedback.row_key IS 'The row within its table and run: anomaly_scores.row_id or ensemble_scores.row_id, verdicts.flow_id, long_connections.event_id, or for port_scans, beacons and bursts their identifying columns joined by | (scanner|kind|target|target_port|proto; src|dst|dst_port|proto; entity_kind|entity|metric|start_ts).';

CREATE TABLE scored_row_keys (
    run_id  BIGINT NOT NULL,
    row_id  BIGINT NOT NULL,
    row_key UBIGINT NOT NULL
);
COMMENT ON TABLE scored_row_keys IS 'For anomaly and ensemble runs (anomaly_scores, ensemble_scores) of a source without an id column: a key of each row''s values, so that retrain finds a marked row again by its values, not by its position, when the source changed since the run.';
COMMENT ON COLUMN scored_row_keys.run_id IS 'Run that read the row (model_runs.run_id).';
COMMENT ON COLUMN scored_row_keys.row_id IS 'Position of the row in the source as read, 0-based (the row_id of the run''s anomaly_scores or ensemble_scores row).';
COMMENT ON COLUMN scored_row_keys.row_key IS 'DuckDB hash() of all the source''s columns of the row, in the source''s column order: equal rows have equal keys, and a row whose values or columns changed is no longer found.';
