//! What the course site's generator and edge worker share: the session cookie format,
//! password hashing, the page templates and the request logic of the dynamic routes.
//! Plain Rust with no I/O of its own, so `cargo test` reaches all of it natively.

pub mod app;
pub mod assets;
pub mod headers;
pub mod http;
pub mod pages;
pub mod password;
pub mod progress;
pub mod session;
pub mod site;
pub mod telegram;
pub mod time;
pub mod unlock;

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
