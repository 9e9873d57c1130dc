-- Named queries of the PostgreSQL store, loaded once by store.py.

-- Locks of a group commit (see store.py and schema/004_batch_locks.sql): its accounts' locks,
-- shared by every writer or exclusive for a writer that merges profiles or fixes a new
-- attribute's type, then its hashed identifiers and event uuids:
-- name: lock_batch
SELECT trackway_lock_batch(%b::int4[], %b::int4[], %s)

-- An account's lock taken exclusively, for a customer's deletion:
-- name: lock_account
SELECT pg_advisory_xact_lock(7312, %s::int)

-- The order lock. Writers take it shared before they insert events and hold it to their
-- commit, so they insert and commit side by side; a lower id can then commit after a higher
-- one. The live stream takes it exclusively (stream_horizon), which waits for the writers
-- between their insert and their commit: every id up to the highest it then sees is committed
-- (or rolled back), so its cursor never moves past an event still to come.
-- name: lock_account_order
SELECT pg_advisory_xact_lock_shared(7316, a) FROM unnest(%b::int4[]) AS u (a)

-- name: lock_stream_horizon
SELECT pg_advisory_xact_lock(7316, %s::int)

-- The lookups probe a primary key once per wanted value: LATERAL with OFFSET 0 (a planning
-- fence) keeps the planner from flattening them into a join, which on young tables, whose
-- statistics say "a few rows", became whole-table scans held in cached generic plans.

-- name: lookups
-- What a group commit must know of one account, in one statement, one row per fact: 'u', an
-- event uuid stored already; 't', a custom attribute's name and its fixed type; 'i', a known
-- identifier (kind, value) with the profile it points at (profiles repeat), probed once. The
-- profiles are locked (FOR UPDATE) one by one in uuid order, so that two writers never wait for
-- each other in a cycle; after a wait, the row as committed.
WITH stored AS (
    SELECT u.event_uuid
    FROM unnest(%b::text[]) AS w (event_uuid)
    CROSS JOIN LATERAL (
        SELECT event_uuid FROM event_uuids
        WHERE account_id = %s AND event_uuid = w.event_uuid
        OFFSET 0
    ) AS u
), fixed AS (
    SELECT t.name, t.type
    FROM unnest(%b::text[]) AS w (name)
    CROSS JOIN LATERAL (
        SELECT name, type FROM attribute_types WHERE account_id = %s AND name = w.name OFFSET 0
    ) AS t
), found AS MATERIALIZED (
    SELECT i.kind, i.value, i.customer_uuid
    FROM unnest(%b::text[], %b::text[]) AS w (kind, value)
    CROSS JOIN LATERAL (
        SELECT kind, value, customer_uuid FROM identifiers
        WHERE account_id = %s AND kind = w.kind AND value = w.value
        OFFSET 0
    ) AS i
), locked AS MATERIALIZED (
    SELECT c.uuid, c.customer_id, c.email, c.attributes, c.subscriptions, c.created_ms,
           c.updated_ms, c.seen_ms
    FROM (SELECT DISTINCT customer_uuid FROM found ORDER BY customer_uuid) AS o
    CROSS JOIN LATERAL (
        SELECT * FROM customers WHERE account_id = %s AND uuid = o.customer_uuid FOR UPDATE
    ) AS c
)
SELECT 'u', event_uuid, NULL, NULL, NULL, NULL, NULL, NULL::jsonb, NULL::jsonb, NULL::bigint,
       NULL::bigint, NULL::bigint
FROM stored
UNION ALL
SELECT 't', name, type, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM fixed
UNION ALL
SELECT 'i', f.kind, f.value, f.customer_uuid, l.*
FROM found AS f LEFT JOIN locked AS l ON l.uuid = f.customer_uuid

-- name: count_attribute_types
SELECT count(*) FROM attribute_types WHERE account_id = %s

-- name: insert_attribute_types
-- created_ms: when the writer fixes the types.
INSERT INTO attribute_types (account_id, name, type, created_ms)
SELECT %s, u.name, u.type, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
FROM unnest(%b::text[], %b::text[]) AS u (name, type)
ON CONFLICT (account_id, name) DO NOTHING

