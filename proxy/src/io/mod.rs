//! Byte-stream helpers shared by every protocol.

mod metered;
mod prefixed;

pub use metered::MeteredIo;
pub use prefixed::PrefixedIo;
