//! What the tests and the crash child (`src/bin/labeldb-crash-child.rs`) need beyond the
//! public API (the `testing` feature; not part of the API).

pub mod crash;

pub use crate::rng::Rng;
