-- Run ids and the keys of params, tags and metrics compare as bytes ("C"), as SQLite
-- compares them. They are identifiers, never sorted for people, and every lookup of
-- a run's data probes an index on them: with the database's collation each
-- comparison went through the locale's strcoll (C.UTF-8 included, before
-- PostgreSQL 17): about a seventh of the statement of a 10,000-run search. For UTF-8
-- text byte order is code point order, so C.UTF-8 databases keep every order they had.
--
-- No table is rewritten (the type stays TEXT); the indexes on these columns are
-- rebuilt, so upgrading a large database takes a while.
ALTER TABLE runs ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN parent_run_id TYPE TEXT COLLATE "C";
ALTER TABLE params ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE tags ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE latest_metrics ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE metric_chunks ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE run_docs ALTER COLUMN run_id TYPE TEXT COLLATE "C";
ALTER TABLE run_inputs ALTER COLUMN run_id TYPE TEXT COLLATE "C";
ALTER TABLE run_outputs ALTER COLUMN run_id TYPE TEXT COLLATE "C";
ALTER TABLE run_model_inputs ALTER COLUMN run_id TYPE TEXT COLLATE "C";
