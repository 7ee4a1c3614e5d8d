//! The generator's library part: what the `generator` binary uses and the integration
//! tests reach directly (a binary crate's modules are out of their reach).

pub mod admin;
pub mod boomstream;
pub mod build;
pub mod demo;
pub mod notify;
pub mod secret_file;
pub mod site_files;
pub mod stepik;
pub mod sync;
