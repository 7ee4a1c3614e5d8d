-- Demo data for local development (scripts/dev.sh). Idempotent: run it as often as you like.
-- @DEMO_PASSWORD_HASH@ is replaced by the Argon2id hash of the demo password.
INSERT INTO videos (id, title, position, media_code) VALUES
    ('intro',    'Введение: как устроен курс',      1, 'DEMOintro'),
    ('basics',   'Урок 1. Основы',                  2, 'DEMObasics'),
    ('practice', 'Урок 2. Практика',                3, 'DEMOpractice'),
    ('final',    'Итоговый разбор',                 4, 'DEMOfinal')
ON CONFLICT (id) DO UPDATE SET title = excluded.title, position = excluded.position, media_code = excluded.media_code;

INSERT INTO users (email, password_hash, name, stepik_user_id) VALUES
    ('demo@example.com', '@DEMO_PASSWORD_HASH@', 'Анна Демо', 100001)
ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, name = excluded.name, disabled_at = NULL;

INSERT INTO grants (user_id, video_id, source)
    SELECT id, v.video_id, 'stepik' FROM users, (SELECT 'intro' AS video_id UNION ALL SELECT 'basics') AS v
    WHERE email = 'demo@example.com'
ON CONFLICT (user_id, video_id) DO NOTHING;

-- A student who signs in only with Telegram (locally through /dev/telegram, id 5000000001).
INSERT INTO users (email, password_hash, name, telegram_id) VALUES
    (NULL, NULL, 'Борис Телеграмов', 5000000001)
ON CONFLICT (telegram_id) DO UPDATE SET name = excluded.name, disabled_at = NULL;

INSERT INTO grants (user_id, video_id, source)
    SELECT id, 'intro', 'manual' FROM users WHERE telegram_id = 5000000001
ON CONFLICT (user_id, video_id) DO NOTHING;
