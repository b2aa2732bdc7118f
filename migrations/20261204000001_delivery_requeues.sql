-- How often a delivery was queued again (the page's Retry). An agent's open event stream
-- remembers what it sent by delivery and requeue count, so a retry is sent again even when
-- the stream never saw the failure that came before it.
ALTER TABLE deliveries ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
