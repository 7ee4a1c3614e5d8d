//! The command line's one outbound-HTTP policy (feature `client`; native only): one client configuration (User-Agent, a
//! timeout per attempt, no redirects followed by the client, no proxy for loopback
//! addresses, a body limit) and one retry loop with jittered exponential backoff and
//! `Retry-After`, for every outside API defined as an [`outbound::Exchange`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Backoff, Call, Exchange, Method, Next, Reply, Transient, TransportError};

/// Receives a client's log lines (one per retry; no secrets in them).
pub type Logger = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Sent with every request.
pub const USER_AGENT: &str = concat!("course-site-generator/", env!("CARGO_PKG_VERSION"));

/// The transport: a connection pool with the policy's configuration, and the runtime
/// its requests run on (one thread: the calls wait on the network, not on the CPU).
pub struct HttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    max_body: u64,
}

impl HttpClient {
    /// A client whose attempts time out after `timeout` (connecting to reading the
    /// whole answer) and read at most `max_body` bytes of an answer. `base_url` decides
    /// the proxy: none for a loopback address (a proxy never helps reach this machine).
    pub fn new(base_url: &str, timeout: Duration, max_body: u64) -> HttpClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // Enough for the grade-book scan's pages in flight.
            .pool_max_idle_per_host(16);
        if let Ok(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        if crate::is_loopback(base_url) {
            builder = builder.no_proxy();
        }
        // Building fails only on a broken system configuration (no usable TLS setup):
        // nothing could be sent at all, so the command stops with the reason.
        let client = builder
            .build()
            .unwrap_or_else(|e| panic!("cannot set up the HTTP client: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the HTTP client's runtime: {e}"));
        HttpClient {
            client,
            runtime,
            max_body,
        }
    }

    /// Runs `future` (requests of this client) to completion on the client's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Sends one call and returns the answer, whatever its status. A 2xx answer whose
    /// body cannot be read is a transport error; for another status the status is what
    /// counts, and an unreadable body is left empty.
    pub async fn send(&self, call: &Call) -> Result<Reply, TransportError> {
        let method = match call.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut request = self.client.request(method, &call.url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let ok = (200..=299).contains(&status);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > self.max_body {
                        if !ok {
                            break;
                        }
                        return Err(TransportError {
                            transient: false,
                            unsent: false,
                            message: format!("the answer is larger than {} bytes", self.max_body),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if ok => return Err(transport_error(e)),
                Err(_) => {
                    body.clear();
                    break;
                }
            }
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// A failure of reqwest as a transport error: its message with the causes below it
/// (the URL it names never carries a secret), transient unless the request itself was
/// malformed.
fn transport_error(e: reqwest::Error) -> TransportError {
    let transient = !e.is_builder() && !e.is_redirect() && !e.is_status();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TransportError {
        transient,
        unsent: e.is_connect() || e.is_builder(),
        message,
    }
}

/// Requests sent (attempts, retries included) and retries made.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

impl Counters {
    /// `(requests, retries)` so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }
}

/// Whether a retry may go ahead (see [`run`]).
pub enum Verdict<E> {
    /// Retry.
    Go,
    /// Give up as if the retries were used up.
    GiveUp,
    /// Stop with this error.
    Fail(E),
}

/// Counts a call as waiting while it lives (also when its future is dropped mid-wait).
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn new(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The retry loop: sends the exchange's call, reads the outcome and follows it —
/// resending at once when the exchange changed its call (a redirect), waiting before a
/// retry (the server's `Retry-After`, capped, or the jittered backoff) and logging one
/// line per retry, until it is done, fails, or runs out of `backoff.max_retries`.
/// `before_retry` is asked before each retry (a run-wide retry budget, a scan that is
/// over): it may let it go ahead, make the exchange give up as if its own retries were
/// used up, or fail with its own error. Waiting never holds up other calls on the
/// client's runtime; while it waits, the call counts itself in `waiting` (when given),
/// so that a caller running many calls can start another in its place.
pub async fn run<X: Exchange>(
    client: &HttpClient,
    backoff: &Backoff,
    counters: &Counters,
    log: &dyn Fn(&str),
    before_retry: &dyn Fn(&Transient) -> Verdict<X::Error>,
    waiting: Option<&Cell<usize>>,
    mut exchange: X,
) -> Result<X::Output, X::Error> {
    let mut retries = 0u32;
    loop {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let answer = client.send(exchange.call()).await;
        let failure = match exchange.read(answer) {
            Next::Done(out) => return Ok(out),
            Next::Fail(e) => return Err(e),
            Next::Resend => continue,
            Next::Retry(failure) => failure,
        };
        if retries >= backoff.max_retries {
            return Err(exchange.give_up(failure, retries + 1));
        }
        match before_retry(&failure) {
            Verdict::Go => {}
            Verdict::GiveUp => return Err(exchange.give_up(failure, retries + 1)),
            Verdict::Fail(e) => return Err(e),
        }
        let delay = backoff.delay(retries, failure.retry_after, fastrand::f64());
        retries += 1;
        log(&exchange.log_line(&format!(
            "{}; retry {retries} of {} in {delay:.1?}",
            failure.message, backoff.max_retries
        )));
        {
            // A backoff after a failure gives the slot away; a wait the server asked for
            // (429, `Retry-After`) does not: it asked for less traffic, not more.
            let asked = failure.retry_after.is_some() || failure.status == Some(429);
            let _waiting = waiting.filter(|_| !asked).map(Waiting::new);
            tokio::time::sleep(delay).await;
        }
        counters.retries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_call_is_counted_until_it_is_dropped() {
        let count = Cell::new(0);
        let first = Waiting::new(&count);
        {
            let _second = Waiting::new(&count);
            assert_eq!(count.get(), 2);
        }
        assert_eq!(count.get(), 1);
        drop(first);
        assert_eq!(count.get(), 0);
    }
}
