//! Sending requests: the OAuth token, retries with backoff, the run's retry budget,
//! status handling, and reading Stepik's `{"meta": …, "<resource>": [ … ]}` answers.

use crate::net::{form_encode, is_loopback, retry_after};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Logger, RequestStats, StepikConfig, StepikError};

/// Sent with every request.
const USER_AGENT: &str = concat!("course-site-generator/", env!("CARGO_PKG_VERSION"));

/// The largest answer read (a grade-book page of a big course is a few MB at most).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// A token is replaced this long before Stepik says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The longest piece of an error body quoted in a message.
const MAX_QUOTE: usize = 200;

/// One page of a listing.
pub(super) struct Listing<T> {
    /// The objects under the resource's key.
    pub(super) items: Vec<T>,
    /// `meta.has_next`.
    pub(super) has_next: bool,
    /// The request, for messages.
    pub(super) url: String,
}

/// The connection pool, the credentials and token, and the counters.
pub(super) struct Http {
    agent: ureq::Agent,
    base_url: String,
    client_id: String,
    client_secret: String,
    max_retries: u32,
    retry_budget: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    budget_left: AtomicU32,
    token: Mutex<TokenState>,
    requests: AtomicU64,
    retries: AtomicU64,
    token_refreshes: AtomicU64,
    pub(super) logger: Logger,
}

#[derive(Default)]
struct TokenState {
    current: Option<Token>,
    /// Bumped with every new token; a request that got a 401 names the generation it
    /// used, so that concurrent 401s fetch one new token between them.
    generation: u64,
    /// Set once the token endpoint refused the credentials: fatal for the run.
    refused: Option<String>,
}

struct Token {
    bearer: String,
    renew_at: Option<Instant>,
}

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    /// Try again at once, without counting a retry (after fetching a new token).
    Again,
    Retry(Transient),
    Fatal(StepikError),
}

/// A failure worth retrying.
struct Transient {
    status: Option<u16>,
    message: String,
    retry_after: Option<Duration>,
}

impl Transient {
    fn into_error(self, url: &str, what: &str, attempts: u32) -> StepikError {
        let what = if attempts > 1 {
            format!("{what}, {attempts} attempts")
        } else {
            what.to_owned()
        };
        match self.status {
            Some(status) => StepikError::Http {
                status,
                url: url.to_owned(),
                what,
            },
            None => StepikError::Transport(format!("{what} ({url}): {}", self.message)),
        }
    }
}

