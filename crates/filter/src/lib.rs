//! MLflow's search filter and `order_by` grammar, shared by the services that search:
//! parsed here, and turned into SQL by the [`sql`] helpers their stores build on.
//!
//! This crate turns the strings accepted by `mlflow.search_runs(filter_string=...)`,
//! `mlflow.search_experiments(...)`, `MlflowClient.search_registered_models(...)`,
//! `MlflowClient.search_model_versions(...)` and their `order_by` arguments into a typed AST
//! ([`Filter`], [`OrderBy`]) for one [`Entity`]. It follows the behaviour of MLflow's
//! `mlflow/utils/search_utils.py`.
//!
//! - [`parse_filter`] and [`parse_order_by`]: the entry points (the private `parser`
//!   module, a recursive-descent parser);
//! - [`Filter`], [`Clause`], [`Field`], [`Op`], [`Value`], [`OrderBy`]: the AST, whose
//!   `Display` renders a form that parses back to the same value;
//! - [`FilterError`]: where the input went wrong and what was expected;
//! - the limits ([`MAX_FILTER_CHARS`], [`MAX_CLAUSES`], [`MAX_LIST_VALUES`],
//!   [`MAX_ORDER_BY`], and [`parse_order_by_list`] that applies the last): see
//!   [Limits](#limits) below;
//! - [`sql`]: the SQL side, shared by the stores: [`sql::SqlBuilder`] (`$n`-placeholder
//!   SQL that runs on SQLite and PostgreSQL, with the comparisons), [`sql::terms`] and
//!   [`sql::keyed_exists`] (a filter's clauses on key/value tables as one `EXISTS` per
//!   key), [`sql::tag_term`] (the same for entities with only tags) and
//!   [`sql::PageToken`]. Which columns and tables an entity has stays each store's
//!   business.
//!
//! # Filter grammar
//!
//! ```text
//! filter     := ws* [ clause ( AND clause )* ] ws*      (AND is case-insensitive; OR is rejected)
//! clause     := identifier comparator value
//! identifier := prefix "." key                           (prefix may also be quoted)
//!             | name                                     (a bare attribute name)
//! prefix     := metric | metrics                         -> Field::Metric    (runs only)
//!             | param | params | parameter | parameters  -> Field::Param     (runs only)
//!             | tag | tags                               -> Field::Tag
//!             | attribute | attributes | attr | run      -> Field::Attribute
//!             | dataset | datasets                       -> Field::Dataset   (runs only)
//!                                                        (prefixes are case-insensitive)
//! key        := plain-key | quoted-key
//! plain-key  := ( letter | digit | "_" | "-" | "." | "/" | ":" )+
//!                                                        (runs to the next whitespace or comparator,
//!                                                         so `metrics.val.loss` has key `val.loss`)
//! quoted-key := "`" char+ "`" | '"' char+ '"'           (may contain spaces; not empty)
//! name       := plain name without "." | quoted-key     (e.g. status, `Run name`)
//! comparator := "=" | "!=" | "<" | "<=" | ">" | ">=" | LIKE | ILIKE | IN | NOT IN
//!             | IS NULL | IS NOT NULL                   (keywords are case-insensitive)
//! value      := string | number | list                  (IS NULL / IS NOT NULL take none)
//! string     := "'" char* "'" | '"' char* '"'
//! list       := "(" string ( "," string )* ")"          (only after IN / NOT IN)
//! number     := [ "+" | "-" ] ( digit+ [ "." digit* ] | "." digit+ ) [ ( "e" | "E" ) [ "+" | "-" ] digit+ ]
//! ```
//!
//! Inside quoted strings and quoted keys a backslash escapes the closing quote character and
//! another backslash (`'it\'s'`, `'C:\\dir'`); any other backslash is kept literally.
//!
//! Attribute names are case-sensitive, as in MLflow:
//!
//! * runs: `run_id`, `run_name` (also quoted `run name`, `Run name`, `Run Name`), `status`,
//!   `start_time` (also `created`, `Created`), `end_time`, `user_id`, `artifact_uri`;
//! * experiments: `name`, `creation_time`, `last_update_time` (and, in `order_by` only,
//!   `experiment_id`);
//! * registered models: `name` (and, in `order_by` only, `creation_timestamp`,
//!   `last_updated_timestamp`);
//! * model versions: `name`, `version_number`, `run_id`, `source_path` in filters; `name`,
//!   `version_number`, `creation_timestamp`, `last_updated_timestamp` in `order_by`.
//!
//! Dataset fields are `name`, `digest` and `context`.
//!
//! # Type rules
//!
//! | field                           | comparators                           | value        |
//! |---------------------------------|---------------------------------------|--------------|
//! | metric                          | `= != < <= > >=`, `IS [NOT] NULL`     | number       |
//! | param, tag                      | `= != LIKE ILIKE`, `IS [NOT] NULL`    | string       |
//! | param, tag                      | `IN`, `NOT IN`                        | list         |
//! | numeric attribute               | `= != < <= > >=`                      | number       |
//! | string attribute, dataset field | `= != LIKE ILIKE`                     | string       |
//! | string attribute, dataset field | `IN`, `NOT IN`                        | list         |
//!
//! The numeric attributes are the timestamps (`start_time`/`created`, `end_time`,
//! `creation_time`, `last_update_time`, `creation_timestamp`, `last_updated_timestamp`) and
//! `version_number`; every other attribute is a string.
//!
//! # `order_by` grammar
//!
//! ```text
//! order_by := ws* identifier [ ws+ ( ASC | DESC ) ] ws*  (case-insensitive, ascending by default)
//! ```
//!
//! Metrics, params, tags and attributes can be ordered by (experiments, registered models and
//! model versions: tags and attributes only); dataset fields cannot.
//!
//! # Limits
//!
//! A filter is at most [`MAX_FILTER_CHARS`] characters (16 KiB), [`MAX_CLAUSES`] clauses
//! (200) and [`MAX_LIST_VALUES`] values in its `IN` lists altogether (1,000); a search has at
//! most [`MAX_ORDER_BY`] `order_by` clauses (10). Past a limit parsing fails with a
//! [`FilterError`] saying which limit, so the cost of a search on the database is bounded.
//!
//! # Errors
//!
//! Every error is a [`FilterError`] carrying the 0-based *character* offset of the offending
//! token (the input length when the input ended too early) and a message saying what was
//! expected and what was found.

