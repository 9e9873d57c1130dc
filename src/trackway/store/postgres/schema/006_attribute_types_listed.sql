-- Attribute types can be listed (GET /api/v1/attributes) and reset.
-- created_ms: when the type was fixed; NULL for those fixed before it was recorded.
ALTER TABLE attribute_types ADD COLUMN created_ms bigint;

-- These names are typed by Trackway's own rules now, never by first use: a type one of them got
-- from its first use (a number for user_agent, say, which then refused every browser event) is
-- forgotten.
DELETE FROM attribute_types WHERE name IN (
    'sent_at', 'user_agent', 'referrer', 'url', 'site', 'session_uuid',
    '_bsft_doc_type', '_bsft_ts', '_bsft_type', 'santized_at', 'account_uuid', 'user_uuid',
    'browser_platform', 'browser_type', 'browser_version', 'timestamp_epoch'
);
