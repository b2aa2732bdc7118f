-- Times are Unix seconds (UTC). Booleans are 0/1.

CREATE TABLE admins (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 1,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- An admin's browser session; the cookie holds a random token, the table only its SHA-256.
CREATE TABLE sessions (
    token_hash   TEXT    PRIMARY KEY,
    admin_id     INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX sessions_admin ON sessions(admin_id);


-- A Kodi box allowed to call /api; only the SHA-256 of its token is kept.
-- `delivery` says how PINs reach it: its agent, ssh from the server, or the server's own
-- machine (`local`, for a server running on the Kodi box).
CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    token_hash     TEXT    NOT NULL UNIQUE,
    delivery       TEXT    NOT NULL DEFAULT 'agent' CHECK (delivery IN ('agent', 'ssh', 'local')),
    -- For `ssh`: where the server logs in to run the Kodi script.
    ssh_user       TEXT,
    ssh_host       TEXT,
    ssh_port       INTEGER NOT NULL DEFAULT 22 CHECK (ssh_port BETWEEN 1 AND 65535),
    ssh_key_path   TEXT,
    kodi_version   TEXT,
    master_lock    INTEGER,
    kodi_reachable INTEGER,
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER,
    revoked_at     INTEGER
);

-- A Kodi profile; its name is the profile's name in Kodi (Kodi compares names
-- case-insensitively). `device_id` is the Kodi box it lives on (none: the server's machine).
CREATE TABLE profiles (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    device_id  INTEGER REFERENCES devices(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE tickets (
    id         INTEGER PRIMARY KEY,
    profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    lock_code  TEXT    NOT NULL CHECK (lock_code GLOB '[0-9][0-9][0-9][0-9]'),
    length     INTEGER NOT NULL CHECK (length BETWEEN 1 AND 1440),
    state      TEXT    NOT NULL DEFAULT 'unused'
               CHECK (state IN ('unused', 'in_use', 'expired', 'revoked')),
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    expires_at INTEGER
);
-- A PIN is unique among live tickets; expired and revoked codes become free again.
CREATE UNIQUE INDEX tickets_live_lock_code ON tickets(lock_code) WHERE state IN ('unused', 'in_use');
CREATE INDEX tickets_profile ON tickets(profile_id, id);
CREATE INDEX tickets_running ON tickets(expires_at) WHERE state = 'in_use';


-- Outbox: applying a ticket's PIN to Kodi. Written in the same transaction as the ticket,
-- so a crash between the two cannot lose a delivery.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER NOT NULL UNIQUE REFERENCES tickets(id) ON DELETE CASCADE,
    method          TEXT    NOT NULL CHECK (method IN ('local', 'agent', 'ssh')),
    device_id       INTEGER REFERENCES devices(id) ON DELETE CASCADE,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'applied', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_exit_code  INTEGER,
    last_message    TEXT,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_device ON deliveries(device_id, id) WHERE status IN ('pending', 'running');
