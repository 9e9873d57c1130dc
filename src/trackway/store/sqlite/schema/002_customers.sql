-- Customers (profiles), the identifiers that point at them, and what reads need.
CREATE TABLE customers (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL,
    uuid           TEXT NOT NULL,
    customer_id    TEXT,
    email          TEXT,
    -- Set when this profile was merged into another: the uuid that now answers for it.
    merged_into    TEXT,
    attributes     BLOB NOT NULL DEFAULT '{}',
    subscriptions  BLOB NOT NULL DEFAULT '{}',
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);

CREATE UNIQUE INDEX customers_by_uuid ON customers (account_id, uuid);
CREATE INDEX customers_by_merge ON customers (account_id, merged_into)
    WHERE merged_into IS NOT NULL;

-- kind: customer_id, email, email_hash, device_id or cookie. Always points at a live profile.
CREATE TABLE identifiers (
    account_id     INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    value          TEXT NOT NULL,
    customer_uuid  TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, value)
) WITHOUT ROWID;

CREATE INDEX identifiers_by_customer ON identifiers (account_id, customer_uuid);

-- Two identified profiles an event tied together; never merged, kept for inspection.
CREATE TABLE identity_conflicts (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL,
    event_uuid     TEXT NOT NULL,
    customer_uuid  TEXT NOT NULL,
    other_uuid     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    value          TEXT NOT NULL
);

-- The first type seen for a custom attribute name fixes it for the account.
CREATE TABLE attribute_types (
    account_id  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

-- Fixed-window call counters shared by every process (show_events: 10 an hour).
CREATE TABLE rate_windows (
    account_id    INTEGER NOT NULL,
    name          TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (account_id, name, window_start)
) WITHOUT ROWID;

CREATE INDEX events_by_customer ON events (account_id, user_uuid, timestamp_ms);
