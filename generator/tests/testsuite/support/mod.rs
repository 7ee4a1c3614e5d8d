//! What the feature modules share: the stand-ins for the services the generator talks
//! to, and the real local D1.

/// A stateful Boomstream stand-in that keeps buyers as the real service does.
pub(crate) mod boomstream;
/// The generator binary with a clean environment.
pub(crate) mod cli;
/// The real local D1 through wrangler, migrated, in a temporary folder.
pub(crate) mod local_d1;
/// Reading requests the way the real services read them.
pub(crate) mod request;
/// A real SMTP server (aiosmtpd) keeping what it accepts.
pub(crate) mod smtp;
/// The Stepik stand-in serving the demo course (`site/demo/stepik/`) with faults.
pub(crate) mod stepik;
/// A Telegram Bot API stand-in for `sendMessage`.
pub(crate) mod telegram;
