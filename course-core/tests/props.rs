//! Property tests for the parsers that read attacker-controlled input: the session
//! cookie, the Telegram widget redirect, form bodies and query strings, redirect
//! targets and the `Cookie` header. Each must never panic, and must never accept a
//! value it did not sign (or a target that leaves the site).
//!
//! Case counts are kept moderate so the whole file runs in a few seconds in a debug
//! build. Failures are not persisted to disk (no `proptest-regressions` directory);
//! proptest prints the minimal failing input instead.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use course_core::http::{
    self, FormError, MAX_FIELD_BYTES, MAX_FORM_BYTES, Method, Request, encode_component,
};
use course_core::session::{AuthMethod, SessionClaims, SessionKeys, new_session_id};
use course_core::telegram::{self, MAX_FUTURE_SECS, MAX_QUERY_BYTES, Rejection};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

const KEY: &str = "props-secret-current-0123456789abcdef";
const OLD_KEY: &str = "props-secret-previous-0123456789abcdef";
const OTHER_KEY: &str = "props-secret-other-0123456789abcdef!!";
const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
const OTHER_TOKEN: &str = "654321:ZYX-wvu9876abcde-fgh12A3b4c567de89";
const MAX_AGE: i64 = 600;
/// Ids and dates must fit in 53 bits (what D1 keeps exactly).
const MAX_ID: i64 = 1 << 53;
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn keys() -> SessionKeys {
    SessionKeys::from_secrets(Some(KEY), None).expect("a long enough key")
}

// ---------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------

/// Arbitrary text of every flavour: Unicode, lossily converted bytes, long strings,
/// and strings over the cookie's own alphabet (so that splitting and decoding succeed
/// often enough to reach the MAC check).
fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..600)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "(?s).{0,2000}",
        "[A-Za-z0-9_\\-.:]{0,600}",
        "[A-Za-z0-9_\\-]{0,200}\\.[A-Za-z0-9_\\-]{0,60}",
        "[A-Za-z0-9_\\-]{0,200}\\.[A-Za-z0-9_\\-]{43}",
    ]
}

fn auth_method() -> impl Strategy<Value = AuthMethod> {
    prop_oneof![Just(AuthMethod::Password), Just(AuthMethod::Telegram)]
}

/// Valid claims (without the session id, which comes from `new_session_id`) and a
/// time before they expire.
fn claims_and_now() -> impl Strategy<Value = (i64, AuthMethod, i64, i64, i64)> {
    (
        1..MAX_ID,
        auth_method(),
        1..MAX_ID,
        1..MAX_ID,
        prop_oneof![0..MAX_ID, Just(0i64), Just(1i64)],
    )
        .prop_map(|(user_id, method, issued_at, lifetime, back)| {
            let expires_at = issued_at + lifetime;
            // Anywhere from long before issue (even negative) to the last valid second.
            let now = expires_at - 1 - back;
            (user_id, method, issued_at, expires_at, now)
        })
}

fn claims(user_id: i64, method: AuthMethod, issued_at: i64, expires_at: i64) -> SessionClaims {
    SessionClaims {
        session_id: new_session_id().expect("the system has randomness"),
        user_id,
        method,
        issued_at,
        expires_at,
    }
}

/// Values as Telegram (or a forger) might send them: arbitrary Unicode with the
/// characters that matter to URL encoding and to the check string mixed in.
fn field_value() -> impl Strategy<Value = String> {
    let specials = prop::sample::select(vec![
        '&', '=', '+', '%', '\n', '\r', ' ', '#', '?', '/', ';', 'Ж', 'ё', 'Я', '€', '😀', '\0',
    ]);
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>(),
            3 => specials,
            2 => proptest::char::range('а', 'я'),
            2 => proptest::char::range('a', 'z'),
        ],
        0..=64,
    )
    .prop_map(String::from_iter)
}

