// End-to-end tests of the edge worker running in workerd (wrangler dev) with a real,
// migrated local D1. Run by scripts/test.sh after the worker and the site are built.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { form, hashPassword, sessionCookie, sql, startWorker } from './harness.mjs';

const PASSWORD = 'правильный пароль 1';
const LOGIN_FAILED = 'Неверный e-mail или пароль.';
/** Argon2id of "pw" with m=8, t=1, p=1: verifies, but is below the current parameters. */
const WEAK_HASH =
  '$argon2id$v=19$m=8,t=1,p=1$o93/LEtizTqTIculmTM2zQ$NvRgsehLDmAhmVcQwmsXjIaWIGgNkYg9snJEnlv5a04';

let w;

before(async () => {
  w = await startWorker();
  const hash = hashPassword(PASSWORD);
  w.d1(`
    INSERT INTO videos (id, title, position, media_code) VALUES
      ('intro', 'Введение', 1, 'MEDIAintro'), ('one', 'Урок <1>', 2, 'MEDIAone'),
      ('two', 'Урок 2', 3, 'MEDIAtwo'), ('final', 'Финал', 4, 'MEDIAfinal');
    INSERT INTO users (id, email, password_hash, name) VALUES
      (1, 'anna@example.com', ${sql(hash)}, 'Анна Тестова'),
      (2, 'off@example.com', ${sql(hash)}, 'Отключённый');
    UPDATE users SET disabled_at = unixepoch() WHERE id = 2;
    INSERT INTO users (id, telegram_id, name) VALUES (3, 5000000001, 'Только Telegram');
    INSERT INTO users (id, email, password_hash, name) VALUES (4, 'old@example.com', ${sql(WEAK_HASH)}, 'Старый хеш');
    INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik'), (1, 'two', 'manual');
  `);
});

after(async () => {
  await w?.stop();
});

async function login(fields = { email: 'anna@example.com', password: PASSWORD }) {
  return w.fetch('/login', form(fields));
}

async function loggedInCookie() {
  const res = await login();
  assert.equal(res.status, 303);
  const cookie = sessionCookie(res);
  assert.ok(cookie, 'login sets a session cookie');
  return cookie;
}

const me = (cookie) => w.fetch('/me', { headers: cookie ? { cookie: `session=${cookie}` } : {} });

