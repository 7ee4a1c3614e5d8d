//! Helpers shared by the integration tests.

pub(crate) mod boomstream;
pub(crate) mod local_d1;
pub(crate) mod request;
