-- Sessions that end stay ended, and account linking only when the student asked for it.

-- Disabling an account by any path (the CLI, or an admin's own
-- `UPDATE users SET disabled_at = …` through wrangler) deletes its sessions, so that
-- enabling it again does not bring them back: the student signs in afresh.
CREATE TRIGGER users_disabled_ends_sessions
AFTER UPDATE OF disabled_at ON users
WHEN NEW.disabled_at IS NOT NULL
BEGIN
    DELETE FROM sessions WHERE user_id = NEW.id;
END;

-- A link that the student started on /me ("link Telegram"), valid for this session only
-- and only until link_intent_expires_at: the Telegram callback offers to link an account
-- only while it is set, and linking clears it.
ALTER TABLE sessions ADD COLUMN link_intent TEXT CHECK (link_intent IN ('telegram'));
ALTER TABLE sessions ADD COLUMN link_intent_expires_at INTEGER;

-- Accounts disabled before this trigger existed kept their session rows (they only
-- stopped working while disabled): end them now, so re-enabling never revives them.
DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE disabled_at IS NOT NULL);
