-- How a row of the error log arrived, so that a replay reads its payload the way it came.
-- source: 'json', raw is JSON (a body of POST /api/v1/event or /bulkevents, an import line, an
-- event the store refused); 'pixel', raw is the query string of GET /unity.gif without its
-- key; NULL, logged before this column (a replay takes a query naming an event for a pixel's).
-- context: of a pixel row, the request's user agent, IP and referrer (a JSON object), which
-- the pixel fills into the event when the query does not carry them.
ALTER TABLE error_log ADD COLUMN source TEXT;
ALTER TABLE error_log ADD COLUMN context TEXT;
