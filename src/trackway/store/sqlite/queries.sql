-- Named queries of the SQLite store, loaded once by queries.py.

-- name: insert_events_head
INSERT INTO events (account_id, event_uuid, event, user_uuid, timestamp_ms, received_ms, body)
VALUES

-- name: insert_events_tail
-- No RETURNING: the group commit looked every sent uuid up in its transaction, so each row is
-- inserted (returning 1,000 rows a statement cost 6% of the writer's instructions).
ON CONFLICT (account_id, event_uuid) DO NOTHING

-- name: insert_error_log_head
INSERT INTO error_log (account_id, received_ms, error_type, errors, raw, source, context) VALUES

-- name: add_standard_event_name
INSERT INTO standard_event_names (name) VALUES (?) ON CONFLICT (name) DO NOTHING

-- name: credential
SELECT a.id, a.uuid, a.name, a.created_ms, a.verification_secret, k.kind, k.key_hash
FROM api_keys AS k JOIN accounts AS a ON a.id = k.account_id
WHERE k.key_hash = ? AND (k.expires_ms IS NULL OR k.expires_ms > ?)

-- name: insert_account
INSERT INTO accounts (uuid, name, created_ms) VALUES (?, ?, ?)

-- name: insert_key
INSERT INTO api_keys (key_hash, account_id, kind, created_ms) VALUES (?, ?, ?, ?)

-- name: expire_keys
-- Every key of the kind still valid past the new bound is cut to it, also one still in an
-- earlier grace period: a rotation with grace 0 revokes them all.
UPDATE api_keys SET expires_ms = ?
WHERE account_id = ? AND kind = ? AND (expires_ms IS NULL OR expires_ms > ?)

-- name: revoke_key
UPDATE api_keys SET expires_ms = ?
WHERE account_id = ? AND key_hash = ? AND (expires_ms IS NULL OR expires_ms > ?)
RETURNING kind

-- name: list_accounts
SELECT id, uuid, name, created_ms, verification_secret FROM accounts ORDER BY id

-- name: find_account
SELECT id, uuid, name, created_ms, verification_secret FROM accounts WHERE name = ? OR uuid = ?

-- name: event_by_uuid
SELECT body, user_uuid, received_ms, timestamp_ms FROM events
WHERE account_id = ? AND event_uuid = ?

-- name: count_events
SELECT count(*) FROM events WHERE account_id = ?

-- name: daily_event_counts
SELECT day, event, count FROM event_daily
WHERE account_id = ? AND day BETWEEN ? AND ? ORDER BY day, event

-- name: daily_error_counts
SELECT day, error_type, count FROM error_daily
WHERE account_id = ? AND day BETWEEN ? AND ? ORDER BY day, error_type

-- name: error_log
SELECT id, received_ms, error_type, errors, raw FROM error_log
WHERE account_id = ? ORDER BY received_ms DESC, id DESC LIMIT ?

-- name: event_names
SELECT name, display_name, type, archived, created_ms FROM event_names
WHERE account_id = ? ORDER BY name

-- name: existing_event_uuids
SELECT event_uuid FROM events WHERE account_id = ? AND event_uuid IN ({marks})

-- name: identifiers_of_pairs
-- Joined from the list of pairs, so that every pair is one primary-key search.
SELECT i.kind, i.value, i.customer_uuid
FROM (VALUES {pairs}) AS wanted
JOIN identifiers AS i
    ON i.account_id = ? AND i.kind = wanted.column1 AND i.value = wanted.column2

-- name: profiles_by_uuid
SELECT uuid, customer_id, email, attributes, subscriptions, created_ms, updated_ms, seen_ms
FROM customers WHERE account_id = ? AND uuid IN ({marks})

-- name: count_attribute_types
SELECT count(*) FROM attribute_types WHERE account_id = ?

-- name: attribute_types_of
SELECT name, type FROM attribute_types WHERE account_id = ? AND name IN ({marks})

-- name: insert_attribute_type
-- created_ms: the time of the transaction that fixes the type ('now' is one instant per
-- statement; %f is seconds with milliseconds).
INSERT INTO attribute_types (account_id, name, type, created_ms)
VALUES (?, ?, ?, strftime('%s', 'now') * 1000 + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER))
ON CONFLICT (account_id, name) DO NOTHING

