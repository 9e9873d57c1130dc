-- Accounts, their keys (hashes only), events, rollups, the event-name registry, the error log.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_hash    TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'user')),
    created_ms  INTEGER NOT NULL,
    -- NULL while the key is current; set when it is rotated away.
    expires_ms  INTEGER
) WITHOUT ROWID;

CREATE INDEX api_keys_by_account ON api_keys (account_id, kind);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL,
    event_uuid    TEXT NOT NULL,
    event         TEXT NOT NULL,
    user_uuid     TEXT,
    timestamp_ms  INTEGER NOT NULL,
    received_ms   INTEGER NOT NULL,
    -- The event as stored: the body as sent, normalised, as JSON text.
    body          BLOB NOT NULL
);

CREATE UNIQUE INDEX events_by_uuid ON events (account_id, event_uuid);
CREATE INDEX events_by_name ON events (account_id, event, timestamp_ms);

CREATE TABLE event_daily (
    account_id  INTEGER NOT NULL,
    day         TEXT NOT NULL,
    event       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, event)
) WITHOUT ROWID;

CREATE TABLE error_daily (
    account_id  INTEGER NOT NULL,
    day         TEXT NOT NULL,
    error_type  TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, error_type)
) WITHOUT ROWID;

CREATE TABLE error_log (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    error_type   TEXT NOT NULL,
    errors       TEXT NOT NULL,
    raw          BLOB NOT NULL
);

CREATE INDEX error_log_by_time ON error_log (account_id, received_ms);

CREATE TABLE event_names (
    account_id    INTEGER NOT NULL,
    name          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    type          TEXT NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

-- The well-known event names (type 'standard'); filled at every start from the domain's list.
CREATE TABLE standard_event_names (
    name  TEXT PRIMARY KEY
) WITHOUT ROWID;

-- Rollups and the registry move with the events, in the same statement and transaction: the
-- writer sends one multi-row INSERT per group commit and SQLite does the rest without Python.
CREATE TRIGGER events_rollup AFTER INSERT ON events
BEGIN
    INSERT INTO event_daily (account_id, day, event, count)
    VALUES (NEW.account_id, strftime('%Y-%m-%d', NEW.timestamp_ms / 1000, 'unixepoch'),
            NEW.event, 1)
    ON CONFLICT (account_id, day, event) DO UPDATE SET count = count + 1;
    INSERT INTO event_names (account_id, name, display_name, type, created_ms)
    VALUES (NEW.account_id, NEW.event, NEW.event,
            CASE WHEN EXISTS (SELECT 1 FROM standard_event_names WHERE name = NEW.event)
                 THEN 'standard' ELSE 'custom_event' END,
            NEW.received_ms)
    ON CONFLICT (account_id, name) DO NOTHING;
END;

CREATE TRIGGER error_log_rollup AFTER INSERT ON error_log
BEGIN
    INSERT INTO error_daily (account_id, day, error_type, count)
    VALUES (NEW.account_id, strftime('%Y-%m-%d', NEW.received_ms / 1000, 'unixepoch'),
            NEW.error_type, 1)
    ON CONFLICT (account_id, day, error_type) DO UPDATE SET count = count + 1;
END;
