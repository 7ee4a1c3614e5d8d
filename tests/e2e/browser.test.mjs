// A real browser (Debian's Chromium, headless, driven by playwright-core) against the
// worker in workerd: sign in, see the videos, sign out; every page checked with axe-core
// (WCAG 2.1 A/AA) in both languages at phone and desktop width; phone-sized screenshots
// of every page go to test-output/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
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

// The accessibility check: axe-core (WCAG 2.0/2.1, levels A and AA) on every page, in
// both languages, at a phone's and a desktop's width; the header stays on one line at
// 390 px; a phone screenshot of every page and language goes to test-output/.
const AXE_SOURCE = readFileSync(join(ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8');
const AXE_OPTIONS = {
  runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  resultTypes: ['violations'],
  // The only frame on the site is the watch page's Boomstream player, a cross-origin
  // page (and unreachable offline): axe cannot look inside it and would wait for an
  // answer from it. The <iframe> element itself (its title) is still checked.
  iframes: false,
};
const WIDTHS = {
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
  desktop: { viewport: { width: 1280, height: 800 } },
};
// Per language: the root prefix, how a worker page is asked for in it (the root
// language's dynamic pages follow the `lang` cookie, which `?lang=` sets), the labels.
const LANGS = {
  ru: { prefix: '', login: '/login?lang=ru', password: 'Пароль', submit: 'Войти' },
  en: { prefix: '/en', login: '/en/login', password: 'Password', submit: 'Sign in' },
};

/** axe's violations on the page, one readable line per rule. */
async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    // Evaluated over the DevTools protocol, so the site's CSP (script-src 'self') allows it.
    await page.evaluate(AXE_SOURCE);
  }
  const violations = await page.evaluate((options) => window.axe.run(document, options).then((r) => r.violations), AXE_OPTIONS);
  return violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
  );
}

/** Why the header is not one line with everything visible ([] when it is). */
async function headerProblems(page, { signedIn }) {
  const items = await page.evaluate(() =>
    [...document.querySelectorAll('.site-header .brand, .site-header nav a, .site-header nav button')].map((el) => {
      const r = el.getBoundingClientRect();
      return {
        text: el.textContent.trim(),
        kind: el.matches('[hreflang]') ? 'switch' : el.matches('button') ? 'logout' : 'link',
        top: r.top,
        height: r.height,
        middle: r.top + r.height / 2,
        lineHeight: parseFloat(getComputedStyle(el).lineHeight),
        visible: r.width > 0 && r.height > 0 && r.right <= window.innerWidth && r.left >= 0,
      };
    }),
  );
  const problems = [];
  if (!items.some((i) => i.kind === 'switch')) problems.push('no language switch');
  if (signedIn && !items.some((i) => i.kind === 'logout')) problems.push('no sign-out button');
  for (const i of items) {
    if (!i.visible) problems.push(`"${i.text}" is not fully visible`);
    if (i.height > i.lineHeight * 1.5) problems.push(`"${i.text}" wraps (${i.height}px high, line ${i.lineHeight}px)`);
  }
  const middles = items.map((i) => i.middle);
  if (Math.max(...middles) - Math.min(...middles) > 2) {
    problems.push(`items on more than one line: ${items.map((i) => `"${i.text}" at ${Math.round(i.top)}px`).join(', ')}`);
  }
  return problems;
}

test('every page passes axe (WCAG 2.1 A and AA) in both languages at phone and desktop width; one-line header on a phone', async () => {
  w.d1(`
    INSERT INTO users (id, email, password_hash, name) VALUES (2, 'axe@example.com', ${sql(hashPassword(PASSWORD))}, 'Ася Проверкина');
    INSERT INTO grants (user_id, video_id, source) VALUES (2, 'intro', 'stepik');
  `);
  const found = [];
  for (const [width, device] of Object.entries(WIDTHS)) {
    for (const [lang, l] of Object.entries(LANGS)) {
      const context = await browser.newContext({ ...device, locale: lang });
      // The player is not reachable offline: fail its requests at once.
      await context.route(/^https:\/\/play\.boomstream\.com\//, (route) => route.abort());
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const check = async (name, { status, signedIn = false }, response) => {
        const where = `${name} (${lang}, ${width}, ${new URL(page.url()).pathname})`;
        assert.equal(response?.status(), status, `${where}: status`);
        assert.equal(await page.locator('html').getAttribute('lang'), lang, `${where}: page language`);
        for (const v of await axeViolations(page)) found.push(`${where}: ${v}`);
        if (width === 'phone') {
          for (const p of await headerProblems(page, { signedIn })) found.push(`${where}: header: ${p}`);
          await page.screenshot({ path: join(OUTPUT, `${name}-${lang}-phone.png`), fullPage: true });
        }
        if (!(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth))) {
          found.push(`${where}: wider than the viewport`);
        }
      };
      const submit = (password) =>
        Promise.all([
          page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/login')),
          (async () => {
            await page.getByLabel('E-mail').fill('axe@example.com');
            await page.getByLabel(l.password).fill(password);
            await page.getByRole('button', { name: l.submit }).click();
          })(),
        ]).then(([r]) => r);

      await check('landing', { status: 200 }, await page.goto(`${w.url}${l.prefix}/`));
      await check('help', { status: 200 }, await page.goto(`${w.url}${l.prefix}/help`));
      await check('not-found', { status: 404 }, await page.goto(`${w.url}${l.prefix}/no-such-page`));
      await check('login', { status: 200 }, await page.goto(`${w.url}${l.login}`));
      const failed = await submit('wrong password');
      await page.waitForLoadState();
      await check('login-failed', { status: 401 }, failed);
      await submit(PASSWORD);
      await page.waitForURL(`${w.url}/me`);
      await check('me', { status: 200, signedIn: true }, await page.goto(`${w.url}/me`));
      await check('video', { status: 200 }, await page.goto(`${w.url}/me/videos/intro`));
      assert.deepEqual(errors, [], `${lang}, ${width}: no script errors`);
      await context.close();
    }
  }
  assert.deepEqual(found, [], `accessibility problems:\n${found.join('\n')}`);
});
