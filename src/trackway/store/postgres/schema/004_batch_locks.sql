-- The locks a group commit takes before its lookups, in one statement (see store.py): each
-- account's lock, shared by every writer or exclusive, then the hashed identifiers and event
-- uuids of the batch, each group in the order given (sorted), so that writers never wait for
-- each other in a cycle. The lookups run as the next statements, whose snapshots see what the
-- writers waited for committed.
CREATE FUNCTION trackway_lock_batch(accounts int4[], buckets int4[], exclusive boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    account int4;
BEGIN
    FOREACH account IN ARRAY accounts LOOP
        IF exclusive THEN
            PERFORM pg_advisory_xact_lock(7312, account);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(7312, account);
        END IF;
    END LOOP;
    PERFORM pg_advisory_xact_lock(7314, k) FROM unnest(buckets) AS u (k);
END
$$;
