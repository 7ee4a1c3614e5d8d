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
      (3, 'reset@example.com', ${sql(hash)}, 'Reset');
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