use std::fmt;

/// Which kind of entity is searched: each accepts different fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// Runs (`search_runs`): metrics, params, tags, run attributes and datasets.
    Run,
    /// Experiments (`search_experiments`): experiment attributes and tags.
    Experiment,
    /// Registered models (`search_registered_models`): model attributes and tags.
    RegisteredModel,
    /// Model versions (`search_model_versions`): version attributes and tags.
    ModelVersion,
}

/// The left-hand side of a clause (or the subject of an `order_by`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `metrics.<key>` (runs only).
    Metric(String),
    /// `params.<key>` (runs only).
    Param(String),
    /// `tags.<key>`.
    Tag(String),
    /// `attributes.<name>` or a bare attribute name.
    Attribute(Attribute),
    /// `datasets.<name|digest|context>` (runs only).
    Dataset(DatasetField),
}

/// A built-in attribute of a run, an experiment, a registered model or a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// Run and model version: `run_id` (the run a version was registered from).
    RunId,
    /// Run: `run_name` (aliases `run name`, `Run name`, `Run Name`).
    RunName,
    /// Run: `status`.
    Status,
    /// Run: `start_time` (aliases `created`, `Created`).
    StartTime,
    /// Run: `end_time`.
    EndTime,
    /// Run: `user_id`.
    UserId,
    /// Run: `artifact_uri`.
    ArtifactUri,
    /// Experiment: `name`.
    ExperimentName,
    /// Experiment: `creation_time`.
    CreationTime,
    /// Experiment: `last_update_time`.
    LastUpdateTime,
    /// Experiment: `experiment_id` (orderable, not filterable).
    ExperimentId,
    /// Registered model and model version: `name` (of the model).
    ModelName,
    /// Model version: `version_number`.
    VersionNumber,
    /// Model version: `source_path` (where the version's files came from).
    SourcePath,
    /// Registered model and model version: `creation_timestamp` (orderable, not filterable).
    CreationTimestamp,
    /// Registered model and model version: `last_updated_timestamp` (orderable, not filterable).
    LastUpdatedTimestamp,
}

