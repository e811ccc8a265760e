//! The markdown both harnesses write: the benchmark's report (docs/benchmarks.md, [`crate::report`])
//! and the soak's summary (summary.md, soak/src/report.rs). One table writer, so both documents
//! draw their tables the same way.

use std::fmt::Write as _;

/// The header line of a table and the line under it that aligns its columns. `columns` names them
/// between `|`s as markdown does; a name ending in `:` is a column of figures, right-aligned (the
/// colon goes, as markdown's `---:` puts it on the right).
pub fn head(out: &mut String, columns: &str) {
    let mut rule = String::from("|");
    out.push('|');
    for column in columns.split('|').map(str::trim) {
        let (name, align) = match column.strip_suffix(':') {
            Some(name) => (name, "---:|"),
            None => (column, "---|"),
        };
        let _ = write!(out, " {name} |");
        rule.push_str(align);
    }
    let _ = writeln!(out, "\n{rule}");
}

/// Text made safe for a cell: a `|` in it would end the cell.
pub fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_aligns_figures_right_and_a_pipe_in_a_cell_is_escaped() {
        let mut out = String::new();
        head(&mut out, "path | req/s:");
        assert_eq!(out, "| path | req/s |\n|---|---:|\n");
        assert_eq!(escape("a|b"), "a\\|b");
    }
}
