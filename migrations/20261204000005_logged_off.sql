-- When the TV was seen at its login screen after a used ticket ended (the Kodi script's
-- confirmed `--log-off` for boxes the server reaches itself, the agent's report for the
-- others). Until then the page says "time up, TV not yet logged off", never a plain "ended".
ALTER TABLE tickets ADD COLUMN logged_off_at INTEGER;

-- Tickets that ended before the TV's confirmation was recorded are taken as logged off.
UPDATE tickets SET logged_off_at = expires_at
WHERE used_at IS NOT NULL AND state IN ('expired', 'revoked');

-- The start page looks for them on every read: few, among a long history.
CREATE INDEX tickets_not_logged_off ON tickets(profile_id)
WHERE used_at IS NOT NULL AND logged_off_at IS NULL AND state IN ('expired', 'revoked');
