// Telegram sign-in, linking and the local development page, end to end in workerd.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { form, hashPassword, sessionCookie, sql, startWorker, telegramQuery } from './harness.mjs';

const PASSWORD = 'пароль для телеграма';
const now = () => Math.floor(Date.now() / 1000);
let w;

before(async () => {
  w = await startWorker();
  w.d1(`
    INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Введение', 1, 'MEDIAintro');
    INSERT INTO users (id, email, password_hash, name, telegram_id) VALUES
      (1, 'tg@example.com', NULL, 'Телеграм Только', 5000000001),
      (2, 'pw@example.com', ${sql(hashPassword(PASSWORD))}, 'Парольная Пользовательница', NULL),
      (3, 'off@example.com', NULL, 'Отключённый', 777);
    UPDATE users SET disabled_at = unixepoch() WHERE id = 3;
  `);
});
after(async () => {
  await w?.stop();
});

const callback = (fields, init) => w.fetch(`/login/telegram/callback?${telegramQuery(fields)}`, init);
const withCookie = (cookie) => ({ headers: { cookie: `session=${cookie}` } });

describe('Telegram sign-in', () => {
  test('a linked account signs in: 303 to a clean /me, session method telegram', async () => {
    const res = await callback({ id: 5000000001, first_name: 'Анна Мария', auth_date: now() });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/me');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    const cookie = sessionCookie(res);
    assert.ok(cookie);
    const me = await w.fetch('/me', withCookie(cookie));
    const html = await me.text();
    assert.match(html, /Телеграм Только/);
    assert.match(html, /через Telegram/);
    assert.doesNotMatch(html, /action="\/me\/telegram\/unlink"/, 'no unlink for a Telegram-only account');
  });

  test('signing in with Telegram lifts a block that `generator notify` recorded', async () => {
    w.d1('UPDATE users SET telegram_blocked_at = 1 WHERE telegram_id = 5000000001');
    // Another payload than the test above's (a used one is refused).
    const res = await callback({ id: 5000000001, first_name: 'Анна Мария', auth_date: now() - 7 });
    assert.equal(res.status, 303);
    const [row] = w.d1('SELECT telegram_blocked_at FROM users WHERE telegram_id = 5000000001');
    assert.equal(row.telegram_blocked_at, null);
  });

  test('an unknown Telegram account: 403 with how to link', async () => {
    const res = await callback({ id: 42, first_name: 'X', auth_date: now() });
    assert.equal(res.status, 403);
    assert.equal(sessionCookie(res), undefined);
    assert.match(await res.text(), /Привязать Telegram/);
  });

  test('a disabled account: 403', async () => {
    const res = await callback({ id: 777, auth_date: now() });
    assert.equal(res.status, 403);
    assert.equal(sessionCookie(res), undefined);
  });

  test('stale, future-dated, tampered and replayed payloads: 403, no session', async () => {
    const stale = await callback({ id: 5000000001, auth_date: now() - 601 });
    assert.equal(stale.status, 403);
    assert.match(await stale.text(), /устарел/);
    const future = await callback({ id: 5000000001, auth_date: now() + 120 });
    assert.equal(future.status, 403);
    assert.match(await future.text(), /недействительны/);
    const tampered = telegramQuery({ id: 5000000001, first_name: 'A', auth_date: now() }).replace('first_name=A', 'first_name=B');
    const t = await w.fetch(`/login/telegram/callback?${tampered}`);
    assert.equal(t.status, 403);
    const wrongToken = telegramQuery({ id: 5000000001, auth_date: now() }, '123456:another-token');
    assert.equal((await w.fetch(`/login/telegram/callback?${wrongToken}`)).status, 403);
    const query = telegramQuery({ id: 5000000001, auth_date: now(), username: 'anna' });
    const first = await w.fetch(`/login/telegram/callback?${query}`);
    assert.equal(first.status, 303);
    const replay = await w.fetch(`/login/telegram/callback?${query}`);
    assert.equal(replay.status, 403);
    assert.equal(sessionCookie(replay), undefined);
    for (const res of [stale, future, t, replay]) assert.equal(sessionCookie(res), undefined);
  });

  test('a used payload is refused in any other spelling of its hash', async () => {
    // `+f` parses as a hex byte in lenient decoders; the hash must be 64 hex digits and
    // the replay key its decoded value. Find a payload whose hash has a 0 opening a byte.
    let query;
    for (let i = 0; ; i++) {
      query = telegramQuery({ id: 5000000001, auth_date: now(), username: `spell${i}` });
      const hash = query.match(/hash=([0-9a-f]{64})/)[1];
      if ([...hash].some((c, j) => c === '0' && j % 2 === 0)) break;
    }
    const [head, hash] = query.split('hash=');
    const zero = [...hash].findIndex((c, j) => c === '0' && j % 2 === 0);
    const plus = `${head}hash=${hash.slice(0, zero)}%2B${hash.slice(zero + 1)}`;
    const upper = `${head}hash=${hash.toUpperCase()}`;
    // Not a well-formed hash at all: refused even before the real one is used.
    assert.equal((await w.fetch(`/login/telegram/callback?${plus}`)).status, 403);
    assert.equal((await w.fetch(`/login/telegram/callback?${query}`)).status, 303);
    for (const spelling of [plus, upper, query]) {
      const res = await w.fetch(`/login/telegram/callback?${spelling}`);
      assert.equal(res.status, 403, spelling);
      assert.equal(sessionCookie(res), undefined);
    }
  });

  test('HEAD of the callback uses nothing up and signs nobody in', async () => {
    const query = telegramQuery({ id: 5000000001, auth_date: now(), username: 'head' });
    const sessions = () => w.d1(`SELECT count(*) AS n FROM sessions WHERE user_id = 1`)[0].n;
    const before = sessions();
    const head = await w.fetch(`/login/telegram/callback?${query}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(sessionCookie(head), undefined);
    assert.equal(sessions(), before);
    const get = await w.fetch(`/login/telegram/callback?${query}`);
    assert.equal(get.status, 303, 'the payload is still fresh after the HEAD');
    assert.ok(sessionCookie(get));
  });

  test('garbage queries are 403, never 500', async () => {
    for (const q of ['', 'hash=zz', 'id=1&id=2&auth_date=1&hash=' + 'a'.repeat(64), '%FF%FE', 'x'.repeat(5000)]) {
      const res = await w.fetch(`/login/telegram/callback?${q}`);
      assert.equal(res.status, 403, q.slice(0, 40));
    }
  });
});

describe('linking', () => {
  async function passwordSession() {
    const res = await w.fetch('/login', form({ email: 'pw@example.com', password: PASSWORD }));
    assert.equal(res.status, 303);
    return sessionCookie(res);
  }

  const post = (path, cookie, fields = {}) =>
    w.fetch(path, {
      ...form(fields),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `session=${cookie}`, origin: w.url },
    });

  test('a callback the student did not start from /me links nothing: 403, start from /me', async () => {
    const cookie = await passwordSession();
    // An attacker's own fresh payload, opened in the signed-in student's browser.
    const query = telegramQuery({ id: 6660000001, first_name: 'Злоумышленник', auth_date: now() });
    const ask = await w.fetch(`/login/telegram/callback?${query}`, withCookie(cookie));
    assert.equal(ask.status, 403);
    assert.match(await ask.text(), /\/me/);
    const link = await post('/me/telegram/link', cookie, { payload: query });
    assert.equal(link.status, 403);
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 2`), [{ telegram_id: null }]);
    // Nor can a login chain into the callback through `next`.
    const next = encodeURIComponent(`/login/telegram/callback?${query}`);
    const login = await w.fetch(`/login?next=${next}`, form({ email: 'pw@example.com', password: PASSWORD }));
    assert.equal(login.status, 303);
    assert.equal(login.headers.get('location'), '/me');
  });

  test('a password user links Telegram, signs in with it, then unlinks', async () => {
    const cookie = await passwordSession();
    let html = await (await w.fetch('/me', withCookie(cookie))).text();
    // The shipped configuration names no bot, so /me shows no button or widget (native
    // tests cover both); the link flow itself needs only the token.
    assert.match(html, /id="telegram-heading"/);
    // Linking starts with a same-origin POST from /me (a cross-site one is refused).
    const crossStart = await w.fetch('/me/telegram/start', {
      method: 'POST',
      headers: { cookie: `session=${cookie}`, origin: 'https://evil.example' },
    });
    assert.equal(crossStart.status, 403);
    const start = await post('/me/telegram/start', cookie);
    assert.equal(start.status, 303);
    assert.equal(start.headers.get('location'), '/me#telegram-heading');
    // The callback now only asks; linking needs the same-origin POST of that page.
    // A first name shaped like a template placeholder is shown as itself.
    const query = telegramQuery({ id: 6000000002, first_name: '{student}', username: 'pw_tg', auth_date: now() });
    const ask = await w.fetch(`/login/telegram/callback?${query}`, withCookie(cookie));
    assert.equal(ask.status, 200);
    const page = await ask.text();
    assert.match(page, /Привязать Telegram\?/);
    assert.match(page, /\{student\}/);
    assert.match(page, /@pw_tg/);
    assert.match(page, /Парольная Пользовательница/);
    const payload = page.match(/name="payload" value="([^"]*)"/)[1].replaceAll('&amp;', '&');
    assert.equal(payload, query);
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 2`), [{ telegram_id: null }], 'not linked yet');
    const crossSite = await w.fetch('/me/telegram/link', {
      ...form({ payload }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `session=${cookie}`, origin: 'https://evil.example' },
    });
    assert.equal(crossSite.status, 403);
    const link = await post('/me/telegram/link', cookie, { payload });
    assert.equal(link.status, 303);
    assert.equal(link.headers.get('location'), '/me');
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 2`), [{ telegram_id: 6000000002 }]);
    html = await (await w.fetch('/me', withCookie(cookie))).text();
    assert.match(html, /<span id="telegram-id" hidden>6000000002<\/span>/);
    assert.match(html, /action="\/me\/telegram\/unlink"/);

    const viaTelegram = await callback({ id: 6000000002, auth_date: now() });
    assert.equal(viaTelegram.status, 303, 'now they can sign in with Telegram');

    const unlink = await w.fetch('/me/telegram/unlink', { method: 'POST', ...withCookie(cookie) });
    assert.equal(unlink.status, 303);
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 2`), [{ telegram_id: null }]);
    const after = await callback({ id: 6000000002, auth_date: now() });
    assert.equal(after.status, 403, 'unlinked Telegram no longer signs in');
    // The intent was used up by the link: a new callback asks to start again.
    const again = await callback({ id: 6000000003, auth_date: now() }, withCookie(cookie));
    assert.equal(again.status, 403);
  });

  test('a Telegram account linked to someone else is refused', async () => {
    const cookie = await passwordSession();
    assert.equal((await post('/me/telegram/start', cookie)).status, 303);
    const res = await callback({ id: 5000000001, auth_date: now() }, withCookie(cookie));
    assert.equal(res.status, 409);
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 2`), [{ telegram_id: null }]);
    assert.deepEqual(w.d1(`SELECT telegram_id FROM users WHERE id = 1`), [{ telegram_id: 5000000001 }]);
  });
});

