-- Telling students when the scheduled sync opens videos (`generator notify`).

-- Each student's choices and what the channels answered: messages off (set from /me;
-- NULL = on), Telegram turned off by a 403 from the Bot API (the student blocked the
-- bot or never let it write; linking Telegram again clears it), and an e-mail address
-- the SMTP server refused for good (a permanent 5xx; changing the address clears it).
ALTER TABLE users ADD COLUMN notify_off_at INTEGER;
ALTER TABLE users ADD COLUMN telegram_blocked_at INTEGER;
ALTER TABLE users ADD COLUMN email_bounced_at INTEGER;
ALTER TABLE users ADD COLUMN email_bounce TEXT;

CREATE TRIGGER users_telegram_changed_unblocks
AFTER UPDATE OF telegram_id ON users
WHEN NEW.telegram_id IS NOT OLD.telegram_id
BEGIN
    UPDATE users SET telegram_blocked_at = NULL WHERE id = NEW.id;
END;

CREATE TRIGGER users_email_changed_unbounces
AFTER UPDATE OF email ON users
WHEN NEW.email IS NOT OLD.email
BEGIN
    UPDATE users SET email_bounced_at = NULL, email_bounce = NULL WHERE id = NEW.id;
END;

-- The sync run that added a grant (NULL: the worker's progress check, an admin, or a
-- sync before this migration). Only a sync's grants are messaged: a student who pressed
-- «Проверить прогресс» already saw theirs on /me.
ALTER TABLE grants ADD COLUMN sync_run_id INTEGER;

-- The outbox: one row per grant to tell its student about. The trigger below writes it
-- in the same statement as the grant itself, so no crash (and no batch that a REST
-- call applies only in part) can leave a grant without its message or a message
-- without its grant; a grant the statement did not insert (it already existed: the
-- worker got there first) makes none.
--
-- `generator notify` sends each student's pending rows as one message:
--   pending    waiting to be sent (again, after a failure that certainly sent nothing)
--   sending    claimed by a run (`claim`, at `claimed_at`) that is sending it now; a
--              claim older than an hour belonged to a run that died mid-send: it
--              becomes `uncertain`, never sent again (it may have arrived)
--   sent       delivered on `channel` ('telegram' or 'email') at `sent_at`
--   failed     given up: `attempts` ran out, or no channel will ever take it
--   skipped    not sent on purpose: messages off, account disabled, no channel, the
--              grant gone before the message left (`error` says which)
--   expired    pending for longer than NOTIFY_MAX_AGE_DAYS: old news is not sent
--   uncertain  a send that may or may not have arrived (a crash, a timeout): not
--              repeated, so that nobody is told twice
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    video_id   TEXT NOT NULL,
    run_id     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'expired', 'uncertain')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    claim      TEXT,
    claimed_at INTEGER,
    channel    TEXT CHECK (channel IN ('telegram', 'email')),
    sent_at    INTEGER,
    error      TEXT
);

CREATE INDEX notifications_open ON notifications (user_id) WHERE status IN ('pending', 'sending');

CREATE TRIGGER grants_from_sync_notify
AFTER INSERT ON grants
WHEN NEW.sync_run_id IS NOT NULL
BEGIN
    INSERT INTO notifications (user_id, video_id, run_id, created_at)
    VALUES (NEW.user_id, NEW.video_id, NEW.sync_run_id, NEW.granted_at);
END;
