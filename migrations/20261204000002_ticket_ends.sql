-- The end of a ticket on a Kodi box the server itself reaches (deliveries `local` and `ssh`;
-- an agent ends its own sessions): at `due_at` the worker logs the profile's session off and
-- gives the profile the next ticket's PIN or a random secret, so the ended ticket's PIN opens
-- nothing. Written by the triggers below in the transaction that changes the ticket; kept
-- after the ticket is deleted.
CREATE TABLE ticket_ends (
    ticket_id      INTEGER PRIMARY KEY,
    profile_id     INTEGER REFERENCES profiles(id) ON DELETE SET NULL,
    profile_name   TEXT    NOT NULL,
    method         TEXT    NOT NULL CHECK (method IN ('local', 'ssh')),
    device_id      INTEGER REFERENCES devices(id) ON DELETE CASCADE,
    status         TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed')),
    due_at         INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    last_message   TEXT,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX ticket_ends_due ON ticket_ends(due_at) WHERE status = 'pending';

-- A ticket in use ends when its time is up.
CREATE TRIGGER ticket_ends_on_use AFTER UPDATE OF state ON tickets
WHEN OLD.state = 'unused' AND NEW.state = 'in_use'
BEGIN
    INSERT OR REPLACE INTO ticket_ends
        (ticket_id, profile_id, profile_name, method, device_id, due_at, updated_at)
    SELECT NEW.id, p.id, p.name, d.method, d.device_id, NEW.expires_at, NEW.used_at
    FROM deliveries d JOIN profiles p ON p.id = NEW.profile_id
    WHERE d.ticket_id = NEW.id AND d.method IN ('local', 'ssh');
END;

-- More minutes, or "end now" (its end is now).
CREATE TRIGGER ticket_ends_follow_expiry AFTER UPDATE OF expires_at ON tickets
WHEN NEW.expires_at IS NOT NULL
BEGIN
    UPDATE ticket_ends SET due_at = NEW.expires_at
    WHERE ticket_id = NEW.id AND status = 'pending';
END;

-- A ticket deleted (or revoked) while in use, or while its PIN is set on the TV: ended now.
CREATE TRIGGER ticket_ends_on_delete BEFORE DELETE ON tickets
WHEN OLD.state IN ('unused', 'in_use')
BEGIN
    INSERT OR REPLACE INTO ticket_ends
        (ticket_id, profile_id, profile_name, method, device_id, due_at, updated_at)
    SELECT OLD.id, p.id, p.name, d.method, d.device_id,
           CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
    FROM deliveries d JOIN profiles p ON p.id = OLD.profile_id
    WHERE d.ticket_id = OLD.id AND d.method IN ('local', 'ssh')
      AND (OLD.state = 'in_use' OR d.status IN ('applied', 'running'));
END;

CREATE TRIGGER ticket_ends_on_revoke AFTER UPDATE OF state ON tickets
WHEN OLD.state IN ('unused', 'in_use') AND NEW.state = 'revoked'
BEGIN
    INSERT OR REPLACE INTO ticket_ends
        (ticket_id, profile_id, profile_name, method, device_id, due_at, updated_at)
    SELECT NEW.id, p.id, p.name, d.method, d.device_id,
           CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
    FROM deliveries d JOIN profiles p ON p.id = NEW.profile_id
    WHERE d.ticket_id = NEW.id AND d.method IN ('local', 'ssh')
      AND (OLD.state = 'in_use' OR d.status IN ('applied', 'running'));
END;

-- A profile deleted with a ticket in use, or with a ticket's PIN set on the TV.
CREATE TRIGGER ticket_ends_on_profile_delete BEFORE DELETE ON profiles
BEGIN
    INSERT OR REPLACE INTO ticket_ends
        (ticket_id, profile_id, profile_name, method, device_id, due_at, updated_at)
    SELECT t.id, NULL, OLD.name, d.method, d.device_id,
           CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
    FROM tickets t JOIN deliveries d ON d.ticket_id = t.id
    WHERE t.profile_id = OLD.id AND d.method IN ('local', 'ssh')
      AND (t.state = 'in_use' OR (t.state = 'unused' AND d.status IN ('applied', 'running')));
END;