/// A Telegram payload: realistic optional fields plus unknown extra ones, an `id` and
/// an `auth_date`. Keys are unique; `hash` is not among them.
fn telegram_fields() -> impl Strategy<Value = (BTreeMap<String, String>, i64, i64)> {
    let realistic = prop::collection::btree_map(
        prop::sample::select(vec!["first_name", "last_name", "username", "photo_url"])
            .prop_map(str::to_owned),
        field_value(),
        0..=4,
    );
    let extra = prop::collection::btree_map("[a-z_]{1,12}", field_value(), 0..=3);
    (realistic, extra, 1..MAX_ID, 1..MAX_ID).prop_map(|(mut fields, extra, id, auth_date)| {
        for (k, v) in extra {
            if !matches!(k.as_str(), "hash" | "id" | "auth_date") {
                fields.entry(k).or_insert(v);
            }
        }
        fields.insert("id".into(), id.to_string());
        fields.insert("auth_date".into(), auth_date.to_string());
        (fields, id, auth_date)
    })
}

fn telegram_hash(fields: &BTreeMap<String, String>, token: &str) -> String {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    telegram::sign(&pairs, token)
}

/// The query string of `fields` plus `hash`, in the given order of keys.
fn telegram_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `fields` plus `hash`, rotated by `shift` so the order on the wire varies.
fn wire_order(
    fields: &BTreeMap<String, String>,
    hash: &str,
    shift: Index,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.push(("hash".into(), hash.into()));
    let n = shift.index(pairs.len());
    pairs.rotate_left(n);
    pairs
}

fn bytes_from(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet), 0..max)
}

/// Bytes that stress the URL decoder: separators, escapes, hex digits, UTF-8 leads and
/// continuation bytes, and invalid bytes.
const FORM_ALPHABET: &[u8] = b"%+=&aF0f9gG \x00\xd0\xb6\xff\x80\xc3\xe2\xf0";

// ---------------------------------------------------------------------------------
// Session cookie
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn session_verify_never_accepts_arbitrary_text(s in arbitrary_text(), now in any::<i64>()) {
        prop_assert_eq!(keys().verify(&s, now), None);
        let rotated = SessionKeys::from_secrets(Some(KEY), Some(OLD_KEY)).unwrap();
        prop_assert_eq!(rotated.verify(&s, now), None);
    }

    #[test]
    fn session_verify_rejects_well_formed_payloads_with_a_forged_mac(
        (user_id, method, issued_at, expires_at, now) in claims_and_now(),
        tag in prop::collection::vec(any::<u8>(), 0..=40),
    ) {
        let c = claims(user_id, method, issued_at, expires_at);
        let signed = keys().sign(&c);
        let (payload, _) = signed.split_once('.').unwrap();
        let forged = format!("{payload}.{}", B64.encode(&tag));
        prop_assert_eq!(keys().verify(&forged, now), None);
        // Nor does a previous key accept what it did not sign.
        let rotated = SessionKeys::from_secrets(Some(OTHER_KEY), Some(OLD_KEY)).expect("long keys");
        prop_assert_eq!(rotated.verify(&forged, now), None);
        prop_assert_eq!(rotated.verify(&signed, now), None);
    }

    #[test]
    fn session_sign_verify_round_trips((user_id, method, issued_at, expires_at, now) in claims_and_now()) {
        let c = claims(user_id, method, issued_at, expires_at);
        let value = keys().sign(&c);
        prop_assert!(value.len() <= 512, "signed cookie is {} bytes", value.len());

        let v = keys().verify(&value, now).expect("a fresh signed cookie verifies");
        prop_assert_eq!(&v.claims, &c);
        prop_assert!(!v.needs_resigning);

        // At and after expiry: refused.
        prop_assert_eq!(keys().verify(&value, expires_at), None);
        prop_assert_eq!(keys().verify(&value, expires_at + 1), None);
        prop_assert_eq!(keys().verify(&value, i64::MAX), None);

        // Another key never verifies it; the previous key does, asking for re-signing.
        let other = SessionKeys::from_secrets(Some(OTHER_KEY), None).unwrap();
        prop_assert_eq!(other.verify(&value, now), None);
        let rotated = SessionKeys::from_secrets(Some(OTHER_KEY), Some(KEY)).unwrap();
        let v = rotated.verify(&value, now).expect("the previous key verifies");
        prop_assert_eq!(&v.claims, &c);
        prop_assert!(v.needs_resigning);
    }

    #[test]
    fn session_any_single_character_change_is_rejected(
        (user_id, method, issued_at, expires_at, now) in claims_and_now(),
        at in any::<Index>(),
        replacement in prop::sample::select(B64URL),
    ) {
        let value = keys().sign(&claims(user_id, method, issued_at, expires_at));
        let mut bytes = value.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = if bytes[i] == replacement {
            // Any other character of the alphabet.
            B64URL[(B64URL.iter().position(|&b| b == replacement).unwrap() + 1) % B64URL.len()]
        } else {
            replacement
        };
        let altered = String::from_utf8(bytes).unwrap();
        prop_assert_ne!(&altered, &value);
        prop_assert_eq!(keys().verify(&altered, now), None, "accepted a change at {}", i);
        let rotated = SessionKeys::from_secrets(Some(KEY), Some(OLD_KEY)).expect("long keys");
        prop_assert_eq!(rotated.verify(&altered, now), None, "accepted a change at {}", i);
    }
}