-- name: attribute_types
-- Ordered by code point, as on SQLite, whatever the database's collation.
SELECT name, type, created_ms FROM attribute_types WHERE account_id = %s ORDER BY name COLLATE "C"

-- name: delete_attribute_type
DELETE FROM attribute_types WHERE account_id = %s AND name = %s RETURNING name, type, created_ms

-- The identity writes of a group commit: one statement each, whatever the number of rows.
-- Arrays go in binary (%b): the text format escapes every element in Python.

-- name: merge_identifiers
UPDATE identifiers SET customer_uuid = %s WHERE account_id = %s AND customer_uuid = %s

-- name: merge_events
UPDATE events SET user_uuid = %s WHERE account_id = %s AND user_uuid = %s

-- name: merge_customers
-- The loser, and the profiles merged into it before (they keep their merged_ms).
UPDATE customers
SET merged_into = %s, merged_ms = CASE WHEN uuid = %s THEN %s ELSE merged_ms END
WHERE account_id = %s AND (uuid = %s OR merged_into = %s)

-- name: insert_conflict
INSERT INTO identity_conflicts
    (account_id, received_ms, event_uuid, customer_uuid, other_uuid, kind, value)
VALUES (%s, %s, %s, %s, %s, %s, %s)

-- name: write_batch
-- Every row a group commit adds, in one statement whatever the batch: new and changed profiles,
-- new identifiers, the events, their uuids, the daily rollup and new event names. Its parts
-- run from one snapshot and touch different rows. A batch's merges run after it. The writer's
-- connection plans it once (plan_cache_mode force_generic_plan, see store.py): the changed
-- profiles are found through their unique index (LATERAL, OFFSET 0), never a scan of the table,
-- however few rows it had when the plan was made.
WITH new_customers AS (
    INSERT INTO customers
        (account_id, uuid, customer_id, email, attributes, subscriptions, created_ms, updated_ms,
         seen_ms)
    SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::jsonb[],
                         %b::jsonb[], %b::bigint[], %b::bigint[], %b::bigint[])
), changed_customers AS (
    UPDATE customers AS c
    SET customer_id = r.customer_id, email = r.email, attributes = r.attributes,
        subscriptions = r.subscriptions, created_ms = r.created_ms, updated_ms = r.updated_ms,
        seen_ms = r.seen_ms
    FROM unnest(%b::text[], %b::text[], %b::jsonb[], %b::jsonb[], %b::bigint[], %b::bigint[],
                %b::bigint[], %b::bigint[], %b::text[])
        AS r (customer_id, email, attributes, subscriptions, created_ms, updated_ms, seen_ms,
              account_id, uuid)
    CROSS JOIN LATERAL (
        SELECT id FROM customers WHERE account_id = r.account_id AND uuid = r.uuid OFFSET 0
    ) AS found
    WHERE c.id = found.id
), new_identifiers AS (
    INSERT INTO identifiers (account_id, kind, value, customer_uuid, created_ms)
    SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::bigint[])
), batch AS MATERIALIZED (
    SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::bigint[],
                         %b::bigint[], %b::jsonb[], %b::text[])
        AS b (account_id, event_uuid, event, user_uuid, timestamp_ms, received_ms, body, day)
), stored AS (
    INSERT INTO events
        (account_id, event_uuid, event, user_uuid, timestamp_ms, received_ms, body)
    SELECT account_id, event_uuid, event, user_uuid, timestamp_ms, received_ms, body FROM batch
), uuids AS (
    INSERT INTO event_uuids (account_id, event_uuid, received_ms)
    SELECT account_id, event_uuid, received_ms FROM batch
    ON CONFLICT (account_id, event_uuid) DO NOTHING
), daily AS (
    INSERT INTO event_daily (account_id, day, event, shard, count)
    SELECT account_id, day, event, %s::smallint, count(*) FROM batch
    GROUP BY account_id, day, event ORDER BY account_id, day, event
    ON CONFLICT (account_id, day, event, shard)
    DO UPDATE SET count = event_daily.count + excluded.count
)
INSERT INTO event_names (account_id, name, display_name, type, created_ms)
SELECT a, n, n, t, c FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bigint[]) AS r (a, n, t, c)
ON CONFLICT (account_id, name) DO NOTHING

