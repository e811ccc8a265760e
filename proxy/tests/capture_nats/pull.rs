//! `capture pull`: the stream read back as JSON lines.
