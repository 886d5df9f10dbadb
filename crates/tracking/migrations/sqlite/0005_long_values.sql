-- SQLite keeps long index entries in overflow pages: its (key, value) indexes take
-- values of any length, and stay. (PostgreSQL's change has the reasons.)
SELECT 1;
