//! Naming the unreadable lines a capture reader skips, on stderr, without burying the terminal.

use crate::capture::har::ExportError;

/// Skipped lines named one by one on stderr; past this many only the count grows, so a file that is not
/// a capture at all does not bury the terminal.
const NAMED_SKIPPED_LINES: usize = 100;

/// Tells stderr about each skipped line, up to [`NAMED_SKIPPED_LINES`] of them.
#[derive(Debug, Default)]
pub struct SkippedLineReporter {
    skipped: usize,
}

impl SkippedLineReporter {
    pub fn report(&mut self, error: &ExportError) {
        self.skipped += 1;
        if self.skipped <= NAMED_SKIPPED_LINES {
            eprintln!("sidecar-proxy: skipped {error}");
        } else if self.skipped == NAMED_SKIPPED_LINES + 1 {
            eprintln!("sidecar-proxy: more lines are unreadable; they are skipped and counted without being named");
        }
    }

    /// Lines skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}
