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