impl Http {
    pub(super) fn new(cfg: StepikConfig, logger: Logger) -> Result<Http, StepikError> {
        let base_url = cfg.base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(StepikError::Config(format!(
                "the base URL {base_url:?} is not an http(s) address"
            )));
        }
        if cfg.client_id.trim().is_empty() || cfg.client_secret.is_empty() {
            return Err(StepikError::Config(
                "the OAuth client id and secret must both be given".into(),
            ));
        }
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .user_agent(USER_AGENT)
            .max_idle_connections_per_host(cfg.concurrency + 1);
        if is_loopback(&base_url) {
            // A proxy from the environment never helps reach this machine.
            builder = builder.proxy(None);
        }
        Ok(Http {
            agent: builder.build().into(),
            base_url,
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            max_retries: cfg.max_retries,
            retry_budget: cfg.retry_budget,
            base_backoff: cfg.base_backoff,
            max_backoff: cfg.max_backoff,
            budget_left: AtomicU32::new(cfg.retry_budget),
            token: Mutex::new(TokenState::default()),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            token_refreshes: AtomicU64::new(0),
            logger,
        })
    }

    pub(super) fn stats(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            token_refreshes: self.token_refreshes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn log(&self, message: &str) {
        (self.logger)(message);
    }

    /// `GET {base}{path}` and the list under `key`, ignoring every other key.
    /// `cancel`, once set, stops further retries.
    pub(super) fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &'static str,
        what: &str,
        cancel: Option<&AtomicBool>,
    ) -> Result<Listing<T>, StepikError> {
        let url = format!("{}{path}", self.base_url);
        let mut stale = None;
        let (items, has_next) = self.with_retries(&url, what, cancel, || {
            let (bearer, generation) = match self.bearer(stale) {
                Ok(token) => token,
                Err(e) => return Attempt::Fatal(e),
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = self
                .agent
                .get(&url)
                .header("Authorization", &format!("Bearer {bearer}"))
                .header("Accept", "application/json")
                .call();
            let mut response = match response {
                Ok(r) => r,
                Err(e) => return failed_transport(e, &url, what),
            };
            match response.status().as_u16() {
                200..=299 => match read_body(&mut response, &url, what) {
                    Attempt::Done(text) => match parse_listing(&text, key) {
                        Ok(listing) => Attempt::Done(listing),
                        // A 200 whose JSON ends early or breaks off (a dropped
                        // connection, a proxy's error page) is a transport failure:
                        // retried within the budget. A well-formed answer of the wrong
                        // shape is not.
                        Err(e) if e.is_eof() || e.is_syntax() => Attempt::Retry(Transient {
                            status: None,
                            message: format!("the answer was cut short or malformed ({e})"),
                            retry_after: None,
                        }),
                        Err(e) => Attempt::Fatal(StepikError::Decode {
                            url: url.clone(),
                            message: format!("{e} (reading {what})"),
                        }),
                    },
                    Attempt::Again => Attempt::Again,
                    Attempt::Retry(t) => Attempt::Retry(t),
                    Attempt::Fatal(e) => Attempt::Fatal(e),
                },
                401 if stale.is_none() => {
                    stale = Some(generation);
                    self.log(&format!("{what}: HTTP 401, fetching a new token"));
                    Attempt::Again
                }
                401 => Attempt::Fatal(StepikError::Auth(format!(
                    "HTTP 401 with a freshly issued token while fetching {what} ({url})"
                ))),
                403 => Attempt::Fatal(StepikError::Forbidden(format!(
                    "HTTP 403 while fetching {what} ({url}): the account that owns the OAuth \
                     application must be a teacher or assistant of the course"
                ))),
                status @ (429 | 500..=599) => Attempt::Retry(Transient {
                    status: Some(status),
                    message: format!("HTTP {status}"),
                    retry_after: retry_after(&response),
                }),
                status => Attempt::Fatal(StepikError::Http {
                    status,
                    url: url.clone(),
                    what: what.to_owned(),
                }),
            }
        })?;
        Ok(Listing {
            items,
            has_next,
            url,
        })
    }

    /// Runs `attempt` until it is done, fails for good, or may not be retried any more.
    fn with_retries<T>(
        &self,
        url: &str,
        what: &str,
        cancel: Option<&AtomicBool>,
        mut attempt: impl FnMut() -> Attempt<T>,
    ) -> Result<T, StepikError> {
        let mut retries = 0u32;
        loop {
            let failure = match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::Again => continue,
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(failure) => failure,
            };
            let cancelled = cancel.is_some_and(|c| c.load(Ordering::Relaxed));
            if retries >= self.max_retries || cancelled {
                return Err(failure.into_error(url, what, retries + 1));
            }
            if self
                .budget_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                return Err(StepikError::RetryBudgetExhausted {
                    budget: self.retry_budget,
                    what: format!("{what}: {}", failure.message),
                });
            }
            let delay = match failure.retry_after {
                Some(wait) => wait.min(self.max_backoff),
                None => crate::net::backoff(self.base_backoff, self.max_backoff, retries),
            };
            retries += 1;
            self.log(&format!(
                "{what}: {}; retry {retries} of {} in {delay:.1?}",
                failure.message, self.max_retries
            ));
            std::thread::sleep(delay);
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A usable token and its generation. `stale` names a generation the API refused:
    /// unless another request replaced it meanwhile, a new token is fetched.
    fn bearer(&self, stale: Option<u64>) -> Result<(String, u64), StepikError> {
        let mut state = lock(&self.token);
        if let Some(message) = &state.refused {
            return Err(StepikError::Auth(message.clone()));
        }
        let usable = state.current.as_ref().filter(|t| {
            stale != Some(state.generation) && t.renew_at.is_none_or(|at| Instant::now() < at)
        });
        if let Some(token) = usable {
            return Ok((token.bearer.clone(), state.generation));
        }
        match self.fetch_token() {
            Ok(token) => {
                if state.generation > 0 {
                    self.token_refreshes.fetch_add(1, Ordering::Relaxed);
                }
                state.generation += 1;
                let bearer = token.bearer.clone();
                state.current = Some(token);
                Ok((bearer, state.generation))
            }
            Err(e) => {
                if let StepikError::Auth(message) = &e {
                    state.refused = Some(message.clone());
                }
                Err(e)
            }
        }
    }

    /// `POST /oauth2/token/` with the client credentials (HTTP Basic, form-encoded first
    /// as RFC 6749 says).
    fn fetch_token(&self) -> Result<Token, StepikError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let url = format!("{}/oauth2/token/", self.base_url);
        let what = "an OAuth token";
        let credentials = format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(&self.client_secret)
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let text = self.with_retries(&url, what, None, || {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", &basic)
                .header("Accept", "application/json")
                .send_form([("grant_type", "client_credentials")]);
            let mut response = match response {
                Ok(r) => r,
                Err(e) => return failed_transport(e, &url, what),
            };
            match response.status().as_u16() {
                200..=299 => read_body(&mut response, &url, what),
                status @ (429 | 500..=599) => Attempt::Retry(Transient {
                    status: Some(status),
                    message: format!("HTTP {status}"),
                    retry_after: retry_after(&response),
                }),
                status @ 400..=499 => {
                    let body = match read_body(&mut response, &url, what) {
                        Attempt::Done(body) => body,
                        _ => String::new(),
                    };
                    Attempt::Fatal(StepikError::Auth(self.refusal(status, &body)))
                }
                status => Attempt::Fatal(StepikError::Http {
                    status,
                    url: url.clone(),
                    what: what.to_owned(),
                }),
            }
        })?;
        let answer: Answer = serde_json::from_str(&text).map_err(|e| StepikError::Decode {
            url: url.clone(),
            message: format!("the token endpoint did not answer with a token: {e}"),
        })?;
        if answer.access_token.is_empty() {
            return Err(StepikError::Decode {
                url,
                message: "the token endpoint answered with an empty access_token".into(),
            });
        }
        let renew_at = answer.expires_in.map(|secs| {
            let life = Duration::from_secs(secs);
            Instant::now() + life.saturating_sub(TOKEN_MARGIN).max(life / 2)
        });
        Ok(Token {
            bearer: answer.access_token,
            renew_at,
        })
    }

    /// Why the token endpoint said no, from its `{"error": …, "error_description": …}`.
    fn refusal(&self, status: u16, body: &str) -> String {
        #[derive(Deserialize)]
        struct OauthError {
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            error_description: Option<String>,
        }
        let reason = match serde_json::from_str::<OauthError>(body) {
            Ok(OauthError {
                error: Some(error),
                error_description,
            }) => match error_description {
                Some(d) => format!("{error} ({d})"),
                None => error,
            },
            _ => body.trim().to_owned(),
        };
        // An error body has no business quoting the secret, but make sure — before
        // shortening, so that a secret across the cut cannot leak in part.
        let reason = if self.client_secret.is_empty() {
            reason
        } else {
            reason.replace(&self.client_secret, "<secret>")
        };
        let reason: String = if reason.is_empty() {
            "no reason given".to_owned()
        } else {
            reason.chars().take(MAX_QUOTE).collect()
        };
        format!(
            "the token endpoint refused the client credentials of OAuth application {:?} \
             with HTTP {status}: {reason}; check the client id and secret (a \
             client-credentials application registered at stepik.org/oauth2/applications/)",
            self.client_id
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A transport failure: retried unless it cannot get better by trying again.
fn failed_transport<T>(e: ureq::Error, url: &str, what: &str) -> Attempt<T> {
    if crate::net::is_transient(&e) {
        Attempt::Retry(Transient {
            status: None,
            message: e.to_string(),
            retry_after: None,
        })
    } else {
        Attempt::Fatal(StepikError::Transport(format!("{what} ({url}): {e}")))
    }
}

/// A successful response's body as text.
fn read_body(
    response: &mut ureq::http::Response<ureq::Body>,
    url: &str,
    what: &str,
) -> Attempt<String> {
    let bytes = match response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
    {
        Ok(bytes) => bytes,
        Err(e) => return failed_transport(e, url, what),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Attempt::Done(text),
        Err(_) => Attempt::Fatal(StepikError::Decode {
            url: url.to_owned(),
            message: format!("the answer is not UTF-8 text (reading {what})"),
        }),
    }
}

/// Reads `{"meta": {"has_next": …}, "<key>": [ … ], …}`: the list and `has_next`,
/// skipping every other key without building it.
fn parse_listing<T: DeserializeOwned>(
    text: &str,
    key: &'static str,
) -> Result<(Vec<T>, bool), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let listing = ListingSeed::<T> {
        key,
        item: PhantomData,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(listing)
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    has_next: Option<bool>,
}

struct ListingSeed<T> {
    key: &'static str,
    item: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ListingSeed<T> {
    type Value = (Vec<T>, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ListingSeed<T> {
    type Value = (Vec<T>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a {:?} list", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut meta = Meta::default();
        let mut items = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == "meta" {
                meta = map.next_value::<Option<Meta>>()?.unwrap_or_default();
            } else if name == self.key {
                items = Some(map.next_value::<Vec<T>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let items = items.ok_or_else(|| A::Error::custom(format!("no {:?} list", self.key)))?;
        Ok((items, meta.has_next.unwrap_or(false)))
    }
}