-- name: attribute_types
SELECT name, type, created_ms FROM attribute_types WHERE account_id = ? ORDER BY name

-- name: delete_attribute_type
DELETE FROM attribute_types WHERE account_id = ? AND name = ? RETURNING name, type, created_ms

-- name: insert_customer
INSERT INTO customers
    (account_id, uuid, customer_id, email, attributes, subscriptions, created_ms, updated_ms,
     seen_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: update_customer
UPDATE customers
SET customer_id = ?, email = ?, attributes = ?, subscriptions = ?, created_ms = ?, updated_ms = ?,
    seen_ms = ?
WHERE account_id = ? AND uuid = ?

-- name: insert_identifier
INSERT INTO identifiers (account_id, kind, value, customer_uuid, created_ms) VALUES (?, ?, ?, ?, ?)

-- name: merge_identifiers
UPDATE identifiers SET customer_uuid = ? WHERE account_id = ? AND customer_uuid = ?

-- name: merge_events
UPDATE events SET user_uuid = ? WHERE account_id = ? AND user_uuid = ?

-- name: merge_customers
-- The loser, and the profiles merged into it before (they keep their merged_ms).
UPDATE customers
SET merged_into = ?, merged_ms = CASE WHEN uuid = ? THEN ? ELSE merged_ms END
WHERE account_id = ? AND (uuid = ? OR merged_into = ?)

-- name: insert_conflict
INSERT INTO identity_conflicts
    (account_id, received_ms, event_uuid, customer_uuid, other_uuid, kind, value)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: hit_rate_window
INSERT INTO rate_windows (account_id, name, window_start, count) VALUES (?, ?, ?, 1)
ON CONFLICT (account_id, name, window_start) DO UPDATE SET count = count + 1
RETURNING count

-- name: forget_rate_windows
DELETE FROM rate_windows WHERE account_id = ? AND name = ? AND window_start < ?

-- name: customer_uuid_by_identifier
SELECT customer_uuid FROM identifiers WHERE account_id = ? AND kind = ? AND value = ?

-- name: customer_by_uuid
SELECT uuid, customer_id, email, merged_into, attributes, subscriptions, created_ms, updated_ms,
       seen_ms
FROM customers WHERE account_id = ? AND uuid = ?

-- name: identifiers_of_customer
-- Named, since without ANALYZE statistics SQLite takes the primary key's account_id prefix and
-- scans every identifier of the account.
SELECT kind, value FROM identifiers INDEXED BY identifiers_by_customer
WHERE account_id = ? AND customer_uuid = ?
ORDER BY created_ms, value

-- name: customer_events
SELECT body, user_uuid, received_ms, timestamp_ms FROM events
WHERE account_id = ? AND user_uuid = ? AND timestamp_ms BETWEEN ? AND ?
ORDER BY timestamp_ms DESC, id DESC LIMIT ?

-- name: latest_events
SELECT body, user_uuid, received_ms, timestamp_ms FROM events
WHERE account_id = ? AND event = ?
ORDER BY timestamp_ms DESC, id DESC LIMIT ?

-- name: events_page
-- A keyset page for export, from the (account_id, event, timestamp_ms) index; its implicit
-- rowid keeps (timestamp_ms, id) in index order, so there is no sort.
SELECT timestamp_ms, id, body FROM events
WHERE account_id = ? AND event = ? AND timestamp_ms >= ? AND timestamp_ms < ?
    AND (timestamp_ms > ? OR id > ?)
ORDER BY timestamp_ms, id LIMIT ?

-- name: rename_event
UPDATE event_names SET display_name = ? WHERE account_id = ? AND name = ?

-- name: archive_event
UPDATE event_names SET archived = ? WHERE account_id = ? AND name = ?

-- name: set_verification_secret
UPDATE accounts SET verification_secret = ? WHERE id = ?

-- name: delete_customer_events
DELETE FROM events WHERE account_id = ? AND user_uuid IN (
    SELECT uuid FROM customers WHERE account_id = ? AND (uuid = ? OR merged_into = ?))

-- name: delete_customer_identifiers
DELETE FROM identifiers WHERE account_id = ? AND customer_uuid = ?

-- name: delete_customer_conflicts
DELETE FROM identity_conflicts
WHERE account_id = ? AND (customer_uuid = ? OR other_uuid = ?)

-- name: delete_customer
DELETE FROM customers WHERE account_id = ? AND (uuid = ? OR merged_into = ?)

-- name: latest_event_id
-- The newest id of all accounts: SQLite gives every new row a greater rowid, so it is a cursor
-- every later event of any account passes.
SELECT coalesce(max(id), 0) FROM events

-- name: events_since
-- The rowid range after the cursor, newest first. The unary + keeps SQLite off the account's
-- indexes: a poll reads only the rows stored since the previous one.
SELECT id, user_uuid, received_ms, timestamp_ms, body FROM events
WHERE id > ? AND +account_id = ?
ORDER BY id DESC LIMIT ?

-- name: events_since_named
SELECT id, user_uuid, received_ms, timestamp_ms, body FROM events
WHERE id > ? AND +account_id = ? AND +event = ?
ORDER BY id DESC LIMIT ?

-- name: error_page
-- Keyset pages, newest first, from error_log_by_time (its rowid orders ties by id). The last
-- two parameters: NULL for every row, 1 for pending rows, 0 for replayed ones.
SELECT id, received_ms, error_type, errors, raw, replayed_ms, replayed_event_uuid, retried_ms,
       source, context
FROM error_log
WHERE account_id = ? AND received_ms >= ? AND received_ms < ?
    AND received_ms <= ? AND (received_ms < ? OR id < ?)
    AND (? IS NULL OR (replayed_ms IS NULL) = ?)
ORDER BY received_ms DESC, id DESC LIMIT ?

-- name: error_page_of_type
-- The type's own index, even where the planner would walk the time index: a rare type would
-- cost a walk over the whole log.
SELECT id, received_ms, error_type, errors, raw, replayed_ms, replayed_event_uuid, retried_ms,
       source, context
FROM error_log INDEXED BY error_log_by_type
WHERE account_id = ? AND error_type = ? AND received_ms >= ? AND received_ms < ?
    AND received_ms <= ? AND (received_ms < ? OR id < ?)
    AND (? IS NULL OR (replayed_ms IS NULL) = ?)
ORDER BY received_ms DESC, id DESC LIMIT ?

-- name: count_errors
SELECT count(*) FROM (
    SELECT 1 FROM error_log
    WHERE account_id = ? AND received_ms >= ? AND received_ms < ?
        AND (? IS NULL OR (replayed_ms IS NULL) = ?)
    LIMIT ?)

-- name: count_errors_of_type
SELECT count(*) FROM (
    SELECT 1 FROM error_log
    WHERE account_id = ? AND error_type = ? AND received_ms >= ? AND received_ms < ?
        AND (? IS NULL OR (replayed_ms IS NULL) = ?)
    LIMIT ?)

-- name: errors_by_id
SELECT id, received_ms, error_type, errors, raw, replayed_ms, replayed_event_uuid, retried_ms,
       source, context
FROM error_log WHERE account_id = ? AND id IN ({marks})
ORDER BY received_ms DESC, id DESC

-- name: mark_error_replayed
UPDATE error_log SET replayed_ms = ?, replayed_event_uuid = ?, retried_ms = ?
WHERE account_id = ? AND id = ? AND replayed_ms IS NULL

-- name: mark_error_failed
UPDATE error_log SET error_type = ?, errors = ?, retried_ms = ?
WHERE account_id = ? AND id = ? AND replayed_ms IS NULL

-- Finding and browsing customers (schema/007). Keyset pages, newest activity first: the
-- position is (seen_ms, id), and every query reads an index range, never the events.

-- name: customers_page
SELECT id, uuid, customer_id, email, created_ms, updated_ms, seen_ms, NULL, NULL
FROM customers INDEXED BY customers_by_activity
WHERE account_id = ? AND merged_into IS NULL AND (seen_ms, id) < (?, ?)
ORDER BY seen_ms DESC, id DESC LIMIT ?

-- name: customers_by_prefix
-- One range per kind; a customer matched by several identifiers once, under the strongest
-- kind (SQLite takes the bare columns of the row of min(rank)). CROSS JOIN keeps the matches
-- the outer loop: each is one search of customers_by_uuid.
WITH matches (customer_uuid, kind, value, rank) AS (
    SELECT customer_uuid, kind, value, 0 FROM identifiers
    WHERE account_id = ? AND kind = 'customer_id' AND value >= ? AND value < ?
    UNION ALL
    SELECT customer_uuid, kind, value, 1 FROM identifiers
    WHERE account_id = ? AND kind = 'email' AND value >= ? AND value < ?
    UNION ALL
    SELECT customer_uuid, kind, value, 2 FROM identifiers
    WHERE account_id = ? AND kind = 'device_id' AND value >= ? AND value < ?
    UNION ALL
    SELECT customer_uuid, kind, value, 3 FROM identifiers
    WHERE account_id = ? AND kind = 'cookie' AND value >= ? AND value < ?
), best AS (
    SELECT customer_uuid, kind, value, min(rank) FROM matches GROUP BY customer_uuid
)
SELECT c.id, c.uuid, c.customer_id, c.email, c.created_ms, c.updated_ms, c.seen_ms,
       b.kind, b.value
FROM best AS b CROSS JOIN customers AS c
WHERE c.account_id = ? AND c.uuid = b.customer_uuid AND c.merged_into IS NULL
    AND (c.seen_ms, c.id) < (?, ?)
ORDER BY c.seen_ms DESC, c.id DESC LIMIT ?

-- name: identifiers_seen_of_customer
SELECT kind, value, created_ms FROM identifiers INDEXED BY identifiers_by_customer
WHERE account_id = ? AND customer_uuid = ?
ORDER BY created_ms, kind, value

-- name: profiles_merged_into
SELECT uuid, created_ms, merged_ms FROM customers INDEXED BY customers_by_merge
WHERE account_id = ? AND merged_into = ?
ORDER BY merged_ms IS NULL, merged_ms, id

-- name: conflicts_of_customer
-- The newest conflicts the profile is either side of.
SELECT id, received_ms, event_uuid, customer_uuid, other_uuid, kind, value FROM (
    SELECT * FROM identity_conflicts INDEXED BY identity_conflicts_by_customer
    WHERE account_id = ? AND customer_uuid = ?
    UNION
    SELECT * FROM identity_conflicts INDEXED BY identity_conflicts_by_other
    WHERE account_id = ? AND other_uuid = ?)
ORDER BY received_ms DESC, id DESC LIMIT ?

-- name: customer_events_page
-- From events_by_customer, whose implicit rowid keeps (timestamp_ms, id) in index order.
SELECT timestamp_ms, id, body, user_uuid, received_ms FROM events
WHERE account_id = ? AND user_uuid = ? AND timestamp_ms <= ? AND (timestamp_ms < ? OR id < ?)
ORDER BY timestamp_ms DESC, id DESC LIMIT ?

-- name: add_event_daily
INSERT INTO event_daily (account_id, day, event, count) VALUES (?, ?, ?, ?)
ON CONFLICT (account_id, day, event) DO UPDATE SET count = count + excluded.count

-- name: add_event_name
INSERT INTO event_names (account_id, name, display_name, type, created_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (account_id, name) DO NOTHING
