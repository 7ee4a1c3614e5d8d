//! The generator's one outbound-HTTP policy: one client configuration (User-Agent, a
//! timeout per attempt, no redirects followed by the client, no proxy for loopback
//! addresses, a body limit) and one retry loop with jittered exponential backoff and
//! `Retry-After`, for every outside API defined as an [`outbound::Exchange`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outbound::{Backoff, Call, Exchange, Method, Next, Reply, Transient, TransportError};

/// Sent with every request.
pub(crate) const USER_AGENT: &str = concat!("course-site-generator/", env!("CARGO_PKG_VERSION"));

/// The transport: a connection pool with the policy's configuration.
pub(crate) struct HttpClient {
    agent: ureq::Agent,
    max_body: u64,
}

impl HttpClient {
    /// A client whose attempts time out after `timeout` (connecting to reading the
    /// whole answer) and read at most `max_body` bytes of an answer. `base_url` decides
    /// the proxy: none for a loopback address (a proxy never helps reach this machine).
    pub(crate) fn new(base_url: &str, timeout: Duration, max_body: u64) -> HttpClient {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(USER_AGENT)
            // Enough for the grade-book scan's pages in flight.
            .max_idle_connections_per_host(16);
        if outbound::is_loopback(base_url) {
            builder = builder.proxy(None);
        }
        HttpClient {
            agent: builder.build().into(),
            max_body,
        }
    }

    /// Sends one call and returns the answer, whatever its status. A 2xx answer whose
    /// body cannot be read is a transport error; for another status the status is what
    /// counts, and an unreadable body is left empty.
    pub(crate) fn send(&self, call: &Call) -> Result<Reply, TransportError> {
        let result = match call.method {
            Method::Get => {
                let mut request = self.agent.get(&call.url);
                for (name, value) in &call.headers {
                    request = request.header(name, value);
                }
                request.call()
            }
            Method::Post => {
                let mut request = self.agent.post(&call.url);
                for (name, value) in &call.headers {
                    request = request.header(name, value);
                }
                request.send(call.body.as_deref().unwrap_or_default())
            }
        };
        let mut response = result.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = match response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
        {
            Ok(body) => body,
            Err(e) if (200..=299).contains(&status) => return Err(transport_error(e)),
            Err(_) => Vec::new(),
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn transport_error(e: ureq::Error) -> TransportError {
    TransportError {
        transient: is_transient(&e),
        message: e.to_string(),
    }
}

/// Requests sent (attempts, retries included) and retries made.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl Counters {
    /// `(requests, retries)` so far.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }
}

/// Whether a retry may go ahead (see [`run`]).
pub(crate) enum Verdict<E> {
    /// Retry.
    Go,
    /// Give up as if the retries were used up.
    GiveUp,
    /// Stop with this error.
    Fail(E),
}

/// The retry loop: sends the exchange's call, reads the outcome and follows it —
/// resending at once when the exchange changed its call (a redirect), waiting before a
/// retry (the server's `Retry-After`, capped, or the jittered backoff) and logging one
/// line per retry, until it is done, fails, or runs out of `backoff.max_retries`.
/// `before_retry` is asked before each retry (a run-wide retry budget, a scan that is
/// over): it may let it go ahead, make the exchange give up as if its own retries were
/// used up, or fail with its own error.
pub(crate) fn run<X: Exchange>(
    client: &HttpClient,
    backoff: &Backoff,
    counters: &Counters,
    log: &dyn Fn(&str),
    before_retry: &dyn Fn(&Transient) -> Verdict<X::Error>,
    mut exchange: X,
) -> Result<X::Output, X::Error> {
    let mut retries = 0u32;
    loop {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let answer = client.send(exchange.call());
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
        std::thread::sleep(delay);
        counters.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a transport failure may go away by trying again (timeouts, broken or
/// refused connections, garbled answers), as opposed to a mistake of ours.
fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}
