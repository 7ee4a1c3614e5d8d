-- The course site's schema: the contract between the edge worker, the generator and
-- admins who seed with `wrangler d1 execute`. Times are Unix seconds (INTEGER);
-- read them with datetime(col, 'unixepoch').

-- Students. E-mail is stored trimmed and lower-cased (the worker looks it up that
-- way); a Telegram-only student may have none.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    email          TEXT UNIQUE
                   CHECK (email IS NULL OR (email <> '' AND email = lower(trim(email)))),
    -- Argon2id PHC string ($argon2id$v=19$m=…); NULL = no password login.
    password_hash  TEXT CHECK (password_hash IS NULL OR password_hash LIKE '$argon2%'),
    telegram_id    INTEGER UNIQUE,
    stepik_user_id INTEGER UNIQUE,
    name           TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL DEFAULT (unixepoch()),
    -- Set to disable the account: it can no longer sign in and its sessions stop working.
    disabled_at    INTEGER
);

-- The course's videos, in course order.
CREATE TABLE videos (
    id         TEXT PRIMARY KEY CHECK (id <> '' AND id NOT GLOB '*[^a-z0-9_-]*'),
    title      TEXT NOT NULL,
    position   INTEGER NOT NULL,
    -- Boomstream media code: the player is https://play.boomstream.com/<media_code>.
    media_code TEXT NOT NULL CHECK (media_code <> '')
);

-- Which student may watch which video, and why.
CREATE TABLE grants (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    video_id   TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE ON UPDATE CASCADE,
    granted_at INTEGER NOT NULL DEFAULT (unixepoch()),
    -- 'stepik': earned (the sync may add it); 'manual': given by an admin, never removed by a sync.
    source     TEXT NOT NULL CHECK (source IN ('stepik', 'manual')),
    PRIMARY KEY (user_id, video_id)
) WITHOUT ROWID;

CREATE INDEX grants_by_video ON grants (video_id);

-- Server-side sessions. The cookie names a session id; only its SHA-256 (hex) is
-- stored, so a leaked table cannot be replayed as cookies. Deleting a row logs out.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY CHECK (length(id) = 64),
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL CHECK (auth_method IN ('password', 'telegram')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
