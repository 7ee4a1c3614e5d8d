//! The dynamic routes end to end: `App::handle` over an in-memory [`Store`], with the
//! real templates, keys, password hashes and Telegram signatures. Time, settings, keys
//! and database failures are set per test; log lines are captured so that what reaches
//! the log can be checked too. Every response is checked for the security headers.
//!
//! [`Store`]: course_core::app::Store

mod support;

mod configuration;
mod cross_site;
mod database_failures;
mod dev_telegram;
mod languages;
mod login;
mod logout;
mod me;
mod methods_and_paths;
mod notifications;
mod progress_check;
mod round_trips;
mod security_headers;
mod telegram_link;
mod telegram_sign_in;
mod throttle;
mod videos;
