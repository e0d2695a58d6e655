-- netlens migration 6: datasets. Every table loaded with `import csv` or written by `demo` is
-- recorded here, so an analyst can tell imported and synthetic data from captured history.

CREATE TABLE datasets (
    name          VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    path          VARCHAR,
    imported_at   TIMESTAMP NOT NULL,
    rows_added    BIGINT NOT NULL,
    columns       VARCHAR NOT NULL,
    mode          VARCHAR NOT NULL,
    elapsed_s     DOUBLE NOT NULL,
    notes         VARCHAR
);
COMMENT ON TABLE datasets IS 'One row per dataset load: CSV files imported with `netlens import csv`, and the synthetic tables `netlens demo` writes (kind demo).';
COMMENT ON COLUMN datasets.name IS 'The table the rows went into.';
COMMENT ON COLUMN datasets.kind IS 'csv (a file imported as it is) or demo (synthetic rows from netlens demo, not real traffic).';
COMMENT ON COLUMN datasets.path IS 'The file as given on the command line; NULL for synthetic tables.';
COMMENT ON COLUMN datasets.imported_at IS 'UTC time the load finished.';
COMMENT ON COLUMN datasets.rows_added IS 'Rows this load added to the table.';
COMMENT ON COLUMN datasets.columns IS 'The table''s columns after the load, as name:TYPE separated by commas.';
COMMENT ON COLUMN datasets.mode IS 'create (new table), append (rows added to an existing table) or replace (table dropped and recreated).';
COMMENT ON COLUMN datasets.elapsed_s IS 'Seconds the load took.';
COMMENT ON COLUMN datasets.notes IS 'What the reader decided (header detected or not, delimiter) or how synthetic data was made (seed, hours); NULL when nothing needs saying.';
