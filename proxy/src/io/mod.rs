//! Byte-stream helpers shared by every protocol.

mod metered;
mod observed;
mod prefixed;

pub use metered::{ByteMeter, MeteredIo};
pub use observed::{ObservedIo, Observer};
pub use prefixed::PrefixedIo;
