//! The generator's Boomstream client: the calls of the `boomstream` crate sent through
//! the command line's outbound-HTTP policy (`net`: one client configuration, one retry
//! loop). Every type of the API is the crate's, re-exported here.

use std::fmt;
use std::sync::Arc;

pub use boomstream::*;

use outbound::client::{Counters, HttpClient};

pub use outbound::client::Logger;

/// A Boomstream API client; share it by reference (it is `Sync`).
pub struct BoomstreamClient {
    http: HttpClient,
    api: Api,
    backoff: outbound::Backoff,
    counters: Counters,
    logger: Logger,
}

impl fmt::Debug for BoomstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, retries) = self.stats();
        f.debug_struct("BoomstreamClient")
            .field("api", &self.api)
            .field("max_retries", &self.backoff.max_retries)
            .field("requests", &requests)
            .field("retries", &retries)
            .finish_non_exhaustive()
    }
}

impl BoomstreamClient {
    /// A client for `cfg`; fails when the key is blank or the base URL is not http(s).
    /// Log lines go to standard error until [`BoomstreamClient::set_logger`].
    pub fn new(cfg: BoomstreamConfig) -> Result<BoomstreamClient, BoomstreamError> {
        let api = cfg.api()?;
        Ok(BoomstreamClient {
            http: HttpClient::new(api.base_url(), cfg.timeout, MAX_BODY_BYTES),
            api,
            backoff: cfg.backoff(),
            counters: Counters::default(),
            logger: Arc::new(|message: &str| eprintln!("boomstream: {message}")),
        })
    }

    /// Sends the client's log lines (one per retry, secrets removed) to `log`.
    pub fn set_logger(&mut self, log: impl Fn(&str) + Send + Sync + 'static) {
        self.logger = Arc::new(log);
    }

    fn run<T>(&self, operation: Operation<T>) -> Result<T, BoomstreamError> {
        self.http.block_on(outbound::client::run(
            &self.http,
            &self.backoff,
            &self.counters,
            &*self.logger,
            &|_| outbound::client::Verdict::Go,
            None,
            operation,
        ))
    }

    /// [`boomstream::add_buyer`], sent.
    pub fn add_buyer(&self, buyer: &Buyer<'_>) -> Result<AddedBuyer, BoomstreamError> {
        self.run(add_buyer(&self.api, buyer)?)
    }

    /// [`boomstream::update_buyer`], sent.
    pub fn update_buyer(
        &self,
        buyer: &Buyer<'_>,
        update: BuyerUpdate<'_>,
    ) -> Result<AddedBuyer, BoomstreamError> {
        self.run(update_buyer(&self.api, buyer, update)?)
    }

    /// [`boomstream::info`], sent.
    pub fn info(&self, buyer: &Buyer<'_>) -> Result<SubscriptionInfo, BoomstreamError> {
        self.run(info(&self.api, buyer)?)
    }

    /// [`boomstream::delete_buyer`], sent.
    pub fn delete_buyer(
        &self,
        subscription: &str,
        access_code: &str,
    ) -> Result<(), BoomstreamError> {
        self.run(delete_buyer(&self.api, subscription, access_code)?)
    }

    /// Requests sent (attempts, retries included) and retries made so far.
    pub fn stats(&self) -> (u64, u64) {
        self.counters.get()
    }
}
