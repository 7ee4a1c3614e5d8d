//! What the route tests share: the fixtures, the in-memory store, the site under test,
//! and helpers that build requests and check responses.

mod asserts;
mod fixtures;
mod outside;
mod requests;
mod site;
mod store;

pub(crate) use self::asserts::*;
pub(crate) use self::fixtures::*;
pub(crate) use self::outside::*;
pub(crate) use self::requests::*;
pub(crate) use self::site::*;
pub(crate) use self::store::*;