impl Attribute {
    /// Whether the attribute holds a number (a timestamp, a version number) rather than a string.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Attribute::StartTime
                | Attribute::EndTime
                | Attribute::CreationTime
                | Attribute::LastUpdateTime
                | Attribute::VersionNumber
                | Attribute::CreationTimestamp
                | Attribute::LastUpdatedTimestamp
        )
    }

    /// The canonical MLflow name of the attribute, e.g. `start_time`.
    pub fn name(self) -> &'static str {
        match self {
            Attribute::RunId => "run_id",
            Attribute::RunName => "run_name",
            Attribute::Status => "status",
            Attribute::StartTime => "start_time",
            Attribute::EndTime => "end_time",
            Attribute::UserId => "user_id",
            Attribute::ArtifactUri => "artifact_uri",
            Attribute::ExperimentName => "name",
            Attribute::CreationTime => "creation_time",
            Attribute::LastUpdateTime => "last_update_time",
            Attribute::ExperimentId => "experiment_id",
            Attribute::ModelName => "name",
            Attribute::VersionNumber => "version_number",
            Attribute::SourcePath => "source_path",
            Attribute::CreationTimestamp => "creation_timestamp",
            Attribute::LastUpdatedTimestamp => "last_updated_timestamp",
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A searchable property of a run's dataset inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetField {
    /// `datasets.name`.
    Name,
    /// `datasets.digest`.
    Digest,
    /// `datasets.context` (the `mlflow.data.context` input tag).
    Context,
}

impl DatasetField {
    /// The MLflow name of the field, e.g. `digest`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetField::Name => "name",
            DatasetField::Digest => "digest",
            DatasetField::Context => "context",
        }
    }
}

impl fmt::Display for DatasetField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `LIKE` (case-sensitive SQL pattern).
    Like,
    /// `ILIKE` (case-insensitive SQL pattern).
    ILike,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
}

impl Op {
    /// The operator as written in a filter (keywords upper-case), e.g. `NOT IN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A numeric literal (metrics and numeric attributes).
    Number(f64),
    /// A quoted string literal, unescaped.
    Str(String),
    /// A parenthesised list of strings (only with `IN` / `NOT IN`).
    List(Vec<String>),
    /// No value (only with `IS NULL` / `IS NOT NULL`).
    None,
}

/// One comparison: `field op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The compared field.
    pub field: Field,
    /// The comparison operator.
    pub op: Op,
    /// The compared value; [`Value::None`] exactly when `op` is `IsNull` or `IsNotNull`.
    pub value: Value,
}

/// A parsed filter: the clauses are joined by AND (MLflow has no OR).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// The clauses, in input order; empty for an empty filter (matches everything).
    pub clauses: Vec<Clause>,
}

impl Filter {
    /// Whether the filter has no clauses (matches everything).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }
}

/// A parsed `order_by` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// The field to order by.
    pub field: Field,
    /// `true` for `ASC` (the default), `false` for `DESC`.
    pub ascending: bool,
}

/// Which grammar a [`FilterError`] comes from; it selects the `Display` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorContext {
    /// A search filter: "invalid filter at position ...".
    #[default]
    Filter,
    /// An `order_by` clause: "invalid order_by clause at position ...".
    OrderBy,
}

/// A malformed filter or order_by: where (0-based character offset into the input) and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    /// 0-based character (not byte) offset of the offending token; the input length at its end.
    pub position: usize,
    /// What was expected and what was found (lower-case first, no trailing period).
    pub message: String,
    /// Whether the error is about a filter or an `order_by` clause.
    pub context: ErrorContext,
}

