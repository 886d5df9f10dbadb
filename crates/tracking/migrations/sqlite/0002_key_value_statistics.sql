-- PostgreSQL only: the planner needs to know that a param's key and value go together
-- (key = 'p0' AND value = 'a' is far more common than the product of the two), or it
-- joins every run before sorting instead of stopping after a page.
SELECT 1;
