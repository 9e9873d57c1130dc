-- Customers found by identifier prefix and browsed newest activity first; a profile explained
-- by its merges and identity conflicts.
--
-- seen_ms: the newest timestamp of the profile's events (to a minute: see domain/customers.py).
-- merged_ms: when the profile was merged into merged_into (NULL before this migration).
ALTER TABLE customers ADD COLUMN seen_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN merged_ms bigint;

UPDATE customers AS c SET seen_ms = coalesce(
    (SELECT max(e.timestamp_ms) FROM events AS e
     WHERE e.account_id = c.account_id AND e.user_uuid = c.uuid),
    c.created_ms)
WHERE c.merged_into IS NULL;

-- Live profiles, newest activity first: the keyset is (seen_ms, id).
CREATE INDEX customers_by_activity ON customers (account_id, seen_ms, id)
    WHERE merged_into IS NULL;

-- Prefix ranges compare in code point order whatever the database's collation: the primary key
-- sorts by the database's, which under a linguistic collation is not a prefix order. Emails are
-- stored lower-cased, so a lower-cased prefix finds them whatever the case searched.
CREATE INDEX identifiers_by_prefix ON identifiers (account_id, kind, (value COLLATE "C"))
    WHERE kind IN ('customer_id', 'email', 'device_id', 'cookie');

CREATE INDEX identity_conflicts_by_customer ON identity_conflicts (account_id, customer_uuid);
CREATE INDEX identity_conflicts_by_other ON identity_conflicts (account_id, other_uuid);
