-- netlens migration 12: the anomaly ensemble (prototype 002). The ocsvm, lof and autoencoder
-- stages write anomaly_scores as iforest does (model_runs.stage tells them apart); the ensemble
-- stage writes ensemble_scores: the combined ranking score, votes, confidence and severity, and
-- each member's score and vote.

COMMENT ON TABLE anomaly_scores IS 'Anomaly score of every row an anomaly-stage run read: iforest, ocsvm, lof or autoencoder (model_runs.stage of the run says which).';
COMMENT ON COLUMN anomaly_scores.score IS 'Anomaly score, higher is more anomalous. iforest: 2^(-E[h(x)]/c(n)) in 0..1 (Liu, Ting and Zhou 2008), about 0.5 and below is ordinary; ocsvm: rho - sum alpha_i K(sv_i, x), above 0 outside the learnt support; lof: local outlier factor, about 1 inside a cluster; autoencoder: mean squared reconstruction error of the scaled row.';
COMMENT ON VIEW latest_anomaly_scores IS 'anomaly_scores of the newest anomaly-stage run (iforest, ocsvm, lof or autoencoder).';
COMMENT ON COLUMN latest_anomaly_scores.score IS 'Anomaly score, higher is more anomalous; its scale depends on the stage (see anomaly_scores.score).';

CREATE TABLE ensemble_scores (
    run_id            BIGINT NOT NULL,
    row_id            BIGINT NOT NULL,
    id                VARCHAR,
    score             DOUBLE NOT NULL,
    is_anomaly        BOOLEAN NOT NULL,
    votes             INTEGER NOT NULL,
    confidence        DOUBLE NOT NULL,
    severity          VARCHAR NOT NULL,
    iforest_score     DOUBLE,
    iforest_vote      BOOLEAN,
    ocsvm_score       DOUBLE,
    ocsvm_vote        BOOLEAN,
    lof_score         DOUBLE,
    lof_vote          BOOLEAN,
    autoencoder_score DOUBLE,
    autoencoder_vote  BOOLEAN
);
COMMENT ON TABLE ensemble_scores IS 'Ensemble result of every row an ensemble run read: the members'' scores and votes and their combination (docs/analysis.md, ensemble).';
COMMENT ON COLUMN ensemble_scores.run_id IS 'Run that wrote the row (model_runs.run_id).';
COMMENT ON COLUMN ensemble_scores.row_id IS 'Position of the row in the source as read, 0-based.';
COMMENT ON COLUMN ensemble_scores.id IS 'The source row''s id column as text; NULL without one.';
COMMENT ON COLUMN ensemble_scores.score IS 'Ranking score, 0 to ln(1001): mean over the members of -ln(tail share of the member''s score among its training scores), Fisher''s combination; exp(-score) is the geometric mean tail share. Higher is more anomalous; ROC-AUC and top-k use it.';
COMMENT ON COLUMN ensemble_scores.is_anomaly IS 'votes at or above the model''s min_votes (default: a majority of the members).';
COMMENT ON COLUMN ensemble_scores.votes IS 'Members whose score is strictly above their own threshold (their contamination quantile of their training scores).';
COMMENT ON COLUMN ensemble_scores.confidence IS 'Share of the members agreeing with is_anomaly, 0..1.';
COMMENT ON COLUMN ensemble_scores.severity IS 'critical (every member votes and exp(-score) <= 0.01), high (is_anomaly and exp(-score) <= 0.05), medium (is_anomaly), low (some votes, too few), none (no votes).';
COMMENT ON COLUMN ensemble_scores.iforest_score IS 'The Isolation Forest member''s score (as anomaly_scores.score); NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.iforest_vote IS 'Whether the Isolation Forest member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.ocsvm_score IS 'The one-class SVM member''s score; NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.ocsvm_vote IS 'Whether the one-class SVM member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.lof_score IS 'The Local Outlier Factor member''s score (the LOF); NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.lof_vote IS 'Whether the Local Outlier Factor member voted anomaly; NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.autoencoder_score IS 'The autoencoder member''s score (reconstruction error); NULL when it is not a member.';
COMMENT ON COLUMN ensemble_scores.autoencoder_vote IS 'Whether the autoencoder member voted anomaly; NULL when it is not a member.';

CREATE VIEW latest_ensemble_scores AS SELECT * FROM ensemble_scores WHERE run_id = (SELECT max(run_id) FROM ensemble_scores);
COMMENT ON VIEW latest_ensemble_scores IS 'ensemble_scores of the newest ensemble run.';
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
