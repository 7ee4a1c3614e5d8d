-- Boomstream access as Boomstream reports it, and buyers to take off Boomstream.

-- What Boomstream answered for the grant's buyer entry on its last add or re-check:
-- `AccessExpirationDate` as Boomstream wrote it (Moscow time; NULL = none given) and
-- `Recovery`, the activations left (NULL = not given). A past date or Recovery 0 means
-- the student cannot watch: the grant is then not confirmed, and the sync repairs it
-- with `ppv/updatebuyer`.
ALTER TABLE grants ADD COLUMN boomstream_access_expires TEXT;
ALTER TABLE grants ADD COLUMN boomstream_recovery INTEGER;

-- From here on `grants.boomstream_attempted_at` (0004) means "last sent to Boomstream"
-- (written just before the request goes out, undone if the push stops before it does):
-- removals are recorded only for grants that were sent.

-- Buyer entries to remove from Boomstream, one row per grant whose access goes. A row
-- is written in the same batch as the change that causes it (a disabled or deleted
-- account, a removed grant, a rotated access code), so an outage of Boomstream, or a
-- crash, cannot make the removal forgotten: `generator sync` (or the admin command
-- itself, with BOOMSTREAM_API_KEY set) works through the rows not done yet. No foreign
-- key: a row outlives the account it was about. `access_code` is the code to remove
-- (a viewing credential: shown to nobody, never logged), cleared once the row is settled.
CREATE TABLE boomstream_removals (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    access_code  TEXT,
    video_id     TEXT NOT NULL,
    reason       TEXT NOT NULL
                 CHECK (reason IN ('disabled', 'deleted', 'grant-removed', 'revoked', 'code-rotated')),
    requested_at INTEGER NOT NULL,
    -- Refusals so far (an outage is not counted), the last error, when it was tried.
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    attempted_at INTEGER,
    -- Set when settled: 'removed'; 'kept' (the student still has a video of that group
    -- subscription, or is enabled again); 'refused' (Boomstream refused it
    -- repeatedly: remove the buyer in Boomstream's dashboard); 'unconfigured' (the
    -- configuration no longer names the video's subscription).
    done_at      INTEGER,
    outcome      TEXT CHECK (outcome IN ('removed', 'kept', 'refused', 'unconfigured'))
);

CREATE INDEX boomstream_removals_pending ON boomstream_removals (id) WHERE done_at IS NULL;
