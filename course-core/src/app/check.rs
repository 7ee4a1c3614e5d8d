//! The worker's own progress check: one student's grade-book row from Stepik, the
//! same planning as the sync ([`crate::progress::plan_student`]), the new grants and
//! the progress written to D1 in one batch, and the new videos pushed to Boomstream.
//! `POST /me/refresh` runs it for the button on /me; /me runs it in the background
//! (after answering) when what it shows is older than `PROGRESS_REFRESH_SECS`.
//!
//! Outside calls go through [`Outside`] (the worker's `fetch`, 5 s per call), once each:
//! no retries within a check (a student can press again after the cooldown, and the
//! scheduled sync retries everything). A check sends at most 4 Stepik requests (a token
//! and the row, and both again when Stepik refuses a cached token) and [`MAX_PUSHES`]
//! Boomstream operations of at most 3 requests each (redirects), and makes at most four
//! D1 batches.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use outbound::{Call, Exchange, Next, Reply, Transient, TransportError};

use super::{
    CheckRecorded, CheckSettings, CheckStart, CheckWrite, Handler, PushOutcome, Reservation, Store,
    StoreError,
};
use crate::http::{Request, Response};
use crate::progress::{self, Rules};
use crate::site::{Site, SubscriptionKind};

/// The future of one outside call.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, TransportError>> + 'a>>;

/// Sends outside calls (the worker: `fetch` with a timeout, redirects not followed).
pub trait Outside {
    /// Sends `call` once; a timeout is a transient [`TransportError`].
    fn send<'a>(&'a self, call: &'a Call) -> SendFuture<'a>;
}

/// An [`Outside`] that refuses every call (where none is expected).
pub struct NoOutside;

impl Outside for NoOutside {
    fn send<'a>(&'a self, _call: &'a Call) -> SendFuture<'a> {
        Box::pin(async {
            Err(TransportError {
                transient: false,
                unsent: true,
                message: "no outside calls are made here".into(),
            })
        })
    }
}

/// Buyer entries one check sends to Boomstream at most; the rest wait for the sync.
pub const MAX_PUSHES: usize = 5;

/// Sends at most this many requests for one operation (redirects, a renewed token).
const MAX_SENDS: u32 = 3;

/// What the token is sealed for in D1 (`worker_cache`).
const TOKEN_PURPOSE: &str = "stepik-token";
/// `worker_cache.name` of the sealed token.
pub const TOKEN_CACHE_NAME: &str = "stepik_token";
/// A token whose life Stepik does not state is kept this long.
const TOKEN_LIFE_UNSTATED: i64 = 600;

/// The Stepik token in this isolate's memory (never logged, never in D1 unsealed).
#[derive(Default)]
pub struct TokenCache(Mutex<Option<CachedToken>>);

#[derive(Clone)]
struct CachedToken {
    token: String,
    /// Replace it from then on.
    renew_at: i64,
    /// The address and application it is for.
    context: String,
}

impl TokenCache {
    /// An empty cache (for a `static`).
    pub const fn new() -> TokenCache {
        TokenCache(Mutex::new(None))
    }

    fn get(&self, context: &str, now: i64) -> Option<String> {
        let guard = self.0.lock().ok()?;
        guard
            .as_ref()
            .filter(|t| t.context == context && t.renew_at > now)
            .map(|t| t.token.clone())
    }

    fn put(&self, token: Option<CachedToken>) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = token;
        }
    }
}

/// Why a check was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The student pressed «Проверить прогресс».
    Button,
    /// /me found the stored progress stale.
    Background,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Not configured (no Stepik credentials, or no course structure compiled in).
    Unavailable,
    /// No enabled account linked to Stepik.
    NotLinked,
    /// Over a limit: wait this many seconds (`site`: the site-wide budget).
    Limited { retry_after: i64, site: bool },
    /// Stepik failed (or answered nonsense): nothing changed.
    StepikFailed,
    /// Stepik has no row for the student in the course: nothing changed.
    NotALearner,
    /// Checked: the videos it opened, and of those pushed to Boomstream, how many it did
    /// not confirm (left for the sync).
    Checked { opened: usize, unconfirmed: usize },
    /// The database failed.
    Store(StoreError),
}

