//! Multi-document YAML into a tree of `Node`s that remember their spans.
//!
//! We build our own tree from `granit-parser` events (see
//! `docs/decisions/0001-yaml-parser.md`) because every later stage names places by JSON
//! pointer, and only a tree with spans can turn `/spec/tasks/3/needs/0` back into
//! `file:line:col`. Scalars resolve by the YAML 1.2 core schema (`NO` stays a string,
//! `0644` is the number 644); duplicate keys are errors; aliases are expanded under a node
//! budget so an alias bomb cannot exhaust an edge box. This module does not know what a
//! manifest is.

use std::collections::BTreeMap;
use std::sync::Arc;

use granit_parser::{Event, Parser, ScalarStyle, ScanError, StructureStyle};
use serde_json::{Map, Number, Value};

use crate::diagnostic::{Diagnostic, Location};
use crate::source::{JsonPointer, SourceFile, Span};

/// A YAML node and the span of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub span: Span,
    /// For scalars: whether it was written quoted or as a block (then it is always a string).
    pub quoted: bool,
    /// For collections: written in flow style (`{a: 1}`, `[1, 2]`), usually on one line.
    pub flow: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: always a scalar, kept as the text the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub span: Span,
}

/// One `---` document of a file: its index in the file and its root node.
#[derive(Debug, Clone)]
pub struct Document {
    pub index: usize,
    pub root: Node,
}

/// Limits on one file's YAML, protecting the daemon from hostile or accidental input.
#[derive(Debug, Clone, Copy)]
pub struct YamlLimits {
    /// Nodes per document after alias expansion.
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Default for YamlLimits {
    fn default() -> YamlLimits {
        YamlLimits {
            max_nodes: 200_000,
            max_depth: 64,
        }
    }
}

/// Parses every document of `file`.
///
/// Returns the documents that parsed and the problems found. A syntax error stops the file
/// (the parser cannot resynchronise), but the documents before it are kept so later checks
/// can still report on them.
pub fn parse(file: &Arc<SourceFile>, limits: YamlLimits) -> (Vec<Document>, Vec<Diagnostic>) {
    let options = granit_parser::options! {
        flow_nesting_limit: limits.max_depth,
        block_nesting_limit: limits.max_depth,
    };
    let parser = Parser::new_from_str_with_options(&file.text, options);
    let mut builder = Builder {
        file,
        limits,
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        nodes: 0,
        documents: Vec::new(),
        diagnostics: Vec::new(),
    };
    for event in parser {
        let step = match event {
            Ok((event, span)) => {
                let span = Span::new(
                    span.start.byte_offset().unwrap_or(0),
                    span.end.byte_offset().unwrap_or(0),
                );
                builder.on_event(event, span)
            }
            Err(error) => Err(syntax_error(file, &error)),
        };
        if let Err(diagnostic) = step {
            builder.diagnostics.push(*diagnostic);
            break;
        }
    }
    (builder.documents, builder.diagnostics)
}

fn syntax_error(file: &Arc<SourceFile>, error: &ScanError) -> Box<Diagnostic> {
    let mark = error.marker();
    let start = mark
        .byte_offset()
        .unwrap_or_else(|| offset_of(&file.text, mark.line(), mark.col()));
    let text = &file.text;
    let info = error.info();
    let line_start = text
        .get(..start.min(text.len()))
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|t| t.split('\n').next())
        .unwrap_or_default();
    let indent = &line[..line.len() - line.trim_start().len()];
    let (mut span, mut message, help) = (
        char_span(text, start),
        format!("invalid YAML: {info}"),
        syntax_help(&info),
    );
    let help = if let Some(tab) = indent.find('\t') {
        // Tabs are the most common cause of "bad indentation"; point at the tab itself.
        span = Span::new(line_start + tab, line_start + tab + 1);
        "invalid YAML: a tab is used for indentation".clone_into(&mut message);
        "indent with spaces; YAML does not allow tabs for indentation".to_owned()
    } else if info.contains("unknown anchor") {
        let rest = text.get(start..).unwrap_or_default();
        let name: String = rest
            .trim_start_matches('*')
            .chars()
            .take_while(|c| !c.is_whitespace() && !",]}".contains(*c))
            .collect();
        span = Span::new(
            start,
            start
                + rest
                    .find(|c: char| c.is_whitespace() || ",]}".contains(c))
                    .unwrap_or(rest.len()),
        );
        message = format!(
            "invalid YAML: alias `*{name}` refers to an anchor that is not defined before it in this document"
        );
        format!("define `&{name}` on a value earlier in the same document, or remove the alias")
    } else {
        help
    };
    Box::new(
        Diagnostic::error("manifest::yaml-syntax", message)
            .at(Location {
                file: file.clone(),
                span,
                pointer: None,
            })
            .with_label("here")
            .with_help(help),
    )
}

