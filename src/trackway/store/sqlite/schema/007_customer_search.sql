-- Customers found by identifier prefix and browsed newest activity first; a profile explained
-- by its merges and identity conflicts.
--
-- seen_ms: the newest timestamp of the profile's events (to a minute: see domain/customers.py).
-- merged_ms: when the profile was merged into merged_into (NULL before this migration).
ALTER TABLE customers ADD COLUMN seen_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN merged_ms INTEGER;

UPDATE customers SET seen_ms = coalesce(
    (SELECT max(timestamp_ms) FROM events
     WHERE events.account_id = customers.account_id AND events.user_uuid = customers.uuid),
    created_ms)
WHERE merged_into IS NULL;

-- Live profiles, newest activity first (the rowid breaks ties: the keyset is (seen_ms, id)).
CREATE INDEX customers_by_activity ON customers (account_id, seen_ms) WHERE merged_into IS NULL;

-- Identifier prefixes are ranges of the primary key (account_id, kind, value); emails are
-- stored lower-cased, so a lower-cased prefix finds them whatever the case searched.

CREATE INDEX identity_conflicts_by_customer ON identity_conflicts (account_id, customer_uuid);
CREATE INDEX identity_conflicts_by_other ON identity_conflicts (account_id, other_uuid);
