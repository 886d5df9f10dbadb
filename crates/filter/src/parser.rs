//! The recursive-descent parser behind [`parse_filter`] and [`parse_order_by`].

use super::*;

mod attributes;
use attributes::attribute_table;

/// Which grammar is being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Filter,
    OrderBy,
}

/// The kind of field an entity prefix selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Prefix {
    fn from_name(name: &str) -> Option<Prefix> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "metric" | "metrics" => Some(Prefix::Metric),
            "param" | "params" | "parameter" | "parameters" => Some(Prefix::Param),
            "tag" | "tags" => Some(Prefix::Tag),
            "attribute" | "attributes" | "attr" | "run" => Some(Prefix::Attribute),
            "dataset" | "datasets" => Some(Prefix::Dataset),
            _ => None,
        }
    }
}

/// The canonical names in an attribute table (aliases left out), for error messages.
fn canonical_names(table: &[(&str, Attribute)]) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(spelling, a)| *spelling == a.name())
        .map(|(spelling, _)| *spelling)
        .collect();
    names.join(", ")
}

/// The entity's plural noun in messages, e.g. "registered models".
fn plural(entity: Entity) -> &'static str {
    match entity {
        Entity::Run => "runs",
        Entity::Experiment => "experiments",
        Entity::RegisteredModel => "registered models",
        Entity::ModelVersion => "model versions",
    }
}

/// The comparator list used in "expected a comparison operator" messages.
const OPERATOR_LIST: &str = "=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL";

/// The message for an `OR` keyword.
const OR_MESSAGE: &str =
    "unsupported operator OR: MLflow's search grammar only supports AND between clauses";

/// The longest token quoted back in an error message.
const MAX_TOKEN_CHARS: usize = 40;

/// A hand-written recursive-descent parser over the input's characters.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    entity: Entity,
    mode: Mode,
}

