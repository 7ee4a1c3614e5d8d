-- The Stepik sync's bookkeeping.

-- Each learner's progress as of the last sync, keyed by Stepik user id, kept whether or
-- not a local account is linked yet (so a student gets their grants as soon as an admin
-- links them). /me shows it.
CREATE TABLE learner_progress (
    stepik_user_id INTEGER PRIMARY KEY,
    steps_passed   INTEGER NOT NULL,
    steps_total    INTEGER NOT NULL,
    score          REAL NOT NULL,
    -- Videos the learner's progress unlocks (JSON array of video ids, course order).
    unlocked       TEXT NOT NULL DEFAULT '[]',
    -- The first video not unlocked yet, and how many more graded steps it needs.
    next_video_id  TEXT,
    next_missing   INTEGER,
    updated_at     INTEGER NOT NULL
);

-- One row per sync run.
CREATE TABLE sync_runs (
    id             INTEGER PRIMARY KEY,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    -- 'running', 'ok', 'failed' or 'dry-run'.
    outcome        TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'failed', 'dry-run')),
    -- Counts and messages as JSON (learners, linked, grants added/revoked, requests, …).
    summary        TEXT NOT NULL DEFAULT '{}'
);
