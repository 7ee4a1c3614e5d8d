//! Reading requests the way the real services read them.

use serde_json::Value;

/// The members of a JSON request body as `(name, text)` pairs: how Boomstream reads its
/// documented POST mode (../shared/reference/boomstream.md, "Input modes"). Anything that
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
