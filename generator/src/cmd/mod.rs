//! One module per top-level command, each a thin layer between its parsed arguments
//! ([`crate::cli`]) and the library ([`generator`]): it resolves settings, calls the
//! library, and prints what it returns. What several commands share lives here too:
//! opening the D1 target ([`target`]) and reading passwords ([`password`]).

mod build;
mod grants;
mod hash_password;
mod notify;
mod password;
mod sessions;
mod sync;
mod target;
mod users;

pub(crate) use build::build;
pub(crate) use grants::grants;
pub(crate) use hash_password::hash_password;
pub(crate) use notify::notify;
pub(crate) use sessions::sessions;
pub(crate) use sync::sync;
pub(crate) use users::users;