describe('login', () => {
  test('GET /login serves the static login page', async () => {
    const res = await w.fetch('/login');
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /<html lang="ru">/);
    assert.match(html, /<form class="card" method="post" action="\/login">/);
    assert.doesNotMatch(html, /name="next"/);
  });

  test('GET /login?next=/me renders the same form carrying next', async () => {
    const html = await (await w.fetch('/login?next=%2Fme')).text();
    assert.match(html, /<input type="hidden" name="next" value="\/me">/);
    const offsite = await (await w.fetch('/login?next=%2F%2Fevil.example')).text();
    assert.doesNotMatch(offsite, /name="next"/);
  });

  test('right password: new session, 303 to /me, cookie attributes for local http', async () => {
    const res = await login({ email: '  Anna@Example.COM ', password: PASSWORD });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/me');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const [line] = res.headers.getSetCookie();
    assert.match(line, /^session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=2592000$/);
    const rows = w.d1(`SELECT user_id, auth_method, expires_at - created_at AS ttl, length(id) AS len FROM sessions`);
    assert.ok(rows.some((r) => r.user_id === 1 && r.auth_method === 'password' && r.ttl === 2592000 && r.len === 64));
  });

  test('every login issues a different session and ends the one the browser had', async () => {
    const a = await loggedInCookie();
    const again = await w.fetch('/login', {
      ...form({ email: 'anna@example.com', password: PASSWORD }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `session=${a}` },
    });
    const b = sessionCookie(again);
    assert.ok(b);
    assert.notEqual(a, b);
    assert.equal((await me(a)).status, 303, 'the replaced session is gone');
    assert.equal((await me(b)).status, 200);
  });

  test('wrong password and unknown e-mail give the same 401 page', async () => {
    const wrong = await login({ email: 'anna@example.com', password: 'nope' });
    const unknown = await login({ email: 'ghost@example.com', password: 'nope' });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    const [a, b] = [await wrong.text(), await unknown.text()];
    assert.ok(a.includes(LOGIN_FAILED) && b.includes(LOGIN_FAILED));
    assert.equal(a.replace('anna@example.com', 'X'), b.replace('ghost@example.com', 'X'));
    assert.equal(sessionCookie(wrong), undefined);
    assert.equal(sessionCookie(unknown), undefined);
  });

  test('missing e-mail or password: 400 and the form again', async () => {
    const res = await login({ email: '', password: '' });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Введите e-mail и пароль/);
  });

  test('a disabled account cannot log in', async () => {
    const res = await login({ email: 'off@example.com', password: PASSWORD });
    assert.equal(res.status, 403);
    assert.match(await res.text(), /отключена/);
    assert.equal(sessionCookie(res), undefined);
  });

  test('an outdated hash is replaced at login, compare-and-set, and the session binds to the new one', async () => {
    const res = await login({ email: 'old@example.com', password: 'pw' });
    assert.equal(res.status, 303);
    const [{ password_hash: stored }] = w.d1(`SELECT password_hash FROM users WHERE id = 4`);
    assert.notEqual(stored, WEAK_HASH);
    assert.match(stored, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.equal((await me(sessionCookie(res))).status, 200);
  });

  test('next: same-site path honoured, off-site ignored', async () => {
    const same = await login({ email: 'anna@example.com', password: PASSWORD, next: '/me?tab=1' });
    assert.equal(same.headers.get('location'), '/me?tab=1');
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
      const res = await login({ email: 'anna@example.com', password: PASSWORD, next });
      assert.equal(res.status, 303);
      assert.equal(res.headers.get('location'), '/me', next);
    }
  });

  test('bad requests get 4xx with a message, never 500', async () => {
    const cases = [
      [{ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"a"}' }, 415],
      [{ method: 'POST', body: 'email=a&password=b' , headers: { 'content-type': 'text/plain' } }, 415],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'email=%ZZ&password=x' }, 400],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from([0x65, 0x3d, 0xff, 0xfe]) }, 400],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'email=' + 'a'.repeat(20000) }, 413],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'password=' + 'a'.repeat(5000) }, 400],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'email=anna%40example.com' }, 400],
      [{ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }, 400],
      [{ method: 'PUT', body: 'x' }, 405],
      [{ method: 'DELETE' }, 405],
    ];
    for (const [init, status] of cases) {
      const res = await w.fetch('/login', init);
      assert.equal(res.status, status, JSON.stringify(init).slice(0, 120));
      if (init.method !== 'HEAD') assert.match(await res.text(), /<html lang="ru">/);
    }
  });
});

describe('/me', () => {
  test('without a session: 303 to the login page with next', async () => {
    const res = await me();
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/login?next=/me');
  });

  test('with a session: name, method, granted and locked videos, no-store', async () => {
    const res = await me(await loggedInCookie());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.match(res.headers.get('content-type'), /^text\/html; charset=utf-8/);
    const html = await res.text();
    assert.match(html, /<h1>Анна Тестова<\/h1>/);
    assert.match(html, /по e-mail и паролю/);
    const granted = html.slice(html.indexOf('id="granted"'), html.indexOf('id="locked"'));
    const locked = html.slice(html.indexOf('id="locked"'));
    assert.match(granted, /Введение.*href="https:\/\/play\.boomstream\.com\/MEDIAintro"/);
    assert.match(granted, /Урок 2.*href="https:\/\/play\.boomstream\.com\/MEDIAtwo"/);
    assert.match(locked, /Урок &lt;1&gt;/);
    assert.match(locked, /Финал/);
    assert.doesNotMatch(locked, /boomstream/);
    assert.match(html, /<form method="post" action="\/logout">/);
  });

  test('a forged or altered cookie is rejected and cleared', async () => {
    const cookie = await loggedInCookie();
    const [payload, mac] = cookie.split('.');
    const flipped = mac[0] === 'A' ? 'B' + mac.slice(1) : 'A' + mac.slice(1);
    const forgedPayload = Buffer.from(
      Buffer.from(payload, 'base64url').toString().replace(/:1:p:/, ':2:p:'),
    ).toString('base64url');
    for (const bad of [`${payload}.${flipped}`, `${forgedPayload}.${mac}`, 'garbage', `${cookie}x`, '.']) {
      const res = await me(bad);
      assert.equal(res.status, 303, bad);
      assert.equal(res.headers.get('location'), '/login?next=/me');
      assert.equal(sessionCookie(res), '', 'the bad cookie is removed');
    }
  });

  test('a session that expired on the server is rejected', async () => {
    const cookie = await loggedInCookie();
    assert.equal((await me(cookie)).status, 200);
    w.d1(`UPDATE sessions SET expires_at = unixepoch() - 1`);
    assert.equal((await me(cookie)).status, 303);
  });

  test('disabling an account ends its sessions', async () => {
    const cookie = await loggedInCookie();
    w.d1(`UPDATE users SET disabled_at = unixepoch() WHERE id = 1`);
    try {
      assert.equal((await me(cookie)).status, 303);
    } finally {
      w.d1(`UPDATE users SET disabled_at = NULL WHERE id = 1`);
    }
  });
});

