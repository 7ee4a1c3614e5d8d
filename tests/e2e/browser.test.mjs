// A real browser (Debian's Chromium, headless, driven by playwright-core) against the
// worker in workerd: sign in, see the videos, sign out; phone-sized screenshots of
// /login and /me go to test-output/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { hashPassword, ROOT, sql, startWorker } from './harness.mjs';

const PASSWORD = 'браузерный пароль';
const OUTPUT = join(ROOT, 'test-output');
let w;
let browser;

before(async () => {
  w = await startWorker();
  w.d1(`
    INSERT INTO videos (id, title, position, media_code) VALUES
      ('intro', 'Введение: как устроен курс', 1, 'DEMOintro'),
      ('basics', 'Урок 1. Основы', 2, 'DEMObasics'),
      ('final', 'Итоговый разбор', 3, 'DEMOfinal');
    INSERT INTO users (id, email, password_hash, name) VALUES (1, 'browser@example.com', ${sql(hashPassword(PASSWORD))}, 'Вера Браузерова');
    INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik');
  `);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
  });
  mkdirSync(OUTPUT, { recursive: true });
});

after(async () => {
  await browser?.close();
  await w?.stop();
});

test('sign in, see granted and locked videos, sign out (phone viewport)', async () => {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: 'ru-RU',
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  await page.goto(`${w.url}/me`);
  assert.equal(new URL(page.url()).pathname, '/login', 'a signed-out visit to /me lands on the login page');
  await page.screenshot({ path: join(OUTPUT, 'login-phone.png'), fullPage: true });

  await page.getByLabel('E-mail').fill('browser@example.com');
  await page.getByLabel('Пароль').fill(PASSWORD);
  await page.getByRole('button', { name: 'Войти' }).click();
  await page.waitForURL(`${w.url}/me`);

  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Вера Браузерова');
  const granted = page.locator('#granted li');
  assert.equal(await granted.count(), 1);
  assert.match(await granted.first().textContent(), /Введение: как устроен курс/);
  assert.equal(await granted.first().getByRole('link', { name: 'Смотреть' }).getAttribute('href'), 'https://play.boomstream.com/DEMOintro');
  const locked = page.locator('#locked li');
  assert.equal(await locked.count(), 2);
  // "урок 8001", or the lesson's title when a sync has saved the course structure.
  assert.match(await locked.nth(0).textContent(), /Урок 1\. Основы.*Решить все задания: урок /s);
  assert.match(await locked.nth(1).textContent(), /Итоговый разбор/);
  // Readable on a phone: nothing wider than the viewport.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
  await page.screenshot({ path: join(OUTPUT, 'me-phone.png'), fullPage: true });

  await page.locator('main').getByRole('button', { name: 'Выйти' }).click();
  await page.waitForURL(`${w.url}/login`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Вход');
  await page.goto(`${w.url}/me`);
  assert.equal(new URL(page.url()).pathname, '/login', 'signed out for real');
  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});

test('the English pages and the language switch', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(`${w.url}/login`);
  await page.getByRole('link', { name: 'English' }).click();
  await page.waitForURL(`${w.url}/en/login`);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await page.getByLabel('E-mail').fill('browser@example.com');
  await page.getByLabel('Password').fill('wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.match(await page.getByRole('alert').textContent(), /Wrong e-mail or password/);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${w.url}/me`);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  assert.match(await page.locator('main').textContent(), /Open videos/);
  await page.getByRole('link', { name: 'Русский' }).click();
  await page.waitForURL(`${w.url}/me?lang=ru`);
  assert.match(await page.locator('main').textContent(), /Открытые видео/);
  await context.close();
});
