-- The daily event rollup and the event-name registry are counted by the writer, once per
-- (day, name) and name of each group commit, instead of two upserts per stored row in a
-- trigger: the writer is the only one that inserts events. The error-log trigger stays.
DROP TRIGGER IF EXISTS events_rollup;
