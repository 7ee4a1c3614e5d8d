// CSRF, throttling, headers and hostile input, end to end in workerd.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { form, hashPassword, sessionCookie, sql, startWorker } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let w;

before(async () => {
  w = await startWorker();
  const hash = hashPassword(PASSWORD);
  w.d1(`
    INSERT INTO users (id, email, password_hash, name) VALUES
      (1, 'csrf@example.com', ${sql(hash)}, 'CSRF'),
      (2, 'victim@example.com', ${sql(hash)}, 'Victim'),
      (3, 'reset@example.com', ${sql(hash)}, 'Reset'),
      (4, 'burst@example.com', ${sql(hash)}, 'Burst'),
      (5, 'paused@example.com', ${sql(hash)}, 'Paused'),
      (6, 'old@example.com', ${sql(hash)}, 'Old');
  `);
});
after(async () => {
  await w?.stop();
});

const loginAs = (email, password, headers = {}) =>
  w.fetch('/login', { ...form({ email, password }), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });

describe('CSRF', () => {
  test('cross-site POSTs to /login and /logout are refused and change nothing', async () => {
    const evil = { origin: 'https://evil.example' };
    const login = await loginAs('csrf@example.com', PASSWORD, evil);
    assert.equal(login.status, 403);
    assert.equal(sessionCookie(login), undefined);
    const crossSite = await loginAs('csrf@example.com', PASSWORD, { 'sec-fetch-site': 'cross-site' });
    assert.equal(crossSite.status, 403);

    const ok = await loginAs('csrf@example.com', PASSWORD, { origin: w.url, 'sec-fetch-site': 'same-origin' });
    assert.equal(ok.status, 303, 'same-origin POST works');
    const cookie = sessionCookie(ok);
    const logout = await w.fetch('/logout', { method: 'POST', headers: { cookie: `session=${cookie}`, ...evil } });
    assert.equal(logout.status, 403);
    assert.equal((await w.fetch('/me', { headers: { cookie: `session=${cookie}` } })).status, 200, 'still signed in');
    const unlink = await w.fetch('/me/telegram/unlink', { method: 'POST', headers: { cookie: `session=${cookie}`, ...evil } });
    assert.equal(unlink.status, 403);
  });
});

describe('throttle', () => {
  test('5 failures for an account → 429 with Retry-After, even for the right password', async () => {
    const ip = { 'cf-connecting-ip': '198.51.100.7' };
    for (let i = 0; i < 5; i++) assert.equal((await loginAs('victim@example.com', 'wrong', ip)).status, 401);
    const blocked = await loginAs('victim@example.com', PASSWORD, ip);
    assert.equal(blocked.status, 429);
    const retry = Number(blocked.headers.get('retry-after'));
    assert.ok(retry > 800 && retry <= 900, `retry-after ${retry}`);
    assert.match(await blocked.text(), /Слишком много неудачных попыток/);
    // The window passes (moved back in the database): login works again.
    w.d1(`UPDATE login_failures SET window_start = window_start - 901`);
    assert.equal((await loginAs('victim@example.com', PASSWORD, ip)).status, 303);
  });

  test('a successful login clears the account counter', async () => {
    const ip = { 'cf-connecting-ip': '198.51.100.8' };
    for (let i = 0; i < 4; i++) assert.equal((await loginAs('reset@example.com', 'wrong', ip)).status, 401);
    assert.equal((await loginAs('reset@example.com', PASSWORD, ip)).status, 303);
    for (let i = 0; i < 4; i++) assert.equal((await loginAs('reset@example.com', 'wrong', ip)).status, 401);
    assert.equal((await loginAs('reset@example.com', PASSWORD, ip)).status, 303);
  });

  test('20 failures from one address → 429 for that address only', async () => {
    const ip = { 'cf-connecting-ip': '203.0.113.9' };
    for (let i = 0; i < 20; i++) assert.equal((await loginAs(`guess${i}@example.com`, 'wrong', ip)).status, 401);
    assert.equal((await loginAs('csrf@example.com', PASSWORD, ip)).status, 429);
    assert.equal((await loginAs('csrf@example.com', PASSWORD, { 'cf-connecting-ip': '203.0.113.10' })).status, 303);
    const stored = w.d1(`SELECT key FROM login_failures`).map((r) => r.key).join(' ');
    assert.doesNotMatch(stored, /@|203\\.0/, 'no e-mails or addresses are stored');
  });

  test('30 parallel wrong passwords for one account: 5 are checked, 25 are refused unchecked', async () => {
    // Each attempt is reserved in one D1 statement before Argon2 runs, so a burst can
    // never check more passwords than the limit. Each comes from its own address.
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) => loginAs('burst@example.com', `wrong-${i}`, { 'cf-connecting-ip': `192.0.2.${i + 1}` })),
    );
    const counts = {};
    for (const r of replies) counts[r.status] = (counts[r.status] ?? 0) + 1;
    assert.deepEqual(counts, { 401: 5, 429: 25 });
  });

  test('IPv6 clients are counted per /64: 20 addresses of one network share a counter', async () => {
    for (let i = 0; i < 20; i++) {
      const ip = { 'cf-connecting-ip': `2001:db8:1:2::${(i + 1).toString(16)}` };
      assert.equal((await loginAs(`v6-${i}@example.com`, 'wrong', ip)).status, 401);
    }
    const sameNet = { 'cf-connecting-ip': '2001:db8:1:2:ffff:1:2:3' };
    assert.equal((await loginAs('csrf@example.com', PASSWORD, sameNet)).status, 429);
    const otherNet = { 'cf-connecting-ip': '2001:db8:1:3::1' };
    assert.equal((await loginAs('csrf@example.com', PASSWORD, otherNet)).status, 303);
  });
});

