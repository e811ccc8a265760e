//! A bound on how deeply `inject`'s input nests, checked on the text before the YAML parser sees it.
//!
//! The parser (libyaml, under serde_yaml_ng) reads a whole document into events before serde's own limit
//! of 128 levels applies, and its work grows with the square of the flow nesting: a 200 KB document of
//! 100,000 `[` took 21 s to be refused. Kubernetes objects nest a few dozen levels at most, so anything
//! deeper than [`MAX_DEPTH`] is refused here at once, naming the document and the line.
//!
//! This is a scan of YAML's indicators, not a parser: it follows quotes, comments, block scalars (`|`,
//! `>`), flow collections (`[`, `{`) and block collections (`- ` entries and `key:` lines, by their
//! columns), enough to count the levels open at each point. Where it is unsure it errs low for block
//! collections (a sequence at its key's column is not counted), which only leaves a document of a
//! hundred-odd levels to the parser's own limit; a depth that costs the parser real time is always
//! counted.

use thiserror::Error;

/// The deepest nesting of mappings and sequences accepted: serde_yaml_ng's own limit.
pub const MAX_DEPTH: usize = 128;

/// A document nested deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "document {document}: nested more than {MAX_DEPTH} levels deep (line {line}); allowed: at most {MAX_DEPTH} levels of nested mappings and sequences, far more than any Kubernetes object uses"
)]
pub struct TooDeep {
    /// 1-based, counted as the documents of the stream are (an empty one counts).
    pub document: usize,
    /// 1-based line where the limit was passed.
    pub line: usize,
}

/// Refuses `text` if any of its documents nests deeper than [`MAX_DEPTH`].
pub fn check_depth(text: &str) -> Result<(), TooDeep> {
    let mut scan = Scan::default();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        scan.line(line.as_bytes()).map_err(|()| TooDeep {
            document: scan.document.max(1),
            line: index + 1,
        })?;
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// The current document, 1-based (0 before any content or marker).
    document: usize,
    /// Columns of the block collections open, innermost last.
    block: Vec<usize>,
    /// Flow collections open.
    flow: usize,
    /// Inside a quoted scalar (which may span lines): its quote.
    quote: Option<u8>,
    /// Inside a block scalar: lines indented more than this column (and blank lines) are its text.
    block_scalar: Option<usize>,
}

