//! Search: MLflow's filter and order_by ASTs ([`crate::filter`]) to SQL, and page tokens.

use base64::Engine;
use mlops_proto::tracking::v1 as pb;
use mlops_storage::Backend;
use sqlx::any::AnyRow;

use super::experiments::page_size;
use sqlx::Row;

use super::{stages, Store};
use crate::error::{invalid, Result};
use crate::filter::{
    self, Attribute, Clause, DatasetField, Entity, Field, Filter, Op, OrderBy, Value,
};

/// A bound value.
enum Bind {
    Str(String),
    F64(f64),
    I64(i64),
}

/// SQL text with `$n` placeholders and their values, built in order.
pub(crate) struct SqlBuilder {
    backend: Backend,
    sql: String,
    binds: Vec<Bind>,
}

impl SqlBuilder {
    pub(crate) fn new(backend: Backend) -> Self {
        SqlBuilder {
            backend,
            sql: String::with_capacity(512),
            binds: vec![],
        }
    }

    pub(crate) fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    fn placeholder(&mut self, b: Bind) {
        self.binds.push(b);
        self.sql.push_str(&format!("${}", self.binds.len()));
    }

    pub(crate) fn bind_str(&mut self, s: &str) {
        self.placeholder(Bind::Str(s.to_owned()));
    }

    fn bind_f64(&mut self, v: f64) {
        self.placeholder(Bind::F64(v));
    }

    fn bind_i64(&mut self, v: i64) {
        self.placeholder(Bind::I64(v));
    }

    /// The same binds around new SQL made from the current text.
    pub(crate) fn wrap(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.sql = f(&self.sql);
        self
    }

