//! MLflow filters as SQL: a builder of `$n`-placeholder SQL shared by the services'
//! stores (the same text runs on SQLite and PostgreSQL), the keyed `EXISTS` for
//! tags/params/metrics tables, and opaque page tokens.

use base64::Engine;
use mlops_storage::{Backend, Db, StorageError};
use sqlx::any::AnyRow;

use crate::{Clause, Op, Value};

/// A bound value.
enum Bind {
    Str(String),
    F64(f64),
    I64(i64),
}

/// SQL text with `$n` placeholders and their values, built in order.
pub struct SqlBuilder {
    backend: Backend,
    sql: String,
    binds: Vec<Bind>,
    /// `EXISTS` subqueries closed so far (see [`SqlBuilder::close_exists`]).
    exists: usize,
}

/// How many of a filter's `EXISTS` clauses PostgreSQL may turn into joins.
///
/// PostgreSQL turns each `EXISTS` in a `WHERE` into a semi-join and searches the join
/// orders over all of them: measured on 10,000 runs, planning took 3 ms with 3 such
/// clauses, 38 ms with 5, 0.5 s with 8 and over 20 s with 50. The first few stay
/// joins, which the planner orders well for the selective filters users write; the
/// rest carry `OFFSET 0`, which keeps each a filter checked per row, so cost grows
/// linearly. (Tracking's run search reads those from the run's document instead:
/// one probe per run for all of them.)
pub const JOINED_EXISTS: usize = 3;

impl SqlBuilder {
    pub fn new(backend: Backend) -> Self {
        SqlBuilder {
            backend,
            sql: String::with_capacity(512),
            binds: vec![],
            exists: 0,
        }
    }

    /// The SQL text so far.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Appends raw SQL text.
    pub fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    fn placeholder(&mut self, b: Bind) {
        let p = self.bind(b);
        self.sql.push_str(&p);
    }

    /// Adds a bound value and gives its placeholder.
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub fn bind_str(&mut self, s: &str) {
        self.placeholder(Bind::Str(s.to_owned()));
    }

    pub fn bind_f64(&mut self, v: f64) {
        self.placeholder(Bind::F64(v));
    }

    pub fn bind_i64(&mut self, v: i64) {
        self.placeholder(Bind::I64(v));
    }

    /// Binds `s` and gives its placeholder (`$n`) without appending it, for an
    /// expression written later (or more than once).
    pub fn bind_str_placeholder(&mut self, s: &str) -> String {
        self.bind(Bind::Str(s.to_owned()))
    }

    /// Whether, on PostgreSQL, [`JOINED_EXISTS`] subqueries have been closed: any
    /// further one is a per-row filter.
    pub fn past_joined_exists(&self) -> bool {
        self.backend == Backend::Postgres && self.exists >= JOINED_EXISTS
    }

    /// Closes an `EXISTS (SELECT ...` opened for a filter clause: past
    /// [`JOINED_EXISTS`] of them, on PostgreSQL, as a per-row filter.
    pub fn close_exists(&mut self) {
        if self.past_joined_exists() {
            self.push(" OFFSET 0");
        }
        self.exists += 1;
        self.push(")");
    }

    /// The same binds around new SQL made from the current text.
    pub fn wrap(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.sql = f(&self.sql);
        self
    }

    /// Runs the query as a search ([`Db::search`]: bounded concurrency, statement
    /// timeout, cancelled on the server when the caller goes away).
    pub async fn fetch_all(self, db: &Db) -> Result<Vec<AnyRow>, StorageError> {
        let mut q = sqlx::query(&self.sql);
        for b in self.binds {
            q = match b {
                Bind::Str(s) => q.bind(s),
                Bind::F64(v) => q.bind(v),
                Bind::I64(v) => q.bind(v),
            };
        }
        db.search(q).await
    }

    /// `<expr> <op> <value>` for a string comparison, LIKE and ILIKE included.
    pub fn string_cmp(&mut self, expr: &str, op: Op, value: &Value) {
        match (op, value) {
            (Op::In | Op::NotIn, Value::List(items)) => {
                self.push(expr);
                self.push(if op == Op::In { " IN (" } else { " NOT IN (" });
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind_str(it);
                }
                self.push(")");
            }
            (Op::ILike, Value::Str(s)) => match self.backend {
                Backend::Postgres => {
                    self.push(&format!("{expr} ILIKE "));
                    self.bind_str(s);
                }
                Backend::Sqlite => {
                    self.push(&format!("LOWER({expr}) LIKE LOWER("));
                    self.bind_str(s);
                    self.push(")");
                }
            },
            (_, Value::Str(s)) => {
                self.push(&format!("{expr} {} ", op.as_str()));
                self.bind_str(s);
            }
            // The parser only gives strings and lists to string fields.
            _ => self.push("1 = 0"),
        }
    }

    pub fn numeric_cmp(&mut self, expr: &str, op: Op, value: &Value, integer: bool) {
        if let Value::Number(n) = value {
            self.push(&format!("{expr} {} ", op.as_str()));
            if integer && n.fract() == 0.0 && n.abs() < 9.0e15 {
                self.bind_i64(*n as i64);
            } else {
                self.bind_f64(*n);
            }
        } else {
            self.push("1 = 0");
        }
    }
}