/// The one-character span at `start`.
fn char_span(text: &str, start: usize) -> Span {
    let end = text
        .get(start..)
        .and_then(|rest| rest.chars().next())
        .map_or(start, |c| start + c.len_utf8());
    Span::new(start, end)
}

/// What usually causes a parser message, in the user's terms.
fn syntax_help(info: &str) -> String {
    if info.contains("quoted scalar") {
        "a quoted string is probably missing its closing quote; the parser noticed only here"
            .to_owned()
    } else if info.contains("did not find expected") || info.contains("indentation") {
        "check the indentation of this line against the lines above; YAML nests by indentation"
            .to_owned()
    } else if info.contains("flow sequence")
        || info.contains("flow mapping")
        || info.contains("bracket")
    {
        "a `[` or `{` is probably missing its closing `]` or `}`".to_owned()
    } else {
        "fix the YAML syntax at this point".to_owned()
    }
}

/// Byte offset of a 1-based line and 0-based character column.
fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = text.get(line_start..).unwrap_or_default();
    line_start + rest.chars().take(col).map(char::len_utf8).sum::<usize>()
}

/// A collection being built, with where it started.
#[derive(Debug)]
enum Open {
    Seq {
        flow: bool,
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        flow: bool,
        start: Span,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
    },
}

#[derive(Debug)]
struct Builder<'a> {
    file: &'a Arc<SourceFile>,
    limits: YamlLimits,
    stack: Vec<Open>,
    anchors: BTreeMap<usize, Node>,
    nodes: usize,
    documents: Vec<Document>,
    diagnostics: Vec<Diagnostic>,
}

type Step = Result<(), Box<Diagnostic>>;