impl CheckOutcome {
    /// The short code /me reads back from the flash cookie.
    pub fn flash(&self) -> Option<String> {
        Some(match self {
            CheckOutcome::Checked {
                opened,
                unconfirmed,
            } => format!("ok.{opened}.{unconfirmed}"),
            CheckOutcome::StepikFailed => "stepik".into(),
            CheckOutcome::NotALearner => "absent".into(),
            _ => return None,
        })
    }
}

/// Sends an operation once (following what it asks to resend: a redirect it allows).
async fn exchange<E: Exchange>(outside: &dyn Outside, mut op: E) -> Result<E::Output, E::Error> {
    for _ in 0..MAX_SENDS {
        let answer = outside.send(op.call()).await;
        match op.read(answer) {
            Next::Done(v) => return Ok(v),
            Next::Fail(e) => return Err(e),
            // No retries within a check: the student, and the sync, try again later.
            Next::Retry(t) => return Err(op.give_up(t, 1)),
            Next::Resend => {}
        }
    }
    let last = Transient {
        status: None,
        message: format!("still redirected after {MAX_SENDS} requests"),
        retry_after: None,
    };
    Err(op.give_up(last, MAX_SENDS))
}

/// The learner `stepik_id` in an answer to `course-grades?course=…&user=…`, read as the
/// sync reads a grade-book page (the site's pass rule, teacher rows left out).
pub fn learner_of(
    site: &Site,
    listing: stepik::Listing<stepik::Row>,
    stepik_id: u64,
) -> Option<stepik::Learner> {
    let rule = site.config.course.stepik_pass_rule.rule();
    stepik::GradePage::digest(listing.items, listing.has_next, rule)
        .learners
        .into_iter()
        .find(|l| l.user_id == stepik_id)
}

/// What the check decides for a learner's row: the sync's planning
/// ([`progress::plan_student`]) under the site's rules and the compiled-in structure.
pub fn decide(
    site: &Site,
    learner: &stepik::Learner,
    grants: &std::collections::HashMap<String, progress::Source>,
    stored: Option<&progress::ProgressRow>,
) -> progress::StudentChange {
    let (rules, _warnings) = Rules::new(&site.config, &site.structure);
    progress::plan_student(
        &rules,
        &progress::learner_progress(learner),
        learner.score,
        Some(grants),
        stored,
    )
}

/// The random id of a check.
fn new_check_id() -> Option<String> {
    crate::session::new_session_id().ok()
}

