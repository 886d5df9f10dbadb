-- SQLite keeps long index entries in overflow pages: its (key, value) index takes
-- values of any length, and stays. (PostgreSQL's change has the reasons.)
SELECT 1;
