//! Golden files (tests only): a rendered text compared with the file committed beside the code that
//! renders it, and rewritten after a deliberate change. The report, its goals table and the plan are
//! pinned this way.

/// Asserts that `rendered` is `golden`, the text of the golden file at `path` (relative to the crate);
/// with `BLESS` set in the environment, writes `rendered` to that file first, after a deliberate
/// change.
pub fn assert_golden(rendered: &str, path: &str, golden: &str) {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path),
            rendered,
        )
        .unwrap();
    }
    assert!(
        rendered == golden,
        "{path} differs; `BLESS=1 cargo test` rewrites it. Rendered now:\n{rendered}"
    );
}
