//! The environment of the binaries tests run: none of the test runner's `PROXY_*` variables, so a
//! developer's own settings cannot change what a test sees.
//!
//! Standalone (no `super::`), so test files that do not include all of `support` can take just this file
//! with `#[path = "support/env.rs"]`.

use std::process::Command;

/// Removes every `PROXY_*` variable of this process from `command`'s environment. By prefix rather than
/// by a list of names, so a variable the binary learns to read later is covered too.
pub fn remove_proxy_vars(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("PROXY_") {
            command.env_remove(key);
        }
    }
}