-- name: insert_error_log
INSERT INTO error_log (account_id, received_ms, error_type, errors, raw, source, context)
SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::jsonb[], %b::bytea[],
                     %b::text[], %b::jsonb[])

-- name: add_error_daily
INSERT INTO error_daily (account_id, day, error_type, count)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bigint[])
ON CONFLICT (account_id, day, error_type) DO UPDATE SET count = error_daily.count + excluded.count

-- name: credential
SELECT a.id, a.uuid, a.name, a.created_ms, a.verification_secret, k.kind, k.key_hash
FROM api_keys AS k JOIN accounts AS a ON a.id = k.account_id
WHERE k.key_hash = %s AND (k.expires_ms IS NULL OR k.expires_ms > %s)

-- name: insert_account
INSERT INTO accounts (uuid, name, created_ms) VALUES (%s, %s, %s) RETURNING id

-- name: insert_key
INSERT INTO api_keys (key_hash, account_id, kind, created_ms) VALUES (%s, %s, %s, %s)

-- name: expire_keys
-- Every key of the kind still valid past the new bound is cut to it, also one still in an
-- earlier grace period: a rotation with grace 0 revokes them all.
UPDATE api_keys SET expires_ms = %s
WHERE account_id = %s AND kind = %s AND (expires_ms IS NULL OR expires_ms > %s)

-- name: revoke_key
UPDATE api_keys SET expires_ms = %s
WHERE account_id = %s AND key_hash = %s AND (expires_ms IS NULL OR expires_ms > %s)
RETURNING kind

-- name: list_accounts
SELECT id, uuid, name, created_ms, verification_secret FROM accounts ORDER BY id

-- name: find_account
SELECT id, uuid, name, created_ms, verification_secret FROM accounts WHERE name = %s OR uuid = %s

-- name: event_by_uuid
SELECT body FROM events WHERE account_id = %s AND event_uuid = %s

-- name: count_events
SELECT count(*) FROM events WHERE account_id = %s

-- name: daily_event_counts
SELECT day, event, sum(count)::bigint FROM event_daily
WHERE account_id = %s AND day BETWEEN %s AND %s GROUP BY day, event ORDER BY day, event

-- name: daily_error_counts
SELECT day, error_type, count FROM error_daily
WHERE account_id = %s AND day BETWEEN %s AND %s ORDER BY day, error_type

-- name: error_log
SELECT id, received_ms, error_type, errors, raw FROM error_log
WHERE account_id = %s ORDER BY received_ms DESC, id DESC LIMIT %s

-- name: event_names
SELECT name, display_name, type, archived, created_ms FROM event_names
WHERE account_id = %s ORDER BY name

-- name: rename_event
UPDATE event_names SET display_name = %s WHERE account_id = %s AND name = %s

-- name: archive_event
UPDATE event_names SET archived = %s WHERE account_id = %s AND name = %s

-- name: hit_rate_window
INSERT INTO rate_windows (account_id, name, window_start, count) VALUES (%s, %s, %s, 1)
ON CONFLICT (account_id, name, window_start) DO UPDATE SET count = rate_windows.count + 1
RETURNING count

-- name: forget_rate_windows
DELETE FROM rate_windows WHERE account_id = %s AND name = %s AND window_start < %s

-- name: customer_uuid_by_identifier
SELECT customer_uuid FROM identifiers WHERE account_id = %s AND kind = %s AND value = %s

-- name: customer_by_uuid
SELECT uuid, customer_id, email, merged_into, attributes, subscriptions, created_ms, updated_ms,
       seen_ms
FROM customers WHERE account_id = %s AND uuid = %s

-- name: identifiers_of_customer
SELECT kind, value FROM identifiers WHERE account_id = %s AND customer_uuid = %s
ORDER BY created_ms, value

-- name: customer_events
SELECT body, user_uuid, received_ms, timestamp_ms FROM events
WHERE account_id = %s AND user_uuid = %s AND timestamp_ms BETWEEN %s AND %s
ORDER BY timestamp_ms DESC, id DESC LIMIT %s

-- name: latest_events
SELECT body, user_uuid, received_ms, timestamp_ms FROM events
WHERE account_id = %s AND event = %s
ORDER BY timestamp_ms DESC, id DESC LIMIT %s

