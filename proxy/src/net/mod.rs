//! Where traffic goes: targets as clients name them, and dialing them.

mod dial;
pub(crate) mod keepalive;
mod target;

pub use dial::{dial, DialError, DialFailure};
pub use keepalive::tune;
pub use target::{Host, Target};
