-- sockrewind schema v2: each process's scheduler state in the snapshot.
-- state: field 3 of /proc/PID/stat, one letter (R running, S sleeping, D disk sleep, T stopped,
-- t tracing stop, Z zombie, I idle, ...); NULL when it could not be read. Documented in
-- schema/README.md.
ALTER TABLE processes ADD COLUMN state TEXT;
