//! The environment of the binaries tests run: none of the test runner's `PROXY_*` variables, and none of
//! the proxy variables clients honour (`http_proxy` and the like), so a developer's own settings cannot
//! change what a test sees.
//!
//! Standalone (no `super::`), so test files that do not include all of `support` can take just this file
//! with `#[path = "support/env.rs"]`.
// Each test file uses a part of it.
#![allow(dead_code)]

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

/// The variables through which curl and most HTTP clients pick up a proxy (or a curl configuration that may
/// name one) from their environment.
pub const CLIENT_PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "socks_proxy",
    "SOCKS_PROXY",
    "CURL_HOME",
];

/// Removes both the sidecar's `PROXY_*` settings and the clients' proxy variables from `command`.
pub fn remove_all_proxy_vars(command: &mut Command) {
    remove_proxy_vars(command);
    for var in CLIENT_PROXY_VARS {
        command.env_remove(var);
    }
}
