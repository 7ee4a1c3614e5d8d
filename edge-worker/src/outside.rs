//! The progress check's outside calls (Stepik, Boomstream) through the runtime's
//! `fetch`: redirects are handed back, not followed (the protocol code decides which
//! to follow), and each call, body included, has [`TIMEOUT`].

use std::time::Duration;

use course_core::app::check::{Outside, SendFuture};
use futures_util::future::{Either, select};
use outbound::{Call, Reply, TransportError};
use worker::{
    AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect,
};

/// The longest one outside call may take, connecting to the last byte of the answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read (a learner's grade-book row, a Boomstream answer).
const MAX_BODY: usize = 1 << 20;

/// `fetch` with a timeout.
pub(crate) struct Fetcher;

fn transport(transient: bool, message: String) -> TransportError {
    // fetch() does not say whether a failed call reached the server.
    TransportError {
        transient,
        unsent: false,
        message,
    }
}

async fn send(call: &Call, signal: AbortSignal) -> Result<Reply, TransportError> {
    let headers = Headers::new();
    for (name, value) in &call.headers {
        headers
            .append(name, value)
            .map_err(|e| transport(false, format!("header {name}: {e}")))?;
    }
    headers
        .set(
            "user-agent",
            concat!("course-site-worker/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(|e| transport(false, e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(match call.method {
        outbound::Method::Get => Method::Get,
        outbound::Method::Post => Method::Post,
    })
    .with_headers(headers)
    .with_redirect(RequestRedirect::Manual);
    if let Some(body) = &call.body {
        let bytes = js_sys_bytes(body);
        init.with_body(Some(bytes));
    }
    let request = Request::new_with_init(&call.url, &init)
        .map_err(|e| transport(false, format!("the request could not be made: {e}")))?;
    let mut response = Fetch::Request(request)
        .send_with_signal(&signal)
        .await
        .map_err(|e| transport(true, format!("no answer: {e}")))?;
    let headers = response
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let mut body = response
        .bytes()
        .await
        .map_err(|e| transport(true, format!("the answer broke off: {e}")))?;
    body.truncate(MAX_BODY);
    Ok(Reply {
        status: response.status_code(),
        headers,
        body,
    })
}

fn js_sys_bytes(body: &[u8]) -> worker::wasm_bindgen::JsValue {
    worker::js_sys::Uint8Array::from(body).into()
}

impl Outside for Fetcher {
    fn send<'a>(&'a self, call: &'a Call) -> SendFuture<'a> {
        Box::pin(async move {
            let controller = AbortController::default();
            let sending = Box::pin(send(call, controller.signal()));
            let timer = Delay::from(TIMEOUT);
            match select(sending, timer).await {
                Either::Left((reply, _)) => reply,
                Either::Right(((), _)) => {
                    controller.abort();
                    Err(transport(
                        true,
                        format!("no answer within {} s", TIMEOUT.as_secs()),
                    ))
                }
            }
        })
    }
}