impl Builder<'_> {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Step {
        match event {
            Event::DocumentStart(..) => {
                self.anchors.clear();
                self.nodes = 0;
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let quoted = style != ScalarStyle::Plain || forced_string;
                let value = if quoted {
                    NodeValue::String(text.into_owned())
                } else {
                    resolve_plain(&text)
                };
                self.push_node(
                    Node {
                        value,
                        span,
                        quoted,
                        flow: false,
                    },
                    anchor,
                )
            }
            Event::SequenceStart(style, anchor, _) => {
                self.stack.push(Open::Seq {
                    flow: style == StructureStyle::Flow,
                    start: span,
                    anchor,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(style, anchor, _) => {
                self.stack.push(Open::Map {
                    flow: style == StructureStyle::Flow,
                    start: span,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(self
                        .error(span, "manifest::yaml-syntax", "alias to an unknown anchor")
                        .into());
                };
                let size = node.size();
                self.count(size, span)?;
                // The alias stands where it is used, but keeps the anchored content.
                self.place(Node { span, ..node })
            }
            _ => Ok(()),
        }
    }

    fn push_node(&mut self, node: Node, anchor: usize) -> Step {
        self.count(1, node.span)?;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.place(node)
    }

    fn count(&mut self, n: usize, span: Span) -> Step {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            let message = format!(
                "document has more than {} nodes (after expanding aliases)",
                self.limits.max_nodes
            );
            return Err(self
                .error(span, "manifest::limit", message)
                .with_help("split the document, or use fewer aliases; the limit protects the daemon from alias bombs")
                .into());
        }
        Ok(())
    }

    fn close(&mut self, end: Span) -> Step {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let (node, anchor) = match open {
            Open::Seq {
                start,
                anchor,
                items,
                flow,
            } => (
                Node {
                    value: NodeValue::Seq(items),
                    span: Span::new(start.start, end.end),
                    quoted: false,
                    flow,
                },
                anchor,
            ),
            Open::Map {
                start,
                anchor,
                entries,
                flow,
                ..
            } => (
                Node {
                    value: NodeValue::Map(entries),
                    span: Span::new(start.start, end.end),
                    quoted: false,
                    flow,
                },
                anchor,
            ),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.place(node)
    }

    /// Puts a finished node where it belongs: as a document root, a sequence item, a map key
    /// or a map value.
    fn place(&mut self, node: Node) -> Step {
        let file = self.file;
        match self.stack.last_mut() {
            None => {
                let index = self.documents.len();
                self.documents.push(Document { index, root: node });
                Ok(())
            }
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => {
                if let Some(key) = pending_key.take() {
                    entries.push((key, node));
                    Ok(())
                } else {
                    let Some(text) = node.scalar_text() else {
                        return Err(located(
                            file,
                            node.span,
                            "manifest::yaml-syntax",
                            "a mapping key must be a plain value, not a list or mapping",
                        )
                        .with_help("use a string key")
                        .into());
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        return Err(located(file, node.span, "manifest::duplicate-key", format!("duplicate key `{text}`"))
                        .with_label("second definition")
                        .with_related(Location { file: file.clone(), span: first.span, pointer: None }, "first defined here")
                        .with_help("remove one of them: YAML keys must be unique, and drover never guesses which one you meant")
                        .into());
                    }
                    *pending_key = Some(Key {
                        text,
                        span: node.span,
                    });
                    Ok(())
                }
            }
        }
    }

    fn error(&self, span: Span, code: &'static str, message: impl Into<String>) -> Diagnostic {
        located(self.file, span, code, message)
    }
}

fn located(
    file: &Arc<SourceFile>,
    span: Span,
    code: &'static str,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic::error(code, message).at(Location {
        file: file.clone(),
        span,
        pointer: None,
    })
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        _ => {}
    }
    if let Some(n) = resolve_int(text) {
        return NodeValue::Number(n);
    }
    if let Some(n) = resolve_float(text) {
        return NodeValue::Number(n);
    }
    NodeValue::String(text.to_owned())
}

fn resolve_int(text: &str) -> Option<Number> {
    let (radix, digits) = if let Some(octal) = text.strip_prefix("0o") {
        (8, octal)
    } else if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return text
            .parse::<i64>()
            .ok()
            .map(Number::from)
            .or_else(|| text.parse::<u64>().ok().map(Number::from));
    };
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().map(Number::from)
}

