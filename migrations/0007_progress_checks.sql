-- The worker's progress checks (a student's «Проверить прогресс», or a stale /me).

-- The last check of each student: when it started (pressed or in the background; /me
-- checks again once this is PROGRESS_REFRESH_SECS old), when they last pressed the
-- button (a press waits out the cooldown after it; 0 = never), and its id (a random
-- token: the reservation that wrote it knows it is its own).
CREATE TABLE progress_checks (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    checked_at INTEGER NOT NULL,
    pressed_at INTEGER NOT NULL DEFAULT 0,
    check_id   TEXT NOT NULL
) WITHOUT ROWID;

-- Site-wide budgets in fixed windows: 'stepik' counts the checks that ask Stepik in
-- the current minute (STEPIK_REFRESH_PER_MINUTE). `last_id` is the check last counted.
CREATE TABLE rate_windows (
    name         TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    used         INTEGER NOT NULL CHECK (used > 0),
    last_id      TEXT
) WITHOUT ROWID;

-- What the worker keeps between isolates. 'stepik_token': the Stepik access token,
-- sealed (XChaCha20-Poly1305 under a key derived from SECRET_KEY; never in the clear),
-- until `expires_at`.
CREATE TABLE worker_cache (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- /me asks when the last sync finished well (its data is current as of then).
CREATE INDEX sync_runs_ok ON sync_runs (finished_at) WHERE outcome = 'ok';
