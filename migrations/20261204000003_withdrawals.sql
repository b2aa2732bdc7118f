-- Tickets deleted while an agent holds them (its PIN armed or waiting on the TV, or its session
-- running): the device's event stream sends each as `withdrawn` until the agent acknowledges
-- it, so the PIN stops opening the profile and the next ticket gets its turn.
CREATE TABLE withdrawals (
    ticket_id    INTEGER PRIMARY KEY,
    device_id    INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    profile_name TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX withdrawals_device ON withdrawals(device_id);

CREATE TRIGGER withdrawals_on_delete BEFORE DELETE ON tickets
WHEN OLD.state IN ('unused', 'in_use')
BEGIN
    INSERT OR REPLACE INTO withdrawals (ticket_id, device_id, profile_name, created_at)
    SELECT OLD.id, d.device_id, p.name, CAST(strftime('%s', 'now') AS INTEGER)
    FROM deliveries d JOIN profiles p ON p.id = OLD.profile_id
    WHERE d.ticket_id = OLD.id AND d.method = 'agent' AND d.device_id IS NOT NULL;
END;

CREATE TRIGGER withdrawals_on_revoke AFTER UPDATE OF state ON tickets
WHEN OLD.state IN ('unused', 'in_use') AND NEW.state = 'revoked'
BEGIN
    INSERT OR REPLACE INTO withdrawals (ticket_id, device_id, profile_name, created_at)
    SELECT NEW.id, d.device_id, p.name, CAST(strftime('%s', 'now') AS INTEGER)
    FROM deliveries d JOIN profiles p ON p.id = NEW.profile_id
    WHERE d.ticket_id = NEW.id AND d.method = 'agent' AND d.device_id IS NOT NULL;
END;

-- A profile deleted with tickets an agent holds.
CREATE TRIGGER withdrawals_on_profile_delete BEFORE DELETE ON profiles
BEGIN
    INSERT OR REPLACE INTO withdrawals (ticket_id, device_id, profile_name, created_at)
    SELECT t.id, d.device_id, OLD.name, CAST(strftime('%s', 'now') AS INTEGER)
    FROM tickets t JOIN deliveries d ON d.ticket_id = t.id
    WHERE t.profile_id = OLD.id AND t.state IN ('unused', 'in_use')
      AND d.method = 'agent' AND d.device_id IS NOT NULL;
END;
