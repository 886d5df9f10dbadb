-- SQLite aggregates a page's params, tags and metrics per run as it reads them, fast
-- enough there; the run documents are PostgreSQL's (its change has the reasons).
SELECT 1;
