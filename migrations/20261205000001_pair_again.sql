-- Pairing a box again (its state lost: Kodi's safe mode, a new SD card): a code made for a
-- box that exists already names it, and the exchange gives that box a new token; its
-- profiles, tickets and sessions stay. `paired_at` tells the Devices page when it happened.
ALTER TABLE pairings ADD COLUMN device_id INTEGER REFERENCES devices (id) ON DELETE CASCADE;
ALTER TABLE devices ADD COLUMN paired_at INTEGER;
