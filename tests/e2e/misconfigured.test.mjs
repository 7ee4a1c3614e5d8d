// A worker whose SECRET_KEY is too short must refuse to run sessions, clearly.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { form, startWorker } from './harness.mjs';

let w;
before(async () => {
  w = await startWorker({ vars: { SECRET_KEY: 'too-short-secret' } });
});
after(async () => {
  await w?.stop();
});

test('a short SECRET_KEY gives a clear 503 page and a log line, never a session', async () => {
  const res = await w.fetch('/login', form({ email: 'a@example.com', password: 'x' }));
  assert.equal(res.status, 503);
  assert.equal(res.headers.getSetCookie().length, 0);
  assert.match(await res.text(), /Сайт настроен неверно/);
  // The same security headers as every other page.
  assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.ok(res.headers.get('referrer-policy'));
  const mePage = await w.fetch('/me', { headers: { cookie: 'session=abc.def' } });
  assert.equal(mePage.status, 503);
  await new Promise((r) => setTimeout(r, 200));
  assert.match(w.logs(), /SECRET_KEY is 16 bytes long; at least 32 are required/);
  assert.doesNotMatch(w.logs(), /too-short-secret/);
});

test('static pages keep working', async () => {
  assert.equal((await w.fetch('/')).status, 200);
});
