// D1's Sessions API in workerd (switched on by D1_READ_REPLICATION=auto, as when the
// database's read replication is on): every response that touched D1 hands back the session's
// bookmark in the `d1` cookie (over local http; `__Host-d1` over https), and the next
// request starts its D1 session from it, so a student reads their own writes wherever
// a replica serves them. A cookie that is not a bookmark is ignored, never sent to D1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { form, hashPassword, sessionCookie, sql, startWorker, TEST_VARS } from './harness.mjs';

let w;
let plain;
const USER = `INSERT INTO users (email, password_hash, name) VALUES ('bm@example.com', ${sql(hashPassword('bookmark-password'))}, 'Bm');`;
before(async () => {
  [w, plain] = await Promise.all([startWorker({ vars: { ...TEST_VARS, D1_READ_REPLICATION: 'auto' } }), startWorker()]);
  w.d1(USER);
  plain.d1(USER);
});
after(async () => {
  await Promise.all([w?.stop(), plain?.stop()]);
});

const bookmarkOf = (res) => sessionCookie(res, 'd1');
const BOOKMARK = /^[0-9a-f]+(-[0-9a-f]+)+$/;

test('the bookmark of a write comes back and the next read starts from it', async () => {
  const login = await w.fetch('/login', form({ email: 'bm@example.com', password: 'bookmark-password' }));
  assert.equal(login.status, 303);
  const session = sessionCookie(login);
  const written = bookmarkOf(login);
  assert.match(written, BOOKMARK, 'the login (a write) hands back its bookmark');
  const me = await w.fetch('/me', { headers: { cookie: `session=${session}; d1=${written}` } });
  assert.equal(me.status, 200);
  const next = bookmarkOf(me);
  // Either the same bookmark (no cookie sent) or a later one.
  if (next !== undefined) {
    assert.match(next, BOOKMARK);
    assert.ok(next >= written, `${next} is not before ${written}`);
  }
  const cookie = me.headers.getSetCookie().find((c) => c.startsWith('d1='));
  if (cookie) assert.match(cookie, /; Path=\/; HttpOnly; SameSite=Lax; Max-Age=86400$/);
});

test('a cookie that is not a bookmark is ignored and replaced', async () => {
  const login = await w.fetch('/login', form({ email: 'bm@example.com', password: 'bookmark-password' }));
  const session = sessionCookie(login);
  for (const junk of ['zzz', "x'--", 'first-primary', 'a'.repeat(300)]) {
    const me = await w.fetch('/me', { headers: { cookie: `session=${session}; d1=${encodeURIComponent(junk)}` } });
    assert.equal(me.status, 200, junk);
    assert.match(bookmarkOf(me), BOOKMARK, junk);
  }
});

test('pages that touch no D1 set no bookmark', async () => {
  const page = await w.fetch('/login?next=/me');
  assert.equal(page.status, 200);
  assert.equal(bookmarkOf(page), undefined);
});

test('without D1_READ_REPLICATION no session is used: no bookmark is handed out, and one sent is ignored', async () => {
  const login = await plain.fetch('/login', form({ email: 'bm@example.com', password: 'bookmark-password' }));
  assert.equal(login.status, 303);
  assert.equal(bookmarkOf(login), undefined);
  const me = await plain.fetch('/me', { headers: { cookie: `session=${sessionCookie(login)}; d1=00000001-00000002-00004f2c-0123456789abcdef0123456789abcdef` } });
  assert.equal(me.status, 200);
  assert.equal(bookmarkOf(me), undefined);
});