// ---------------------------------------------------------------------------------
// Telegram Login Widget
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn telegram_verify_never_accepts_arbitrary_queries(
        q in prop_oneof![
            arbitrary_text(),
            // Well-formed queries with a made-up hash.
            ("[0-9]{1,17}", "[0-9]{1,17}", "[0-9a-fA-F]{64}", field_value()).prop_map(
                |(id, date, hash, name)| format!(
                    "id={id}&auth_date={date}&first_name={}&hash={hash}",
                    encode_component(&name)
                )
            ),
        ],
        now in 0i64..(1 << 40),
        max_age in 0i64..100_000,
    ) {
        prop_assert!(telegram::verify(&q, TOKEN, now, max_age).is_err());
    }

    #[test]
    fn telegram_round_trips_and_rejects_other_tokens(
        (fields, id, auth_date) in telegram_fields(),
        shift in any::<Index>(),
        skew in prop_oneof![
            -(MAX_FUTURE_SECS + 100)..(MAX_AGE + 100),
            // The edges of the accepted window.
            prop::sample::select(vec![-MAX_FUTURE_SECS - 1, -MAX_FUTURE_SECS, MAX_AGE, MAX_AGE + 1]),
        ],
    ) {
        let hash = telegram_hash(&fields, TOKEN);
        let query = telegram_query(&wire_order(&fields, &hash, shift));
        if fields.values().any(|v| v.contains('\n')) {
            // A newline could shift `key=value` lines in the check string: refused
            // whatever its signature (Telegram never sends one).
            prop_assert_eq!(telegram::verify(&query, TOKEN, auth_date, MAX_AGE), Err(Rejection::Invalid));
            return Ok(());
        }
        if query.len() > MAX_QUERY_BYTES {
            // Too long to be a widget redirect: refused whatever its signature.
            prop_assert_eq!(telegram::verify(&query, TOKEN, auth_date, MAX_AGE), Err(Rejection::Invalid));
            return Ok(());
        }

        let login = telegram::verify(&query, TOKEN, auth_date, MAX_AGE).expect("a signed payload verifies");
        prop_assert_eq!(login.id, id);
        prop_assert_eq!(login.auth_date, auth_date);
        prop_assert_eq!(login.first_name.as_deref(), fields.get("first_name").map(String::as_str));
        prop_assert_eq!(login.last_name.as_deref(), fields.get("last_name").map(String::as_str));
        prop_assert_eq!(login.username.as_deref(), fields.get("username").map(String::as_str));
        prop_assert_eq!(&login.hash, &hash);

        // Freshness around the signed date.
        let now = auth_date + skew;
        let expected = if skew < -MAX_FUTURE_SECS {
            Err(Rejection::Invalid)
        } else if skew > MAX_AGE {
            Err(Rejection::Expired)
        } else {
            Ok(login)
        };
        prop_assert_eq!(telegram::verify(&query, TOKEN, now, MAX_AGE), expected);

        // Signed with another bot's token: never accepted, whatever the time.
        let foreign = telegram_query(&wire_order(&fields, &telegram_hash(&fields, OTHER_TOKEN), shift));
        prop_assert_eq!(telegram::verify(&foreign, TOKEN, auth_date, MAX_AGE), Err(Rejection::Invalid));
        prop_assert_eq!(telegram::verify(&query, OTHER_TOKEN, auth_date, MAX_AGE), Err(Rejection::Invalid));
    }

    #[test]
    fn telegram_signed_but_malformed_ids_are_rejected(
        (mut fields, _id, auth_date) in telegram_fields(),
        bad in prop_oneof![
            Just("0".to_owned()),
            Just(String::new()),
            // Just past 53 bits (16 digits) and beyond.
            (MAX_ID..10_000_000_000_000_000).prop_map(|n| n.to_string()),
            (MAX_ID..i64::MAX).prop_map(|n| n.to_string()),
            (1..MAX_ID).prop_map(|n| format!("-{n}")),
            (1..MAX_ID).prop_map(|n| format!("+{n}")),
            (1..MAX_ID).prop_map(|n| format!(" {n}")),
            (1..MAX_ID).prop_map(|n| format!("{n}.0")),
            "0[0-9]{16,20}",
            "[0-9]{20,30}",
            field_value().prop_filter("not a number", |v| v.parse::<i64>().is_err()),
        ],
        in_date in any::<bool>(),
        shift in any::<Index>(),
    ) {
        let key = if in_date { "auth_date" } else { "id" };
        fields.insert(key.into(), bad.clone());
        let hash = telegram_hash(&fields, TOKEN);
        let query = telegram_query(&wire_order(&fields, &hash, shift));
        prop_assert_eq!(
            telegram::verify(&query, TOKEN, auth_date, MAX_AGE),
            Err(Rejection::Invalid),
            "accepted {} = {:?}", key, bad
        );
    }

    #[test]
    fn telegram_any_changed_value_is_rejected(
        (fields, _id, auth_date) in telegram_fields(),
        which in any::<Index>(),
        new_value in prop_oneof![field_value(), "[0-9]{1,16}"],
        shift in any::<Index>(),
    ) {
        let hash = telegram_hash(&fields, TOKEN);
        let key = fields.keys().nth(which.index(fields.len())).unwrap().clone();
        let mut changed = fields.clone();
        let slot = changed.get_mut(&key).unwrap();
        *slot = if *slot == new_value { format!("{new_value}0") } else { new_value };
        let query = telegram_query(&wire_order(&changed, &hash, shift));
        prop_assert_eq!(
            telegram::verify(&query, TOKEN, auth_date, MAX_AGE),
            Err(Rejection::Invalid),
            "accepted a changed {:?}", key
        );
    }

    #[test]
    fn telegram_duplicate_keys_are_rejected(
        (fields, _id, auth_date) in telegram_fields(),
        which in any::<Index>(),
        same_value in any::<bool>(),
        other_value in field_value(),
        shift in any::<Index>(),
        position in any::<Index>(),
    ) {
        let hash = telegram_hash(&fields, TOKEN);
        let mut pairs = wire_order(&fields, &hash, shift);
        // Repeat any field, `hash` included, with its own or another value.
        let (k, v) = pairs[which.index(pairs.len())].clone();
        let v = if same_value { v } else { other_value };
        let at = position.index(pairs.len() + 1);
        pairs.insert(at, (k.clone(), v));
        let query = telegram_query(&pairs);
        prop_assert_eq!(
            telegram::verify(&query, TOKEN, auth_date, MAX_AGE),
            Err(Rejection::Invalid),
            "accepted a repeated {:?}", k
        );
    }
}