impl Scan {
    fn line(&mut self, line: &[u8]) -> Result<(), ()> {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let blank = line[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(threshold) = self.block_scalar {
            if blank || indent > threshold {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if self.quote.is_some() || self.flow > 0 {
            // A quoted scalar or a flow collection goes on from the line before.
            return self.scan(line, 0, false);
        }
        if is_marker(line, b"---") {
            self.document += 1;
            self.block.clear();
            return self.scan(line, 3, true);
        }
        if is_marker(line, b"...") {
            self.block.clear();
            return Ok(());
        }
        if blank || line[indent] == b'#' {
            return Ok(());
        }
        if self.document == 0 {
            self.document = 1;
        }
        while self.block.last().is_some_and(|&column| column > indent) {
            self.block.pop();
        }
        self.scan(line, indent, true)
    }

    /// Scans `line` from `from`; `node_start`: a node may begin there (block context).
    fn scan(&mut self, line: &[u8], from: usize, mut node_start: bool) -> Result<(), ()> {
        let mut node_column = from;
        let mut i = from;
        let mut after_space = true;
        while i < line.len() {
            let c = line[i];
            let next = line.get(i + 1).copied();
            if let Some(quote) = self.quote {
                // An escaped character, or `''` inside single quotes, does not end the scalar.
                let escaped = (quote == b'"' && c == b'\\')
                    || (quote == b'\'' && c == b'\'' && next == Some(b'\''));
                if escaped {
                    i += 2;
                    continue;
                }
                if c == quote {
                    self.quote = None;
                }
                after_space = false;
                i += 1;
                continue;
            }
            let separated = next.is_none_or(|b| b == b' ' || b == b'\t');
            if c == b'#' && after_space {
                // A comment: the rest of the line.
                return Ok(());
            }
            if self.flow > 0 {
                match c {
                    b'[' | b'{' => self.open_flow()?,
                    b']' | b'}' => self.flow = self.flow.saturating_sub(1),
                    b'"' | b'\'' if after_space || is_flow_separator(line, i) => {
                        self.quote = Some(c)
                    }
                    _ => {}
                }
                if self.flow == 0 {
                    // Back in block context, after the collection: nothing more opens on this line.
                    node_start = false;
                }
            } else if node_start {
                match c {
                    b' ' | b'\t' => {}
                    // A sequence entry (or complex key): its node starts after it.
                    b'-' | b'?' if separated => self.open_block(i)?,
                    b'[' | b'{' => {
                        self.open_flow()?;
                        node_start = false;
                    }
                    b'"' | b'\'' => {
                        self.quote = Some(c);
                        node_column = i;
                        node_start = false;
                    }
                    b'|' | b'>' => {
                        self.block_scalar = Some(self.block.last().copied().unwrap_or(0));
                        return Ok(());
                    }
                    // An anchor or a tag comes before the node it names.
                    b'&' | b'!' => {
                        while i + 1 < line.len() && line[i + 1] != b' ' {
                            i += 1;
                        }
                    }
                    _ => {
                        node_column = i;
                        node_start = false;
                    }
                }
            } else if c == b':' && separated {
                // `key:` opens a mapping at the key's column; its value may start here.
                if self.block.last() != Some(&node_column) {
                    self.open_block(node_column)?;
                }
                node_start = true;
            }
            after_space = c == b' ' || c == b'\t';
            i += 1;
        }
        Ok(())
    }

    fn open_flow(&mut self) -> Result<(), ()> {
        self.flow += 1;
        self.check()
    }

    fn open_block(&mut self, column: usize) -> Result<(), ()> {
        if self.block.last() != Some(&column) {
            self.block.push(column);
        }
        self.check()
    }

    fn check(&self) -> Result<(), ()> {
        if self.block.len() + self.flow > MAX_DEPTH {
            Err(())
        } else {
            Ok(())
        }
    }
}

/// `---` or `...` at the start of a line, alone or followed by a space.
fn is_marker(line: &[u8], marker: &[u8]) -> bool {
    line.starts_with(marker) && line.get(3).is_none_or(|&b| b == b' ' || b == b'\t')
}

/// Whether the byte before `i` ends a flow token (`[`, `{`, `,`, `:`), so a quote at `i` opens a scalar.
fn is_flow_separator(line: &[u8], i: usize) -> bool {
    i > 0 && matches!(line[i - 1], b'[' | b'{' | b',' | b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_refused(text: &str) -> Option<TooDeep> {
        check_depth(text).err()
    }

    #[test]
    fn kubernetes_objects_pass() {
        let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # a comment with [ and {
  annotations:
    note: "quoted [[[[ and {{{{"
    other: 'it''s [ fine'
spec:
  template:
    spec:
      containers:
      - name: app
        args: ["--a", "[b"]
        command:
          - sh
          - -c
          - |
            if [[ -f x ]]; then echo [; fi
            - - - - [[[[
        env: [{name: A, value: "x"}]
"#;
        assert_eq!(check_depth(deployment), Ok(()));
        assert_eq!(check_depth(""), Ok(()));
    }

    #[test]
    fn deep_flow_block_and_mapping_nesting_is_refused() {
        let flow = format!("a: {}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            depth_refused(&flow),
            Some(TooDeep {
                document: 1,
                line: 1
            })
        );
        let block = format!("{}x\n", "- ".repeat(200));
        assert!(depth_refused(&block).is_some());
        let indented: String = (0..200)
            .map(|level| format!("{}k{level}:\n", " ".repeat(level)))
            .collect();
        assert!(depth_refused(&indented).is_some());
        // Within the limit, any of them passes.
        let shallow = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check_depth(&shallow), Ok(()));
    }

    #[test]
    fn the_document_and_line_are_named() {
        let text = format!(
            "---\nkind: List\n---\n\n# comment\nx: {}\n",
            "{a: ".repeat(500)
        );
        assert_eq!(
            depth_refused(&text),
            Some(TooDeep {
                document: 2,
                line: 6
            })
        );
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_do_not_count() {
        let text = format!(
            "a: \"{0}\"\nb: '{0}'\nc: x # {0}\nd: |\n  {0}\ne: >-\n  {0}\n",
            "[".repeat(500)
        );
        assert_eq!(check_depth(&text), Ok(()));
    }
}
