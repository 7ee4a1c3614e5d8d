-- Demo students for local development (scripts/dev.sh). Idempotent: run it as often as
-- you like. @DEMO_PASSWORD_HASH@ is replaced by the Argon2id hash of the demo password.
-- Videos and the demo student's grants come from `generator sync --demo`, which syncs
-- the bundled demo course (site/demo/stepik/): Anna is Stepik learner 100002 there,
-- who has passed lessons 8001 and 8002.
INSERT INTO users (email, password_hash, name, stepik_user_id) VALUES
    ('demo@example.com', '@DEMO_PASSWORD_HASH@', 'Анна Демо', 100002)
ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, name = excluded.name,
    stepik_user_id = excluded.stepik_user_id, disabled_at = NULL;

-- A student who signs in only with Telegram (locally through /dev/telegram, id 5000000001).
INSERT INTO users (email, password_hash, name, telegram_id) VALUES
    (NULL, NULL, 'Борис Телеграмов', 5000000001)
ON CONFLICT (telegram_id) DO UPDATE SET name = excluded.name, disabled_at = NULL;

-- (Not on Stepik: Boris sees only the video that is always open.)
