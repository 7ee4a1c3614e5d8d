//! What the course site's generator and edge worker share: the session cookie format,
//! password hashing, the page templates and the request logic of the dynamic routes.
//! Plain Rust with no I/O of its own, so `cargo test` reaches all of it natively.

pub mod app;
pub mod http;
pub mod pages;
pub mod password;
pub mod session;
