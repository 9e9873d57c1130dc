-- Writers of one account commit side by side (see store.py). Ids no longer follow commit order
-- within an account (003's note): the live stream reads up to a horizon instead.
--
-- The daily rollup is kept in shards: each group commit adds its counts to the row of one
-- shard, picked at random, so that two writers seldom wait for each other on the row of the
-- (day, event) they both count. Reads add the shards up.
ALTER TABLE event_daily ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE event_daily DROP CONSTRAINT event_daily_pkey;
ALTER TABLE event_daily ADD PRIMARY KEY (account_id, day, event, shard);
