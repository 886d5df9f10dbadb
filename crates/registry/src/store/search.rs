//! Search over models and versions with MLflow's filter grammar ([`mlops_filter`]).

use mlops_filter::sql::{tag_term, terms, SqlBuilder};
use mlops_filter::{Attribute, Entity, Field, Filter, OrderBy};
use mlops_proto::registry::v1 as pb;

use super::models::{model_from_row, MODEL_COLUMNS};
use super::{version_columns, version_from_row, Store};
use crate::error::{invalid, Result};

pub use mlops_filter::sql::PageToken;

fn model_column(a: Attribute) -> &'static str {
    match a {
        Attribute::CreationTimestamp => "m.creation_timestamp",
        Attribute::LastUpdatedTimestamp => "m.last_updated_timestamp",
        _ => "m.name",
    }
}

fn version_column(a: Attribute) -> &'static str {
    match a {
        Attribute::VersionNumber => "v.version",
        Attribute::RunId => "v.run_id",
        Attribute::SourcePath => "v.source",
        Attribute::CreationTimestamp => "v.creation_timestamp",
        Attribute::LastUpdatedTimestamp => "v.last_updated_timestamp",
        _ => "m.name",
    }
}

const MODEL_TAGS: (&str, &str) = ("registered_model_tags", "x.model_id = m.model_id");
const VERSION_TAGS: (&str, &str) = (
    "model_version_tags",
    "x.model_id = v.model_id AND x.version = v.version",
);

fn where_sql(sql: &mut SqlBuilder, f: &Filter, models: bool) {
    for t in terms(f) {
        sql.push(" AND ");
        let tags = if models { MODEL_TAGS } else { VERSION_TAGS };
        let Some(c) = tag_term(sql, t, tags) else {
            continue;
        };
        match &c.field {
            Field::Attribute(a) => {
                let col = if models {
                    model_column(*a)
                } else {
                    version_column(*a)
                };
                if a.is_numeric() {
                    sql.numeric_cmp(col, c.op, &c.value, true);
                } else {
                    sql.string_cmp(col, c.op, &c.value);
                }
            }
            // The parser refuses other fields for models and versions.
            _ => sql.push("1 = 0"),
        }
    }
}

fn order_sql(sql: &mut SqlBuilder, orders: &[OrderBy], models: bool) {
    sql.push(" ORDER BY ");
    for o in orders {
        let dir = if o.ascending { "ASC" } else { "DESC" };
        match &o.field {
            Field::Tag(k) => {
                let (table, link) = if models { MODEL_TAGS } else { VERSION_TAGS };
                sql.push(&format!(
                    "(SELECT x.value FROM {table} x WHERE {link} AND x.key = "
                ));
                sql.bind_str(k);
                sql.push(&format!(") {dir} NULLS LAST, "));
            }
            Field::Attribute(a) => {
                let col = if models {
                    model_column(*a)
                } else {
                    version_column(*a)
                };
                sql.push(&format!("{col} {dir}, "));
            }
            _ => {}
        }
    }
    if models {
        sql.push("m.name ASC");
    } else {
        sql.push("m.name ASC, v.version DESC");
    }
}

fn parse(filter: &str, order_by: &[String], entity: Entity) -> Result<(Filter, Vec<OrderBy>)> {
    let f = mlops_filter::parse_filter(filter, entity).map_err(|e| invalid(e.to_string()))?;
    let orders =
        mlops_filter::parse_order_by_list(order_by, entity).map_err(|e| invalid(e.to_string()))?;
    Ok((f, orders))
}

fn page_size(requested: i32, default: i64, max: i64, what: &str) -> Result<i64> {
    match requested {
        0 => Ok(default),
        n if n < 0 => Err(invalid(format!("max_results must be positive, got {n}"))),
        n if n as i64 > max => Err(invalid(format!(
            "max_results is {n}; {what} returns at most {max} per page (use page_token for more)"
        ))),
        n => Ok(n as i64),
    }
}

impl Store {
    /// Registered models matching `filter`, ordered and paged.
    pub async fn search_models(
        &self,
        req: &pb::SearchRegisteredModelsRequest,
    ) -> Result<(Vec<pb::RegisteredModel>, String)> {
        let max = page_size(req.max_results, 100, 1000, "SearchRegisteredModels")?;
        let (f, orders) = parse(&req.filter, &req.order_by, Entity::RegisteredModel)?;
        let offset = PageToken::decode(&req.page_token).map_err(invalid)?;
        let mut sql = SqlBuilder::new(self.db.backend());
        sql.push(&format!(
            "SELECT {} FROM registered_models m WHERE 1 = 1",
            MODEL_COLUMNS
        ));
        where_sql(&mut sql, &f, true);
        order_sql(&mut sql, &orders, true);
        sql.push(&format!(" LIMIT {} OFFSET {offset}", max + 1));
        let rows = sql.fetch_all(&self.db).await?;
        let more = rows.len() as i64 > max;
        let mut models: Vec<pb::RegisteredModel> =
            rows.iter().take(max as usize).map(model_from_row).collect();
        self.attach_model_details(&mut models).await?;
        let next = if more {
            PageToken::encode(offset + max)
        } else {
            String::new()
        };
        Ok((models, next))
    }

    /// Versions matching `filter`, ordered and paged.
    pub async fn search_versions(
        &self,
        req: &pb::SearchModelVersionsRequest,
    ) -> Result<(Vec<pb::ModelVersion>, String)> {
        let max = page_size(req.max_results, 1000, 10_000, "SearchModelVersions")?;
        let (f, orders) = parse(&req.filter, &req.order_by, Entity::ModelVersion)?;
        let offset = PageToken::decode(&req.page_token).map_err(invalid)?;
        let mut sql = SqlBuilder::new(self.db.backend());
        sql.push(&format!(
            "SELECT {} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id WHERE 1 = 1",
            version_columns(self.db.backend())
        ));
        where_sql(&mut sql, &f, false);
        order_sql(&mut sql, &orders, false);
        sql.push(&format!(" LIMIT {} OFFSET {offset}", max + 1));
        let rows = sql.fetch_all(&self.db).await?;
        let more = rows.len() as i64 > max;
        let versions = rows
            .iter()
            .take(max as usize)
            .map(version_from_row)
            .collect();
        let next = if more {
            PageToken::encode(offset + max)
        } else {
            String::new()
        };
        Ok((versions, next))
    }
}
