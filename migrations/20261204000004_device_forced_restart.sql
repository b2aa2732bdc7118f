-- The agent's last restart of Kodi to end a session (its control services did not answer),
-- for the Devices page.
ALTER TABLE devices ADD COLUMN forced_restart_at INTEGER;
ALTER TABLE devices ADD COLUMN forced_restart_note TEXT;