describe('sessions that end stay ended', () => {
  const me = (cookie) => w.fetch('/me', { headers: { cookie: `session=${cookie}` } });

  test('disabling an account by a direct UPDATE ends its sessions; re-enabling does not revive them', async () => {
    const cookie = sessionCookie(await loginAs('paused@example.com', PASSWORD));
    assert.equal((await me(cookie)).status, 200);
    w.d1(`UPDATE users SET disabled_at = unixepoch() WHERE id = 5`);
    assert.equal(w.d1(`SELECT count(*) AS n FROM sessions WHERE user_id = 5`)[0].n, 0);
    w.d1(`UPDATE users SET disabled_at = NULL WHERE id = 5`);
    const res = await me(cookie);
    assert.equal(res.status, 303, 'the old cookie leads to the login page');
    assert.match(res.headers.get('location'), /^\/login/);
    assert.equal((await loginAs('paused@example.com', PASSWORD)).status, 303, 'a new sign-in works');
  });

  test('a session older than SESSION_MAX_DAYS is over, however recently it was used', async () => {
    const cookie = sessionCookie(await loginAs('old@example.com', PASSWORD));
    assert.equal((await me(cookie)).status, 200);
    // Created 91 days ago, used a moment ago (the sliding expiry is far off).
    w.d1(`UPDATE sessions SET created_at = unixepoch() - 91 * 86400 WHERE user_id = 6`);
    const res = await me(cookie);
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location'), /^\/login/);
  });
});

describe('headers', () => {
  const expectHtmlHeaders = (res) => {
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self' https:\/\/telegram\.org/);
    assert.match(csp, /frame-src https:\/\/oauth\.telegram\.org https:\/\/play\.boomstream\.com/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.ok(res.headers.get('referrer-policy'));
  };

  test('on /login (static and rendered), /me, error pages and static pages', async () => {
    expectHtmlHeaders(await w.fetch('/login'));
    expectHtmlHeaders(await w.fetch('/login?next=/me'));
    expectHtmlHeaders(await w.fetch('/'));
    expectHtmlHeaders(await w.fetch('/no-such-page'));
    const login = await loginAs('csrf@example.com', PASSWORD);
    const me = await w.fetch('/me', { headers: { cookie: `session=${sessionCookie(login)}` } });
    assert.equal(me.status, 200);
    expectHtmlHeaders(me);
    // Plain-http local development: no HSTS from the worker.
    assert.equal(me.headers.get('strict-transport-security'), null);
  });
});

describe('hostile input', () => {
  test('a chunked POST without Content-Length is cut off at the limit: 413', async () => {
    // One chunk over the limit, then the body stays open and never ends: the answer can
    // only come from a worker that stops reading at the limit.
    const chunk = new TextEncoder().encode('a'.repeat(16 * 1024));
    let sent = false;
    const body = new ReadableStream({
      pull(controller) {
        if (sent) return new Promise(() => {});
        sent = true;
        controller.enqueue(chunk);
      },
    });
    const abort = new AbortController();
    const res = await w.fetch('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: w.url },
      body,
      duplex: 'half',
      signal: abort.signal,
    });
    assert.equal(res.status, 413);
    assert.equal(sessionCookie(res), undefined);
    abort.abort();
  });

  test('odd methods, bodies and paths never give 500', async () => {
    const requests = [
      ['/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a'.repeat(100_000) }],
      ['/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=koi8-r' }, body: 'email=%E1&password=x' }],
      ['/login', { method: 'PATCH' }],
      ['/me', { method: 'POST' }],
      ['/me', { headers: { cookie: 'session=' + 'A'.repeat(4000) } }],
      ['/me', { headers: { cookie: 'session=..;session=%%%' } }],
      ['/logout', { method: 'POST', headers: { cookie: 'session=\u00ff' } }],
      ['/me/telegram/unlink', { method: 'GET' }],
      ['/dev/telegram?id=%00', {}],
      ['/login?next=%F0%9F', {}],
      ['/login/telegram/callback', { method: 'POST' }],
    ];
    for (const [path, init] of requests) {
      const res = await w.fetch(path, init);
      assert.ok(res.status < 500, `${init.method ?? 'GET'} ${path} → ${res.status}`);
    }
  });
});
