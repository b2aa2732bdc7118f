-- Pairing codes: the Devices page (or `device pair-code`) names a box and shows a short code;
-- the agent on the box exchanges it, once, within ten minutes, for the box's token. Only the
-- code's SHA-256 is kept; the device itself is made at the exchange.
CREATE TABLE pairings (
    code_hash  TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
