-- Boomstream pay-per-view access.

-- Each student's personal Boomstream access code (≥ 128 random bits, URL-safe), made
-- once by the sync and used for every video. A viewing credential: shown only to its
-- owner, never logged.
ALTER TABLE users ADD COLUMN access_code TEXT;
CREATE UNIQUE INDEX users_by_access_code ON users (access_code) WHERE access_code IS NOT NULL;

-- Whether Boomstream has the grant: confirmed, or the last error and when.
ALTER TABLE grants ADD COLUMN boomstream_confirmed_at INTEGER;
ALTER TABLE grants ADD COLUMN boomstream_error TEXT;
ALTER TABLE grants ADD COLUMN boomstream_attempted_at INTEGER;
