-- The clickstream page: the live stream of an account's events, replay of the error log, and
-- its filters.

-- The live stream reads an account's events after a cursor (id). Ids follow commit order
-- within an account: the writer allocates them under the account's advisory lock.
CREATE INDEX events_by_arrival ON events (account_id, id);

-- replayed_ms: when a replay stored the payload as events (their uuids, comma-separated, in
-- replayed_event_uuid); retried_ms: the last replay attempt. A replay that fails again leaves
-- the row pending with the new error_type and messages (error_daily keeps the original count).
ALTER TABLE error_log ADD COLUMN replayed_ms bigint;
ALTER TABLE error_log ADD COLUMN replayed_event_uuid text;
ALTER TABLE error_log ADD COLUMN retried_ms bigint;

-- Pages of the log, newest first, keyset on (received_ms, id); with and without a type filter.
DROP INDEX error_log_by_time;
CREATE INDEX error_log_by_time ON error_log (account_id, received_ms, id);
CREATE INDEX error_log_by_type ON error_log (account_id, error_type, received_ms, id);
