-- How many live tickets hold a PIN in each block of 100 codes (block 0 is "0000"–"0099",
-- block 99 is "9900"–"9999"). Choosing a free PIN reads these 100 counts and the live codes of
-- one block, instead of every live code: with 9,998 live tickets that read cost as much as
-- the rest of a ticket's creation. Triggers keep the counts in the same transaction as
-- every change to a ticket, whoever makes it (pages, API, sweeper, a profile's deletion).
CREATE TABLE pin_blocks (
    block INTEGER PRIMARY KEY CHECK (block BETWEEN 0 AND 99),
    live  INTEGER NOT NULL CHECK (live BETWEEN 0 AND 100)
);

WITH RECURSIVE blocks(block) AS (SELECT 0 UNION ALL SELECT block + 1 FROM blocks WHERE block < 99)
INSERT INTO pin_blocks (block, live)
SELECT block,
       (SELECT count(*) FROM tickets
         WHERE state IN ('unused', 'in_use') AND CAST(lock_code AS INTEGER) / 100 = block)
FROM blocks;

CREATE TRIGGER pin_blocks_ticket_inserted AFTER INSERT ON tickets
WHEN NEW.state IN ('unused', 'in_use')
BEGIN
    UPDATE pin_blocks SET live = live + 1 WHERE block = CAST(NEW.lock_code AS INTEGER) / 100;
END;

CREATE TRIGGER pin_blocks_ticket_deleted AFTER DELETE ON tickets
WHEN OLD.state IN ('unused', 'in_use')
BEGIN
    UPDATE pin_blocks SET live = live - 1 WHERE block = CAST(OLD.lock_code AS INTEGER) / 100;
END;

-- NOTE: a login (unused → in use) changes neither condition, so it writes no count.
CREATE TRIGGER pin_blocks_code_released AFTER UPDATE OF state, lock_code ON tickets
WHEN OLD.state IN ('unused', 'in_use')
 AND (NEW.state NOT IN ('unused', 'in_use') OR NEW.lock_code IS NOT OLD.lock_code)
BEGIN
    UPDATE pin_blocks SET live = live - 1 WHERE block = CAST(OLD.lock_code AS INTEGER) / 100;
END;

CREATE TRIGGER pin_blocks_code_taken AFTER UPDATE OF state, lock_code ON tickets
WHEN NEW.state IN ('unused', 'in_use')
 AND (OLD.state NOT IN ('unused', 'in_use') OR NEW.lock_code IS NOT OLD.lock_code)
BEGIN
    UPDATE pin_blocks SET live = live + 1 WHERE block = CAST(NEW.lock_code AS INTEGER) / 100;
END;
