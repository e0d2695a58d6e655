-- netlens migration 18: explanations (`netlens explain`). An explain run applies a stored
-- anomaly model to rows again: permutation importance of each feature over a seeded sample of
-- them, and, for the highest-scoring rows, the features whose replacement by the training
-- median (a category: the most frequent training category) lowers the row's score most.

CREATE TABLE explain_runs (
    run_id         BIGINT PRIMARY KEY,
    explained_run  BIGINT,
    model          VARCHAR NOT NULL,
    version        INTEGER NOT NULL,
    stage          VARCHAR NOT NULL,
    input          VARCHAR NOT NULL,
    reference      VARCHAR NOT NULL,
    label_column   VARCHAR,
    rows_in        BIGINT NOT NULL,
    sampled        BIGINT NOT NULL,
    repeats        INTEGER NOT NULL,
    seed           UBIGINT NOT NULL,
    measure        VARCHAR NOT NULL,
    baseline       DOUBLE,
    explained_rows INTEGER NOT NULL,
    load_ms        DOUBLE NOT NULL,
    explain_ms     DOUBLE NOT NULL,
    created_at     TIMESTAMP NOT NULL
);
COMMENT ON TABLE explain_runs IS 'One row per explain run: which model it explained on which rows, how (measure, sample, repeats, seed) and how long it took (docs/analysis.md, explain).';
COMMENT ON COLUMN explain_runs.run_id IS 'Run id, from the one sequence of every run (run_ids).';
COMMENT ON COLUMN explain_runs.explained_run IS 'The model_runs.run_id explained (explain RUN_ID); NULL when a model was named (explain MODEL).';
COMMENT ON COLUMN explain_runs.model IS 'Model name (models.name).';
COMMENT ON COLUMN explain_runs.version IS 'Model version (models.version).';
COMMENT ON COLUMN explain_runs.stage IS 'Stage of the model (iforest, ocsvm, lof, autoencoder, ensemble, or kmeans with its distance score).';
COMMENT ON COLUMN explain_runs.input IS 'Rows explained: the explained run''s input, the --on source, or the model''s training source.';
COMMENT ON COLUMN explain_runs.reference IS 'Source whose rows gave the training medians (the model''s training source).';
COMMENT ON COLUMN explain_runs.label_column IS 'Ground-truth column used for the ROC-AUC drop; NULL when the score shift was measured.';
COMMENT ON COLUMN explain_runs.rows_in IS 'Rows read from input.';
COMMENT ON COLUMN explain_runs.sampled IS 'Rows of input (a seeded sample when there are more than --sample) whose features were permuted.';
COMMENT ON COLUMN explain_runs.repeats IS 'Permutations of each feature; importance is their mean.';
COMMENT ON COLUMN explain_runs.seed IS 'Seed of the sample and the permutations: the same seed on the same rows gives the same figures.';
COMMENT ON COLUMN explain_runs.measure IS 'roc_auc_drop (a label column with both classes in the sample) or mean_abs_score_shift (no label).';
COMMENT ON COLUMN explain_runs.baseline IS 'roc_auc_drop: ROC-AUC of the unpermuted sample; mean_abs_score_shift: mean score of the unpermuted sample.';
COMMENT ON COLUMN explain_runs.explained_rows IS 'Highest-scoring rows given per-row explanations in row_explanations (--top).';
COMMENT ON COLUMN explain_runs.load_ms IS 'Milliseconds reading the input and the reference rows.';
COMMENT ON COLUMN explain_runs.explain_ms IS 'Milliseconds scoring, permuting and replacing.';
COMMENT ON COLUMN explain_runs.created_at IS 'UTC time of the run.';

CREATE TABLE permutation_importance (
    run_id         BIGINT NOT NULL,
    feature        VARCHAR NOT NULL,
    rank           INTEGER NOT NULL,
    importance     DOUBLE NOT NULL,
    importance_std DOUBLE NOT NULL
);
COMMENT ON TABLE permutation_importance IS 'Permutation importance of each feature (source column) of the explained model: how much shuffling the column among the sampled rows changes the model''s result.';
COMMENT ON COLUMN permutation_importance.run_id IS 'Explain run (explain_runs.run_id).';
COMMENT ON COLUMN permutation_importance.feature IS 'Source column; a category column''s one-hot columns are shuffled together.';
COMMENT ON COLUMN permutation_importance.rank IS '1 = most important in this run.';
COMMENT ON COLUMN permutation_importance.importance IS 'Mean over the repeats of: roc_auc_drop, the baseline ROC-AUC minus the ROC-AUC with the column shuffled (below 0: the model ranks better without it); mean_abs_score_shift, the mean absolute change of a row''s score.';
COMMENT ON COLUMN permutation_importance.importance_std IS 'Standard deviation of the importance over the repeats.';

CREATE VIEW latest_permutation_importance AS SELECT * FROM permutation_importance WHERE run_id = (SELECT max(run_id) FROM explain_runs);
COMMENT ON VIEW latest_permutation_importance IS 'permutation_importance of the newest explain run.';
COMMENT ON COLUMN latest_permutation_importance.run_id IS 'Explain run (explain_runs.run_id).';
COMMENT ON COLUMN latest_permutation_importance.feature IS 'Source column; a category column''s one-hot columns are shuffled together.';
COMMENT ON COLUMN latest_permutation_importance.rank IS '1 = most important in this run.';
COMMENT ON COLUMN latest_permutation_importance.importance IS 'Mean over the repeats of: roc_auc_drop, the baseline ROC-AUC minus the ROC-AUC with the column shuffled (below 0: the model ranks better without it); mean_abs_score_shift, the mean absolute change of a row''s score.';
COMMENT ON COLUMN latest_permutation_importance.importance_std IS 'Standard deviation of the importance over the repeats.';

