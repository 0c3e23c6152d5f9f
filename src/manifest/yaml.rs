//! A YAML document as a tree of nodes that remember where they came from.
//!
//! Owns: turning YAML text into [`Node`]s, each with the file, line and column it
//! started at, anchors and aliases resolved. Must not know about manifest fields:
//! the decoder gives the nodes meaning.
//!
//! Written over `yaml-rust2`'s event parser because the serde-based YAML crates
//! drop positions and stop at the first error, and Hull reports every error of a
//! file with its line and column.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: file, 1-based line, 1-based column.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(file: &Arc<str>, mark: Marker) -> Self {
        Pos {
            file: file.clone(),
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar; `plain` is false when it was quoted or a block scalar, so
    /// `"true"` stays a string where `true` is a boolean.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Key/value pairs in document order (duplicates are left to the decoder).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for an empty value, `~` or `null` written plain.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")
    }

    /// What kind of value this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Scalar { .. } if self.is_null() => "an empty value",
            NodeKind::Scalar { plain: false, .. } => "a string",
            NodeKind::Scalar { value, plain: true } => {
                if super::decode::parse_bool(value).is_some() {
                    "a boolean"
                } else if super::decode::parse_int(value).is_some() {
                    "a number"
                } else {
                    "a string"
                }
            }
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{pos}: invalid YAML: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// The most nodes one document may expand to, each alias counting the
/// nodes it copies: far beyond any real manifest or label, and what stops a
/// few hundred bytes of nested aliases ("billion laughs") from taking
/// gigabytes of memory.
pub const MAX_NODES: usize = 100_000;

/// Parses `text` (named `file` in positions) into its first document's root node.
/// An empty document gives a null scalar.
pub fn parse(file: &str, text: &str) -> Result<Node, SyntaxError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
        produced: 0,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        match indenting_tab(text, e.marker(), e.info()) {
            Some((line, col)) => SyntaxError {
                pos: Pos {
                    file: file.clone(),
                    line,
                    col,
                },
                message: "a tab in the indentation: YAML indents with spaces".to_string(),
            },
            None => SyntaxError {
                pos: Pos::from_marker(&file, *e.marker()),
                message: e.info().to_string(),
            },
        }
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Scalar {
            value: String::new(),
            plain: true,
        },
        pos: Pos {
            file,
            line: 1,
            col: 1,
        },
    }))
}

/// When the scanner stopped at `mark` because of a tab that indents a later
/// line (it reports where the scalar before began), that tab's line and
/// column: the first tab after the end of the marked line, with nothing but
/// whitespace before it.
fn indenting_tab(text: &str, mark: &Marker, info: &str) -> Option<(usize, usize)> {
    if !info.contains("tab") {
        return None;
    }
    let rest: String = text.chars().skip(mark.index()).collect();
    let next_line = rest.find('\n')? + 1;
    let after = &rest[next_line..];
    let tab = after.find('\t')?;
    let between = &after[..tab];
    if !between.chars().all(char::is_whitespace) {
        return None;
    }
    let line = mark.line() + 1 + between.matches('\n').count();
    let line_start = between.rfind('\n').map_or(0, |i| i + 1);
    let col = between[line_start..].chars().count() + 1;
    Some((line, col))
}

enum Open {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Open>,
    /// Anchored nodes and how many nodes each holds.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    error: Option<SyntaxError>,
    /// Nodes made so far, aliases counted with what they copy.
    produced: usize,
}

/// How many nodes `node` holds, itself included.
fn count(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
    }
}

