//! Byte-stream helpers shared by every protocol.

mod budgeted;
mod metered;
mod observed;
mod prefixed;
mod relay_copy;
mod small_reads;
mod splice;

pub use budgeted::BudgetedIo;
pub use metered::{ByteMeter, MeteredIo};
pub use observed::{ObservedIo, Observer};
pub use prefixed::PrefixedIo;
pub use relay_copy::copy_bidirectional;
pub use splice::{splice_bidirectional, SpliceCounter};
