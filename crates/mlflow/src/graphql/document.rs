//! A parser for GraphQL executable documents (the queries a web client sends),
//! for a server that answers a fixed set of operations.
//!
//! The input is untrusted, so every failure is an `Err`, and the text size, the
//! nesting depth and the size of the tree after fragment expansion are bounded.
//! The parser recurses only where the document nests, so the nesting limit also
//! bounds its stack use.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use lexer::{located, over, Tok};

/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// The deepest nesting accepted, counting selection sets, list and object values
/// and list types together.
pub const MAX_DEPTH: usize = 64;
/// The most selections a document may contain once fragment spreads are expanded.
pub const MAX_SELECTIONS: usize = 10_000;

/// A parsed executable document, with every fragment spread already expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The operations, in the order they appear in the text.
    pub operations: Vec<Operation>,
}

/// The root type an operation runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// A `query`, which is also what the `{ ... }` shorthand means.
    Query,
    /// A `mutation`.
    Mutation,
    /// A `subscription`.
    Subscription,
}

/// One operation definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Whether this is a query, a mutation or a subscription.
    pub kind: OperationKind,
    /// The operation's name, or `None` when it is anonymous.
    pub name: Option<String>,
    /// The top-level selection set.
    pub selection: Vec<Selection>,
}

/// One entry of a selection set.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// A field to resolve.
    Field(Field),
    /// An inline fragment, or a fragment spread replaced by its fragment's body.
    InlineFragment {
        /// The type the fragment applies to; `None` means it always applies.
        type_condition: Option<String>,
        /// The selections inside the fragment.
        selection: Vec<Selection>,
    },
}

/// A field selection such as `alias: name(arg: 1) { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The alias the client asked for, if any.
    pub alias: Option<String>,
    /// The name of the field in the schema.
    pub name: String,
    /// The arguments in the order written.
    pub arguments: Vec<(String, Value)>,
    /// The sub-selections; empty for a leaf field.
    pub selection: Vec<Selection>,
}

impl Field {
    /// The key of this field in the response: the alias, else the name.
    pub fn response_key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// An input value written in the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A reference to a variable, `$name`, holding the name without the `$`.
    Variable(String),
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A literal with a fraction or an exponent.
    Float(f64),
    /// A string or block string, with escapes and indentation already processed.
    String(String),
    /// An enum value: any other bare name.
    Enum(String),
    /// A list literal.
    List(Vec<Value>),
    /// An input object literal, fields in the order written.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The value as JSON, with variables substituted from `variables` (a missing
    /// variable becomes JSON null), enum values as JSON strings, and Int and Float
    /// as JSON numbers.
    pub fn to_json(&self, variables: &Map<String, Json>) -> Json {
        match self {
            Value::Variable(name) => variables.get(name).cloned().unwrap_or(Json::Null),
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            // The parser rejects non-finite floats, so null is never produced for parsed values.
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::String(s) | Value::Enum(s) => Json::String(s.clone()),
            Value::List(items) => Json::Array(items.iter().map(|v| v.to_json(variables)).collect()),
            Value::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json(variables)))
                    .collect(),
            ),
        }
    }
}

impl Document {
    /// The operation to run: the one called `name` when a name is given, else the
    /// only one. The error messages are worded like graphql-core's.
    pub fn operation(&self, name: Option<&str>) -> Result<&Operation, String> {
        match name {
            Some(name) => self
                .operations
                .iter()
                .find(|op| op.name.as_deref() == Some(name))
                .ok_or_else(|| format!("Unknown operation named '{name}'.")),
            None => match self.operations.as_slice() {
                [op] => Ok(op),
                [] => Err("Must provide an operation.".to_string()),
                _ => Err(
                    "Must provide operation name if query contains multiple operations."
                        .to_string(),
                ),
            },
        }
    }
}

/// Parses an executable document and expands its fragment spreads.
///
/// Syntax errors are worded like graphql-core's and end with
/// ` (line L, column C)`, where the column counts Unicode characters from 1.
pub fn parse(text: &str) -> Result<Document, String> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(over(
            format_args!("is {} bytes", text.len()),
            MAX_DOCUMENT_BYTES,
        ));
    }
    let mut parser = Parser::new(text)?;
    let mut operations = parser.document()?;
    for op in &mut operations {
        op.selection = parser.expand(std::mem::take(&mut op.selection), 1)?;
    }
    Ok(Document { operations })
}

const LONE_ANONYMOUS: &str = "This anonymous operation must be the only defined operation.";

/// Fragment definitions by name: type condition, unexpanded selections, and
/// length of the definition's text, which is what expanding it costs.
type Fragments = HashMap<String, (String, Vec<Selection>, usize)>;