impl Builder {
    /// Counts `n` more nodes; false (and the error set) past [`MAX_NODES`].
    fn produce(&mut self, n: usize, pos: &Pos) -> bool {
        self.produced = self.produced.saturating_add(n);
        if self.produced <= MAX_NODES {
            return true;
        }
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos: pos.clone(),
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases counted with what they copy): refused"
                ),
            });
        }
        false
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            let n = count(&node);
            self.anchors.insert(anchor, (node.clone(), n));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(seq, _)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, pending_key)) => match pending_key.take() {
                None => {
                    // yaml-rust2 marks a block mapping where it sees the first
                    // `:`; the mapping really starts at its first key.
                    let empty = matches!(&map.kind, NodeKind::Map(e) if e.is_empty());
                    if empty && (node.pos.line, node.pos.col) < (map.pos.line, map.pos.col) {
                        map.pos = node.pos.clone();
                    }
                    *pending_key = Some(node);
                }
                Some(key) => {
                    if let NodeKind::Map(entries) = &mut map.kind {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(&self.file, mark);
        let new_node = matches!(
            ev,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        );
        // Past the limit nothing more is built: the error stands.
        if self.produced > MAX_NODES || (new_node && !self.produce(1, &pos)) {
            return;
        }
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.finish(
                    Node {
                        kind: NodeKind::Scalar { value, plain },
                        pos,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(
                Node {
                    kind: NodeKind::Seq(Vec::new()),
                    pos,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(
                Node {
                    kind: NodeKind::Map(Vec::new()),
                    pos,
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let (node, anchor) = match open {
                        Open::Seq(n, a) | Open::Map(n, a, _) => (n, a),
                    };
                    self.finish(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).map(|(_, n)| *n) {
                Some(n) => {
                    if !self.produce(n, &pos) {
                        return;
                    }
                    let Some((node, _)) = self.anchors.get(&id) else {
                        return;
                    };
                    let mut node = node.clone();
                    node.pos = pos;
                    self.finish(node, 0);
                }
                None => {
                    if self.error.is_none() {
                        self.error = Some(SyntaxError {
                            pos,
                            message: "alias to an unknown anchor".to_string(),
                        });
                    }
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> (&str, bool) {
        match &node.kind {
            NodeKind::Scalar { value, plain } => (value.as_str(), *plain),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let root = parse("m.yml", "a: 1\nb:\n  - x\n  - 'y'\n").expect("parses");
        let NodeKind::Map(entries) = &root.kind else {
            panic!("root is not a map")
        };
        assert_eq!((entries[0].0.pos.line, entries[0].0.pos.col), (1, 1));
        assert_eq!((root.pos.line, root.pos.col), (1, 1));
        let NodeKind::Seq(items) = &entries[1].1.kind else {
            panic!("b is not a list")
        };
        assert_eq!(scalar(&items[0]), ("x", true));
        assert_eq!(scalar(&items[1]), ("y", false));
        assert_eq!((items[1].pos.line, items[1].pos.col), (4, 5));
        assert_eq!(items[1].pos.to_string(), "m.yml:4:5");
    }

    #[test]
    fn a_block_mapping_starts_at_its_first_key() {
        let root = parse("m.yml", "list:\n  - path: x\n    mode: 1\n").expect("parses");
        let NodeKind::Map(entries) = &root.kind else {
            panic!("root is not a map")
        };
        let NodeKind::Seq(items) = &entries[0].1.kind else {
            panic!("list is not a list")
        };
        assert_eq!((items[0].pos.line, items[0].pos.col), (2, 5));
    }

    #[test]
    fn nested_aliases_are_refused_past_the_node_limit_quickly() {
        // Nine levels of nine aliases: 9^9 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let e = parse("bomb.yml", &text).expect_err("refused");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(e.message.contains("more than 100000 nodes"), "{e}");
        assert_eq!(e.pos.file.as_ref(), "bomb.yml");
        assert!(e.pos.line >= 5, "{e}");
        // Aliases below the limit still copy.
        parse("ok.yml", "a: &a [1, 2]\nb: [*a, *a, *a]\n").expect("small aliases");
    }

    #[test]
    fn a_tab_in_the_indentation_is_reported_where_it_is() {
        let e = parse("t.yml", "services:\n  - name: web\n\timage: x\n").expect_err("tab");
        assert_eq!((e.pos.line, e.pos.col), (3, 1), "{e}");
        assert!(e.message.contains("a tab in the indentation"), "{e}");
        let e = parse("t.yml", "a:\n  b: 1\n  \tc: 2\n").expect_err("tab");
        assert_eq!((e.pos.line, e.pos.col), (3, 3), "{e}");
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = parse("m.yml", "a: &x [1, 2]\nb: *x\n").expect("parses");
        let NodeKind::Map(entries) = &root.kind else {
            panic!("root is not a map")
        };
        assert_eq!(entries[0].1.kind, entries[1].1.kind);
        assert_eq!(entries[1].1.pos.line, 2);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("m.yml", "a: [1, 2\nb: 3\n").expect_err("unclosed flow list");
        assert_eq!(&*err.pos.file, "m.yml");
        assert!(err.pos.line >= 1);
    }

    #[test]
    fn empty_document_is_null() {
        assert!(parse("m.yml", "").expect("parses").is_null());
        assert!(parse("m.yml", "# only a comment\n")
            .expect("parses")
            .is_null());
    }
}
