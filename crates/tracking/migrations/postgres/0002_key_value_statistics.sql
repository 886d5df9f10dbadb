-- The planner needs to know that a param's (or tag's) key and value go together:
-- key = 'p0' AND value = 'a' is far more common than the two selectivities multiplied,
-- and underestimating it makes the planner join every run before sorting a page.
CREATE STATISTICS params_key_value (dependencies, mcv) ON key, value FROM params;
CREATE STATISTICS tags_key_value (dependencies, mcv) ON key, value FROM tags;
