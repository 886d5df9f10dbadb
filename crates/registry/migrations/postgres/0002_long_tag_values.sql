-- Tag values of up to 5,000 characters (MLflow's limit, which the registry enforces)
-- do not fit a b-tree entry (a third of a page, about 2,700 bytes) when they do not
-- compress: the (key, value) b-tree refused them. A hash index takes values of any
-- length and serves the equality filters (`tags.team = 'risk'`) it is there for.
DROP INDEX model_version_tags_kv;
CREATE INDEX model_version_tags_by_value ON model_version_tags USING hash (value);
