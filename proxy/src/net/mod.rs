//! Where traffic goes: targets as clients name them, and dialing them.

mod dial;
mod target;

pub use dial::{dial, DialError, DialFailure};
pub use target::{Host, Target};
