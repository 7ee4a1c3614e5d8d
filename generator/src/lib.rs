//! The generator's library part: what the `generator` binary uses and the integration
//! tests reach directly (a binary crate's modules are out of their reach).

pub mod boomstream;
pub mod d1;
pub mod demo;
pub mod stepik;
pub mod sync;
