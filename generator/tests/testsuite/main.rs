//! The generator's integration tests, in one test binary (as cargo, mdBook and ripgrep
//! keep theirs): a module per feature, and [`support`] for what they share: the stand-ins
//! for Stepik and Boomstream, the real local D1 through wrangler, and the request helpers.
//!
//! Run one feature with a filter on its module path: `cargo test -p generator --test
//! testsuite sync::`.

mod admin;
mod boomstream;
mod build;
mod d1;
mod notify;
mod stepik;
mod support;
mod sync;
