//! Search: MLflow's filter and order_by ASTs ([`mlops_filter`]) to SQL, page sizes and page tokens.

use mlops_proto::tracking::v1 as pb;
use sqlx::Row;

use super::{stages, Store};
use crate::error::{invalid, Result};
use crate::validate;
pub use mlops_filter::sql::PageToken;
pub(crate) use mlops_filter::sql::SqlBuilder;
use mlops_filter::sql::{keyed_exists, tag_term, terms, value_clauses, Keyed, Term};
use mlops_filter::{
    self as filter, Attribute, Clause, DatasetField, Entity, Field, Filter, OrderBy,
};

/// A page size: 0 means 1000, at most [`validate::MAX_RESULTS`].
pub(crate) fn page_size(max_results: i32) -> Result<i32> {
    match max_results {
        0 => Ok(1000),
        n if n < 0 => Err(invalid(format!("max_results must be positive, got {n}"))),
        n if n > validate::MAX_RESULTS => Err(invalid(format!(
            "max_results {n} is over the limit of {}",
            validate::MAX_RESULTS
        ))),
        n => Ok(n),
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
        // Registry attributes: the parser never yields them for runs.
        Attribute::ModelName
        | Attribute::VersionNumber
        | Attribute::SourcePath
        | Attribute::CreationTimestamp
        | Attribute::LastUpdatedTimestamp => "NULL",
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

/// Appends ` AND <term>` for every term of a run filter.
pub(crate) fn run_filter_sql(sql: &mut SqlBuilder, f: &Filter) {
    // Keyed terms past the subqueries PostgreSQL may join, read from the run's
    // document at the end (see `doc_filter_sql`).
    let mut on_doc: Vec<(Keyed, &str, Vec<&Clause>)> = vec![];
    for t in terms(f) {
        let c = match t {
            Term::Keyed {
                table,
                key,
                absent,
                clauses,
            } => {
                if !absent && sql.past_joined_exists() {
                    on_doc.push((table, key, clauses));
                    continue;
                }
                let (t, numeric) = match table {
                    Keyed::Metric => (METRICS, true),
                    Keyed::Param => (PARAMS, false),
                    Keyed::Tag => (RUN_TAGS, false),
                };
                sql.push(" AND ");
                keyed_exists(sql, t, key, absent, &clauses, numeric);
                continue;
            }
            Term::Single(c) => c,
        };
        sql.push(" AND ");
        match &c.field {
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
                sql.close_exists();
            }
            // Keyed fields are terms of their own.
            Field::Metric(_) | Field::Param(_) | Field::Tag(_) => sql.push("1 = 0"),
        }
    }
    if !on_doc.is_empty() {
        doc_filter_sql(sql, &on_doc);
    }
}

/// PostgreSQL: the keyed terms past [`mlops_filter::sql::JOINED_EXISTS`], checked on
/// the run's document (`run_docs`: its params, tags and latest metrics, kept by
/// triggers in the statements that write them) in one probe per run, instead of one
/// subquery per term. Those terms are per-row filters either way, never a join the
/// planner could start from; read one by one, a 100-clause search probed 12 indexes
/// for every run it looked at.
///
/// The same answers as [`keyed_exists`]: a key is present when its document has it,
/// a param's or tag's value is its text, a metric's is its latest value (the text
/// PostgreSQL wrote, read back exactly; NULL for NaN, as in `latest_metrics`). A run
/// without a document has no params, tags or metrics, so it matches no present key.
/// Absent keys (`IS NULL`) stay subqueries, which a missing document cannot fool.
fn doc_filter_sql(sql: &mut SqlBuilder, terms: &[(Keyed, &str, Vec<&Clause>)]) {
    sql.push(" AND EXISTS (SELECT 1 FROM run_docs d WHERE d.run_id = r.run_id");
    for (table, key, clauses) in terms {
        let doc = match table {
            Keyed::Metric => "d.metrics",
            Keyed::Param => "d.params",
            Keyed::Tag => "d.tags",
        };
        let key = sql.bind_str_placeholder(key);
        sql.push(&format!(" AND {doc} -> {key} IS NOT NULL"));
        let value = match table {
            Keyed::Metric => format!("({doc} -> {key} ->> 0)::float8"),
            Keyed::Param | Keyed::Tag => format!("({doc} ->> {key})"),
        };
        value_clauses(sql, &value, clauses, *table == Keyed::Metric);
    }
    // A filter per row, as the subqueries it replaces: never turned into a join.
    sql.push(" OFFSET 0)");
}

/// Appends ` AND <term>` for every term of an experiment filter.
pub(crate) fn experiment_filter_sql(sql: &mut SqlBuilder, f: &Filter) {
    for t in terms(f) {
        sql.push(" AND ");
        let Some(c) = tag_term(sql, t, EXPERIMENT_TAGS) else {
            continue;
        };
        match &c.field {
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
            // Datasets are not orderable; registry entities are searched by the registry.
            (Field::Dataset(_), _) | (_, Entity::RegisteredModel | Entity::ModelVersion) => {}
        }
    }
    match entity {
        Entity::Experiment => sql.push("e.creation_time DESC, e.experiment_id ASC"),
        // This store searches runs and experiments only.
        Entity::Run | Entity::RegisteredModel | Entity::ModelVersion => {
            sql.push("r.start_time DESC, r.run_id ASC")
        }
    }
}

impl Store {
    /// Runs matching a filter across experiments, one page, with their data.
    pub async fn search_runs(&self, req: &pb::SearchRunsRequest) -> Result<(Vec<pb::Run>, String)> {
        let f =
            filter::parse_filter(&req.filter, Entity::Run).map_err(|e| invalid(e.to_string()))?;
        let orders = filter::parse_order_by_list(&req.order_by, Entity::Run)
            .map_err(|e| invalid(e.to_string()))?;
        let max = page_size(req.max_results)?;
        let offset = PageToken::decode(&req.page_token).map_err(invalid)?;
        let mut exp_ids = Vec::with_capacity(req.experiment_ids.len());
        for id in &req.experiment_ids {
            exp_ids.push(crate::validate::experiment_id(id)?);
        }

        let mut sql = SqlBuilder::new(self.db.backend());
        sql.push(&format!(
            "SELECT {} FROM runs r WHERE r.lifecycle_stage IN (",
            super::run_with_data_columns(self.db.backend(), false)
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
        let rows = sql.fetch_all(&self.db).await?;
        let page: Option<String> = rows.first().and_then(|r| r.get(0));
        let (mut runs, linked) = super::runs_from_page_json(page.as_deref());
        let next = if runs.len() > max as usize {
            runs.truncate(max as usize);
            PageToken::encode(offset + max as i64)
        } else {
            String::new()
        };
        if linked {
            self.attach_inputs_and_outputs(&mut runs).await?;
        }
        Ok((runs, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(filter: &str, backend: mlops_storage::Backend) -> String {
        let f = filter::parse_filter(filter, Entity::Run).unwrap();
        let mut b = SqlBuilder::new(backend);
        run_filter_sql(&mut b, &f);
        b.sql().to_owned()
    }

    #[test]
    fn builds_numbered_placeholders() {
        let s = sql_of(
            "metrics.auc > 0.9 and params.model = 'rf' and tags.team != 'x'",
            mlops_storage::Backend::Postgres,
        );
        assert!(
            s.contains("x.run_id = r.run_id AND x.key = $1 AND x.value > $2"),
            "{s}"
        );
        assert!(s.contains("x.key = $3 AND x.value = $4"), "{s}");
        assert!(s.contains("x.key = $5 AND x.value != $6"), "{s}");
    }

    #[test]
    fn clauses_on_one_key_share_one_subquery() {
        let s = sql_of(
            "params.a != 'x' and metrics.m > 1 and params.a != 'y' and params.a IS NOT NULL \
             and params.a IS NULL and params.b IS NULL and params.b IS NULL",
            mlops_storage::Backend::Postgres,
        );
        assert_eq!(s.matches("EXISTS").count(), 4, "{s}");
        assert!(
            s.contains("x.key = $1 AND x.value != $2 AND x.value != $3)"),
            "{s}"
        );
        assert!(
            s.contains(
                "AND NOT EXISTS (SELECT 1 FROM params x WHERE x.run_id = r.run_id AND x.key = $6)"
            ),
            "{s}"
        );
        // past three subqueries, PostgreSQL gets per-row filters
        assert!(s.ends_with("x.key = $7 OFFSET 0)"), "{s}");
    }

    #[test]
    fn terms_past_the_joined_ones_read_the_run_document_on_postgres() {
        let filter = "params.a = 'x' and tags.b != 'y' and metrics.c > 1 and metrics.d <= 2 \
                      and metrics.d > 0 and params.e LIKE 'z%' and tags.f IS NULL";
        let s = sql_of(filter, mlops_storage::Backend::Postgres);
        assert_eq!(s.matches("EXISTS").count(), 5, "{s}");
        // The absent key stays a subquery, the two present ones after the third are
        // one probe of the document, with their clauses on the key bound once.
        assert!(
            s.contains("NOT EXISTS (SELECT 1 FROM tags x WHERE x.run_id = r.run_id AND x.key = $7 OFFSET 0)"),
            "{s}"
        );
        assert!(
            s.ends_with(
                " AND EXISTS (SELECT 1 FROM run_docs d WHERE d.run_id = r.run_id \
                 AND d.metrics -> $8 IS NOT NULL AND (d.metrics -> $8 ->> 0)::float8 <= $9 \
                 AND (d.metrics -> $8 ->> 0)::float8 > $10 \
                 AND d.params -> $11 IS NOT NULL AND (d.params ->> $11) LIKE $12 OFFSET 0)"
            ),
            "{s}"
        );
        // SQLite has no documents: a subquery per key, as written.
        let s = sql_of(filter, mlops_storage::Backend::Sqlite);
        assert_eq!(s.matches("EXISTS").count(), 6, "{s}");
        assert!(!s.contains("run_docs"), "{s}");
    }

    #[test]
    fn ilike_per_backend() {
        assert!(
            sql_of("params.m ILIKE '%a%'", mlops_storage::Backend::Postgres)
                .contains("x.value ILIKE $2")
        );
        assert!(
            sql_of("params.m ILIKE '%a%'", mlops_storage::Backend::Sqlite)
                .contains("LOWER(x.value) LIKE LOWER($2)")
        );
        assert!(sql_of(
            "attributes.run_id IN ('a', 'b')",
            mlops_storage::Backend::Sqlite
        )
        .contains("r.run_id IN ($1, $2)"));
    }

    #[test]
    fn page_tokens() {
        assert_eq!(PageToken::decode(&PageToken::encode(1234)).unwrap(), 1234);
        assert_eq!(PageToken::decode("").unwrap(), 0);
        assert!(PageToken::decode("garbage!").is_err());
    }
}
