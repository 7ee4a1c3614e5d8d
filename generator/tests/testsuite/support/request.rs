//! Reading requests the way the real services read them.

use serde_json::Value;

/// The members of a JSON request body as `(name, text)` pairs: how Boomstream reads its
/// documented POST mode (its API pages: a JSON body "works for every API method"). Anything that
/// is not a JSON object (a form-encoded body) yields nothing.
pub(crate) fn json_members(body: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(members)) => members
            .into_iter()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k, text)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `a=1&b=two%20words` as `(name, value)` pairs, `+` and `%XX` decoded: how Boomstream
/// reads its documented GET mode (the query string), and how the Stepik stand-in reads
/// query strings (`ids%5B%5D` as `ids[]`). A broken escape stays as it is.
pub(crate) fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A scripted answer of a stand-in: JSON unless said otherwise, after an optional delay.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) headers: Vec<(String, String)>,
    /// Waits this long before answering.
    pub(crate) delay: std::time::Duration,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::raw(status, &body.to_string())
    }

    pub(crate) fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
            delay: std::time::Duration::ZERO,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn after(mut self, delay: std::time::Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Waits the delay, then answers `request` (`Content-Type: application/json` and the
    /// extra headers). The client may have given up waiting (timeout tests): nothing to
    /// do then.
    pub(crate) fn send(self, request: tiny_http::Request) {
        std::thread::sleep(self.delay);
        let header = |name: &str, value: &str| {
            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                .expect("a valid header")
        };
        let mut response = tiny_http::Response::from_string(self.body)
            .with_status_code(self.status)
            .with_header(header("Content-Type", "application/json"));
        for (name, value) in &self.headers {
            response = response.with_header(header(name, value));
        }
        let _ = request.respond(response);
    }
}