/// Which key/value table a keyed clause reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyed {
    /// `metrics.<key>`.
    Metric,
    /// `params.<key>`.
    Param,
    /// `tags.<key>`.
    Tag,
}

/// A part of a filter as the stores turn it into SQL.
#[derive(Debug)]
pub enum Term<'a> {
    /// A clause on an attribute or a dataset field, as written.
    Single(&'a Clause),
    /// Every clause on one key of one key/value table: one subquery, because an owner
    /// has at most one row per key, so all of them test that one row.
    Keyed {
        /// The table.
        table: Keyed,
        /// The key.
        key: &'a str,
        /// `IS NULL`: the key must be absent (the clauses are all `IS NULL`).
        absent: bool,
        /// The clauses, in the filter's order.
        clauses: Vec<&'a Clause>,
    },
}

/// A filter's clauses with those on the same key of the same table merged (in the
/// order each first appears), so a filter costs one subquery per key it names
/// rather than one per clause: `params.a != 'x' AND params.a != 'y'` reads `a` once.
pub fn terms(f: &crate::Filter) -> Vec<Term<'_>> {
    let mut out: Vec<Term<'_>> = Vec::with_capacity(f.clauses.len());
    let mut index: std::collections::HashMap<(Keyed, &str, bool), usize> = Default::default();
    for c in &f.clauses {
        let (table, key) = match &c.field {
            crate::Field::Metric(k) => (Keyed::Metric, k.as_str()),
            crate::Field::Param(k) => (Keyed::Param, k.as_str()),
            crate::Field::Tag(k) => (Keyed::Tag, k.as_str()),
            _ => {
                out.push(Term::Single(c));
                continue;
            }
        };
        let absent = c.op == Op::IsNull;
        match index.get(&(table, key, absent)) {
            Some(&i) => {
                if let Term::Keyed { clauses, .. } = &mut out[i] {
                    clauses.push(c);
                }
            }
            None => {
                index.insert((table, key, absent), out.len());
                out.push(Term::Keyed {
                    table,
                    key,
                    absent,
                    clauses: vec![c],
                });
            }
        }
    }
    out
}

/// `[NOT] EXISTS (SELECT 1 FROM <table> x WHERE <link> AND x.key = k AND <cmp>...)`
/// for the clauses of one [`Term::Keyed`].
///
/// Correlated on the table's primary key (owner, key): the database walks runs in
/// the requested order and stops once a page is full.
pub fn keyed_exists(
    sql: &mut SqlBuilder,
    (table, link): (&str, &str),
    key: &str,
    absent: bool,
    clauses: &[&Clause],
    numeric: bool,
) {
    sql.push(if absent { "NOT EXISTS (" } else { "EXISTS (" });
    sql.push(&format!(
        "SELECT 1 FROM {table} x WHERE {link} AND x.key = "
    ));
    sql.bind_str(key);
    value_clauses(sql, "x.value", clauses, numeric);
    sql.close_exists();
}

/// Appends ` AND <expr> <op> <value>` for each clause of a keyed term that compares
/// its value (`IS NULL` and `IS NOT NULL` are about the key, not the value).
pub fn value_clauses(sql: &mut SqlBuilder, expr: &str, clauses: &[&Clause], numeric: bool) {
    for c in clauses {
        if matches!(c.op, Op::IsNull | Op::IsNotNull) {
            continue;
        }
        sql.push(" AND ");
        if numeric {
            sql.numeric_cmp(expr, c.op, &c.value, false);
        } else {
            sql.string_cmp(expr, c.op, &c.value);
        }
    }
}

/// For entities whose only key/value table is `tags` (experiments, registered models,
/// versions): appends a keyed term's subquery and gives `None`, or gives a single
/// clause back for the caller's attribute columns. Metrics and params, which the
/// parser refuses for these entities, match nothing.
pub fn tag_term<'a>(
    sql: &mut SqlBuilder,
    term: Term<'a>,
    tags: (&str, &str),
) -> Option<&'a Clause> {
    match term {
        Term::Keyed {
            table: Keyed::Tag,
            key,
            absent,
            clauses,
        } => keyed_exists(sql, tags, key, absent, &clauses, false),
        Term::Keyed { .. } => sql.push("1 = 0"),
        Term::Single(c) => return Some(c),
    }
    None
}

/// An opaque page token: the offset of the next page.
pub struct PageToken;

impl PageToken {
    /// The token for `offset`.
    pub fn encode(offset: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"offset\":{offset}}}"))
    }

    /// The offset in `token`; empty is 0.
    pub fn decode(token: &str) -> Result<i64, String> {
        if token.is_empty() {
            return Ok(0);
        }
        let bad = || format!("page_token `{token}` is not a token this server issued");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        v.get("offset")
            .and_then(|o| o.as_i64())
            .filter(|o| *o >= 0)
            .ok_or_else(bad)
    }
}
