//! A Boomstream stand-in that keeps buyers the way the real service is documented and
//! observed to (Boomstream's API pages, boomstream.com/api; its official Moodle plugin,
//! `boomstream-com/boomstream-moodle`, filter.php): it reads only the documented input
//! modes, answers a wrong key with HTTP 200 `Status: Failed`, gives a buyer of a group
//! subscription every video in it and a buyer of a single one the media named, and
//! answers `addbuyer` with `Hash`, `AccessExpirationDate` and `Recovery`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

/// How a subscription gives access (Boomstream's user docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Single,
    Group,
}

/// A PPV subscription as configured on Boomstream's side.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub kind: Kind,
    /// The media codes in it.
    pub media: Vec<String>,
    /// `Activation`: activations a new buyer gets (what `ppv/info` reports).
    pub activation: i64,
}

/// A buyer entry: one per subscription and e-mail.
#[derive(Debug, Clone)]
pub(crate) struct BuyerEntry {
    pub subscription: String,
    pub email: String,
    pub hash: String,
    /// Media bought (what a single subscription lets the buyer watch).
    pub media: BTreeSet<String>,
    /// `AccessExpirationDate` (Moscow time), `0000-00-00 00:00:00` for none.
    pub expires: String,
    /// `Recovery`: activations left.
    pub recovery: i64,
}

/// One call as the stand-in read it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: String,
    pub params: BTreeMap<String, String>,
    /// The request's path and query as received (the key must never be in it).
    pub url: String,
}

/// Everything the stand-in knows; tests change it through [`Boomstream::state`].
#[derive(Debug, Default)]
pub(crate) struct State {
    pub key: String,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub buyers: Vec<BuyerEntry>,
    pub calls: Vec<Call>,
    /// Every call answered 503 (an outage).
    pub down: bool,
    /// E-mails whose entry comes back expired from `addbuyer` (its `access_expire`
    /// ignored, as for a subscription whose period ran out) until a `ppv/updatebuyer`
    /// with `access_expire`.
    pub expire_on_add: BTreeSet<String>,
    /// E-mails whose entry has no activations left (`Recovery` 0) until a
    /// `ppv/updatebuyer` with `activation`.
    pub exhausted: BTreeSet<String>,
    /// E-mails whose `ppv/updatebuyer` answers Success but changes nothing (so a repair
    /// can be seen not to work).
    pub ignore_updates: BTreeSet<String>,
    /// `ppv/deletebuyer` answered `Failed` for these hashes (some refusal).
    pub refuse_delete: BTreeSet<String>,
    /// `ppv/addbuyer` answered `Failed` ("Buyer limit reached", as for an account at
    /// its plan's buyer limit) once for each listing of an e-mail.
    pub refuse_add: Vec<String>,
}

/// What Boomstream writes for "no expiry" (the official plugin's ZERO_TIME).
pub(crate) const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// A running stand-in at `url` (the API root, like https://boomstream.com/api).
pub(crate) struct Boomstream {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Boomstream {
    /// A stand-in accepting `key`, with these subscriptions.
    pub(crate) fn start(key: &str, subscriptions: &[(&str, Kind, &[&str])]) -> Boomstream {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("a port for Boomstream");
        let url = format!("http://{}/api", server.server_addr());
        let state = Arc::new(Mutex::new(State {
            key: key.to_owned(),
            subscriptions: subscriptions
                .iter()
                .map(|(code, kind, media)| {
                    (
                        code.to_string(),
                        Subscription {
                            kind: *kind,
                            media: media.iter().map(|m| m.to_string()).collect(),
                            activation: 3,
                        },
                    )
                })
                .collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let (status, body) = answer(&shared, &mut request);
                let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
                    .expect("a header");
                let _ = request.respond(
                    tiny_http::Response::from_string(body.to_string())
                        .with_status_code(status)
                        .with_header(header),
                );
            }
        });
        Boomstream { url, state }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the stand-in's state")
    }

    /// The methods called, in order (`ppv/addbuyer`, …).
    pub(crate) fn methods(&self) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .map(|c| c.method.clone())
            .collect()
    }

    /// Whether `email` may watch `media` now: a buyer entry of a subscription holding
    /// it (group: the whole subscription; single: the media bought), not expired (dates
    /// in this test world are compared as text, which orders `YYYY-MM-DD …` correctly),
    /// with activations left.
    pub(crate) fn can_watch(&self, email: &str, media: &str, today: &str) -> bool {
        let state = self.state();
        state.buyers.iter().any(|b| {
            let Some(sub) = state.subscriptions.get(&b.subscription) else {
                return false;
            };
            b.email == email
                && sub.media.iter().any(|m| m == media)
                && (sub.kind == Kind::Group || b.media.contains(media))
                && (b.expires == ZERO_TIME || b.expires.as_str() > today)
                && b.recovery > 0
        })
    }

    /// The hashes of `email`'s buyer entries.
    pub(crate) fn hashes_of(&self, email: &str) -> Vec<String> {
        self.state()
            .buyers
            .iter()
            .filter(|b| b.email == email)
            .map(|b| b.hash.clone())
            .collect()
    }
}

fn failed(message: &str) -> (u16, Value) {
    (200, json!({"Status": "Failed", "Message": message}))
}

