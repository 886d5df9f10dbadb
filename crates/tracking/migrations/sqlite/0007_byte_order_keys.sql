-- SQLite already compares run ids and keys as bytes (BINARY); the change is
-- PostgreSQL's (its file has the reasons).
SELECT 1;