describe('watching', () => {
  test('/me pre-authorises the player once Boomstream confirmed; the watch page embeds it', async () => {
    const cookie = await loggedInCookie();
    w.d1(`UPDATE users SET access_code = 'e2e-Code_123' WHERE id = 1;
          UPDATE grants SET boomstream_confirmed_at = unixepoch() WHERE user_id = 1 AND video_id = 'intro';`);
    const html = await (await me(cookie)).text();
    assert.match(html, /href="https:\/\/play\.boomstream\.com\/MEDIAintro\?id_recovery=e2e-Code_123"/);
    assert.match(html, /href="https:\/\/play\.boomstream\.com\/MEDIAtwo"/, 'unconfirmed: a plain link');
    assert.match(html, /<code id="access-code">e2e-Code_123<\/code>/);
    const page = await w.fetch('/me/videos/intro', { headers: { cookie: `session=${cookie}` } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy'), /frame-src [^;]*https:\/\/play\.boomstream\.com/);
    assert.match(await page.text(), /<iframe src="https:\/\/play\.boomstream\.com\/MEDIAintro\?id_recovery=e2e-Code_123"/);
    const locked = await w.fetch('/me/videos/final', { headers: { cookie: `session=${cookie}` } });
    assert.equal(locked.status, 403);
    assert.doesNotMatch(await locked.text(), /<iframe/);
    assert.equal((await w.fetch('/me/videos/nope', { headers: { cookie: `session=${cookie}` } })).status, 404);
    const anonymous = await w.fetch('/me/videos/intro');
    assert.equal(anonymous.status, 303);
    assert.equal(anonymous.headers.get('location'), '/login?next=/me/videos/intro');
  });
});

describe('logout', () => {
  test('GET /logout shows a button and does not log out', async () => {
    const cookie = await loggedInCookie();
    const res = await w.fetch('/logout', { headers: { cookie: `session=${cookie}` } });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<form method="post" action="\/logout"><button type="submit">Выйти<\/button><\/form>/);
    assert.equal(sessionCookie(res), undefined);
    assert.equal((await me(cookie)).status, 200);
  });

  test('POST /logout ends the session server-side; the old cookie is dead', async () => {
    const cookie = await loggedInCookie();
    const before = w.d1(`SELECT count(*) AS n FROM sessions`)[0].n;
    const res = await w.fetch('/logout', { method: 'POST', headers: { cookie: `session=${cookie}` } });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/login');
    assert.match(res.headers.getSetCookie()[0], /^session=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0$/);
    assert.equal(w.d1(`SELECT count(*) AS n FROM sessions`)[0].n, before - 1);
    assert.equal((await me(cookie)).status, 303, 'replaying the old cookie fails');
  });

  test('POST /logout without a session still clears the cookie', async () => {
    const res = await w.fetch('/logout', { method: 'POST' });
    assert.equal(res.status, 303);
    assert.equal(sessionCookie(res), '');
  });
});

describe('static site', () => {
  test('landing page and hashed, long-cached styles are served as assets', async () => {
    const index = await w.fetch('/');
    assert.equal(index.status, 200);
    const html = await index.text();
    assert.match(html, /href="\/login"/);
    const stylesheet = html.match(/<link rel="stylesheet" href="(\/assets\/style\.[0-9a-f]{16}\.css)">/)[1];
    const css = await w.fetch(stylesheet);
    assert.equal(css.status, 200);
    assert.match(css.headers.get('content-type'), /text\/css/);
    assert.match(css.headers.get('cache-control'), /max-age=31536000, immutable/);
    const english = await w.fetch('/en/');
    assert.match(await english.text(), /<html lang="en">/);
  });

  test('unknown paths get the 404 page', async () => {
    const res = await w.fetch('/no-such-page');
    assert.equal(res.status, 404);
    assert.match(await res.text(), /Страница не найдена/);
  });
});
