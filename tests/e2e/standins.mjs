// Local HTTP stand-ins for Stepik and Boomstream, for end-to-end tests in which the worker
// (workerd through `wrangler dev`) calls them over plain http on 127.0.0.1.
//
// They behave like the real services as far as that is known, not like our clients: every
// behaviour names its source. Sources, in the order they win when they disagree:
//   [ref-stepik]      docs: shared reference on Stepik's API (its README/examples, official
//                     clients, third-party syncs; items marked *assumed* there are guesses)
//   [ref-boomstream]  docs: shared reference on Boomstream's API (its API pages, official
//                     Moodle plugin, Android SDK tests, independent clients)
//   [rs-stepik]       generator/tests/testsuite/support/stepik.rs (the Rust stand-in)
//   [rs-boomstream]   generator/tests/testsuite/support/boomstream.rs and the `boomstream()`
//                     script of generator/tests/testsuite/boomstream.rs (`RequestURI` echo)
//   [demo]            site/demo/stepik/*.json (invented data in the real API's shapes) and
//                     generator/tests/fixtures/stepik/*.json (Stepik's error payloads)
//   [rfc6749]         OAuth 2.0 (RFC 6749), which Stepik's token endpoint implements
//   [oauthlib/DOT]    oauthlib / django-oauth-toolkit / Django REST framework conventions
//                     (Stepik is a Django + DRF site: its `{"detail": …}` errors); where only
//                     this backs a behaviour it is marked *assumed*
//
// Only node: built-ins. Both stand-ins log what they were asked (never a secret) and take
// scripted faults. stop() closes the server and destroys every socket, hanging ones
// included, so nothing keeps the process alive afterwards.
//
//   const stepik = await startStepik({ clientId, clientSecret, courseId });
//   stepik.setLearner(100001, { 90012: true, 90032: { passed: false, score: 2 } });
//   const boom = await startBoomstream({ apiKey });   // boom.url ends in /api
//   … await stepik.stop(); await boom.stop();
//
// API
//   startStepik({ clientId, clientSecret, courseId }) → {
//     url,                                  'http://127.0.0.1:<port>' (the client's base_url)
//     courseId, teacherId,
//     setLearner(userId, results, { score } = {}) → the row, removeLearner(userId) → bool,
//     fail(kind, times = 1)                 next course-grades requests:
//                                           '500' '429' 'timeout' 'malformed' '401' '403'
//     failToken(kind, times = 1)            next token requests: the same kinds
//                                           ('401': invalid_client)
//     requests                              [{ method, path, query, authorization:
//                                           'basic'|'bearer'|null, at, status, fault?,
//                                           clientAuth? }] (no body, secrets redacted)
//     tokensIssued(), stop() }
//   startBoomstream({ apiKey, subscriptions? }) → {
//     url,                                  'http://127.0.0.1:<port>/api'
//     buyers(), canWatch(email, media, now?),
//     fail(kind, times = 1, { message }?)   'failed' '500' 'timeout'
//     requests                              [{ method, path, api, params (no apikey), keyIn:
//                                           ['query'|'body'|'header'], authorization, at,
//                                           status, fault? }]
//     stop() }
//   STEPIK_TEACHER_ID, STEPIK_PAGE_SIZE, BOOMSTREAM_ZERO_TIME

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

// ---------------------------------------------------------------------------------------
// Shared plumbing

const DEMO_DIR = new URL('../../site/demo/stepik/', import.meta.url);

function demoFile(name) {
  try {
    return JSON.parse(readFileSync(new URL(name, DEMO_DIR), 'utf8'));
  } catch {
    return null;
  }
}

/** Reads a request body (at most `limit` bytes; the rest is discarded). */
function readBody(req, limit = 1 << 20) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(''));
    req.on('aborted', () => resolve(''));
  });
}

/** `a=1&b=two+words` → [[name, value]] with `+` and `%XX` decoded (a broken escape stays). */
function formPairs(text) {
  return text
    .split('&')
    .filter(Boolean)
    .map((part) => {
      const i = part.indexOf('=');
      const [k, v] = i < 0 ? [part, ''] : [part.slice(0, i), part.slice(i + 1)];
      return [formDecode(k), formDecode(v)];
    });
}

function formDecode(s) {
  const plus = s.replaceAll('+', ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus;
  }
}

/** URLSearchParams as a plain object; a repeated name (`ids[]`) becomes an array. */
function plainQuery(searchParams, redact = []) {
  const out = {};
  for (const [k, raw] of searchParams) {
    const v = redact.includes(k) ? '<redacted>' : raw;
    if (!(k in out)) out[k] = v;
    else if (Array.isArray(out[k])) out[k].push(v);
    else out[k] = [out[k], v];
  }
  return out;
}

