-- Accounts, keys (hashes only), events partitioned by month of their timestamp, rollups, the
-- event-name registry, the error log, customers and their identifiers.
CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    uuid        text NOT NULL UNIQUE,
    name        text NOT NULL UNIQUE,
    created_ms  bigint NOT NULL
);

CREATE TABLE api_keys (
    key_hash    text PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    kind        text NOT NULL CHECK (kind IN ('event', 'user')),
    created_ms  bigint NOT NULL,
    expires_ms  bigint
);

CREATE INDEX api_keys_by_account ON api_keys (account_id, kind);

-- Events, one partition per calendar month (UTC) of timestamp_ms, created ahead of need and on
-- demand by the writer. Dropping an old partition drops its events; the rollups stay.
CREATE TABLE events (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    account_id    bigint NOT NULL,
    event_uuid    text NOT NULL,
    event         text NOT NULL,
    user_uuid     text,
    timestamp_ms  bigint NOT NULL,
    received_ms   bigint NOT NULL,
    body          jsonb NOT NULL
) PARTITION BY RANGE (timestamp_ms);

CREATE INDEX events_by_customer ON events (account_id, user_uuid, timestamp_ms);
CREATE INDEX events_by_name ON events (account_id, event, timestamp_ms);

-- Exactly once per event_uuid across every partition: a unique index on a partitioned table
-- must hold the partition key, so the uuids live here.
CREATE TABLE event_uuids (
    account_id   bigint NOT NULL,
    event_uuid   text NOT NULL,
    received_ms  bigint NOT NULL,
    PRIMARY KEY (account_id, event_uuid)
);

CREATE TABLE event_daily (
    account_id  bigint NOT NULL,
    day         text NOT NULL,
    event       text NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (account_id, day, event)
);

CREATE TABLE error_daily (
    account_id  bigint NOT NULL,
    day         text NOT NULL,
    error_type  text NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (account_id, day, error_type)
);

CREATE TABLE error_log (
    id           bigserial PRIMARY KEY,
    account_id   bigint NOT NULL,
    received_ms  bigint NOT NULL,
    error_type   text NOT NULL,
    errors       jsonb NOT NULL,
    raw          bytea NOT NULL
);

CREATE INDEX error_log_by_time ON error_log (account_id, received_ms);

CREATE TABLE event_names (
    account_id    bigint NOT NULL,
    name          text NOT NULL,
    display_name  text NOT NULL,
    type          text NOT NULL,
    archived      boolean NOT NULL DEFAULT false,
    created_ms    bigint NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE customers (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL,
    uuid           text NOT NULL,
    customer_id    text,
    email          text,
    merged_into    text,
    attributes     jsonb NOT NULL DEFAULT '{}',
    subscriptions  jsonb NOT NULL DEFAULT '{}',
    created_ms     bigint NOT NULL,
    updated_ms     bigint NOT NULL,
    UNIQUE (account_id, uuid)
);

CREATE INDEX customers_by_merge ON customers (account_id, merged_into)
    WHERE merged_into IS NOT NULL;

CREATE TABLE identifiers (
    account_id     bigint NOT NULL,
    kind           text NOT NULL,
    value          text NOT NULL,
    customer_uuid  text NOT NULL,
    created_ms     bigint NOT NULL,
    PRIMARY KEY (account_id, kind, value)
);

CREATE INDEX identifiers_by_customer ON identifiers (account_id, customer_uuid);

CREATE TABLE identity_conflicts (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL,
    received_ms    bigint NOT NULL,
    event_uuid     text NOT NULL,
    customer_uuid  text NOT NULL,
    other_uuid     text NOT NULL,
    kind           text NOT NULL,
    value          text NOT NULL
);

CREATE TABLE attribute_types (
    account_id  bigint NOT NULL,
    name        text NOT NULL,
    type        text NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE rate_windows (
    account_id    bigint NOT NULL,
    name          text NOT NULL,
    window_start  bigint NOT NULL,
    count         bigint NOT NULL,
    PRIMARY KEY (account_id, name, window_start)
);
