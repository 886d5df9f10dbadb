-- Param values of up to 6,000 characters and tag values of up to 8,000 (MLflow's
-- limits, which tracking enforces) do not fit a b-tree entry (a third of a page,
-- about 2,700 bytes) when they do not compress: a (key, value) b-tree refused them,
-- and the whole LogBatch with them. Hash indexes take values of any length and serve
-- the equality filters (`params.model = 'rf'`) that an index on the value is for.
DROP INDEX params_by_key_value;
CREATE INDEX params_by_value ON params USING hash (value);
DROP INDEX tags_by_key_value;
CREATE INDEX tags_by_value ON tags USING hash (value);
