-- netlens migration 22: model_runs.kind names calibration runs (issue 21). `netlens calibrate`
-- and `train policy --set clean_from=` store a run of kind calibrate whose threshold later scores
-- of that model version flag by; the comment of migration 3 listed train, retrain and score only.

COMMENT ON COLUMN model_runs.kind IS 'train (a model was fitted, then applied to its training rows), retrain (the same, with a stored model''s request), score (a stored model applied to a source) or calibrate (a stored model''s threshold set on rows declared clean; later scores of that model version flag by the newest calibration, metrics.threshold).';
