//! The point-in-time join: for every row of an entity table, the feature values that
//! were known at that row's time.
//!
//! The rule, for an entity row with key `k` and time `t` and a view with TTL `ttl`:
//! the candidates are the view's rows with key `k` and `t - ttl <= event_ts <= t`
//! (both ends inclusive; no lower end when the view's TTL is unlimited); the winner
//! has the greatest `(event_ts, created_ts)` (a missing or null `created_ts` is lower
//! than any value); on a full tie the row that comes last in source order wins. No
//! candidate, a null key part or a null entity time give nulls. With
//! `filter_by_created`, a candidate must also have been created by `t` (`created_ts <=
//! t`; a row without a created time is not filtered): what was known at `t`, not what a
//! later backfill wrote about `t`.
//!
//! The output has exactly the entity table's rows, in its order (duplicates included),
//! one output batch per input batch: the entity table's columns unchanged, then each
//! view's features in the order given. Timestamps compare as instants in nanoseconds
//! since the epoch (a column without a time zone is UTC). A view with no join keys is
//! global: every entity row is a candidate for each of its rows.

mod index;
pub mod spill;

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};

pub(crate) use index::timestamps_nanos;
use index::{check_key, check_timestamp, column_index, ViewIndex};
pub use spill::{Output as SpillOutput, SpillJoin};

/// The type a join key's values have, as its entity declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A signed or unsigned integer column of any width (compared as i64).
    Int64,
    /// A UTF-8 string column (`Utf8`, `LargeUtf8` or `Utf8View`).
    String,
}

/// One join key of a view: the column's name (the same in the entity table and in
/// the view's source) and its declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinKey {
    /// The column name.
    pub name: String,
    /// The entity's declared value type.
    pub kind: KeyType,
}

/// One feature view's side of a join.
#[derive(Debug, Clone)]
pub struct JoinView {
    /// The view's name, for messages.
    pub name: String,
    /// Its join keys (empty: a global view).
    pub join_keys: Vec<JoinKey>,
    /// Its TTL in nanoseconds (positive), or `None` for unlimited.
    pub ttl_nanos: Option<i64>,
    /// The source's event-time column (a timestamp column).
    pub timestamp_field: String,
    /// The source's created-time column, if it has one (a timestamp column).
    pub created_field: Option<String>,
    /// Only rows created by the entity row's time are candidates (see the module).
    pub filter_by_created: bool,
    /// The features to take: (column in the source, column name in the output).
    pub features: Vec<(String, String)>,
    /// The source's rows, in source order.
    pub batches: Vec<RecordBatch>,
}

/// Why a join cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    /// A column the join needs is missing from a table.
    #[error("{table} has no column `{column}`")]
    MissingColumn {
        /// `the entity table` or `feature view NAME`.
        table: String,
        /// The column.
        column: String,
    },
    /// A column has a type the join cannot use.
    #[error("column `{column}` of {table} is {found}, expected {expected}")]
    WrongType {
        /// `the entity table` or `feature view NAME`.
        table: String,
        /// The column.
        column: String,
        /// The type found.
        found: String,
        /// What the join expects.
        expected: String,
    },
    /// A time that nanoseconds since the epoch cannot hold (before 1677 or after 2262).
    #[error("column `{column}` of {table} holds a time outside 1677-2262, which nanosecond precision cannot hold")]
    OutOfRange {
        /// `the entity table` or `feature view NAME`.
        table: String,
        /// The column.
        column: String,
    },
    /// Two output columns would have the same name.
    #[error("the output would have two columns named `{0}`: use full feature names (view__feature) or select fewer features")]
    DuplicateColumn(String),
    /// The spill directory failed (full, or not writable).
    #[error("spilling the join to disk failed: {0}")]
    Spill(String),
    /// Arrow failed (should not happen on valid input).
    #[error("{0}")]
    Arrow(String),
}

/// Joins `views` onto the entity table (`entity_schema`, `entity`; its event time in
/// the column `timestamp_column`), as the module documents.
pub fn point_in_time_join(
    entity_schema: &SchemaRef,
    entity: &[RecordBatch],
    timestamp_column: &str,
    views: &[JoinView],
) -> Result<Vec<RecordBatch>, JoinError> {
    let join = Join::prepare(entity_schema, timestamp_column, views)?;
    entity.iter().map(|b| join.apply(b)).collect()
}

const ENTITY: &str = "the entity table";

/// One view of a prepared join: where its keys are in the entity table, the keys, its
/// TTL and its index.
struct Indexed {
    entity_keys: Vec<usize>,
    join_keys: Vec<JoinKey>,
    ttl_nanos: Option<i64>,
    index: ViewIndex,
}

/// A join with its views indexed, applied to an entity table a batch at a time (the
/// entity side streams; the views are held).
pub struct Join {
    schema: SchemaRef,
    ts_index: usize,
    timestamp_column: String,
    views: Vec<Indexed>,
}

impl Join {
    /// Checks the entity schema against the views and indexes the views.
    pub fn prepare(
        entity_schema: &SchemaRef,
        timestamp_column: &str,
        views: &[JoinView],
    ) -> Result<Self, JoinError> {
        let ts_index = column_index(entity_schema, ENTITY, timestamp_column)?;
        check_timestamp(entity_schema.field(ts_index), ENTITY)?;
        // The output schema, checked for clashes before any work.
        let mut fields: Vec<Field> = entity_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut indexed = Vec::with_capacity(views.len());
        for view in views {
            let table = format!("feature view {}", view.name);
            let mut entity_keys = Vec::with_capacity(view.join_keys.len());
            for key in &view.join_keys {
                let i = column_index(entity_schema, ENTITY, &key.name)?;
                check_key(entity_schema.field(i), ENTITY, key.kind)?;
                entity_keys.push(i);
            }
            let source = ViewIndex::build(view, &table)?;
            for ((_, out), dtype) in view.features.iter().zip(source.feature_types()) {
                fields.push(Field::new(out, dtype, true));
            }
            indexed.push(Indexed {
                entity_keys,
                join_keys: view.join_keys.clone(),
                ttl_nanos: view.ttl_nanos,
                index: source,
            });
        }
        let mut seen = HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().as_str()) {
                return Err(JoinError::DuplicateColumn(f.name().clone()));
            }
        }
        Ok(Join {
            schema: Arc::new(Schema::new(fields)),
            ts_index,
            timestamp_column: timestamp_column.to_owned(),
            views: indexed,
        })
    }

    /// The output's schema: the entity table's columns, then the features.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The output rows of one entity batch (of the schema `prepare` was given).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, JoinError> {
        let times = timestamps_nanos(batch.column(self.ts_index), ENTITY, &self.timestamp_column)?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for view in &self.views {
            let keys: Vec<&ArrayRef> = view.entity_keys.iter().map(|&i| batch.column(i)).collect();
            let rows = view
                .index
                .lookup(&keys, &view.join_keys, &times, view.ttl_nanos);
            let take_indices = UInt32Array::from(rows);
            for column in view.index.features() {
                columns.push(
                    arrow_select::take::take(column.as_ref(), &take_indices, None)
                        .map_err(|e| JoinError::Arrow(e.to_string()))?,
                );
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| JoinError::Arrow(e.to_string()))
    }
}

#[cfg(test)]
mod proptests;