/// A recursive-descent parser with one token of lookahead, which then expands
/// fragment spreads. Tokens are read on demand so that, as in graphql-js, the
/// first error in reading order is the one reported.
#[derive(Default)]
struct Parser<'a> {
    text: &'a str,
    /// Where the lexer reads next.
    pos: usize,
    tok: Tok<'a>,
    /// Where `tok` starts.
    start: usize,
    depth: usize,
    fragments: Fragments,
    /// The fragments being expanded, outermost first, to detect cycles.
    active: Vec<String>,
    /// Selections produced by expansion so far.
    selections: usize,
    /// Bytes of fragment text copied by expansion so far.
    copied: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, String> {
        let mut parser = Parser {
            text,
            ..Parser::default()
        };
        parser.advance()?;
        Ok(parser)
    }

    /// Enters one level of nesting, at byte `at`; `depth` is decremented on the
    /// way out only on success, as any error ends the parse.
    fn nest(&mut self, at: usize) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(located(self.text, at, &over("nests too deeply", MAX_DEPTH)));
        }
        Ok(())
    }

    fn document(&mut self) -> Result<Vec<Operation>, String> {
        let mut operations = Vec::new();
        // At least one definition, so that an empty document is "Unexpected <EOF>".
        loop {
            match self.tok {
                Tok::Name("fragment") => self.fragment()?,
                _ => operations.push(self.operation()?),
            }
            if self.tok == Tok::Eof {
                break;
            }
        }
        // Two validation rules, without which operation() could pick the wrong one.
        let mut names = HashSet::new();
        let named = operations.iter().filter_map(|op| op.name.as_ref());
        if let Some(name) = named.clone().find(|name| !names.insert(*name)) {
            return Err(format!("There can be only one operation named '{name}'."));
        }
        if named.count() < operations.len() && operations.len() > 1 {
            return Err(LONE_ANONYMOUS.to_string());
        }
        Ok(operations)
    }

    fn operation(&mut self) -> Result<Operation, String> {
        let (kind, name) = match self.tok {
            Tok::Punct("{") => (OperationKind::Query, None),
            Tok::Name(keyword @ ("query" | "mutation" | "subscription")) => {
                self.advance()?;
                let kind = match keyword {
                    "query" => OperationKind::Query,
                    "mutation" => OperationKind::Mutation,
                    _ => OperationKind::Subscription,
                };
                let named = matches!(self.tok, Tok::Name(_));
                let name = named.then(|| self.name()).transpose()?;
                // Variable definitions are checked but not kept: the server
                // knows each operation's variables already.
                if self.skip("(")? {
                    loop {
                        self.expect("$")?;
                        self.name()?;
                        self.expect(":")?;
                        self.type_ref()?;
                        if self.skip("=")? {
                            self.value(true)?;
                        }
                        self.directives(true)?;
                        if self.skip(")")? {
                            break;
                        }
                    }
                }
                self.directives(false)?;
                (kind, name)
            }
            _ => return Err(self.unexpected()),
        };
        let selection = self.selection_set()?;
        let operation = Operation {
            kind,
            name,
            selection,
        };
        Ok(operation)
    }

    fn fragment(&mut self) -> Result<(), String> {
        let start = self.start;
        self.advance()?;
        if self.tok == Tok::Name("on") {
            return Err(self.unexpected());
        }
        let name = self.name()?;
        if self.tok != Tok::Name("on") {
            return Err(self.expected("\"on\""));
        }
        self.advance()?;
        let type_condition = self.name()?;
        self.directives(false)?;
        let selection = self.selection_set()?;
        let cost = self.start - start;
        if self.fragments.contains_key(&name) {
            return Err(format!("There can be only one fragment named '{name}'."));
        }
        self.fragments
            .insert(name, (type_condition, selection, cost));
        Ok(())
    }

    /// Parses a type reference, which is only checked.
    fn type_ref(&mut self) -> Result<(), String> {
        let at = self.start;
        if self.skip("[")? {
            self.nest(at)?;
            self.type_ref()?;
            self.expect("]")?;
            self.depth -= 1;
        } else {
            self.name()?;
        }
        self.skip("!")?;
        Ok(())
    }

    /// Parses directives, which are only checked.
    fn directives(&mut self, constant: bool) -> Result<(), String> {
        while self.skip("@")? {
            self.name()?;
            self.arguments(constant)?;
        }
        Ok(())
    }

    fn arguments(&mut self, constant: bool) -> Result<Vec<(String, Value)>, String> {
        let mut arguments = Vec::new();
        if self.skip("(")? {
            loop {
                let name = self.name()?;
                self.expect(":")?;
                arguments.push((name, self.value(constant)?));
                if self.skip(")")? {
                    break;
                }
            }
        }
        Ok(arguments)
    }

    fn selection_set(&mut self) -> Result<Vec<Selection>, String> {
        let at = self.start;
        self.expect("{")?;
        self.nest(at)?;
        let mut selections = vec![self.selection()?];
        while !self.skip("}")? {
            selections.push(self.selection()?);
        }
        self.depth -= 1;
        Ok(selections)
    }

    fn selection(&mut self) -> Result<Selection, String> {
        if self.skip("...")? {
            let type_condition = match self.tok {
                Tok::Name("on") => {
                    self.advance()?;
                    Some(self.name()?)
                }
                Tok::Name(name) => {
                    self.advance()?;
                    self.directives(false)?;
                    // A spread is marked as an inline fragment with no selections,
                    // which the grammar cannot produce; expansion replaces it.
                    return Ok(inline(Some(name.to_string()), Vec::new()));
                }
                _ => None,
            };
            self.directives(false)?;
            return Ok(inline(type_condition, self.selection_set()?));
        }
        let first = self.name()?;
        let (alias, name) = match self.skip(":")? {
            true => (Some(first), self.name()?),
            false => (None, first),
        };
        let arguments = self.arguments(false)?;
        self.directives(false)?;
        let selection = match self.tok {
            Tok::Punct("{") => self.selection_set()?,
            _ => Vec::new(),
        };
        let field = Field {
            alias,
            name,
            arguments,
            selection,
        };
        Ok(Selection::Field(field))
    }

    fn value(&mut self, constant: bool) -> Result<Value, String> {
        let at = self.start;
        let scalar = match &self.tok {
            Tok::Punct("[" | "{") => return self.list_or_object(constant),
            Tok::Punct("$") => {
                self.advance()?;
                let name = self.name()?;
                if constant {
                    let msg = format!("Unexpected variable \"${name}\" in constant value.");
                    return Err(self.error(at, msg));
                }
                return Ok(Value::Variable(name));
            }
            Tok::Int(s) => Value::Int(s.parse().map_err(|_| {
                self.error(at, format!("Int \"{s}\" does not fit in a 64-bit integer."))
            })?),
            Tok::Float(s) => match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Value::Float(f),
                _ => return Err(self.error(at, format!("Float \"{s}\" is out of range."))),
            },
            Tok::Str(s) | Tok::Block(s) => Value::String(s.clone()),
            Tok::Name("true") => Value::Bool(true),
            Tok::Name("false") => Value::Bool(false),
            Tok::Name("null") => Value::Null,
            Tok::Name(name) => Value::Enum((*name).to_string()),
            _ => return Err(self.unexpected()),
        };
        self.advance()?;
        Ok(scalar)
    }

    fn list_or_object(&mut self, constant: bool) -> Result<Value, String> {
        self.nest(self.start)?;
        let value = if self.skip("[")? {
            let mut items = Vec::new();
            while !self.skip("]")? {
                items.push(self.value(constant)?);
            }
            Value::List(items)
        } else {
            self.expect("{")?;
            let mut fields = Vec::new();
            while !self.skip("}")? {
                let name = self.name()?;
                self.expect(":")?;
                fields.push((name, self.value(constant)?));
            }
            Value::Object(fields)
        };
        self.depth -= 1;
        Ok(value)
    }
}