describe('local development page', () => {
  test('/dev/telegram signs a payload with the local token and signs in', async () => {
    const page = await w.fetch('/dev/telegram');
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Только для локальной разработки/);
    const res = await w.fetch('/dev/telegram?id=5000000001&first_name=%D0%A2%D0%B5%D1%81%D1%82');
    assert.equal(res.status, 303);
    const location = res.headers.get('location');
    assert.match(location, /^\/login\/telegram\/callback\?id=5000000001&auth_date=\d+&first_name=.+&hash=[0-9a-f]{64}$/);
    const signedIn = await w.fetch(location);
    assert.equal(signedIn.status, 303);
    assert.ok(sessionCookie(signedIn));
  });
});

describe('Messages about new videos on /me', () => {
  test('where they go, what a channel refused, and the switch, stored in D1', async () => {
    const res = await callback({ id: 5000000001, first_name: 'А', auth_date: now() });
    const cookie = sessionCookie(res);
    assert.ok(cookie);
    let html = await (await w.fetch('/me', withCookie(cookie))).text();
    assert.match(html, /мы напишем вам в Telegram\./);
    assert.match(html, /action="\/me\/notifications\/off"/);

    const off = await w.fetch('/me/notifications/off', { method: 'POST', ...withCookie(cookie) });
    assert.equal(off.status, 303);
    assert.equal(off.headers.get('location'), '/me#notify');
    const [row] = w.d1('SELECT notify_off_at IS NOT NULL AS off FROM users WHERE id = 1');
    assert.equal(row.off, 1);
    html = await (await w.fetch('/me', withCookie(cookie))).text();
    assert.match(html, /Сообщения о новых видео выключены\./);
    assert.match(html, /action="\/me\/notifications\/on"/);

    const on = await w.fetch('/me/notifications/on', { method: 'POST', ...withCookie(cookie) });
    assert.equal(on.status, 303);
    assert.equal(w.d1('SELECT notify_off_at FROM users WHERE id = 1')[0].notify_off_at, null);

    // What `generator notify` recorded: the bot blocked, and no e-mail to fall back to.
    w.d1('UPDATE users SET telegram_blocked_at = unixepoch() WHERE id = 1');
    html = await (await w.fetch('/me', withCookie(cookie))).text();
    assert.match(html, /Telegram не принимает сообщения нашего бота/);
    assert.match(html, /мы напишем вам на tg@example\.com\./);
    w.d1('UPDATE users SET telegram_blocked_at = NULL WHERE id = 1');

    // From another site: refused, nothing stored.
    const evil = await w.fetch('/me/notifications/off', {
      method: 'POST',
      headers: { cookie: `session=${cookie}`, origin: 'https://evil.example' },
    });
    assert.equal(evil.status, 403);
    assert.equal(w.d1('SELECT notify_off_at FROM users WHERE id = 1')[0].notify_off_at, null);
    assert.equal((await w.fetch('/me/notifications/off', withCookie(cookie))).status, 405);
  });
});