/// One request: its parameters from a documented mode, the key, then the method.
fn answer(state: &Mutex<State>, request: &mut tiny_http::Request) -> (u16, Value) {
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let (path, query) = request
        .url()
        .split_once('?')
        .map_or((request.url().to_owned(), String::new()), |(p, q)| {
            (p.to_owned(), q.to_owned())
        });
    // Input modes (reference, "Input modes"): GET with the query string, or POST with
    // a JSON body and Content-Type application/json. A body in any other form is not
    // read: the call then has no parameters at all.
    let json_body = header("Content-Type").is_some_and(|c| c.starts_with("application/json"));
    let params: BTreeMap<String, String> = match request.method() {
        tiny_http::Method::Get => super::request::form_pairs(&query).into_iter().collect(),
        tiny_http::Method::Post if json_body => {
            super::request::json_members(&body).into_iter().collect()
        }
        _ => BTreeMap::new(),
    };
    let bearer = header("Authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
    let method = path.trim_start_matches("/api/").to_owned();
    let mut state = state.lock().expect("the stand-in's state");
    state.calls.push(Call {
        method: method.clone(),
        params: params.clone(),
        url: request.url().to_owned(),
    });
    if state.down {
        return (
            503,
            json!({"Status": "Failed", "Message": "Service unavailable"}),
        );
    }
    // A wrong key is HTTP 200 Failed (plugin docs, Android SDK tests), not 401.
    let key = params.get("apikey").cloned().or(bearer);
    if key.as_deref() != Some(state.key.as_str()) {
        return failed("Invalid API key");
    }
    let get = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let (code, email, hash) = (get("code"), get("email"), get("hash"));
    let Some(sub) = state.subscriptions.get(code).cloned() else {
        return failed("Subscription not found");
    };
    let find = |state: &State| {
        state.buyers.iter().position(|b| {
            b.subscription == code && (b.hash == hash || (!email.is_empty() && b.email == email))
        })
    };
    match method.as_str() {
        "ppv/addbuyer" => {
            let media = get("media");
            if email.is_empty() || media.is_empty() {
                return failed("Required parameters: code, media, email");
            }
            if !sub.media.iter().any(|m| m == media) {
                return failed("Media not found in subscription");
            }
            if let Some(i) = state.refuse_add.iter().position(|e| e == email) {
                state.refuse_add.remove(i);
                return failed("Buyer limit reached");
            }
            let expire_on_add = state.expire_on_add.contains(email);
            let exhausted = state.exhausted.contains(email);
            let asked_expiry = full_date(get("access_expire"));
            // Re-adding an existing buyer succeeds and keeps their hash (the official
            // plugin re-adds on every page view).
            let i = match state
                .buyers
                .iter()
                .position(|b| b.subscription == code && b.email == email)
            {
                Some(i) => i,
                None => {
                    // Without a hash Boomstream makes one up.
                    let hash = if hash.is_empty() {
                        format!("gen-{}", state.buyers.len())
                    } else {
                        hash.to_owned()
                    };
                    state.buyers.push(BuyerEntry {
                        subscription: code.to_owned(),
                        email: email.to_owned(),
                        hash,
                        media: BTreeSet::new(),
                        expires: asked_expiry.clone(),
                        recovery: sub.activation,
                    });
                    state.buyers.len() - 1
                }
            };
            let b = &mut state.buyers[i];
            b.media.insert(media.to_owned());
            if expire_on_add {
                b.expires = "2020-01-01 00:00:00".to_owned();
            }
            if exhausted {
                b.recovery = 0;
            }
            (
                200,
                json!({
                    "Status": "Success",
                    "Hash": b.hash,
                    "AccessExpirationDate": b.expires,
                    "Recovery": b.recovery,
                }),
            )
        }
        "ppv/updatebuyer" => {
            let Some(i) = find(&state) else {
                return failed("Buyer not found");
            };
            if state.ignore_updates.contains(&state.buyers[i].email) {
                return (200, json!({"Status": "Success"}));
            }
            if let Some(date) = params.get("access_expire") {
                state.buyers[i].expires = full_date(date);
                let email = state.buyers[i].email.clone();
                state.expire_on_add.remove(&email);
            }
            if let Some(n) = params.get("activation") {
                state.buyers[i].recovery = n.parse().unwrap_or(0);
                let email = state.buyers[i].email.clone();
                state.exhausted.remove(&email);
            }
            (200, json!({"Status": "Success"}))
        }
        "ppv/info" => (
            200,
            json!({
                "Status": "Success",
                "Items": {"Item": {"Code": code, "Activation": sub.activation, "Period": 365, "AccessExpirationDate": ""}},
            }),
        ),
        "ppv/deletebuyer" => {
            if hash.is_empty() {
                return failed("Required parameters: code, hash");
            }
            if state.refuse_delete.contains(hash) {
                return failed("Operation not permitted");
            }
            match state
                .buyers
                .iter()
                .position(|b| b.subscription == code && b.hash == hash)
            {
                Some(i) => {
                    state.buyers.remove(i);
                    (200, json!({"Status": "Success"}))
                }
                None => failed("Buyer not found"),
            }
        }
        _ => (
            404,
            json!({"Status": "Failed", "Message": "Method not found"}),
        ),
    }
}

/// `access_expire` as Boomstream answers it: `YYYY-MM-DD HH:MM:SS`, the zero date
/// for none.
fn full_date(date: &str) -> String {
    match date.trim() {
        "" => ZERO_TIME.to_owned(),
        d if d.len() == 10 => format!("{d} 00:00:00"),
        d => d.to_owned(),
    }
}