/// Expansion of fragment spreads, bounding the result's depth, its number of
/// selections and the bytes of fragment text it copies, so that fragments that
/// spread each other several times cannot blow up.
impl Parser<'_> {
    fn expand(&mut self, raw: Vec<Selection>, depth: usize) -> Result<Vec<Selection>, String> {
        let mut out = Vec::with_capacity(raw.len());
        for item in raw {
            self.selections += 1;
            if self.selections > MAX_SELECTIONS {
                return Err(over("expands to too many selections", MAX_SELECTIONS));
            }
            if depth > MAX_DEPTH {
                return Err(over(
                    "nests too deeply once fragments are expanded",
                    MAX_DEPTH,
                ));
            }
            out.push(match item {
                Selection::Field(mut field) => {
                    let children = std::mem::take(&mut field.selection);
                    field.selection = self.expand(children, depth + 1)?;
                    Selection::Field(field)
                }
                Selection::InlineFragment {
                    type_condition,
                    selection,
                } if selection.is_empty() => {
                    self.spread(type_condition.unwrap_or_default(), depth)?
                }
                Selection::InlineFragment {
                    type_condition,
                    selection,
                } => inline(type_condition, self.expand(selection, depth + 1)?),
            });
        }
        Ok(out)
    }

    fn spread(&mut self, name: String, depth: usize) -> Result<Selection, String> {
        let Some(&(_, _, cost)) = self.fragments.get(&name) else {
            return Err(format!("Unknown fragment '{name}'."));
        };
        if let Some(i) = self.active.iter().position(|a| *a == name) {
            let later = self.active.get(i + 1..).unwrap_or_default();
            let via: String = later.iter().map(|n| format!(", '{n}'")).collect();
            let via = via.strip_prefix(", ").map(|v| format!(" via {v}"));
            let via = via.unwrap_or_default();
            return Err(format!(
                "Cannot spread fragment '{name}' within itself{via}."
            ));
        }
        // Charged before cloning, so the copies never outgrow the budget.
        self.copied += cost;
        if self.copied > MAX_DOCUMENT_BYTES {
            return Err(over(
                "copies too many bytes of fragments",
                MAX_DOCUMENT_BYTES,
            ));
        }
        let (type_condition, raw, _) = self.fragments.get(&name).cloned().unwrap_or_default();
        self.active.push(name);
        let selection = self.expand(raw, depth + 1)?;
        self.active.pop();
        Ok(inline(Some(type_condition), selection))
    }
}

/// Builds an inline fragment.
fn inline(type_condition: Option<String>, selection: Vec<Selection>) -> Selection {
    Selection::InlineFragment {
        type_condition,
        selection,
    }
}

mod lexer;
#[cfg(test)]
mod tests;