impl Parser {
    fn new(input: &str, entity: Entity, mode: Mode) -> Self {
        Parser {
            chars: input.chars().collect(),
            pos: 0,
            entity,
            mode,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Source text between two positions.
    fn text(&self, start: usize, end: usize) -> String {
        let end = end.min(self.chars.len());
        let start = start.min(end);
        self.chars[start..end].iter().collect()
    }

    fn err(&self, position: usize, message: impl Into<String>) -> FilterError {
        match self.mode {
            Mode::Filter => FilterError::new(position, message),
            Mode::OrderBy => FilterError::order_by(position, message),
        }
    }

    fn end_description(&self) -> &'static str {
        match self.mode {
            Mode::Filter => "end of filter",
            Mode::OrderBy => "end of order_by clause",
        }
    }

    /// End (exclusive) of the run of `pred` characters starting at `pos`.
    fn scan(&self, pos: usize, pred: impl Fn(char) -> bool) -> usize {
        let mut end = pos;
        while self.chars.get(end).is_some_and(|&c| pred(c)) {
            end += 1;
        }
        end
    }

    /// End (exclusive) of the token starting at `pos`, for error messages.
    fn token_end(&self, pos: usize) -> usize {
        let Some(&c) = self.chars.get(pos) else {
            return pos;
        };
        if matches!(c, '\'' | '"' | '`') {
            let mut i = pos + 1;
            while let Some(&ch) = self.chars.get(i) {
                if ch == '\\' {
                    i += 2;
                } else if ch == c {
                    return i + 1;
                } else {
                    i += 1;
                }
            }
            self.chars.len()
        } else if is_op_char(c) {
            self.scan(pos, is_op_char)
        } else if !is_identifier_terminator(c) {
            self.scan(pos, |ch| !is_identifier_terminator(ch))
        } else {
            pos + 1
        }
    }

    /// Describes the token at `pos` as `"tok"`, or the end of the input.
    fn describe(&self, pos: usize) -> String {
        match self.chars.get(pos) {
            None => return self.end_description().to_string(),
            Some(c) if c.is_whitespace() => return "whitespace".to_string(),
            Some(_) => {}
        }
        let end = self.token_end(pos);
        let mut token: String = self.text(pos, end);
        if token.chars().count() > MAX_TOKEN_CHARS {
            token = token.chars().take(MAX_TOKEN_CHARS).collect();
            token.push_str("...");
        }
        format!("\"{token}\"")
    }

    /// Whether the word at `pos` is the keyword `kw` (ASCII case-insensitive).
    fn keyword_at(&self, pos: usize, kw: &str) -> bool {
        let end = self.scan(pos, is_word_char);
        end > pos && self.text(pos, end).eq_ignore_ascii_case(kw)
    }

    /// Consumes the keyword `kw` if it is next.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.keyword_at(self.pos, kw) {
            self.pos = self.scan(self.pos, is_word_char);
            true
        } else {
            false
        }
    }

    /// "expected X, found Y" at `pos`, or the OR error when Y is the OR keyword.
    fn unexpected(&self, pos: usize, expected: &str) -> FilterError {
        if self.mode == Mode::Filter && self.keyword_at(pos, "or") {
            return self.err(pos, OR_MESSAGE);
        }
        self.err(
            pos,
            format!("expected {expected}, found {}", self.describe(pos)),
        )
    }

    fn identifier_expected(&self) -> &'static str {
        match self.entity {
            Entity::Run => {
                "an identifier (metrics.<key>, params.<key>, tags.<key>, attributes.<name>, \
                 datasets.<field> or an attribute name)"
            }
            Entity::Experiment | Entity::RegisteredModel | Entity::ModelVersion => {
                "an identifier (tags.<key>, attributes.<name> or an attribute name)"
            }
        }
    }

    /// Parses a quoted string or key starting at the current position (a quote character).
    fn parse_quoted(&mut self, what: &str) -> Result<String, FilterError> {
        let start = self.pos;
        let Some(quote) = self.peek() else {
            return Err(self.unexpected(start, what));
        };
        let mut out = String::new();
        let mut i = start + 1;
        while let Some(&c) = self.chars.get(i) {
            if c == '\\' {
                match self.chars.get(i + 1) {
                    Some(&next) if next == quote || next == '\\' => {
                        out.push(next);
                        i += 2;
                    }
                    _ => {
                        out.push('\\');
                        i += 1;
                    }
                }
            } else if c == quote {
                self.pos = i + 1;
                return Ok(out);
            } else {
                out.push(c);
                i += 1;
            }
        }
        Err(self.err(
            start,
            format!("unterminated {what} starting at position {start}"),
        ))
    }

    /// Parses a quoted key, which may not be empty.
    fn parse_quoted_key(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let key = self.parse_quoted("quoted key")?;
        if key.is_empty() {
            return Err(self.err(
                start,
                "expected a key inside the quotes, found an empty key",
            ));
        }
        Ok(key)
    }

    /// Parses an identifier and resolves it to a field valid for the entity and mode.
    /// Returns the field and its source text.
    fn parse_field(&mut self) -> Result<(Field, String), FilterError> {
        let start = self.pos;
        let Some(first) = self.peek() else {
            return Err(self.unexpected(start, self.identifier_expected()));
        };
        if first == '`' || first == '"' {
            let name = self.parse_quoted_key()?;
            if self.peek() == Some('.') {
                self.pos += 1;
                let key_pos = self.pos;
                let key = match self.peek() {
                    Some('`' | '"') => self.parse_quoted_key()?,
                    _ => {
                        let end = self.scan(key_pos, |c| !is_identifier_terminator(c));
                        if end == key_pos {
                            let expected = format!("a key after {}", self.text(start, key_pos));
                            return Err(self.unexpected(key_pos, &expected));
                        }
                        self.check_plain_key(key_pos, end)?;
                        self.pos = end;
                        self.text(key_pos, end)
                    }
                };
                return self.resolve(start, Some((name, start)), key, key_pos);
            }
            return self.resolve(start, None, name, start);
        }

        let end = self.scan(start, |c| !is_identifier_terminator(c));
        if end == start {
            return Err(self.unexpected(start, self.identifier_expected()));
        }
        let run: Vec<char> = self.chars[start..end].to_vec();
        if self.mode == Mode::Filter && self.text(start, end).eq_ignore_ascii_case("or") {
            return Err(self.err(start, OR_MESSAGE));
        }
        let Some(dot) = run.iter().position(|&c| c == '.') else {
            self.pos = end;
            let name: String = run.iter().collect();
            return self.resolve(start, None, name, start);
        };
        if dot == 0 {
            return Err(self.unexpected(start, self.identifier_expected()));
        }
        let prefix: String = run[..dot].iter().collect();
        let key_pos = start + dot + 1;
        let key = if key_pos == end {
            self.pos = end;
            match self.peek() {
                Some('`' | '"') => self.parse_quoted_key()?,
                _ => {
                    let expected = format!("a key after {}", self.text(start, key_pos));
                    return Err(self.unexpected(key_pos, &expected));
                }
            }
        } else {
            self.check_plain_key(key_pos, end)?;
            self.pos = end;
            self.text(key_pos, end)
        };
        self.resolve(start, Some((prefix, start)), key, key_pos)
    }

    /// Rejects characters that need quoting in an unquoted key.
    fn check_plain_key(&self, start: usize, end: usize) -> Result<(), FilterError> {
        for i in start..end {
            if let Some(&c) = self.chars.get(i) {
                if !is_plain_key_char(c) {
                    return Err(self.err(
                        i,
                        format!(
                            "invalid character '{c}' in key \"{}\"; quote keys containing \
                             special characters with backticks",
                            self.text(start, end)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Maps an (optional) entity prefix and a key to a field.
    fn resolve(
        &self,
        start: usize,
        prefix: Option<(String, usize)>,
        key: String,
        key_pos: usize,
    ) -> Result<(Field, String), FilterError> {
        let source = self.text(start, self.pos);
        let kind = match prefix {
            None => Prefix::Attribute,
            Some((name, pos)) => Prefix::from_name(&name).ok_or_else(|| {
                self.err(
                    pos,
                    format!(
                        "unknown entity type '{name}' in {source}; expected one of metric(s), \
                         param(s), parameter(s), tag(s), attribute(s), attr, run, dataset(s)"
                    ),
                )
            })?,
        };
        if self.entity != Entity::Run
            && matches!(kind, Prefix::Metric | Prefix::Param | Prefix::Dataset)
        {
            let verb = match self.mode {
                Mode::Filter => "filtered",
                Mode::OrderBy => "ordered",
            };
            let noun = plural(self.entity);
            return Err(self.err(
                start,
                format!("{noun} can be {verb} by attributes and tags only, found {source}"),
            ));
        }
        let field = match kind {
            Prefix::Metric => Field::Metric(key),
            Prefix::Param => Field::Param(key),
            Prefix::Tag => Field::Tag(key),
            Prefix::Attribute => {
                let table = attribute_table(self.entity, self.mode);
                let attribute = table
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map(|&(_, a)| a)
                    .ok_or_else(|| {
                        self.err(
                            key_pos,
                            format!(
                                "unknown attribute '{key}' for {}; valid attributes: {}",
                                plural(self.entity),
                                canonical_names(table)
                            ),
                        )
                    })?;
                Field::Attribute(attribute)
            }
            Prefix::Dataset => {
                if self.mode == Mode::OrderBy {
                    return Err(self.err(
                        start,
                        format!(
                            "datasets cannot be used in order_by, found {source}; order by \
                             metrics, params, tags or attributes"
                        ),
                    ));
                }
                let field = match key.as_str() {
                    "name" => DatasetField::Name,
                    "digest" => DatasetField::Digest,
                    "context" => DatasetField::Context,
                    _ => {
                        return Err(self.err(
                            key_pos,
                            format!(
                                "unknown dataset field '{key}'; valid fields: name, digest, context"
                            ),
                        ))
                    }
                };
                Field::Dataset(field)
            }
        };
        Ok((field, source))
    }

    /// Parses a comparator after `field_text`.
    fn parse_op(&mut self, field_text: &str) -> Result<Op, FilterError> {
        let pos = self.pos;
        let expected = format!("a comparison operator ({OPERATOR_LIST}) after {field_text}");
        let Some(c) = self.peek() else {
            return Err(self.unexpected(pos, &expected));
        };
        if is_op_char(c) {
            let end = self.scan(pos, is_op_char);
            let op = match self.text(pos, end).as_str() {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Err(self.unexpected(pos, &expected)),
            };
            self.pos = end;
            return Ok(op);
        }
        if self.eat_keyword("like") {
            Ok(Op::Like)
        } else if self.eat_keyword("ilike") {
            Ok(Op::ILike)
        } else if self.eat_keyword("in") {
            Ok(Op::In)
        } else if self.eat_keyword("not") {
            self.skip_ws();
            if self.eat_keyword("in") {
                Ok(Op::NotIn)
            } else {
                Err(self.unexpected(self.pos, "IN after NOT"))
            }
        } else if self.eat_keyword("is") {
            self.skip_ws();
            if self.eat_keyword("null") {
                Ok(Op::IsNull)
            } else if self.eat_keyword("not") {
                self.skip_ws();
                if self.eat_keyword("null") {
                    Ok(Op::IsNotNull)
                } else {
                    Err(self.unexpected(self.pos, "NULL after IS NOT"))
                }
            } else {
                Err(self.unexpected(self.pos, "NULL or NOT NULL after IS"))
            }
        } else {
            Err(self.unexpected(pos, &expected))
        }
    }

    /// End (exclusive) of a well-formed number starting at `pos`, if there is one.
    fn number_end(&self, pos: usize) -> Option<usize> {
        let mut i = pos;
        if matches!(self.chars.get(i), Some('+' | '-')) {
            i += 1;
        }
        let int_end = self.scan(i, |c| c.is_ascii_digit());
        let mut digits = int_end - i;
        i = int_end;
        if self.chars.get(i) == Some(&'.') {
            let frac_end = self.scan(i + 1, |c| c.is_ascii_digit());
            digits += frac_end - (i + 1);
            i = frac_end;
        }
        if digits == 0 {
            return None;
        }
        if matches!(self.chars.get(i), Some('e' | 'E')) {
            let mut j = i + 1;
            if matches!(self.chars.get(j), Some('+' | '-')) {
                j += 1;
            }
            let exp_end = self.scan(j, |c| c.is_ascii_digit());
            if exp_end > j {
                i = exp_end;
            }
        }
        match self.chars.get(i) {
            Some(&c) if is_word_char(c) || c == '.' => None,
            _ => Some(i),
        }
    }

    /// Parses a single string or number value for `field` after `op`.
    fn parse_scalar(
        &mut self,
        field: &Field,
        field_text: &str,
        op: Op,
    ) -> Result<Value, FilterError> {
        let pos = self.pos;
        let numeric = field.is_numeric();
        match self.peek() {
            None => Err(self.unexpected(pos, &format!("a value after {op}"))),
            Some('\'' | '"') => {
                let s = self.parse_quoted("string")?;
                if numeric {
                    return Err(self.err(
                        pos,
                        format!(
                            "expected a number for {field_text}, found string {}",
                            self.text(pos, self.pos)
                        ),
                    ));
                }
                Ok(Value::Str(s))
            }
            Some(_) => {
                match self.number_end(pos) {
                    Some(end) => {
                        let text = self.text(pos, end);
                        if !numeric {
                            return Err(self.err(
                            pos,
                            format!("expected a quoted string for {field_text}, found number {text}"),
                        ));
                        }
                        let n = text
                            .trim_start_matches('+')
                            .parse::<f64>()
                            .map_err(|_| self.err(pos, format!("invalid number {text}")))?;
                        if !n.is_finite() {
                            return Err(self.err(pos, format!("number {text} is out of range")));
                        }
                        self.pos = end;
                        Ok(Value::Number(n))
                    }
                    None => {
                        let expected = if numeric {
                            format!("a number for {field_text}")
                        } else {
                            format!("a quoted string for {field_text}")
                        };
                        Err(self.unexpected(pos, &expected))
                    }
                }
            }
        }
    }

    /// Parses `( 'a', "b", ... )` after IN / NOT IN.
    fn parse_list(&mut self, op: Op) -> Result<Value, FilterError> {
        let pos = self.pos;
        if self.peek() != Some('(') {
            let expected = format!("a parenthesised list of quoted strings after {op}");
            return Err(self.unexpected(pos, &expected));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('\'' | '"') => items.push(self.parse_quoted("string")?),
                _ => {
                    let expected = format!("a quoted string in the list after {op}");
                    return Err(self.unexpected(self.pos, &expected));
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => {
                    let expected = format!(", or ) in the list after {op}");
                    return Err(self.unexpected(self.pos, &expected));
                }
            }
        }
    }

    /// Parses `identifier comparator value`.
    fn parse_clause(&mut self) -> Result<Clause, FilterError> {
        let (field, field_text) = self.parse_field()?;
        self.skip_ws();
        let op_pos = self.pos;
        let op = self.parse_op(&field_text)?;
        let allowed = field.allowed_ops();
        if !allowed.contains(&op) {
            let list: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
            return Err(self.err(
                op_pos,
                format!(
                    "operator {op} is not allowed for {field_text}; allowed operators: {}",
                    list.join(", ")
                ),
            ));
        }
        self.skip_ws();
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::None,
            Op::In | Op::NotIn => self.parse_list(op)?,
            _ => self.parse_scalar(&field, &field_text, op)?,
        };
        Ok(Clause { field, op, value })
    }
}

/// Parses a search filter such as `metrics.auc > 0.9 AND params.model = 'rf'`.
///
/// An empty or whitespace-only input yields an empty [`Filter`].
///
/// A filter is at most [`MAX_FILTER_CHARS`] characters, [`MAX_CLAUSES`] clauses and
/// [`MAX_LIST_VALUES`] values in its `IN` lists altogether; past a limit it is an error
/// (the services answer `INVALID_ARGUMENT`), so no filter can cost the database more
/// than a bounded amount.
pub fn parse_filter(input: &str, entity: Entity) -> Result<Filter, FilterError> {
    limits::check_length(input)?;
    let mut p = Parser::new(input, entity, Mode::Filter);
    p.skip_ws();
    let mut clauses = Vec::new();
    if p.at_end() {
        return Ok(Filter { clauses });
    }
    let mut budget = limits::Budget::default();
    loop {
        let start = p.pos;
        budget.clause(start)?;
        let clause = p.parse_clause()?;
        budget.values(start, &clause.value)?;
        clauses.push(clause);
        p.skip_ws();
        if p.at_end() {
            return Ok(Filter { clauses });
        }
        let pos = p.pos;
        if !p.eat_keyword("and") {
            return Err(p.unexpected(pos, "AND or end of filter"));
        }
        p.skip_ws();
    }
}

/// Parses one `order_by` clause such as `metrics.auc DESC` (ascending by default).
pub fn parse_order_by(input: &str, entity: Entity) -> Result<OrderBy, FilterError> {
    let mut p = Parser::new(input, entity, Mode::OrderBy);
    p.skip_ws();
    let (field, _) = p.parse_field()?;
    let after_field = p.pos;
    p.skip_ws();
    let mut ascending = true;
    if !p.at_end() {
        let pos = p.pos;
        if pos == after_field {
            return Err(p.unexpected(pos, "ASC, DESC or end of order_by clause"));
        }
        if p.eat_keyword("asc") {
            ascending = true;
        } else if p.eat_keyword("desc") {
            ascending = false;
        } else {
            return Err(p.unexpected(pos, "ASC, DESC or end of order_by clause"));
        }
        p.skip_ws();
        if !p.at_end() {
            return Err(p.unexpected(p.pos, "end of order_by clause"));
        }
    }
    Ok(OrderBy { field, ascending })
}