function header(req, name) {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** 'basic' | 'bearer' | null: the scheme of an Authorization header, never its value. */
function authScheme(req) {
  const a = header(req, 'authorization');
  if (!a) return null;
  const scheme = a.trim().split(/\s+/)[0].toLowerCase();
  return scheme === 'basic' || scheme === 'bearer' ? scheme : 'other';
}

function send(res, status, body, headers = {}) {
  if (res.destroyed || res.headersSent) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const hasType = Object.keys(headers).some((k) => k.toLowerCase() === 'content-type');
  res.writeHead(status, {
    ...(hasType ? {} : { 'Content-Type': 'application/json' }),
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A scripted fault queue: `push(kind, times)`, `take()` → the next kind or null. */
function faultQueue(kinds, what) {
  const queue = [];
  return {
    push(kind, times = 1, extra = {}) {
      if (!kinds.includes(kind)) {
        throw new Error(`${what}: unknown fault ${JSON.stringify(kind)} (one of ${kinds.join(', ')})`);
      }
      if (!Number.isInteger(times) || times < 1) throw new Error(`${what}: times must be a positive integer`);
      for (let i = 0; i < times; i++) queue.push({ kind, ...extra });
    },
    take() {
      return queue.shift() ?? null;
    },
    peek() {
      return queue[0] ?? null;
    },
    get pending() {
      return queue.length;
    },
  };
}

/**
 * An http server on 127.0.0.1, a free port, with `handle(req, res, hold)`; `hold(res)`
 * keeps a request unanswered until stop(). Resolves to { server, port, stop }.
 */
async function listen(handle) {
  const hanging = new Set();
  const hold = (res) => {
    hanging.add(res);
    res.on('close', () => hanging.delete(res));
  };
  const server = createServer((req, res) => {
    Promise.resolve(handle(req, res, hold)).catch((e) => {
      send(res, 500, `stand-in error: ${e?.message ?? e}`, { 'Content-Type': 'text/plain' });
    });
  });
  // Keep idle connections open longer than a client would (nginx's default keepalive is
  // 75 s), so a reused connection is not closed under a request; stop() closes them all.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  let stopped = null;
  return {
    server,
    port: server.address().port,
    stop() {
      stopped ??= new Promise((resolve) => {
        for (const res of hanging) res.destroy();
        hanging.clear();
        server.close(() => resolve());
        // Every socket, idle keep-alive and in-flight ones alike (Node ≥ 18.2).
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Stepik

/** Rows per grade-book page: "about 20 items a page, `page_size` is ignored" [ref-stepik]. */
export const STEPIK_PAGE_SIZE = 20;

/** The token's life: `"expires_in": 36000` [ref-stepik], [demo] oauth2_token__client_credentials.json. */
const TOKEN_LIFE_SECS = 36_000;

const WHOAMI = demoFile('api_stepics_1.json');

/**
 * The account that owns the OAuth application (a teacher of the course), as
 * `/api/stepics/1` names it in [demo] api_stepics_1.json. Its own row is in the grade
 * book with `is_teacher: true` ("The teacher's own row is included" [ref-stepik]).
 */
export const STEPIK_TEACHER_ID = WHOAMI?.users?.[0]?.id ?? 100000;

/** The demo course's steps by id: lesson, position and worth [demo] api_steps__ids_*.json. */
const DEMO_STEPS = new Map(
  (demoFile('api_steps__ids_90011_to_90042.json')?.steps ?? []).map((s) => [
    String(s.id),
    { lesson: s.lesson, position: s.position, worth: s.worth },
  ]),
);

// Stepik's error answers. DRF's `{"detail": …}` shape [ref-stepik] ("error bodies *assumed*
// DRF-style"), texts from [demo] generator/tests/fixtures/stepik and DRF's defaults.
const NOT_AUTHENTICATED = { detail: 'Authentication credentials were not provided.' };
const NOT_FOUND = { detail: 'Not found.' };
const PERMISSION_DENIED = { detail: 'You do not have permission to perform this action.' };
const THROTTLED = { detail: 'Request was throttled. Expected available in 30 seconds.' };
/**
 * A 500 from Django with DEBUG off: its stock `server_error` page (text/html), which is
 * what a Django site behind nginx sends when a view crashes [oauthlib/DOT] (*assumed*: Stepik
 * may have its own 500 template; either way it is HTML, not JSON).
 */
const DJANGO_500 =
  '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n' +
  '<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n';

const STEPIK_FAULTS = ['500', '429', 'timeout', 'malformed', '401', '403'];

/** A token: 30 letters and digits, like oauthlib's `generate_token` [oauthlib/DOT]. */
function newToken() {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(30)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** `2024-09-02T08:15:00Z` (seconds) or `…41.512Z` (milliseconds): both forms occur [ref-stepik]. */
const isoSeconds = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const isoMillis = (ms) => new Date(ms).toISOString();

/**
 * Starts a Stepik stand-in. Endpoints:
 *  - `POST /oauth2/token/` (client credentials),
 *  - `GET /api/course-grades?course=…[&user=…][&page=…][&is_teacher=…][&order=…]`,
 *  - `GET /api/stepics/1` (who the token is: [demo] api_stepics_1.json),
 * anything else under /api a 404 `{"detail": "Not found."}`.
 *
 * `setLearner(userId, results, { score })` makes or replaces a learner's row. `results`:
 *  - an object keyed by step id, each value either a boolean (passed or not) or
 *    `{ passed, score, lesson, position, firstSuccess, totalSubmissions }`, all optional;
 *  - or an array of step ids, all passed.
 * Defaults: `score` = the step's worth when passed (worth from the demo course's steps,
 * 1 for a step it does not know), else 0; `lesson`/`position` from the demo course's
 * steps (else lesson = the step id, position 1; only the uniqueness of the
 * "<lesson>-<position>" key matters, clients key on `step_id`); `firstSuccess` 1 when
 * passed, else null; `totalSubmissions` 1 when passed, else 0. A step the demo course
 * knows as ungraded (worth 0: video, text) is left out, as Stepik leaves it out. The row's
 * `score` is the sum of the steps' scores unless `{ score }` says otherwise. Returns the row.
 */
export async function startStepik({ clientId, clientSecret, courseId }) {
  if (!clientId || !clientSecret || courseId === undefined) {
    throw new Error('startStepik needs clientId, clientSecret and courseId');
  }
  const course = Number(courseId);
  /** token → { expiresAt, revoked } (the values themselves never leave this map). */
  const tokens = new Map();
  let issued = 0;
  /** userId (string) → row state. */
  const learners = new Map();
  let nextRowId = 40001;
  const requests = [];
  const gradeFaults = faultQueue(STEPIK_FAULTS, 'stepik.fail');
  const tokenFaults = faultQueue(STEPIK_FAULTS, 'stepik.failToken');

  const teacherRow = {
    rowId: 40000,
    user: STEPIK_TEACHER_ID,
    isTeacher: true,
    results: {},
    score: 0,
    dateJoined: Date.now() - 30 * 86_400_000,
    lastViewed: Date.now(),
  };

  function resultEntry(stepId, value) {
    const known = DEMO_STEPS.get(String(stepId));
    const v = typeof value === 'boolean' ? { passed: value } : { ...(value ?? {}) };
    const passed = Boolean(v.passed);
    const worth = known?.worth ?? 1;
    return {
      graded: known ? known.worth > 0 : true,
      lesson: v.lesson ?? known?.lesson ?? Number(stepId),
      position: v.position ?? known?.position ?? 1,
      value: {
        step_id: Number(stepId),
        is_passed: passed,
        first_success: v.firstSuccess !== undefined ? v.firstSuccess : passed ? 1 : null,
        total_submissions: v.totalSubmissions ?? (passed ? 1 : 0),
        score: v.score ?? (passed ? worth : 0),
      },
    };
  }

  function setLearner(userId, results = {}, { score } = {}) {
    const user = Number(userId);
    if (!Number.isSafeInteger(user) || user <= 0) throw new Error(`setLearner: bad user id ${userId}`);
    if (user === STEPIK_TEACHER_ID) throw new Error(`setLearner: ${user} is the teacher (the token's own account)`);
    const entries = Array.isArray(results)
      ? results.map((id) => [id, true])
      : Object.entries(results ?? {});
    const map = {};
    let sum = 0;
    for (const [stepId, value] of entries) {
      const r = resultEntry(stepId, value);
      // "Only graded steps (worth > 0) appear; video and text steps never do" [ref-stepik].
      if (!r.graded) continue;
      const key = `${r.lesson}-${r.position}`;
      if (key in map) throw new Error(`setLearner: two steps share the results key ${key}`);
      map[key] = r.value;
      sum += Number(r.value.score) || 0;
    }
    const now = Date.now();
    const old = learners.get(String(user));
    const row = {
      rowId: old?.rowId ?? nextRowId++,
      user,
      isTeacher: false,
      results: map,
      score: score ?? sum,
      dateJoined: old?.dateJoined ?? now,
      // `last_viewed` is null for a learner who never came back [demo] page 2.
      lastViewed: Object.keys(map).length ? now : old?.lastViewed ?? null,
    };
    learners.set(String(user), row);
    return structuredClone(rowJson(row));
  }

  function removeLearner(userId) {
    return learners.delete(String(Number(userId)));
  }

  /**
   * A row as the grade book lists it ([demo] api_course-grades__course_9001__page_*.json):
   * `rank*` and `users_count` null for a learner without activity, certificate fields null.
   */
  function rowJson(row) {
    const ranked = [...learners.values()]
      .filter((r) => Object.keys(r.results).length > 0)
      .sort((a, b) => b.score - a.score || a.rowId - b.rowId);
    const active = !row.isTeacher && Object.keys(row.results).length > 0;
    const position = active ? ranked.findIndex((r) => r.user === row.user) + 1 : null;
    const rank = active ? ranked.findIndex((r) => r.score === row.score) + 1 : null;
    return {
      id: row.rowId,
      course,
      user: row.user,
      results: row.results,
      score: row.score,
      rank,
      rank_max: active ? rank : null,
      rank_position: position,
      users_count: active ? learners.size : null,
      is_teacher: row.isTeacher,
      date_joined: isoSeconds(row.dateJoined),
      last_viewed: row.lastViewed === null ? null : isoMillis(row.lastViewed),
      certificate_issue_date: null,
      certificate_issue_regular_date: null,
      certificate_issue_distinction_date: null,
      certificate_update_date: null,
      certificate_url: null,
    };
  }

  /** The token a request presents, if it is one this stand-in issued and still valid. */
  function presentedToken(req, url) {
    const a = header(req, 'authorization') ?? '';
    const m = /^bearer\s+(\S+)\s*$/i.exec(a.trim());
    // oauthlib reads the token from the Authorization header, else from an `access_token`
    // parameter [oauthlib/DOT]; the log redacts the latter.
    return m?.[1] ?? url.searchParams.get('access_token') ?? null;
  }

  function tokenValid(token) {
    const t = token && tokens.get(token);
    return Boolean(t && !t.revoked && Date.now() < t.expiresAt);
  }

  /** Answers a fault of `kind`; true when it did (or holds the request). */
  function answerFault(fault, res, hold, normalBody, entry) {
    entry.fault = fault.kind;
    switch (fault.kind) {
      case '500':
        send(res, 500, DJANGO_500, { 'Content-Type': 'text/html; charset=utf-8' });
        return 500;
      case '429':
        // DRF's Throttled: `Retry-After` in seconds and "Expected available in N seconds";
        // third-party syncs honour Retry-After on 429 [ref-stepik], [demo] api_error_429.json.
        send(res, 429, THROTTLED, { 'Retry-After': '30' });
        return 429;
      case 'timeout':
        // Accepted, never answered (until stop(), which destroys the socket).
        hold(res);
        return null;
      case 'malformed': {
        // A 200 whose JSON breaks off (a dropped upstream, a proxy cutting the body): a
        // complete HTTP answer, its JSON truncated. The Rust client retries these.
        const text = JSON.stringify(normalBody());
        send(res, 200, text.slice(0, Math.max(1, Math.floor(text.length / 2))));
        return 200;
      }
      case '403':
        // The token's account is not a teacher of the course: decide by what
        // course-grades answers (403 or data) [ref-stepik] "Observed in 2026".
        send(res, 403, PERMISSION_DENIED);
        return 403;
      default:
        return undefined;
    }
  }

  // --- POST /oauth2/token/ --------------------------------------------------------------
  function tokenEndpoint(req, res, hold, body, entry) {
    // Django's TokenView takes POST only (405) [oauthlib/DOT] *assumed*.
    if (req.method !== 'POST') {
      send(res, 405, '', { Allow: 'POST', 'Content-Type': 'text/html; charset=utf-8' });
      return 405;
    }
    const fault = tokenFaults.take();
    if (fault) {
      if (fault.kind === '401') {
        entry.fault = '401';
        return invalidClient(res, true);
      }
      return answerFault(fault, res, hold, () => tokenBody('INVALID-'.padEnd(30, 'x')), entry);
    }
    // The body is a form (RFC 6749 §4.4.2, application/x-www-form-urlencoded) [rfc6749].
    const type = (header(req, 'content-type') ?? '').toLowerCase();
    const form = new Map(type.startsWith('application/x-www-form-urlencoded') ? formPairs(body) : []);
    // oauthlib picks the grant handler first; an unknown or missing grant type is
    // 400 `unsupported_grant_type` (RFC 6749 §5.2) [rfc6749]. (The Rust stand-in answers
    // every bad request with invalid_client; the RFC is the better source here.)
    if (form.get('grant_type') !== 'client_credentials') {
      send(res, 400, { error: 'unsupported_grant_type' }, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
      return 400;
    }
    // Client credentials as HTTP Basic, each part form-encoded before base64 (RFC 6749
    // §2.3.1), or as client_id/client_secret in the form body: "in the form body also
    // works" [ref-stepik] (wins over [rs-stepik], which takes Basic only).
    let id = null;
    let secret = null;
    const basic = /^basic\s+(\S+)\s*$/i.exec((header(req, 'authorization') ?? '').trim());
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i >= 0) [id, secret] = [formDecode(decoded.slice(0, i)), formDecode(decoded.slice(i + 1))];
      entry.clientAuth = 'basic';
    } else if (form.has('client_id')) {
      [id, secret] = [form.get('client_id'), form.get('client_secret') ?? ''];
      entry.clientAuth = 'body';
    }
    if (id !== clientId || secret !== clientSecret) return invalidClient(res, Boolean(basic));
    const token = newToken();
    tokens.set(token, { expiresAt: Date.now() + TOKEN_LIFE_SECS * 1000, revoked: false });
    issued += 1;
    // RFC 6749 §5.1: the token answer is not cached [rfc6749].
    send(res, 200, tokenBody(token), { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
    return 200;
  }

  /**
   * `{"access_token", "expires_in": 36000, "token_type": "Bearer", "scope": "read write"}`,
   * no refresh token [ref-stepik], [demo] oauth2_token__client_credentials.json.
   */
  function tokenBody(token) {
    return { access_token: token, expires_in: TOKEN_LIFE_SECS, token_type: 'Bearer', scope: 'read write' };
  }

  /**
   * Bad credentials: `{"error": "invalid_client"}` [ref-stepik], status 401 (*assumed* there;
   * oauthlib's InvalidClientError is 401 and, as RFC 6749 §5.2 asks when the client used
   * HTTP Basic, carries WWW-Authenticate) [oauthlib/DOT], [demo] oauth2_token__error_invalid_client.json.
   */
  function invalidClient(res, viaBasic) {
    send(res, 401, { error: 'invalid_client' }, {
      'Cache-Control': 'no-store',
      Pragma: 'no-cache',
      ...(viaBasic ? { 'WWW-Authenticate': 'Bearer error="invalid_client"' } : {}),
    });
    return 401;
  }

  /**
   * No valid token: DRF with an oauthlib authentication treats it as anonymous, and the
   * permission check answers 401 with `WWW-Authenticate: Bearer realm="api"`
   * [oauthlib/DOT], body as [demo] api_error_401.json, status as [rs-stepik]. (Stepik's
   * views may also answer 403 or reduced data for an anonymous user [ref-stepik]; this
   * stand-in always says 401.)
   */
  function notAuthenticated(res) {
    send(res, 401, NOT_AUTHENTICATED, { 'WWW-Authenticate': 'Bearer realm="api"' });
    return 401;
  }

  // --- GET /api/course-grades -----------------------------------------------------------
  function courseGrades(url) {
    const q = url.searchParams;
    const pageText = q.get('page') ?? '1';
    const page = /^\d+$/.test(pageText) ? Number(pageText) : NaN;
    // DRF's paginator answers 404 "Invalid page." to a page that is not a positive
    // number [oauthlib/DOT] *assumed*.
    if (!(page >= 1)) return { status: 404, body: { detail: 'Invalid page.' } };
    let rows = [teacherRow, ...learners.values()];
    // The course filter: another course's grade book has none of these rows (an empty
    // list; the real service may answer 403 for a course the token cannot see, see the
    // '403' fault). No `course=` at all: also nothing (*assumed*).
    if (q.get('course') !== String(course)) rows = [];
    // `&user=<id>`: that learner's row alone; nobody's (an empty list) for someone who is
    // not a learner of the course [ref-stepik], [rs-stepik].
    if (q.has('user')) rows = rows.filter((r) => String(r.user) === q.get('user'));
    // `is_teacher=false` leaves out the teacher's row [ref-stepik] (the web grade book
    // asks it); an unreadable value filters nothing, as django-filter does *assumed*.
    const isTeacher = { true: true, True: true, 1: true, false: false, False: false, 0: false }[q.get('is_teacher')];
    if (isTeacher !== undefined) rows = rows.filter((r) => r.isTeacher === isTeacher);
    // `order=-score,-id` exists [ref-stepik]; unknown fields are ignored (DRF's
    // OrderingFilter) and the default order is by id (*assumed*).
    const keys = (q.get('order') ?? 'id')
      .split(',')
      .map((f) => f.trim())
      .map((f) => ({ desc: f.startsWith('-'), field: f.replace(/^-/, '') }))
      .filter(({ field }) => ['id', 'score', 'user'].includes(field));
    const value = (r, field) => (field === 'id' ? r.rowId : field === 'score' ? r.score : r.user);
    rows = [...rows].sort((a, b) => {
      for (const { desc, field } of [...keys, { desc: false, field: 'id' }]) {
        const d = value(a, field) - value(b, field);
        if (d) return desc ? -d : d;
      }
      return 0;
    });
    // `?page=N` from 1, about 20 a page; past the end an empty page, not a 404 (syncs
    // "stop on an empty page too") [ref-stepik], [rs-stepik].
    const start = (page - 1) * STEPIK_PAGE_SIZE;
    const chunk = rows.slice(start, start + STEPIK_PAGE_SIZE).map(rowJson);
    return {
      status: 200,
      body: {
        meta: { page, has_next: start + STEPIK_PAGE_SIZE < rows.length, has_previous: page > 1 },
        'course-grades': chunk,
      },
    };
  }

  const { port, stop } = await listen(async (req, res, hold) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const body = await readBody(req);
    const entry = {
      method: req.method,
      path: url.pathname,
      // Secrets a client might put in a query are redacted; the body is not kept at all.
      query: plainQuery(url.searchParams, ['access_token', 'client_secret']),
      authorization: authScheme(req) === 'other' ? null : authScheme(req),
      at: Date.now(),
      status: null,
    };
    requests.push(entry);
    entry.status = route(req, res, hold, url, body, entry) ?? null;
  });

  function route(req, res, hold, url, body, entry) {
    const path = url.pathname;
    if (path === '/oauth2/token/') return tokenEndpoint(req, res, hold, body, entry);
    // Without the trailing slash Django's APPEND_SLASH redirects (301, the POST body
    // lost): "keep the trailing slash" [ref-stepik] *assumed* status.
    if (path === '/oauth2/token') {
      send(res, 301, '', { Location: '/oauth2/token/', 'Content-Type': 'text/html; charset=utf-8' });
      return 301;
    }
    if (path === '/api/course-grades') {
      const fault = gradeFaults.take();
      if (fault?.kind === '401') {
        // As when the token expired: this and every later request with it get 401; the
        // client fetches a new token once and retries [ref-stepik] ("after a 401 (once)").
        entry.fault = '401';
        const t = tokens.get(presentedToken(req, url));
        if (t) t.revoked = true;
        return notAuthenticated(res);
      }
      if (fault) return answerFault(fault, res, hold, () => courseGrades(url).body, entry);
      if (!tokenValid(presentedToken(req, url))) return notAuthenticated(res);
      if (req.method !== 'GET') {
        send(res, 405, { detail: `Method "${req.method}" not allowed.` }, { Allow: 'GET, HEAD, OPTIONS' });
        return 405;
      }
      const { status, body: answer } = courseGrades(url);
      send(res, status, answer);
      return status;
    }
    if (path === '/api/stepics/1' && WHOAMI) {
      if (!tokenValid(presentedToken(req, url))) return notAuthenticated(res);
      send(res, 200, WHOAMI);
      return 200;
    }
    // Unknown resources: DRF's 404 [demo] api_error_404.json.
    send(res, 404, NOT_FOUND);
    return 404;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    courseId: course,
    teacherId: STEPIK_TEACHER_ID,
    setLearner,
    removeLearner,
    /** Faults for the next `times` course-grades requests: '500' '429' 'timeout' 'malformed' '401' '403'. */
    fail: (kind, times = 1) => gradeFaults.push(kind, times),
    /** Faults for the next `times` token requests ('401': the credentials refused). */
    failToken: (kind, times = 1) => tokenFaults.push(kind, times),
    requests,
    tokensIssued: () => issued,
    stop,
  };
}

// ---------------------------------------------------------------------------------------
// Boomstream

/** What Boomstream writes for "no expiry": the official plugin's ZERO_TIME [rs-boomstream]. */
export const BOOMSTREAM_ZERO_TIME = '0000-00-00 00:00:00';

const BOOMSTREAM_FAULTS = ['failed', '500', 'timeout'];

/**
 * nginx's stock 500 page: Boomstream answers outages with HTML, not JSON (*assumed*; the
 * reference only says failures also arrive as non-200 statuses [ref-boomstream]).
 */
const NGINX_500 =
  '<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n' +
  '<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

/** `access_expire` as Boomstream answers it: `YYYY-MM-DD HH:MM:SS`, the zero date for none [rs-boomstream]. */
function fullDate(date) {
  const d = String(date ?? '').trim();
  if (!d) return BOOMSTREAM_ZERO_TIME;
  return d.length === 10 ? `${d} 00:00:00` : d;
}

/** Now in Moscow time (UTC+3 all year since 2014), as Boomstream writes dates [ref-boomstream]. */
function moscowNow() {
  return new Date(Date.now() + 3 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');
}

function xmlEscape(s) {
  return String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function toXml(value) {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'object') return xmlEscape(value);
  return Object.entries(value)
    .map(([k, v]) => `<${k}>${toXml(v)}</${k}>`)
    .join('');
}

/**
 * Starts a Boomstream stand-in. `url` is the API root **with** `/api`
 * (`http://127.0.0.1:<port>/api`), like the client's DEFAULT_BASE_URL
 * `https://boomstream.com/api`: `Api::new` trims a trailing slash and posts to
 * `{base}/ppv/addbuyer` (crates/boomstream). Methods: `ppv/addbuyer`, `ppv/updatebuyer`,
 * `ppv/info`, `ppv/deletebuyer` [rs-boomstream].
 *
 * `subscriptions` (optional): `{ CODE: { kind: 'single' | 'group', media: [codes],
 * activation = 3 } }`; then an unknown subscription is "Subscription not found" and a media
 * outside it "Media not found in subscription" [rs-boomstream]. Without it every code is
 * accepted as a single subscription holding any media.
 *
 * `buyers()` lists one entry per subscription and e-mail [rs-boomstream]:
 * `{ subscription, media: [codes bought], email, name, hash, accessExpire, recovery }`.
 */
export async function startBoomstream({ apiKey, subscriptions = null }) {
  if (!apiKey) throw new Error('startBoomstream needs apiKey');
  const subs = subscriptions
    ? new Map(
        Object.entries(subscriptions).map(([code, s]) => [
          code,
          { kind: s.kind ?? 'single', media: [...(s.media ?? [])], activation: s.activation ?? 3 },
        ]),
      )
    : null;
  const subscription = (code) =>
    subs ? subs.get(code) ?? null : code ? { kind: 'single', media: null, activation: 3 } : null;
  const buyers = [];
  const requests = [];
  const faults = faultQueue(BOOMSTREAM_FAULTS, 'boomstream.fail');

  const { port, stop } = await listen(async (req, res, hold) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const body = await readBody(req);
    // Input modes [ref-boomstream] "Transport": GET with every parameter in the query,
    // or POST with a JSON body and Content-Type application/json. A body in any other
    // form (a form-encoded POST) is not read: the call has no parameters [rs-boomstream].
    const jsonBody = (header(req, 'content-type') ?? '').toLowerCase().startsWith('application/json');
    let params = {};
    if (req.method === 'GET') {
      params = Object.fromEntries(formPairs(url.search.slice(1)));
    } else if (req.method === 'POST' && jsonBody) {
      try {
        const parsed = JSON.parse(body);
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
          // Members as text, non-strings as their JSON [rs-boomstream] request.rs.
          params = Object.fromEntries(
            Object.entries(parsed).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
          );
        }
      } catch {}
    }
    const bearerMatch = /^bearer\s+(\S+)\s*$/i.exec((header(req, 'authorization') ?? '').trim());
    const bearer = bearerMatch?.[1] ?? null;
    const keyIn = [];
    if (url.searchParams.has('apikey')) keyIn.push('query');
    if (req.method === 'POST' && jsonBody && 'apikey' in params) keyIn.push('body');
    if (bearer !== null) keyIn.push('header');
    const { apikey, ...logged } = params;
    const entry = {
      method: req.method,
      path: url.pathname,
      api: url.pathname.replace(/^\/api\//, ''),
      params: logged,
      // Where the key was sent (never the key itself): 'query' would put it in
      // Boomstream's `RequestURI` echo and in access logs.
      keyIn,
      authorization: authScheme(req) === 'other' ? null : authScheme(req),
      at: Date.now(),
      status: null,
    };
    requests.push(entry);
    entry.status = answer(req, res, hold, url, params, apikey ?? bearer, jsonBody, entry) ?? null;
  });

  function answer(req, res, hold, url, params, key, jsonBody, entry) {
    // JSON when asked with `format=json` or a JSON body, else XML [ref-boomstream].
    const json = (req.method === 'POST' && jsonBody) || params.format === 'json';
    const reply = (status, object) => {
      // The JSON answers echo the request URI back as `RequestURI` (with the key, if the
      // key was in it) [ref-boomstream], [rs-boomstream] boomstream.rs `boomstream()`.
      const full = { ...object, RequestURI: req.url };
      if (json) send(res, status, full);
      else {
        send(res, status, `<?xml version="1.0" encoding="UTF-8"?>\n<Response>${toXml(full)}</Response>`, {
          'Content-Type': 'text/xml; charset=utf-8',
        });
      }
      return status;
    };
    const failed = (message) => reply(200, { Status: 'Failed', Message: message });

    // An outage comes before the key check; a refusal ('failed') after it, so a call
    // with a wrong key does not use up a scripted refusal.
    const fault = faults.peek()?.kind === 'failed' && key !== apiKey ? null : faults.take();
    if (fault?.kind === '500') {
      entry.fault = '500';
      send(res, 500, NGINX_500, { 'Content-Type': 'text/html' });
      return 500;
    }
    if (fault?.kind === 'timeout') {
      entry.fault = 'timeout';
      hold(res);
      return null;
    }
    // A wrong key: HTTP 200, `Status: Failed`, "Invalid API key", not 401 [ref-boomstream]
    // (plugin docs, Android SDK tests), [rs-boomstream]. The key is `apikey` (query or JSON
    // body), else `Authorization: Bearer <key>`; the parameter wins when both are sent.
    if (key !== apiKey) return failed('Invalid API key');
    if (fault?.kind === 'failed') {
      // Boomstream answers refusals with HTTP 200 and `Status: Failed` [ref-boomstream];
      // messages as [rs-boomstream] (an account at its plan's buyer limit, an operation
      // not permitted).
      entry.fault = 'failed';
      return failed(fault.message ?? (entry.api === 'ppv/addbuyer' ? 'Buyer limit reached' : 'Operation not permitted'));
    }
    const method = entry.api;
    if (!['ppv/addbuyer', 'ppv/updatebuyer', 'ppv/info', 'ppv/deletebuyer'].includes(method)) {
      return reply(404, { Status: 'Failed', Message: 'Method not found' });
    }
    const get = (name) => params[name] ?? '';
    const [code, email, hash] = [get('code'), get('email'), get('hash')];
    const sub = subscription(code);
    if (!sub) return failed('Subscription not found');
    const find = () =>
      buyers.findIndex((b) => b.subscription === code && (b.hash === hash || (email !== '' && b.email === email)));

    if (method === 'ppv/addbuyer') {
      const media = get('media');
      // `code`, `media`, `email` required [ref-boomstream] "PPV methods", [rs-boomstream].
      if (!email || !media) return failed('Required parameters: code, media, email');
      if (sub.media && !sub.media.includes(media)) return failed('Media not found in subscription');
      let b = buyers.find((x) => x.subscription === code && x.email === email);
      if (!b) {
        // Without a `hash` Boomstream makes one up and answers it as `Hash` [ref-boomstream].
        b = {
          subscription: code,
          email,
          name: get('name'),
          hash: hash || randomBytes(16).toString('hex'),
          media: new Set(),
          accessExpire: fullDate(get('access_expire')),
          recovery: sub.activation,
        };
        buyers.push(b);
      }
      // Re-adding an existing buyer succeeds and answers its state, keeping its hash and
      // expiry (the official plugin re-adds on every page view, and repairs an expired
      // buyer with ppv/updatebuyer rather than addbuyer) [ref-boomstream], [rs-boomstream].
      b.media.add(media);
      // Answer fields `Hash`, `AccessExpirationDate` (Moscow time), `Recovery`
      // (activations left) [ref-boomstream], [rs-boomstream].
      return reply(200, { Status: 'Success', Hash: b.hash, AccessExpirationDate: b.accessExpire, Recovery: b.recovery });
    }
    if (method === 'ppv/updatebuyer') {
      // Same identifiers plus `activation` or `access_expire` [ref-boomstream].
      const i = find();
      if (i < 0) return failed('Buyer not found');
      if ('access_expire' in params) buyers[i].accessExpire = fullDate(params.access_expire);
      if ('activation' in params) buyers[i].recovery = Number.parseInt(params.activation, 10) || 0;
      return reply(200, { Status: 'Success' });
    }
    if (method === 'ppv/info') {
      // `Items.Item` with `Activation`, `Period`, `AccessExpirationDate` (the JSON keeps
      // the XML's nesting) [rs-boomstream], [ref-boomstream] "Expiry and activations".
      return reply(200, {
        Status: 'Success',
        Items: { Item: { Code: code, Activation: sub.activation, Period: 365, AccessExpirationDate: '' } },
      });
    }
    // ppv/deletebuyer: `code`, `hash` [ref-boomstream]; whether it accepts `email` is
    // an open point, so it does not [rs-boomstream].
    if (!hash) return failed('Required parameters: code, hash');
    const i = buyers.findIndex((b) => b.subscription === code && b.hash === hash);
    if (i < 0) return failed('Buyer not found');
    buyers.splice(i, 1);
    return reply(200, { Status: 'Success' });
  }

  return {
    url: `http://127.0.0.1:${port}/api`,
    buyers: () =>
      buyers.map((b) => ({
        subscription: b.subscription,
        media: [...b.media].sort(),
        email: b.email,
        name: b.name,
        hash: b.hash,
        accessExpire: b.accessExpire,
        recovery: b.recovery,
      })),
    /**
     * Whether `email` may watch `media` now: an entry of a subscription holding it (group:
     * all of it; single: the media bought), not expired, with activations left
     * [ref-boomstream] "Subscription kinds", "Expiry and activations", [rs-boomstream].
     */
    canWatch(email, media, now = moscowNow()) {
      return buyers.some((b) => {
        const sub = subscription(b.subscription);
        if (!sub || b.email !== email) return false;
        if (sub.media && !sub.media.includes(media)) return false;
        if (sub.kind !== 'group' && !b.media.has(media)) return false;
        return (b.accessExpire === BOOMSTREAM_ZERO_TIME || b.accessExpire > now) && b.recovery > 0;
      });
    },
    /** Faults for the next `times` calls: 'failed' (HTTP 200 Status Failed), '500', 'timeout'. */
    fail: (kind, times = 1, { message } = {}) => faults.push(kind, times, message ? { message } : {}),
    requests,
    stop,
  };
}
