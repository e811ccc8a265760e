//! Panics anywhere outside the test files (the sidecar, hyper, fast-socks5...) are counted, so a test can
//! assert that hostile input never made a connection task panic: tokio swallows those panics otherwise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static OUTSIDE_TESTS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Installs the counting hook (once per test binary); the default hook still prints every panic.
pub fn watch() {
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().replace('\\', "/").contains("tests/"));
            if !in_tests {
                OUTSIDE_TESTS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Panics seen so far outside `tests/` in this test binary (any test's proxy).
pub fn outside_tests() -> usize {
    OUTSIDE_TESTS.load(Ordering::SeqCst)
}
