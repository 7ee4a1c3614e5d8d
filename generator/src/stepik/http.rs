//! Sending Stepik's requests (the `stepik` crate's operations) through the command
//! line's outbound-HTTP policy: the OAuth token shared by all threads (fetched again
//! once after a 401, renewed before it expires), and the run's retry budget.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use serde::de::DeserializeOwned;
use stepik::{Api, Listing};

use super::{Logger, RequestStats, StepikConfig, StepikError};
use outbound::client::{self as net, Counters, HttpClient, Verdict};

/// The connection pool, the credentials and token, and the counters.
pub(super) struct Http {
    client: HttpClient,
    api: Api,
    backoff: outbound::Backoff,
    retry_budget: u32,
    budget_left: AtomicU32,
    token: tokio::sync::Mutex<TokenState>,
    /// API requests (token requests not) and retries.
    counters: Counters,
    /// Token requests and their retries.
    token_counters: Counters,
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

impl Http {
    pub(super) fn new(cfg: StepikConfig, logger: Logger) -> Result<Http, StepikError> {
        let api = cfg.api()?;
        Ok(Http {
            client: HttpClient::new(api.base_url(), cfg.timeout, stepik::MAX_BODY_BYTES),
            backoff: cfg.backoff(),
            api,
            retry_budget: cfg.retry_budget,
            budget_left: AtomicU32::new(cfg.retry_budget),
            token: tokio::sync::Mutex::new(TokenState::default()),
            counters: Counters::default(),
            token_counters: Counters::default(),
            token_refreshes: AtomicU64::new(0),
            logger,
        })
    }

    pub(super) fn stats(&self) -> RequestStats {
        let (requests, retries) = self.counters.get();
        let (_, token_retries) = self.token_counters.get();
        RequestStats {
            requests,
            retries: retries + token_retries,
            token_refreshes: self.token_refreshes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn log(&self, message: &str) {
        (self.logger)(message);
    }

    /// What a retry needs: the scan not cancelled, and the run's budget not spent.
    fn before_retry<'a>(
        &'a self,
        what: &'a str,
        cancelled: &'a dyn Fn() -> bool,
    ) -> impl Fn(&outbound::Transient) -> Verdict<StepikError> + 'a {
        move |failure| {
            if cancelled() {
                return Verdict::GiveUp;
            }
            if self
                .budget_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                return Verdict::Fail(StepikError::RetryBudgetExhausted {
                    budget: self.retry_budget,
                    what: format!("{what}: {}", failure.message),
                });
            }
            Verdict::Go
        }
    }

    /// [`Http::fetch_page`], waited for.
    pub(super) fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &'static str,
        what: &str,
    ) -> Result<Listing<T>, StepikError> {
        self.client
            .block_on(self.fetch_page(path, key, what, &|| false, None))
    }

    /// Runs `future` (requests of this client) to completion.
    pub(super) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.client.block_on(future)
    }

    /// `GET {base}{path}` and the list under `key`, ignoring every other key.
    /// Once `cancelled` says so, no further retries are made; while a retry waits, it
    /// counts itself in `waiting`.
    pub(super) async fn fetch_page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &'static str,
        what: &str,
        cancelled: &dyn Fn() -> bool,
        waiting: Option<&std::cell::Cell<usize>>,
    ) -> Result<Listing<T>, StepikError> {
        let mut stale = None;
        loop {
            let (bearer, generation) = self.bearer(stale).await?;
            let operation = self.api.page::<T>(&bearer, path, key, what);
            let result = net::run(
                &self.client,
                &self.backoff,
                &self.counters,
                &*self.logger,
                &self.before_retry(what, cancelled),
                waiting,
                operation,
            )
            .await;
            match result {
                Err(StepikError::TokenRejected { .. }) if stale.is_none() => {
                    stale = Some(generation);
                    self.log(&format!("{what}: HTTP 401, fetching a new token"));
                }
                Err(StepikError::TokenRejected { url, what }) => {
                    return Err(StepikError::Auth(format!(
                        "HTTP 401 with a freshly issued token while fetching {what} ({url})"
                    )));
                }
                other => return other,
            }
        }
    }

    /// A usable token and its generation. `stale` names a generation the API refused:
    /// unless another request replaced it meanwhile, a new token is fetched.
    async fn bearer(&self, stale: Option<u64>) -> Result<(String, u64), StepikError> {
        let mut state = self.token.lock().await;
        if let Some(message) = &state.refused {
            return Err(StepikError::Auth(message.clone()));
        }
        let usable = state.current.as_ref().filter(|t| {
            stale != Some(state.generation) && t.renew_at.is_none_or(|at| Instant::now() < at)
        });
        if let Some(token) = usable {
            return Ok((token.bearer.clone(), state.generation));
        }
        match self.fetch_token().await {
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

    /// A new token from the token endpoint.
    async fn fetch_token(&self) -> Result<Token, StepikError> {
        let issued = Instant::now();
        let token = net::run(
            &self.client,
            &self.backoff,
            &self.token_counters,
            &*self.logger,
            &self.before_retry("an OAuth token", &|| false),
            None,
            self.api.token(),
        )
        .await?;
        Ok(Token {
            renew_at: token.renew_after().map(|after| issued + after),
            bearer: token.access_token,
        })
    }
}