// ---------------------------------------------------------------------------------
// Forms and query strings
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn urlencoded_never_panics_and_respects_the_field_limit(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..3000),
            bytes_from(FORM_ALPHABET, 3000),
        ],
        max_field in prop_oneof![0usize..64, Just(MAX_FIELD_BYTES), Just(usize::MAX)],
    ) {
        if let Ok(fields) = http::parse_urlencoded(&input, max_field) {
            for (k, v) in &fields {
                prop_assert!(k.len() <= max_field && v.len() <= max_field);
            }
            // Never more fields than `&`-separated pieces.
            prop_assert!(fields.len() <= input.iter().filter(|&&b| b == b'&').count() + 1);
        }
    }

    #[test]
    fn query_param_never_panics(query in arbitrary_text(), name in arbitrary_text()) {
        let req = Request::new(Method::Get, &format!("/p?{query}"));
        let _ = req.query_param(&name);
        let _ = req.query_param("next");
    }

    #[test]
    fn form_fields_never_exceed_the_limit(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..=MAX_FORM_BYTES),
            bytes_from(FORM_ALPHABET, MAX_FORM_BYTES),
            // One long field near the limit, plain or percent-encoded.
            (MAX_FIELD_BYTES - 8..MAX_FIELD_BYTES + 8, any::<bool>()).prop_map(|(n, escaped)| {
                let value = if escaped { "%41".repeat(n) } else { "a".repeat(n) };
                format!("x=1&field={value}&y=2").into_bytes()
            }),
        ],
        content_type in prop::sample::select(vec![
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "Application/X-WWW-Form-URLEncoded ;charset=utf-8",
            "  application/x-www-form-urlencoded  ",
        ]),
    ) {
        match http::parse_form(Some(content_type), &body) {
            Ok(fields) => {
                for (k, v) in &fields {
                    prop_assert!(k.len() <= MAX_FIELD_BYTES, "name of {} bytes", k.len());
                    prop_assert!(v.len() <= MAX_FIELD_BYTES, "value of {} bytes", v.len());
                }
            }
            Err(e) => prop_assert!(
                matches!(e, FormError::Malformed | FormError::FieldTooLong),
                "unexpected {:?}", e
            ),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn urlencoded_round_trips_encoded_unicode(
        pairs in prop::collection::vec((field_value(), field_value()), 0..8),
    ) {
        let encoded = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect::<Vec<_>>()
            .join("&");
        prop_assert!(encoded.is_ascii());
        prop_assert_eq!(http::parse_urlencoded(encoded.as_bytes(), usize::MAX), Ok(pairs.clone()));

        // Browsers send spaces as '+'; that decodes the same.
        let form_style = encoded.replace("%20", "+");
        prop_assert_eq!(http::parse_urlencoded(form_style.as_bytes(), usize::MAX), Ok(pairs.clone()));

        // The same through a request's query string.
        let req = Request::new(Method::Get, &format!("/p?{encoded}"));
        for (k, _) in &pairs {
            let first = pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            prop_assert_eq!(req.query_param(k), first);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn telegram_oversized_queries_are_invalid_even_when_signed(
        (mut fields, _id, auth_date) in telegram_fields(),
        pad in 0usize..512,
    ) {
        fields.insert("zz_padding".into(), "a".repeat(MAX_QUERY_BYTES + pad));
        let hash = telegram_hash(&fields, TOKEN);
        let pairs: Vec<(String, String)> = fields.into_iter().chain([("hash".into(), hash)]).collect();
        prop_assert_eq!(
            telegram::verify(&telegram_query(&pairs), TOKEN, auth_date, MAX_AGE),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn oversized_forms_are_too_large(
        extra in 1usize..MAX_FORM_BYTES,
        fill in any::<u8>(),
        content_type in prop::option::of(arbitrary_text()),
    ) {
        let body = vec![fill; MAX_FORM_BYTES + extra];
        prop_assert_eq!(
            http::parse_form(Some("application/x-www-form-urlencoded"), &body),
            Err(FormError::TooLarge)
        );
        // Whatever the content type, an oversized body is never parsed.
        let result = http::parse_form(content_type.as_deref(), &body);
        prop_assert!(
            matches!(result, Err(FormError::TooLarge | FormError::UnsupportedType)),
            "{:?}", result
        );
    }

    #[test]
    fn forms_of_other_types_are_unsupported(
        content_type in prop::option::of(prop_oneof![
            arbitrary_text(),
            prop::sample::select(vec![
                "application/json",
                "multipart/form-data; boundary=x",
                "text/plain",
                "application/x-www-form-urlencodedx",
                "application/x-www-form-urlencoded-evil; a=b",
                "",
            ]).prop_map(str::to_owned),
        ]),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let essence = content_type
            .as_deref()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        prop_assume!(essence != "application/x-www-form-urlencoded");
        prop_assert_eq!(http::parse_form(content_type.as_deref(), &body), Err(FormError::UnsupportedType));
    }
}

// ---------------------------------------------------------------------------------
// Redirect targets
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn safe_next_only_returns_same_site_paths(
        next in prop_oneof![
            arbitrary_text(),
            "/(?s).{0,520}",
            "/[/\\\\a-z.:%?#@ \t\r\n\u{0}\u{7f}\u{85}\u{a0}\u{2028}\u{3000}Жё😀]{0,40}",
            "[/\\\\]{1,3}[a-z.]{0,20}",
            "/[ -~]{0,600}",
            "/[а-я]{250,260}",
        ],
    ) {
        let acceptable = next.len() <= 512
            && next.starts_with('/')
            && !next.starts_with("//")
            && !next.contains('\\')
            && !next.chars().any(|c| c.is_control() || c.is_whitespace());
        prop_assert_eq!(http::safe_next(&next).is_some(), acceptable, "{:?}", next);
        if let Some(s) = http::safe_next(&next) {
            prop_assert!(s.is_ascii(), "{:?}", s);
            prop_assert!(s.starts_with('/'), "{:?}", s);
            prop_assert!(!s.starts_with("//"), "{:?}", s);
            prop_assert!(!s.contains('\\'), "{:?}", s);
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()), "{:?}", s);
            prop_assert!(s.len() <= 3 * 512, "{} bytes", s.len());
            // ASCII input comes back unchanged; anything else only gains escapes.
            if next.is_ascii() {
                prop_assert_eq!(&s, &next);
            } else {
                prop_assert!(s.len() > next.len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The Cookie header
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cookie_lookup_never_panics(
        headers in prop::collection::vec(
            prop_oneof![
                arbitrary_text(),
                "[a-zA-Z_=; \"\t.-]{0,200}",
            ],
            0..4,
        ),
        name in prop_oneof![
            Just("__Host-session".to_owned()),
            Just("session".to_owned()),
            Just(String::new()),
            arbitrary_text(),
        ],
    ) {
        let mut req = Request::new(Method::Get, "/me");
        req.headers = headers.iter().map(|h| ("cookie".to_owned(), h.clone())).collect();
        if let Some(v) = req.cookie(&name) {
            prop_assert!(!v.contains(';'));
            prop_assert!(headers.iter().any(|h| h.contains(v)));
            // Whatever it is, it is not a session this server signed.
            prop_assert_eq!(keys().verify(v, 0), None);
        }
    }

    #[test]
    fn cookie_lookup_finds_the_first_value(
        cookies in prop::collection::vec(
            (
                prop_oneof![
                    Just("__Host-session".to_owned()),
                    Just("session".to_owned()),
                    "[A-Za-z0-9_.-]{1,20}",
                ],
                "[A-Za-z0-9!#$%&'()*+./:<=>?@^_`{|}~\\[\\]-]{0,40}",
            ),
            1..8,
        ),
        split in any::<Index>(),
        which in any::<Index>(),
    ) {
        // Spread the pairs over two Cookie headers, with ragged spacing.
        let parts: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let cut = split.index(parts.len() + 1);
        let mut req = Request::new(Method::Get, "/me");
        for chunk in [&parts[..cut], &parts[cut..]] {
            if !chunk.is_empty() {
                req.headers.push(("cookie".into(), chunk.join(";  ")));
            }
        }
        let (name, _) = &cookies[which.index(cookies.len())];
        let first = cookies.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        prop_assert_eq!(req.cookie(name), first);
    }

    #[test]
    fn signed_session_cookie_survives_the_header(
        (user_id, method, issued_at, expires_at, now) in claims_and_now(),
        before in "[a-z]{1,8}=[a-z0-9]{0,8}",
        quoted in any::<bool>(),
    ) {
        let c = claims(user_id, method, issued_at, expires_at);
        let value = keys().sign(&c);
        let shown = if quoted { format!("\"{value}\"") } else { value.clone() };
        let mut req = Request::new(Method::Get, "/me");
        req.headers.push(("cookie".into(), format!("{before}; __Host-session={shown} ; theme=dark")));
        let got = req.cookie("__Host-session");
        prop_assert_eq!(got, Some(value.as_str()));
        prop_assert_eq!(keys().verify(got.unwrap(), now).map(|v| v.claims), Some(c));
    }
}

// ---------------------------------------------------------------------------------
// Request URLs: the worker's splitter agrees with a WHATWG URL parser
// ---------------------------------------------------------------------------------

/// URLs built from parts that a browser may send, serialised by the `url` crate the
/// way the runtime serialises `request.url` (WHATWG): the splitter must read back the
/// same scheme, host, port, path and query, and never panic on anything else.
fn request_url() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just("course.example.com".to_owned()),
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        Just("LOCALHOST".to_owned()),
        Just("xn--e1afmkfd.xn--p1ai".to_owned()),
        Just("пример.рф".to_owned()),
        "[a-z0-9-]{1,20}(\\.[a-z]{2,6}){0,2}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":443".into()),
        Just(":80".into()),
        (1u16..).prop_map(|p| format!(":{p}"))
    ];
    let path = "(/[a-zA-Z0-9%._~!$&'()*+,;=:@ -]{0,12}){0,4}";
    let query = prop_oneof![Just(String::new()), "\\?[a-zA-Z0-9%=&?/:@ -]{0,30}"];
    let userinfo = prop_oneof![4 => Just(String::new()), 1 => Just("user:pass@".to_owned())];
    (
        prop_oneof![Just("https"), Just("http")],
        userinfo,
        host,
        port,
        path,
        query,
        prop_oneof![Just(""), Just("#frag")],
    )
        .prop_map(|(s, u, h, p, path, q, f)| format!("{s}://{u}{h}{p}{path}{q}{f}"))
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn request_urls_split_like_a_whatwg_parser(raw in request_url()) {
        let Ok(parsed) = url::Url::parse(&raw) else { return Ok(()) };
        let serialised = parsed.as_str();
        let req = Request::for_url(Method::Get, serialised).expect("a serialised URL splits");
        prop_assert_eq!(&req.scheme, parsed.scheme());
        prop_assert_eq!(Some(req.host.as_str()), parsed.host_str());
        prop_assert_eq!(req.port, parsed.port());
        prop_assert_eq!(&req.path, parsed.path());
        prop_assert_eq!(req.query.as_deref(), parsed.query());
    }

    #[test]
    fn request_url_splitter_never_panics(raw in arbitrary_text()) {
        let _ = Request::for_url(Method::Get, &raw);
    }
}
