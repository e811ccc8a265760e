//! Where traffic goes: targets as clients name them, and dialing them; closing politely.

pub mod closing;
mod dial;
pub(crate) mod keepalive;
mod target;

pub(crate) use dial::humanize;
pub use dial::{dial, DialError, DialFailure};
pub use keepalive::tune;
pub use target::{Host, Target};