impl FilterError {
    /// An error in a search filter.
    pub fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
            context: ErrorContext::Filter,
        }
    }

    /// An error in an `order_by` clause.
    pub fn order_by(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
            context: ErrorContext::OrderBy,
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.context {
            ErrorContext::Filter => "filter",
            ErrorContext::OrderBy => "order_by clause",
        };
        write!(
            f,
            "invalid {what} at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for FilterError {}

/// Operators allowed on metrics.
const METRIC_OPS: &[Op] = &[
    Op::Eq,
    Op::Ne,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::IsNull,
    Op::IsNotNull,
];
/// Operators allowed on params and tags.
const KEY_VALUE_OPS: &[Op] = &[
    Op::Eq,
    Op::Ne,
    Op::Like,
    Op::ILike,
    Op::In,
    Op::NotIn,
    Op::IsNull,
    Op::IsNotNull,
];
/// Operators allowed on numeric attributes.
const NUMERIC_ATTRIBUTE_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];
/// Operators allowed on string attributes and dataset fields.
const STRING_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In, Op::NotIn];

impl Field {
    /// The comparison operators this field accepts in a filter.
    pub fn allowed_ops(&self) -> &'static [Op] {
        match self {
            Field::Metric(_) => METRIC_OPS,
            Field::Param(_) | Field::Tag(_) => KEY_VALUE_OPS,
            Field::Attribute(a) if a.is_numeric() => NUMERIC_ATTRIBUTE_OPS,
            Field::Attribute(_) | Field::Dataset(_) => STRING_OPS,
        }
    }

    /// Whether the field is compared with numbers (metrics, numeric attributes) rather than strings.
    pub fn is_numeric(&self) -> bool {
        match self {
            Field::Metric(_) => true,
            Field::Attribute(a) => a.is_numeric(),
            Field::Param(_) | Field::Tag(_) | Field::Dataset(_) => false,
        }
    }
}

/// Whether `c` may appear in an unquoted key.
fn is_plain_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':')
}

/// Whether `c` ends an unquoted identifier.
fn is_identifier_terminator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '=' | '!' | '<' | '>' | '(' | ')' | ',' | '\'' | '"' | '`'
        )
}

/// Whether `c` belongs to a keyword-like word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `c` belongs to a symbolic comparator.
fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

/// Writes `s` between `quote` characters, escaping the quote and backslashes.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str, quote: char) -> fmt::Result {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(quote);
    f.write_str(&out)
}

/// Writes a key plainly when it can be re-parsed that way, otherwise in backticks.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if !key.is_empty() && key.chars().all(is_plain_key_char) {
        f.write_str(key)
    } else {
        write_quoted(f, key, '`')
    }
}

impl fmt::Display for Field {
    /// Renders the canonical, re-parseable form, e.g. ``metrics.`my metric` ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Metric(k) => {
                f.write_str("metrics.")?;
                write_key(f, k)
            }
            Field::Param(k) => {
                f.write_str("params.")?;
                write_key(f, k)
            }
            Field::Tag(k) => {
                f.write_str("tags.")?;
                write_key(f, k)
            }
            Field::Attribute(a) => write!(f, "attributes.{a}"),
            Field::Dataset(d) => write!(f, "datasets.{d}"),
        }
    }
}

impl fmt::Display for Value {
    /// Renders the value as a filter literal (strings single-quoted, lists parenthesised).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Str(s) => write_quoted(f, s, '\''),
            Value::List(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, item, '\'')?;
                }
                f.write_str(")")
            }
            Value::None => Ok(()),
        }
    }
}

impl fmt::Display for Clause {
    /// Renders the clause so that [`parse_filter`] parses it back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Value::None => write!(f, "{} {}", self.field, self.op),
            _ => write!(f, "{} {} {}", self.field, self.op, self.value),
        }
    }
}

impl fmt::Display for Filter {
    /// Renders the clauses joined by ` AND ` (empty for an empty filter).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            write!(f, "{clause}")?;
        }
        Ok(())
    }
}

impl fmt::Display for OrderBy {
    /// Renders `field ASC` or `field DESC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.ascending { "ASC" } else { "DESC" };
        write!(f, "{} {dir}", self.field)
    }
}

mod parser;

mod limits;
pub use limits::{
    parse_order_by_list, MAX_CLAUSES, MAX_FILTER_CHARS, MAX_LIST_VALUES, MAX_ORDER_BY,
};
pub use parser::{parse_filter, parse_order_by};

pub mod sql;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod registry_tests;
#[cfg(test)]
mod tests;
