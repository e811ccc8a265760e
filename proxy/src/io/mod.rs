//! Byte-stream helpers shared by every protocol.

mod prefixed;

pub use prefixed::PrefixedIo;
