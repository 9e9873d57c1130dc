-- The clickstream page: replay of the error log, and its filters.
-- replayed_ms: when a replay stored the payload as events (their uuids, comma-separated, in
-- replayed_event_uuid); retried_ms: the last replay attempt. A replay that fails again leaves
-- the row pending with the new error_type and messages (error_daily keeps the original count).
ALTER TABLE error_log ADD COLUMN replayed_ms INTEGER;
ALTER TABLE error_log ADD COLUMN replayed_event_uuid TEXT;
ALTER TABLE error_log ADD COLUMN retried_ms INTEGER;

-- The log filtered by type, newest first (the rowid in every index keeps ties in id order).
CREATE INDEX error_log_by_type ON error_log (account_id, error_type, received_ms);