fn resolve_float(text: &str) -> Option<Number> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let looks_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && unsigned.chars().any(|c| c.is_ascii_digit());
    // `.inf` and `.nan` have no JSON form; they stay strings and fail type checks clearly.
    if !looks_numeric {
        return None;
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

impl Node {
    /// The text of a scalar node, as a mapping key would use it.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            NodeValue::Null => Some(String::new()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Number(n) => Some(n.to_string()),
            NodeValue::String(s) => Some(s.clone()),
            NodeValue::Seq(_) | NodeValue::Map(_) => None,
        }
    }

    /// Number of nodes in this subtree, for the alias budget.
    fn size(&self) -> usize {
        match &self.value {
            NodeValue::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeValue::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
            NodeValue::Null | NodeValue::Bool(_) | NodeValue::Number(_) | NodeValue::String(_) => 1,
        }
    }

    /// The JSON value of this subtree, as schema validation and typed decoding see it.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Number(n) => Value::Number(n.clone()),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => {
                let map: Map<String, Value> = entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect();
                Value::Object(map)
            }
        }
    }

    /// The child named by one pointer token.
    pub fn child(&self, token: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.text == token)
                .map(|(_, v)| v),
            NodeValue::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            NodeValue::Null | NodeValue::Bool(_) | NodeValue::Number(_) | NodeValue::String(_) => {
                None
            }
        }
    }

    /// The key node of a mapping entry.
    pub fn key(&self, token: &str) -> Option<&Key> {
        let NodeValue::Map(entries) = &self.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| k.text == token)
            .map(|(k, _)| k)
    }

    /// The node at `pointer`, or `None` if any step is missing.
    pub fn find(&self, pointer: &JsonPointer) -> Option<&Node> {
        pointer
            .tokens()
            .try_fold(self, |node, token| node.child(&token))
    }

    /// The span to underline for `pointer`: the node itself, or the deepest existing
    /// ancestor when the pointer names something missing.
    pub fn locate(&self, pointer: &JsonPointer) -> Span {
        let mut node = self;
        for token in pointer.tokens() {
            match node.child(&token) {
                Some(next) => node = next,
                None => break,
            }
        }
        node.head_span()
    }

    /// The span of the key that introduces the node at `pointer`, if it is a map entry;
    /// the best place to point at for "unknown field" and "duplicate name".
    pub fn locate_key(&self, pointer: &JsonPointer) -> Option<Span> {
        let tokens: Vec<String> = pointer.tokens().collect();
        let (last, parents) = tokens.split_last()?;
        let parent = parents
            .iter()
            .try_fold(self, |node, token| node.child(token))?;
        parent.key(last).map(|k| k.span)
    }

    /// For collections, only the first line: underlining a whole mapping is noise.
    pub fn head_span(&self) -> Span {
        if self.flow {
            return self.span;
        }
        match &self.value {
            NodeValue::Map(entries) => entries.first().map_or(self.span, |(k, _)| {
                Span::new(self.span.start.min(k.span.start), k.span.end)
            }),
            NodeValue::Seq(items) => items.first().map_or(self.span, |first| {
                Span::new(self.span.start.min(first.span.start), first.head_span().end)
            }),
            NodeValue::Null | NodeValue::Bool(_) | NodeValue::Number(_) | NodeValue::String(_) => {
                self.span
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
        parse(
            &Arc::new(SourceFile::new("t.yaml", text)),
            YamlLimits::default(),
        )
    }

    fn json(text: &str) -> Value {
        let (docs, diags) = parse_str(text);
        assert!(diags.is_empty(), "{diags:?}");
        docs.first().expect("one document").root.to_json()
    }

    #[test]
    fn scalars_follow_the_yaml_1_2_core_schema() {
        let v = json(
            "a: NO\nb: yes\nc: 0644\nd: '0644'\ne: 0o644\nf: 1.5\ng: ~\nh: true\ni: .inf\nj: 1e3\n",
        );
        assert_eq!(
            v,
            serde_json::json!({"a":"NO","b":"yes","c":644,"d":"0644","e":420,"f":1.5,"g":null,"h":true,"i":".inf","j":1000.0})
        );
    }

    #[test]
    fn multi_document_files_yield_each_document() {
        let (docs, diags) = parse_str("a: 1\n---\nb: 2\n---\n- 3\n");
        assert!(diags.is_empty());
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2].root.to_json(), serde_json::json!([3]));
    }

    #[test]
    fn duplicate_keys_are_errors_pointing_at_both() {
        let (_, diags) = parse_str("a: 1\nb: 2\na: 3\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, "manifest::duplicate-key");
        assert_eq!(diags[0].location.as_ref().unwrap().span, Span::new(10, 11));
        assert_eq!(diags[0].related[0].0.span, Span::new(0, 1));
    }

    #[test]
    fn syntax_errors_keep_earlier_documents() {
        let (docs, diags) = parse_str("a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(diags[0].code, "manifest::yaml-syntax");
    }

    #[test]
    fn alias_bombs_hit_the_node_budget() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        let (_, diags) = parse(
            &Arc::new(SourceFile::new("t.yaml", bomb)),
            YamlLimits {
                max_nodes: 10_000,
                max_depth: 64,
            },
        );
        assert_eq!(diags[0].code, "manifest::limit");
    }

    #[test]
    fn pointers_locate_nodes_and_keys() {
        let text = "spec:\n  tasks:\n    - name: a\n      needs: [b]\n";
        let (docs, _) = parse_str(text);
        let root = &docs[0].root;
        let needs = JsonPointer::from_escaped("/spec/tasks/0/needs/0");
        let span = root.locate(&needs);
        assert_eq!(&text[span.start..span.end], "b");
        let key = root
            .locate_key(&JsonPointer::from_escaped("/spec/tasks/0/needs"))
            .unwrap();
        assert_eq!(&text[key.start..key.end], "needs");
        // A missing child falls back to its deepest existing ancestor.
        let missing = root.locate(&JsonPointer::from_escaped("/spec/tasks/0/nope"));
        assert_eq!(&text[missing.start..missing.end], "name");
    }
}
