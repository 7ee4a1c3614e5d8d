-- Telegram replay protection and login throttling.

-- Telegram Login Widget payloads already used: each signed payload signs in once.
-- Rows are kept until the payload would be stale anyway, then pruned.
CREATE TABLE telegram_logins (
    hash       TEXT PRIMARY KEY CHECK (length(hash) = 64),
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX telegram_logins_by_expiry ON telegram_logins (expires_at);

-- Failed password attempts per throttle key in a fixed window. A key is the SHA-256
-- of "account\0<e-mail>" or "address\0<client IP>", so no e-mail or address is stored.
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY CHECK (length(key) = 64),
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL CHECK (failures > 0)
) WITHOUT ROWID;

CREATE INDEX login_failures_by_window ON login_failures (window_start);
