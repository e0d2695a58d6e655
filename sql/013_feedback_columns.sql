-- netlens migration 13: documents latest_feedback's columns. Migration 9 made the view with a
-- comment on the view alone; it has landed and is never edited, so its columns get theirs here.
COMMENT ON COLUMN latest_feedback.feedback_id IS 'Mark number, increasing.';
COMMENT ON COLUMN latest_feedback.marked_at IS 'When the mark was made, UTC.';
COMMENT ON COLUMN latest_feedback.subject IS 'Table of the marked row: anomaly_scores, verdicts, port_scans, beacons, bursts or long_connections.';
COMMENT ON COLUMN latest_feedback.run_id IS 'Run of the marked row (the table''s run_id); NULL for a mark on the row in every run.';
COMMENT ON COLUMN latest_feedback.row_key IS 'The row within its table and run: anomaly_scores.row_id, verdicts.flow_id, long_connections.event_id, or for port_scans, beacons and bursts their identifying columns joined by | (scanner|kind|target|target_port|proto; src|dst|dst_port|proto; entity_kind|entity|metric|start_ts).';
COMMENT ON COLUMN latest_feedback.label IS 'true_positive (the flag was right) or false_positive (it was not).';
COMMENT ON COLUMN latest_feedback.note IS 'The analyst''s note; NULL without one.';
COMMENT ON COLUMN latest_feedback.analyst IS 'Who marked it: the user name of the command line, or dashboard.';
