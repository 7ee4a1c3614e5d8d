//! The Cloudflare Worker: turns a `worker::Request` into a [`course_core::http::Request`],
//! lets [`course_core::app::App`] answer it over D1 ([`store::D1Store`]), and turns the
//! answer back. All decisions live in course-core; this crate is only glue.

mod outside;
mod store;

use std::sync::OnceLock;

use course_core::app::{App, Settings, TokenCache, Trigger, bookmark};
use course_core::http::{self, Body, Method};
use course_core::pages::Pages;
use course_core::session::{KeyError, SessionKeys};
use futures_util::StreamExt;
use worker::{Context, Env, Headers, Request, Response, Result, console_error, event};

/// The templates and site configuration compiled into the worker, built once per
/// isolate. Both are checked by native tests and `generator build`; should they still
/// fail here, every dynamic route answers 503 and logs why.
fn pages() -> Result<&'static Pages, &'static str> {
    static PAGES: OnceLock<Result<Pages, String>> = OnceLock::new();
    PAGES
        .get_or_init(|| Pages::embedded().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

/// A secret or plain variable as a string (`.dev.vars` values arrive as either).
fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

/// The Stepik token of this isolate (see `course_core::app::check`).
static TOKENS: TokenCache = TokenCache::new();

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let method = Method::parse(req.method().as_ref());
    let declared_length = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = match method {
        Method::Post if declared_length.is_some_and(|n| n > http::MAX_FORM_BYTES) => {
            // Refuse before reading: the core turns an oversized body into 413.
            vec![0; http::MAX_FORM_BYTES + 1]
        }
        Method::Post => read_body(&mut req, http::MAX_FORM_BYTES).await,
        _ => Vec::new(),
    };
    let Some(mut core_req) = http::Request::for_url(method, &req.inner().url()) else {
        // The runtime always hands over an absolute URL; refuse anything else plainly.
        return Response::error("Bad Request", 400);
    };
    core_req.headers = req
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    core_req.body = body;

    let keys = SessionKeys::from_secrets(
        setting(&env, "SECRET_KEY").as_deref(),
        setting(&env, "SECRET_KEY_PREVIOUS").as_deref(),
    );
    let settings = Settings::from_env(|name| setting(&env, name));
    let pages = match pages() {
        Ok(p) => p,
        Err(e) => {
            console_error!("site configuration or templates are broken: {e}");
            return respond(course_core::app::site_broken(&core_req), &core_req, &env).await;
        }
    };
    let replicated = settings.as_ref().is_ok_and(|s| s.d1_read_replication);
    let store = store::D1Store::new(
        env.d1("DB"),
        replicated.then(|| bookmark::session_anchor(&core_req)),
    );
    let log = |line: &str| console_error!("{line}");
    let deferred = std::cell::Cell::new(None);
    let defer = |user_id: i64| deferred.set(Some(user_id));
    let app = App {
        store: &store,
        keys: keys.as_ref().map_err(|e: &KeyError| e),
        settings: settings.as_ref().map_err(String::as_str),
        pages,
        now: (js_sys_now() / 1000.0) as i64,
        log: &log,
        outside: &outside::Fetcher,
        tokens: &TOKENS,
        defer: &defer,
    };
    let mut resp = app.handle(&core_req).await;
    if let Some(user_id) = deferred.take() {
        // After the answer: the stale progress /me showed, checked for the next visit.
        // It runs with this request's keys and settings, not read from the env again.
        ctx.wait_until(background_check(
            env.clone(),
            keys.clone(),
            settings.clone(),
            user_id,
        ));
    }
    // Read-your-writes wherever the next request is served: the session's bookmark (or,
    // when D1 failed, none: the next request starts afresh).
    let cookie = if resp.status == 503 {
        bookmark::removal_for(&core_req)
    } else {
        store
            .bookmark()
            .and_then(|b| bookmark::cookie_for(&core_req, &b))
    };
    if let Some(cookie) = cookie {
        resp.headers.push(("set-cookie".to_owned(), cookie));
    }
    respond(resp, &core_req, &env).await
}

/// A progress check started by /me, run after its answer was sent. Its queries go to
/// the primary (it writes), outside the request's D1 session.
async fn background_check(
    env: Env,
    keys: std::result::Result<SessionKeys, KeyError>,
    settings: std::result::Result<Settings, String>,
    user_id: i64,
) {
    let Ok(pages) = pages() else { return };
    let store = store::D1Store::new(env.d1("DB"), None);
    let log = |line: &str| console_error!("{line}");
    let app = App {
        store: &store,
        keys: keys.as_ref().map_err(|e: &KeyError| e),
        settings: settings.as_ref().map_err(String::as_str),
        pages,
        now: (js_sys_now() / 1000.0) as i64,
        log: &log,
        outside: &outside::Fetcher,
        tokens: &TOKENS,
        defer: &|_| {},
    };
    if let course_core::app::CheckOutcome::Store(e) =
        app.check_progress(user_id, Trigger::Background).await
    {
        console_error!("background progress check of user {user_id}: database error: {e}");
    }
}

/// Reads a request body, but never more than `limit + 1` bytes: a body sent without
/// `Content-Length` (chunked) is read only until it passes the limit, and then the core
/// answers 413 for it as for a declared one. A body that cannot be read is empty (the
/// form parser then reports what is missing).
async fn read_body(req: &mut Request, limit: usize) -> Vec<u8> {
    let Ok(mut stream) = req.stream() else {
        return Vec::new(); // no body at all
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Vec::new();
        };
        let room = limit + 1 - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() > limit {
            break; // over the limit: the rest is never read
        }
    }
    body
}

fn js_sys_now() -> f64 {
    worker::Date::now().as_millis() as f64
}

async fn respond(resp: http::Response, req: &http::Request, env: &Env) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &resp.headers {
        headers.append(name, value)?;
    }
    let out = match resp.body {
        Body::Asset(path) => {
            // `path` is one the core chose (a site page), never the request's own.
            let asset_url = format!("{}{path}", req.origin());
            let asset = env.assets("ASSETS")?.fetch(asset_url, None).await?;
            for (name, value) in asset.headers().entries() {
                if !headers.has(&name)? {
                    headers.append(&name, &value)?;
                }
            }
            let status = asset.status_code();
            return Ok(asset.with_headers(headers).with_status(status));
        }
        Body::Empty => Response::empty()?,
        Body::Html(_) | Body::Text(_) if req.method == Method::Head => Response::empty()?,
        Body::Html(text) | Body::Text(text) => Response::from_bytes(text.into_bytes())?,
    };
    Ok(out.with_headers(headers).with_status(resp.status))
}
