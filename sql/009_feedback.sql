-- netlens migration 9: analysts' feedback on what the stages and detectors flagged (prototype
-- 002's true/false positive marks), from `netlens feedback` or the dashboard.

CREATE TABLE feedback (
    feedback_id  BIGINT PRIMARY KEY,
    marked_at    TIMESTAMP NOT NULL,
    subject      VARCHAR NOT NULL,
    run_id       BIGINT,
    row_key      VARCHAR NOT NULL,
    label        VARCHAR NOT NULL CHECK (label IN ('true_positive', 'false_positive')),
    note         VARCHAR,
    analyst      VARCHAR
);
COMMENT ON TABLE feedback IS 'An analyst''s mark on one flagged row: a true or a false positive, with a note. The newest mark of a row counts (latest_feedback).';
COMMENT ON COLUMN feedback.feedback_id IS 'Mark number, increasing.';
COMMENT ON COLUMN feedback.marked_at IS 'When the mark was made, UTC.';
COMMENT ON COLUMN feedback.subject IS 'Table of the marked row: anomaly_scores, verdicts, port_scans, beacons, bursts or long_connections.';
COMMENT ON COLUMN feedback.run_id IS 'Run of the marked row (the table''s run_id); NULL for a mark on the row in every run.';
COMMENT ON COLUMN feedback.row_key IS 'The row within its table and run: anomaly_scores.row_id, verdicts.flow_id, long_connections.event_id, or for port_scans, beacons and bursts their identifying columns joined by | (scanner|kind|target|target_port|proto; src|dst|dst_port|proto; entity_kind|entity|metric|start_ts).';
COMMENT ON COLUMN feedback.label IS 'true_positive (the flag was right) or false_positive (it was not).';
COMMENT ON COLUMN feedback.note IS 'The analyst''s note; NULL without one.';
COMMENT ON COLUMN feedback.analyst IS 'Who marked it: the user name of the command line, or dashboard.';

CREATE VIEW latest_feedback AS
SELECT * FROM feedback
QUALIFY row_number() OVER (PARTITION BY subject, run_id, row_key ORDER BY feedback_id DESC) = 1;
COMMENT ON VIEW latest_feedback IS 'The newest mark of each marked row (feedback).';