CREATE TABLE row_explanations (
    run_id               BIGINT NOT NULL,
    row_id               BIGINT NOT NULL,
    id                   VARCHAR,
    row_rank             INTEGER NOT NULL,
    score                DOUBLE NOT NULL,
    is_anomaly           BOOLEAN NOT NULL,
    feature              VARCHAR NOT NULL,
    feature_rank         INTEGER NOT NULL,
    value                VARCHAR,
    reference            VARCHAR,
    score_with_reference DOUBLE NOT NULL,
    score_drop           DOUBLE NOT NULL
);
COMMENT ON TABLE row_explanations IS 'Why the highest-scoring rows of an explain run stand out: per row, the five features whose replacement by the training median lowers its score most. Each ensemble member''s score and vote per row is in ensemble_scores (same row_id under explain_runs.explained_run).';
COMMENT ON COLUMN row_explanations.run_id IS 'Explain run (explain_runs.run_id).';
COMMENT ON COLUMN row_explanations.row_id IS 'Position of the row in the input as the explain run read it, 0-based (the explained run''s row_id when its input is unchanged).';
COMMENT ON COLUMN row_explanations.id IS 'The row''s id column as text; NULL without one.';
COMMENT ON COLUMN row_explanations.row_rank IS 'The row''s place by score among the input''s rows, 1 = highest.';
COMMENT ON COLUMN row_explanations.score IS 'The model''s score of the row (its result table''s score).';
COMMENT ON COLUMN row_explanations.is_anomaly IS 'Whether the model flags the row.';
COMMENT ON COLUMN row_explanations.feature IS 'Source column.';
COMMENT ON COLUMN row_explanations.feature_rank IS '1 = the feature whose replacement lowers the score most.';
COMMENT ON COLUMN row_explanations.value IS 'The row''s value of the feature as the model read it (NULLs imputed with the training mean; a category not seen in training: NULL).';
COMMENT ON COLUMN row_explanations.reference IS 'The training median of the feature (a category column: its most frequent training category).';
COMMENT ON COLUMN row_explanations.score_with_reference IS 'The row''s score with this one feature set to reference.';
COMMENT ON COLUMN row_explanations.score_drop IS 'score - score_with_reference: how much this feature alone pushes the row out (0 or below: it does not, alone).';

CREATE VIEW latest_row_explanations AS SELECT * FROM row_explanations WHERE run_id = (SELECT max(run_id) FROM explain_runs);
COMMENT ON VIEW latest_row_explanations IS 'row_explanations of the newest explain run.';
COMMENT ON COLUMN latest_row_explanations.run_id IS 'Explain run (explain_runs.run_id).';
COMMENT ON COLUMN latest_row_explanations.row_id IS 'Position of the row in the input as the explain run read it, 0-based (the explained run''s row_id when its input is unchanged).';
COMMENT ON COLUMN latest_row_explanations.id IS 'The row''s id column as text; NULL without one.';
COMMENT ON COLUMN latest_row_explanations.row_rank IS 'The row''s place by score among the input''s rows, 1 = highest.';
COMMENT ON COLUMN latest_row_explanations.score IS 'The model''s score of the row (its result table''s score).';
COMMENT ON COLUMN latest_row_explanations.is_anomaly IS 'Whether the model flags the row.';
COMMENT ON COLUMN latest_row_explanations.feature IS 'Source column.';
COMMENT ON COLUMN latest_row_explanations.feature_rank IS '1 = the feature whose replacement lowers the score most.';
COMMENT ON COLUMN latest_row_explanations.value IS 'The row''s value of the feature as the model read it (NULLs imputed with the training mean; a category not seen in training: NULL).';
COMMENT ON COLUMN latest_row_explanations.reference IS 'The training median of the feature (a category column: its most frequent training category).';
COMMENT ON COLUMN latest_row_explanations.score_with_reference IS 'The row''s score with this one feature set to reference.';
COMMENT ON COLUMN latest_row_explanations.score_drop IS 'score - score_with_reference: how much this feature alone pushes the row out (0 or below: it does not, alone).';

-- Explain runs join the list of every run.
CREATE OR REPLACE VIEW runs AS
SELECT run_id, 'analysis' AS kind, stage || ' ' || model_runs.kind AS what, started_at, rows_out AS result_rows FROM model_runs
UNION ALL
SELECT run_id, 'detect', detector, started_at, result_rows FROM detector_runs
UNION ALL
SELECT run_id, 'geo', command, started_at, found FROM geo_runs
UNION ALL
SELECT run_id, 'retention', 'retention', started_at, rows_deleted FROM retention_runs
UNION ALL
SELECT run_id, 'explain', 'explain ' || model || '@' || version, created_at, explained_rows FROM explain_runs;
COMMENT ON VIEW runs IS 'Every run of every kind, one row each: the run ids of model_runs, detector_runs, geo_runs, retention_runs and explain_runs in one list.';
COMMENT ON COLUMN runs.run_id IS 'The run: unique across all run tables from schema version 15 on (ids from before it were counted per table and may repeat across kinds).';
COMMENT ON COLUMN runs.kind IS 'analysis (model_runs), detect (detector_runs), geo (geo_runs), retention (retention_runs) or explain (explain_runs).';
COMMENT ON COLUMN runs.what IS 'Stage and kind (e.g. iforest train), detector, geo command, retention, or the model explained.';
COMMENT ON COLUMN runs.started_at IS 'When the run started, UTC.';
COMMENT ON COLUMN runs.result_rows IS 'Rows the run wrote to its result table (geo: addresses found; retention: raw rows deleted; explain: rows explained).';
