-- netlens migration 24: the run_ids sequence's comment names every run table that takes its ids
-- from it. explain_runs (migration 18) does too, and the comment of migration 15 predates it.

COMMENT ON SEQUENCE run_ids IS 'Every run''s run_id (model_runs, detector_runs, geo_runs, retention_runs, and explain_runs from migration 18): one sequence, so an id names one run.';