-- name: events_page
-- A keyset page for export, from the (account_id, event, timestamp_ms) index of the partitions
-- in range, taken in order; ties on timestamp_ms are sorted by id a few rows at a time.
SELECT timestamp_ms, id, body::text FROM events
WHERE account_id = %s AND event = %s AND timestamp_ms >= %s AND timestamp_ms < %s
    AND (timestamp_ms > %s OR id > %s)
ORDER BY timestamp_ms, id LIMIT %s

-- name: event_partitions
SELECT c.relname FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
JOIN pg_class AS p ON p.oid = i.inhparent
WHERE p.relname = 'events'

-- name: set_verification_secret
UPDATE accounts SET verification_secret = %s WHERE id = %s

-- name: delete_customer_events
DELETE FROM events WHERE account_id = %s AND user_uuid IN (
    SELECT uuid FROM customers WHERE account_id = %s AND (uuid = %s OR merged_into = %s))

-- name: delete_customer_identifiers
DELETE FROM identifiers WHERE account_id = %s AND customer_uuid = %s

-- name: delete_customer_conflicts
DELETE FROM identity_conflicts
WHERE account_id = %s AND (customer_uuid = %s OR other_uuid = %s)

-- name: delete_customer
DELETE FROM customers WHERE account_id = %s AND (uuid = %s OR merged_into = %s)

-- name: latest_event_id
SELECT coalesce(max(id), 0) FROM events WHERE account_id = %s

-- name: events_since
-- From events_by_arrival, newest first: a poll reads only the rows stored after the cursor, up
-- to the horizon (lock_stream_horizon).
SELECT id, user_uuid, received_ms, timestamp_ms, body::text FROM events
WHERE account_id = %s AND id > %s AND id <= %s
ORDER BY id DESC LIMIT %s

-- name: events_since_named
-- Filtered from the account's newest events after the cursor (events_by_arrival), never read
-- through the name's index: a name with millions of events would cost a sort at every poll.
SELECT id, user_uuid, received_ms, timestamp_ms, body::text FROM (
    SELECT id, user_uuid, received_ms, timestamp_ms, body, event FROM events
    WHERE account_id = %s AND id > %s AND id <= %s
    ORDER BY id DESC LIMIT 20000) AS recent
WHERE event = %s
ORDER BY id DESC LIMIT %s

-- name: error_page
-- Keyset pages, newest first. The two parameters before the limit: NULL for every row, true
-- for pending rows, false for replayed ones.
SELECT id, received_ms, error_type, errors, raw, replayed_ms, replayed_event_uuid, retried_ms,
       source, context
FROM error_log
WHERE account_id = %s AND received_ms >= %s AND received_ms < %s
    AND (received_ms, id) < (%s, %s)
    AND (%s::boolean IS NULL OR (replayed_ms IS NULL) = %s::boolean)
ORDER BY received_ms DESC, id DESC LIMIT %s

-- name: error_page_of_type
SELECT id, received_ms, error_type, errors, raw, replayed_ms, replayed_event_uuid, retried_ms,
       source, context
FROM error_log
WHERE account_id = %s AND error_type = %s AND received_ms >= %s AND received_ms < %s
    AND (received_ms, id) < (%s, %s)
    AND (%s::boolean IS NULL OR (replayed_ms IS NULL) = %s::boolean)
ORDER BY received_ms DESC, id DESC LIMIT %s

-- name: count_errors
SELECT count(*) FROM (
    SELECT 1 FROM error_log
    WHERE account_id = %s AND received_ms >= %s AND received_ms < %s
        AND (%s::boolean IS NULL OR (replayed_ms IS NULL) = %s::boolean)
    LIMIT %s) AS matching

-- name: count_errors_of_type
SELECT count(*) FROM (
    SELECT 1 FROM error_log
    WHERE account_id = %s AND error_type = %s AND received_ms >= %s AND received_ms < %s
        AND (%s::boolean IS NULL OR (replayed_ms IS NULL) = %s::boolean)
    LIMIT %s) AS matching

-- name: errors_by_id
SELECT e.id, e.received_ms, e.error_type, e.errors, e.raw, e.replayed_ms,
       e.replayed_event_uuid, e.retried_ms, e.source, e.context
FROM unnest(%s::bigint[]) AS w (id)
JOIN error_log AS e ON e.id = w.id AND e.account_id = %s
ORDER BY e.received_ms DESC, e.id DESC