    pub(crate) async fn fetch_all(self, pool: &sqlx::AnyPool) -> Result<Vec<AnyRow>> {
        // Unnamed statements: PostgreSQL plans each search for its actual values, where
        // a cached generic plan cannot know how selective `params.p0 = 'a'` is.
        let mut q = sqlx::query(&self.sql).persistent(self.backend == Backend::Sqlite);
        for b in self.binds {
            q = match b {
                Bind::Str(s) => q.bind(s),
                Bind::F64(v) => q.bind(v),
                Bind::I64(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(pool).await?)
    }

    /// `<expr> <op> <value>` for a string comparison, LIKE and ILIKE included.
    fn string_cmp(&mut self, expr: &str, op: Op, value: &Value) {
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

    fn numeric_cmp(&mut self, expr: &str, op: Op, value: &Value, integer: bool) {
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

fn run_attribute_column(a: Attribute) -> &'static str {
    match a {
        Attribute::RunId => "r.run_id",
        Attribute::RunName => "r.run_name",
        Attribute::Status => "r.status",
        Attribute::StartTime => "r.start_time",
        Attribute::EndTime => "r.end_time",
        Attribute::UserId => "r.user_id",
        Attribute::ArtifactUri => "r.artifact_uri",
        Attribute::ExperimentName => "e.name",
        Attribute::CreationTime => "e.creation_time",
        Attribute::LastUpdateTime => "e.last_update_time",
        Attribute::ExperimentId => "r.experiment_id",
    }
}

fn experiment_attribute_column(a: Attribute) -> &'static str {
    match a {
        Attribute::CreationTime => "e.creation_time",
        Attribute::LastUpdateTime => "e.last_update_time",
        Attribute::ExperimentId => "e.experiment_id",
        _ => "e.name",
    }
}

/// Key/value tables and how a row links to the searched entity.
const METRICS: (&str, &str) = ("latest_metrics", "x.run_id = r.run_id");
const PARAMS: (&str, &str) = ("params", "x.run_id = r.run_id");
const RUN_TAGS: (&str, &str) = ("tags", "x.run_id = r.run_id");
const EXPERIMENT_TAGS: (&str, &str) = ("experiment_tags", "x.experiment_id = e.experiment_id");

/// `[NOT] EXISTS (SELECT 1 FROM <table> x WHERE <link> AND x.key = k AND <cmp>)`.
///
/// Correlated on the table's primary key (owner, key): the database walks runs in
/// the requested order and stops once a page is full.
fn keyed_exists(
    sql: &mut SqlBuilder,
    (table, link): (&str, &str),
    key: &str,
    c: &Clause,
    numeric: bool,
) {
    sql.push(if c.op == Op::IsNull {
        "NOT EXISTS ("
    } else {
        "EXISTS ("
    });
    sql.push(&format!(
        "SELECT 1 FROM {table} x WHERE {link} AND x.key = "
    ));
    sql.bind_str(key);
    match c.op {
        Op::IsNull | Op::IsNotNull => {}
        _ => {
            sql.push(" AND ");
            if numeric {
                sql.numeric_cmp("x.value", c.op, &c.value, false);
            } else {
                sql.string_cmp("x.value", c.op, &c.value);
            }
        }
    }
    sql.push(")");
}

/// Appends ` AND <clause>` for every clause of a run filter.
pub(crate) fn run_filter_sql(sql: &mut SqlBuilder, f: &Filter) {
    for c in &f.clauses {
        sql.push(" AND ");
        match &c.field {
            Field::Metric(k) => keyed_exists(sql, METRICS, k, c, true),
            Field::Param(k) => keyed_exists(sql, PARAMS, k, c, false),
            Field::Tag(k) => keyed_exists(sql, RUN_TAGS, k, c, false),
            Field::Attribute(a) => {
                let col = run_attribute_column(*a);
                if a.is_numeric() {
                    sql.numeric_cmp(col, c.op, &c.value, true);
                } else {
                    sql.string_cmp(col, c.op, &c.value);
                }
            }
            Field::Dataset(d) => {
                let col = match d {
                    DatasetField::Name => "d.name",
                    DatasetField::Digest => "d.digest",
                    DatasetField::Context => "i.context",
                };
                sql.push(
                    "EXISTS (SELECT 1 FROM run_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id \
                     WHERE i.run_id = r.run_id AND ",
                );
                sql.string_cmp(col, c.op, &c.value);
                sql.push(")");
            }
        }
    }
}

/// Appends ` AND <clause>` for every clause of an experiment filter.
pub(crate) fn experiment_filter_sql(sql: &mut SqlBuilder, f: &Filter) {
    for c in &f.clauses {
        sql.push(" AND ");
        match &c.field {
            Field::Tag(k) => keyed_exists(sql, EXPERIMENT_TAGS, k, c, false),
            Field::Attribute(a) => {
                let col = experiment_attribute_column(*a);
                if a.is_numeric() {
                    sql.numeric_cmp(col, c.op, &c.value, true);
                } else {
                    sql.string_cmp(col, c.op, &c.value);
                }
            }
            // The parser refuses other fields for experiments.
            _ => sql.push("1 = 0"),
        }
    }
}

/// Appends ` ORDER BY ...` with a stable tiebreak.
pub(crate) fn order_sql(sql: &mut SqlBuilder, orders: &[OrderBy], entity: Entity) {
    sql.push(" ORDER BY ");
    for o in orders {
        let dir = if o.ascending { "ASC" } else { "DESC" };
        match (&o.field, entity) {
            (Field::Metric(k), _) => {
                sql.push(
                    "(SELECT x.value FROM latest_metrics x WHERE x.run_id = r.run_id AND x.key = ",
                );
                sql.bind_str(k);
                sql.push(&format!(") {dir} NULLS LAST, "));
            }
            (Field::Param(k), _) => {
                sql.push("(SELECT x.value FROM params x WHERE x.run_id = r.run_id AND x.key = ");
                sql.bind_str(k);
                sql.push(&format!(") {dir} NULLS LAST, "));
            }
            (Field::Tag(k), Entity::Run) => {
                sql.push("(SELECT x.value FROM tags x WHERE x.run_id = r.run_id AND x.key = ");
                sql.bind_str(k);
                sql.push(&format!(") {dir} NULLS LAST, "));
            }
            (Field::Tag(k), Entity::Experiment) => {
                sql.push("(SELECT t.value FROM experiment_tags t WHERE t.experiment_id = e.experiment_id AND t.key = ");
                sql.bind_str(k);
                sql.push(&format!(") {dir} NULLS LAST, "));
            }
            (Field::Attribute(a), Entity::Run) => {
                sql.push(&format!("{} {dir} NULLS LAST, ", run_attribute_column(*a)))
            }
            (Field::Attribute(a), Entity::Experiment) => {
                sql.push(&format!("{} {dir}, ", experiment_attribute_column(*a)))
            }
            (Field::Dataset(_), _) => {}
        }
    }
    match entity {
        Entity::Run => sql.push("r.start_time DESC, r.run_id ASC"),
        Entity::Experiment => sql.push("e.creation_time DESC, e.experiment_id ASC"),
    }
}

/// An opaque page token: the offset of the next page.
pub struct PageToken;

impl PageToken {
    /// The token for `offset`.
    pub fn encode(offset: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"offset\":{offset}}}"))
    }

    /// The offset in `token`; empty is 0.
    pub fn decode(token: &str) -> Result<i64> {
        if token.is_empty() {
            return Ok(0);
        }
        let bad = || {
            invalid(format!(
                "page_token `{token}` is not a token this server issued"
            ))
        };
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

impl Store {
    /// Runs matching a filter across experiments, one page, with their data.
    pub async fn search_runs(&self, req: &pb::SearchRunsRequest) -> Result<(Vec<pb::Run>, String)> {
        let f =
            filter::parse_filter(&req.filter, Entity::Run).map_err(|e| invalid(e.to_string()))?;
        let mut orders = vec![];
        for o in &req.order_by {
            orders
                .push(filter::parse_order_by(o, Entity::Run).map_err(|e| invalid(e.to_string()))?);
        }
        let max = page_size(req.max_results)?;
        let offset = PageToken::decode(&req.page_token)?;
        let mut exp_ids = Vec::with_capacity(req.experiment_ids.len());
        for id in &req.experiment_ids {
            exp_ids.push(crate::validate::experiment_id(id)?);
        }

        let mut sql = SqlBuilder::new(self.db.backend());
        sql.push(&format!(
            "SELECT {} FROM runs r WHERE r.lifecycle_stage IN (",
            super::run_with_data_columns(self.db.backend())
        ));
        for (i, s) in stages(req.run_view_type).iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_str(s);
        }
        sql.push(")");
        if !exp_ids.is_empty() {
            sql.push(" AND r.experiment_id IN (");
            for (i, id) in exp_ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_i64(*id);
            }
            sql.push(")");
        }
        run_filter_sql(&mut sql, &f);
        order_sql(&mut sql, &orders, Entity::Run);
        sql.push(&format!(" LIMIT {} OFFSET {offset}", max as i64 + 1));
        let sql = sql.wrap(|inner| super::page_as_json(self.db.backend(), inner));
        let rows = sql.fetch_all(self.db.reader()).await?;
        let page: Option<String> = rows.first().and_then(|r| r.get(0));
        let mut runs = super::runs_from_page_json(page.as_deref());
        let next = if runs.len() > max as usize {
            runs.truncate(max as usize);
            PageToken::encode(offset + max as i64)
        } else {
            String::new()
        };
        self.attach_inputs(&mut runs).await?;
        Ok((runs, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(filter: &str, backend: Backend) -> String {
        let f = filter::parse_filter(filter, Entity::Run).unwrap();
        let mut b = SqlBuilder::new(backend);
        run_filter_sql(&mut b, &f);
        b.sql
    }

    #[test]
    fn builds_numbered_placeholders() {
        let s = sql_of(
            "metrics.auc > 0.9 and params.model = 'rf' and tags.team != 'x'",
            Backend::Postgres,
        );
        assert!(
            s.contains("x.run_id = r.run_id AND x.key = $1 AND x.value > $2"),
            "{s}"
        );
        assert!(s.contains("x.key = $3 AND x.value = $4"), "{s}");
        assert!(s.contains("x.key = $5 AND x.value != $6"), "{s}");
    }

    #[test]
    fn ilike_per_backend() {
        assert!(sql_of("params.m ILIKE '%a%'", Backend::Postgres).contains("x.value ILIKE $2"));
        assert!(sql_of("params.m ILIKE '%a%'", Backend::Sqlite)
            .contains("LOWER(x.value) LIKE LOWER($2)"));
        assert!(sql_of("attributes.run_id IN ('a', 'b')", Backend::Sqlite)
            .contains("r.run_id IN ($1, $2)"));
    }

    #[test]
    fn page_tokens() {
        assert_eq!(PageToken::decode(&PageToken::encode(1234)).unwrap(), 1234);
        assert_eq!(PageToken::decode("").unwrap(), 0);
        assert!(PageToken::decode("garbage!").is_err());
    }
}