impl<S: Store> Handler<'_, '_, S> {
    /// `POST /me/refresh`: checks now and comes back to /me saying what happened.
    pub(super) async fn refresh(&self, req: &Request) -> Response {
        let current = match self
            .require_session(req, "/me", super::SessionWant::default())
            .await
        {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let outcome = self
            .app
            .check_progress(current.row.user_id, Trigger::Button)
            .await;
        let prefix = self.pages.site().prefix(self.page.lang);
        let back = Response::see_other(&format!("{prefix}/me"));
        let resp = match &outcome {
            CheckOutcome::Store(e) => self.unavailable(e),
            CheckOutcome::Limited { retry_after, site } => {
                let t = self.pages.site().messages(self.page.lang);
                let wait = retry_after.max(&1).to_string();
                let text = if *site {
                    t.fill("check.busy_site_text", &[("seconds", &wait)])
                } else {
                    t.fill("check.busy_student_text", &[("seconds", &wait)])
                };
                let view = crate::pages::ErrorView {
                    heading: t.text("check.busy_title"),
                    message: text,
                };
                self.page(429, self.pages.error(&self.page, &view))
                    .with_header("retry-after", wait)
            }
            CheckOutcome::Unavailable => self.error_page(409, "check_unavailable"),
            CheckOutcome::NotLinked => self.error_page(409, "check_not_linked"),
            outcome => match outcome.flash() {
                Some(code) => back.with_header("set-cookie", flash_cookie(req, &code, 60)),
                None => back,
            },
        };
        super::with_renewal(resp, &current)
    }
}

/// The cookie that carries a check's outcome to the /me it redirects to (not a secret:
/// a student who forges one only misleads themselves; /me clears it).
pub(super) fn flash_cookie(req: &Request, code: &str, max_age: i64) -> String {
    let (name, secure) = if req.is_local_http() {
        (FLASH_LOCAL, "")
    } else {
        (FLASH_SECURE, "; Secure")
    };
    format!("{name}={code}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The flash cookie's name in production (`__Host-`: set by this host only).
pub const FLASH_SECURE: &str = "__Host-check";
/// Its name on plain-http loopback development.
pub const FLASH_LOCAL: &str = "check";

/// The flash cookie's value on a request, if any.
pub(super) fn flash_of(req: &Request) -> Option<&str> {
    req.cookie(if req.is_local_http() {
        FLASH_LOCAL
    } else {
        FLASH_SECURE
    })
}

/// A grant entry to push: one buyer (a student in a subscription) for these videos.
struct Entry {
    subscription: String,
    media: String,
    videos: Vec<String>,
}

impl<S: Store> super::App<'_, S> {
    /// Whether this worker can check progress itself: Stepik credentials set, and a
    /// course structure for the configured course compiled in.
    pub fn can_check(&self) -> Option<(&CheckSettings, u64)> {
        let settings = self.settings.ok()?.progress_check.as_ref()?;
        let (course_id, _) = self.pages.site().structure_for_checks()?;
        Some((settings, course_id))
    }

    /// Checks one student's progress now (see the module documentation).
    pub async fn check_progress(&self, user_id: i64, trigger: Trigger) -> CheckOutcome {
        let Some((cfg, course_id)) = self.can_check() else {
            return CheckOutcome::Unavailable;
        };
        let Ok(keys) = self.keys else {
            return CheckOutcome::Unavailable;
        };
        let Some(check_id) = new_check_id() else {
            (self.log)("progress check: no randomness for a check id");
            return CheckOutcome::Unavailable;
        };
        let start = CheckStart {
            user_id,
            check_id,
            now: self.now,
            cooldown_secs: cfg.cooldown_secs,
            per_minute: cfg.per_minute,
            pressed: trigger == Trigger::Button,
        };
        let state = match self.store.begin_check(&start).await {
            Ok(s) => s,
            Err(e) => return CheckOutcome::Store(e),
        };
        match state.reservation {
            Some(Reservation::Granted) => {}
            Some(Reservation::Cooldown { retry_after }) => {
                return CheckOutcome::Limited {
                    retry_after,
                    site: false,
                };
            }
            Some(Reservation::Budget { retry_after }) => {
                return CheckOutcome::Limited {
                    retry_after,
                    site: true,
                };
            }
            Some(Reservation::NotEligible) | None => return CheckOutcome::NotLinked,
        }
        let Some(stepik_id) = state.stepik_user_id else {
            return CheckOutcome::NotLinked;
        };

        // The student's row, with a token from memory, from D1, or new.
        let context = format!("{} {}", cfg.stepik.base_url(), cfg.stepik.client_id());
        let mut sealed_new = None;
        let mut token = self.tokens.get(&context, self.now).or_else(|| {
            let sealed = state.sealed_token.as_deref()?;
            let opened = keys.open(TOKEN_PURPOSE, &context, sealed)?;
            let cached: SealedToken = serde_json::from_slice(&opened).ok()?;
            let token = cached.token.clone();
            self.tokens.put(Some(CachedToken {
                token: cached.token,
                renew_at: cached.renew_at,
                context: context.clone(),
            }));
            Some(token)
        });
        let mut fresh = false;
        let learner = loop {
            let bearer = match token.take() {
                Some(t) => t,
                None => match exchange(self.outside, cfg.stepik.token()).await {
                    Ok(t) => {
                        fresh = true;
                        let life = t
                            .renew_after()
                            .map_or(TOKEN_LIFE_UNSTATED, |d| d.as_secs() as i64);
                        let renew_at = self.now + life;
                        let sealed = SealedToken {
                            token: t.access_token.clone(),
                            renew_at,
                        };
                        sealed_new = serde_json::to_vec(&sealed)
                            .ok()
                            .and_then(|json| keys.seal(TOKEN_PURPOSE, &context, &json))
                            .map(|s| (s, renew_at));
                        self.tokens.put(Some(CachedToken {
                            token: t.access_token.clone(),
                            renew_at,
                            context: context.clone(),
                        }));
                        t.access_token
                    }
                    Err(e) => {
                        (self.log)(&format!("progress check of user {user_id}: {e}"));
                        return CheckOutcome::StepikFailed;
                    }
                },
            };
            let what = format!("the grade-book row of learner {stepik_id} in course {course_id}");
            let op = cfg.stepik.page::<stepik::Row>(
                &bearer,
                &stepik::learner_path(course_id, stepik_id),
                "course-grades",
                &what,
            );
            // Stepik treats a token it no longer takes as an anonymous user: 401, 403 or
            // reduced data (stepik.md). With a cached token, any of those is tried once
            // more with a new token.
            match exchange(self.outside, op).await {
                Ok(listing) => match learner_of(self.pages.site(), listing, stepik_id) {
                    None if !fresh => self.tokens.put(None),
                    found => break found,
                },
                Err(
                    stepik::StepikError::TokenRejected { .. } | stepik::StepikError::Forbidden(_),
                ) if !fresh => self.tokens.put(None),
                Err(e) => {
                    (self.log)(&format!("progress check of user {user_id}: {e}"));
                    // A new token Stepik refused is not kept for others.
                    if !matches!(
                        e,
                        stepik::StepikError::TokenRejected { .. }
                            | stepik::StepikError::Forbidden(_)
                    ) {
                        self.keep_token(sealed_new.as_ref()).await;
                    }
                    return CheckOutcome::StepikFailed;
                }
            }
        };
        let Some(learner) = learner else {
            self.keep_token(sealed_new.as_ref()).await;
            return CheckOutcome::NotALearner;
        };

        // The sync's decision for this row.
        let site = self.pages.site();
        let change = decide(site, &learner, &state.grants, state.progress.as_ref());
        let row = change.progress.clone().or_else(|| state.progress.clone());
        let Some(row) = row else {
            return CheckOutcome::StepikFailed; // unreachable: a row is made when none is stored
        };

        // What goes to Boomstream now: the new grants' buyer entries, at most MAX_PUSHES.
        // What goes to Boomstream: the new grants' buyer entries, at most MAX_PUSHES —
        // not when the configured access expiry is past (no one could watch; the sync
        // reports it).
        let access_expire = site.config.course.access_expire();
        let boomstream = cfg
            .boomstream
            .as_ref()
            .filter(|_| state.email.is_some())
            .filter(|_| boomstream::boomstream_time(access_expire).is_none_or(|t| t > self.now));
        let planned = match boomstream {
            Some(_) => self.entries(&change.new_grants),
            None => Vec::new(),
        };
        let sending: Vec<String> = planned.iter().flat_map(|e| e.videos.clone()).collect();
        let new_access_code = if !sending.is_empty() && state.access_code.is_none() {
            match boomstream::try_new_access_code() {
                Ok(code) => Some(code),
                Err(e) => {
                    (self.log)(&format!("progress check of user {user_id}: {e}"));
                    return CheckOutcome::Unavailable;
                }
            }
        } else {
            None
        };
        let write = CheckWrite {
            user_id,
            stepik_user_id: stepik_id,
            now: self.now,
            new_grants: change.new_grants.clone(),
            sending,
            progress: row,
            sealed_token: sealed_new,
            new_access_code,
        };
        let recorded = match self.store.record_check(&write).await {
            Ok(r) => r,
            Err(e) => return CheckOutcome::Store(e),
        };
        // Only what this check wrote is pushed (a relinked account, a video D1 does not
        // know yet, or a grant another check or the sync wrote first, is not).
        let entries: Vec<Entry> = planned
            .into_iter()
            .filter_map(|mut e| {
                e.videos.retain(|v| recorded.granted.contains(v));
                (!e.videos.is_empty()).then_some(e)
            })
            .collect();
        let confirmed = match (boomstream, &state.email) {
            (Some(api), Some(email)) if !entries.is_empty() => {
                self.push(api, user_id, email, &state.name, &recorded, entries)
                    .await
            }
            _ => Vec::new(),
        };
        if trigger == Trigger::Background && !recorded.granted.is_empty() {
            (self.log)(&format!(
                "progress check of user {user_id}: {} new video(s)",
                recorded.granted.len()
            ));
        }
        // A video open to everyone was on /me already: it is granted, not "opened".
        let always = |id: &String| {
            site.config
                .videos
                .iter()
                .any(|v| &v.id == id && v.unlock.always)
        };
        let opened: Vec<&String> = recorded.granted.iter().filter(|id| !always(id)).collect();
        CheckOutcome::Checked {
            opened: opened.len(),
            // Not pre-authorised yet (refused, not answered, or left for the sync).
            unconfirmed: opened.iter().filter(|v| !confirmed.contains(v)).count(),
        }
    }

    /// Leaves a new token in D1 when the check writes nothing else (a failure to do so
    /// costs only a token request of another isolate).
    async fn keep_token(&self, sealed: Option<&(String, i64)>) {
        if let Some((sealed, expires_at)) = sealed
            && let Err(e) = self.store.keep_token(sealed, *expires_at).await
        {
            (self.log)(&format!(
                "progress check: keeping the Stepik token failed: {e}"
            ));
        }
    }

    /// The buyer entries of `videos` (configured, with a subscription of a known kind),
    /// at most [`MAX_PUSHES`]: one per video in a single subscription, one per
    /// subscription in a group one.
    fn entries(&self, videos: &[String]) -> Vec<Entry> {
        let course = &self.pages.site().config.course;
        let mut entries: BTreeMap<(String, Option<String>), Entry> = BTreeMap::new();
        for video in self
            .pages
            .site()
            .config
            .videos
            .iter()
            .filter(|v| videos.contains(&v.id))
        {
            let (Some(subscription), Some(kind)) =
                (video.subscription(course), video.subscription_kind(course))
            else {
                continue; // the sync reports these
            };
            let per_video = (kind == SubscriptionKind::Single).then(|| video.id.clone());
            let key = (subscription.to_owned(), per_video);
            if !entries.contains_key(&key) && entries.len() == MAX_PUSHES {
                continue;
            }
            entries
                .entry(key)
                .or_insert_with(|| Entry {
                    subscription: subscription.to_owned(),
                    media: video.media_code.clone(),
                    videos: Vec::new(),
                })
                .videos
                .push(video.id.clone());
        }
        entries.into_values().collect()
    }

    /// Adds the student as a buyer for each entry and records what Boomstream said.
    /// Returns the videos Boomstream confirmed.
    async fn push(
        &self,
        api: &boomstream::Api,
        user_id: i64,
        email: &str,
        name: &str,
        recorded: &CheckRecorded,
        entries: Vec<Entry>,
    ) -> Vec<String> {
        let Some(code) = recorded.access_code.as_deref() else {
            return Vec::new();
        };
        let access_expire = self.pages.site().config.course.access_expire();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut stopped: Option<String> = None;
        for entry in entries {
            let mut outcome = PushOutcome {
                videos: entry.videos,
                access_code: code.to_owned(),
                sent: false,
                answered: false,
                error: None,
                access_expires: None,
                recovery: None,
            };
            if let Some(reason) = &stopped {
                outcome.error = Some(reason.clone());
                outcomes.push(outcome);
                continue;
            }
            let buyer = boomstream::Buyer {
                subscription: &entry.subscription,
                media: &entry.media,
                email,
                name,
                access_code: code,
                access_expire,
            };
            let answer = match boomstream::add_buyer(api, &buyer) {
                Ok(op) => {
                    outcome.sent = true;
                    exchange(self.outside, op).await
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(answer) => {
                    outcome.answered = true;
                    outcome.access_expires = answer.access_expires.clone();
                    outcome.recovery = answer.recovery;
                    if !answer.confirms(code) {
                        outcome.error = Some("Boomstream kept another access code".into());
                    } else if let Some(problem) = answer.problem(self.now) {
                        outcome.error = Some(format!("{problem}; the sync repairs it"));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    (self.log)(&format!("progress check of user {user_id}: {message}"));
                    if e.is_systemic() {
                        stopped = Some(message.clone());
                    }
                    outcome.error = Some(message);
                }
            }
            outcomes.push(outcome);
        }
        let confirmed: Vec<String> = outcomes
            .iter()
            .filter(|o| o.sent && o.error.is_none())
            .flat_map(|o| o.videos.clone())
            .collect();
        if let Err(e) = self.store.record_push(user_id, self.now, &outcomes).await {
            // The grants are in D1, unconfirmed: the sync pushes them again.
            (self.log)(&format!(
                "progress check of user {user_id}: recording Boomstream's answers failed: {e}"
            ));
        }
        confirmed
    }
}

/// The token as sealed into D1.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedToken {
    token: String,
    renew_at: i64,
}