-- name: mark_error_replayed
UPDATE error_log SET replayed_ms = %s, replayed_event_uuid = %s, retried_ms = %s
WHERE account_id = %s AND id = %s AND replayed_ms IS NULL

-- name: mark_error_failed
UPDATE error_log SET error_type = %s, errors = %s::jsonb, retried_ms = %s
WHERE account_id = %s AND id = %s AND replayed_ms IS NULL

-- Finding and browsing customers (schema/008). Keyset pages, newest activity first: the
-- position is (seen_ms, id), and every query reads an index range, never the events.

-- name: customers_page
SELECT id, uuid, customer_id, email, created_ms, updated_ms, seen_ms, NULL, NULL
FROM customers
WHERE account_id = %s AND merged_into IS NULL AND (seen_ms, id) < (%s, %s)
ORDER BY seen_ms DESC, id DESC LIMIT %s

-- name: customers_by_prefix
-- One range per kind, in code point order (identifiers_by_prefix);
-- a customer matched by several identifiers once, under the strongest kind. Each match finds
-- its profile through the unique (account_id, uuid) index.
WITH matches AS (
    SELECT customer_uuid, kind, value, 0 AS rank FROM identifiers
    WHERE account_id = %(a)s AND kind = 'customer_id'
        AND value COLLATE "C" >= %(exact)s AND value COLLATE "C" < %(exact_upper)s
    UNION ALL
    SELECT customer_uuid, kind, value, 1 FROM identifiers
    WHERE account_id = %(a)s AND kind = 'email'
        AND value COLLATE "C" >= %(folded)s AND value COLLATE "C" < %(folded_upper)s
    UNION ALL
    SELECT customer_uuid, kind, value, 2 FROM identifiers
    WHERE account_id = %(a)s AND kind = 'device_id'
        AND value COLLATE "C" >= %(exact)s AND value COLLATE "C" < %(exact_upper)s
    UNION ALL
    SELECT customer_uuid, kind, value, 3 FROM identifiers
    WHERE account_id = %(a)s AND kind = 'cookie'
        AND value COLLATE "C" >= %(exact)s AND value COLLATE "C" < %(exact_upper)s
), best AS (
    SELECT DISTINCT ON (customer_uuid) customer_uuid, kind, value FROM matches
    ORDER BY customer_uuid, rank
)
SELECT c.id, c.uuid, c.customer_id, c.email, c.created_ms, c.updated_ms, c.seen_ms,
       b.kind, b.value
FROM best AS b
CROSS JOIN LATERAL (
    SELECT * FROM customers WHERE account_id = %(a)s AND uuid = b.customer_uuid OFFSET 0
) AS c
WHERE c.merged_into IS NULL AND (c.seen_ms, c.id) < (%(seen)s, %(id)s)
ORDER BY c.seen_ms DESC, c.id DESC LIMIT %(limit)s

-- name: identifiers_seen_of_customer
SELECT kind, value, created_ms FROM identifiers WHERE account_id = %s AND customer_uuid = %s
ORDER BY created_ms, kind COLLATE "C", value COLLATE "C"

-- name: profiles_merged_into
SELECT uuid, created_ms, merged_ms FROM customers
WHERE account_id = %s AND merged_into = %s
ORDER BY merged_ms NULLS LAST, id

-- name: conflicts_of_customer
-- The newest conflicts the profile is either side of.
SELECT id, received_ms, event_uuid, customer_uuid, other_uuid, kind, value FROM (
    SELECT * FROM identity_conflicts WHERE account_id = %s AND customer_uuid = %s
    UNION
    SELECT * FROM identity_conflicts WHERE account_id = %s AND other_uuid = %s) AS c
ORDER BY received_ms DESC, id DESC LIMIT %s

-- name: customer_events_page
-- From events_by_customer of every partition (newest first); ties on timestamp_ms are sorted
-- by id a few rows at a time.
SELECT timestamp_ms, id, body, user_uuid, received_ms FROM events
WHERE account_id = %s AND user_uuid = %s AND timestamp_ms <= %s AND (timestamp_ms < %s OR id < %s)
ORDER BY timestamp_ms DESC, id DESC LIMIT %s
