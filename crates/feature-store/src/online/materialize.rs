//! Materialization: the newest row of every key in a time range of a view's source,
//! written into the online store in one transaction per view, monotonically (a stored
//! value is replaced only by one with a greater (event time, created time)).

use std::collections::HashMap;

use mlops_events::Envelope;
use mlops_proto::events::{topics, v1 as events};
use mlops_storage::now_millis;
use sqlx::Row;

use super::value::{encode_key, key_part_at, value_at, KeyPart, Val};
use super::OnlineStore;
use crate::defs::{Definitions, FeatureView};
use crate::error::{FeatureStoreError, Result};
use crate::offline::historical::wanted_view;

/// Rows per INSERT statement (5 parameters each; SQLite allows 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// One view's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The view.
    pub view: String,
    /// The range read, nanoseconds since the epoch (`i64::MIN`: from the beginning).
    pub start: i64,
    /// Its end, included.
    pub end: i64,
    /// Source rows in the range.
    pub rows: i64,
    /// Keys whose online value it wrote.
    pub keys_written: i64,
    /// The newest event time read.
    pub newest_event: Option<i64>,
}

/// A key's newest row in the range: (event time, created time, row), compared in that
/// order (a null created time is lowest; a later row wins a full tie).
type Best = (i64, Option<i64>, usize);

impl OnlineStore {
    /// Where `view`'s last successful run ended, if it has one.
    async fn last_end(&self, view: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(end_ts) FROM feature_store_materializations WHERE view_name = $1",
        )
        .bind(view)
        .fetch_one(self.store.db().reader())
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Materializes `views` (every online view when empty) for source rows with an event
    /// time in `[start, end]` (`start` `None`: from the beginning; with `incremental`,
    /// from each view's last run).
    pub async fn materialize(
        &self,
        defs: &Definitions,
        views: &[String],
        start: Option<i64>,
        end: i64,
        incremental: bool,
    ) -> Result<Vec<Run>> {
        let chosen: Vec<&FeatureView> = if views.is_empty() {
            defs.feature_views.values().filter(|v| v.online).collect()
        } else {
            let mut out = Vec::with_capacity(views.len());
            for name in views {
                let v = defs.feature_views.get(name).ok_or_else(|| {
                    FeatureStoreError::InvalidArgument(format!(
                        "feature view `{name}` is not defined"
                    ))
                })?;
                if !v.online {
                    return Err(FeatureStoreError::FailedPrecondition(format!(
                        "feature view `{name}` is not online (`online: false` in its definition)"
                    )));
                }
                out.push(v);
            }
            out
        };
        let mut runs = Vec::with_capacity(chosen.len());
        for view in chosen {
            let from = if incremental {
                self.last_end(&view.name).await?.unwrap_or(i64::MIN)
            } else {
                start.unwrap_or(i64::MIN)
            };
            if from > end {
                return Err(FeatureStoreError::InvalidArgument(format!(
                    "feature view `{}`: the range starts after it ends",
                    view.name
                )));
            }
            let m = &self.metrics;
            let run = match self
                .materialize_view(defs, view, from, end, incremental)
                .await
            {
                Ok(run) => run,
                Err(e) => {
                    m.materializations
                        .with_label_values(&[&view.name, "failed"])
                        .inc();
                    tracing::warn!(view = %view.name, error = %e, "materialization failed; the online store is as it was");
                    return Err(e);
                }
            };
            m.materializations
                .with_label_values(&[&view.name, "ok"])
                .inc();
            m.materialized_rows
                .with_label_values(&[&view.name])
                .inc_by(run.rows as u64);
            if let Some(newest) = run.newest_event {
                let gauge = m.newest_event.with_label_values(&[&view.name]);
                gauge.set(gauge.get().max(newest.div_euclid(1_000_000_000)));
            }
            self.invalidate(&view.name);
            tracing::info!(view = %run.view, rows = run.rows, keys_written = run.keys_written, "materialized");
            runs.push(run);
        }
        Ok(runs)
    }

    async fn materialize_view(
        &self,
        defs: &Definitions,
        view: &FeatureView,
        start: i64,
        end: i64,
        incremental: bool,
    ) -> Result<Run> {
        let wanted = wanted_view(defs, view)?;
        let source = &wanted.source;
        let keys: Vec<String> = wanted.keys.iter().map(|k| k.name.clone()).collect();
        let mut columns = keys.clone();
        columns.push(source.timestamp_field.clone());
        columns.extend(source.created_timestamp_column.clone());
        columns.extend(view.schema.iter().map(|f| f.name.clone()));
        let what = format!("source `{}` of feature view `{}`", source.name, view.name);
        let table = self
            .offline
            .read(wanted.history()?, Some(&columns), &what)
            .await?;
        let bad = |m: String| FeatureStoreError::FailedPrecondition(format!("{what}: {m}"));
        let picked = newest_rows(
            view,
            &keys,
            &source.timestamp_field,
            source.created_timestamp_column.as_deref(),
            &table.batches,
            (start, end),
        )
        .map_err(bad)?;
        let record = sqlx::query(
            "INSERT INTO feature_store_materializations \
             (view_name, start_ts, end_ts, source_rows, keys_written, incremental, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        let (rows, newest) = (picked.rows, picked.newest);
        let event = |keys_written| events::Materialized {
            name: view.name.clone(),
            start_nanos: if start == i64::MIN { 0 } else { start },
            end_nanos: end,
            rows,
            keys_written,
            newest_event_nanos: newest.unwrap_or(0),
            incremental,
        };
        let keys_written = self
            .write(&view.name, &picked.writes, |keys_written| {
                let record = record
                    .bind(view.name.clone())
                    .bind(start)
                    .bind(end)
                    .bind(rows)
                    .bind(keys_written)
                    .bind(incremental)
                    .bind(now_millis());
                (Some(record), envelope(&view.name, &event(keys_written)))
            })
            .await?;
        Ok(Run {
            view: view.name.clone(),
            start,
            end,
            rows,
            keys_written,
            newest_event: newest,
        })
    }

    /// Writes `writes` into `view`'s online rows (monotonic: a stored row is replaced only
    /// by a greater (event time, created time)), then what `finish` makes of the number of
    /// keys written (a statement, an event), all in one transaction. Returns that number.
    pub(crate) async fn write<'q>(
        &self,
        view: &str,
        writes: &[Write],
        finish: impl FnOnce(
            i64,
        ) -> (
            Option<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>>,
            Envelope,
        ),
    ) -> Result<i64> {
        let mut tx = self.store.db().begin().await?;
        let mut keys_written = 0i64;
        for chunk in writes.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO feature_store_online (view_name, entity_key, event_ts, created_ts, payload) VALUES ",
            );
            for n in 0..chunk.len() {
                let p = n * 5;
                if n > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                ));
            }
            sql.push_str(
                " ON CONFLICT (view_name, entity_key) DO UPDATE SET event_ts = excluded.event_ts, \
                 created_ts = excluded.created_ts, payload = excluded.payload \
                 WHERE excluded.event_ts > feature_store_online.event_ts \
                 OR (excluded.event_ts = feature_store_online.event_ts \
                 AND COALESCE(excluded.created_ts, -9223372036854775807) > \
                 COALESCE(feature_store_online.created_ts, -9223372036854775807))",
            );
            let mut q = sqlx::query(&sql);
            for w in chunk {
                q = q
                    .bind(view)
                    .bind(&w.key)
                    .bind(w.event_ts)
                    .bind(w.created_ts)
                    .bind(&w.payload);
            }
            keys_written += q.execute(&mut *tx).await?.rows_affected() as i64;
        }
        let (statement, event) = finish(keys_written);
        if let Some(statement) = statement {
            statement.execute(&mut *tx).await?;
        }
        let _enqueued = self.store.outbox().enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(keys_written)
    }
}

/// An event about `view` on the feature store's topic.
pub(crate) fn envelope<M: prost::Name + prost::Message>(view: &str, msg: &M) -> Envelope {
    Envelope::of(
        topics::FEATURES,
        "/mlops/feature-store",
        view,
        format!("feature_views/{view}"),
        msg,
    )
}

/// A key's newest row, in its stored form.
pub(crate) struct Write {
    pub(crate) key: String,
    pub(crate) event_ts: i64,
    pub(crate) created_ts: Option<i64>,
    pub(crate) payload: String,
}

/// The newest row of every key among `batches`' rows with an event time in `range`.
pub(crate) struct Picked {
    /// The rows to write.
    pub writes: Vec<Write>,
    /// Rows in the range.
    pub rows: i64,
    /// The newest event time among them.
    pub newest: Option<i64>,
}

/// Picks the newest row of each key (by (event time, created time), a later row winning a
/// full tie) among the rows of `batches` with an event time in `range`, and encodes it;
/// rows with a null key or time are skipped. `Err` says what does not fit `view`.
pub(crate) fn newest_rows(
    view: &FeatureView,
    keys: &[String],
    timestamp_field: &str,
    created_field: Option<&str>,
    batches: &[arrow_array::RecordBatch],
    (start, end): (i64, i64),
) -> std::result::Result<Picked, String> {
    let mut best: HashMap<RowKey, (Best, usize)> = HashMap::new();
    let mut rows = 0i64;
    let mut newest: Option<i64> = None;
    let mut offset = 0;
    for (b, batch) in batches.iter().enumerate() {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))
        };
        let times = nanos(col(timestamp_field)?, timestamp_field)?;
        let created = match created_field {
            Some(c) => nanos(col(c)?, c)?,
            None => vec![None; batch.num_rows()],
        };
        let key_columns: Vec<&arrow_array::ArrayRef> = keys
            .iter()
            .map(|k| col(k))
            .collect::<std::result::Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            let Some(t) = times[i] else { continue };
            if t < start || t > end {
                continue;
            }
            let key = match key_columns.as_slice() {
                [one] => key_part_at(one, i).map(RowKey::One),
                many => many
                    .iter()
                    .map(|k| key_part_at(k, i))
                    .collect::<Option<Vec<_>>>()
                    .map(RowKey::Many),
            };
            let Some(key) = key else { continue };
            rows += 1;
            newest = Some(newest.map_or(t, |n: i64| n.max(t)));
            let candidate = (t, created[i], offset + i);
            let entry = best.entry(key).or_insert((candidate, b));
            if candidate >= entry.0 {
                *entry = (candidate, b);
            }
        }
        offset += batch.num_rows();
    }
    let mut starts = Vec::with_capacity(batches.len());
    let mut at = 0;
    for batch in batches {
        starts.push(at);
        at += batch.num_rows();
    }
    let mut writes = Vec::with_capacity(best.len());
    for (key, ((t, c, row), b)) in best {
        let batch = &batches[b];
        let i = row - starts[b];
        let mut values: HashMap<&str, Option<Val>> = HashMap::with_capacity(view.schema.len());
        for f in &view.schema {
            let column = batch
                .column_by_name(&f.name)
                .ok_or_else(|| format!("no column `{}`", f.name))?;
            values.insert(&f.name, value_at(column, i)?);
        }
        writes.push(Write {
            key: match key {
                RowKey::One(p) => encode_key(std::slice::from_ref(&p)),
                RowKey::Many(parts) => encode_key(&parts),
            },
            event_ts: t,
            created_ts: c,
            payload: serde_json::to_string(&values).expect("values serialize"),
        });
    }
    Ok(Picked {
        writes,
        rows,
        newest,
    })
}

/// A row's key while the newest rows are picked (one part needs no list).
#[derive(PartialEq, Eq, Hash)]
enum RowKey {
    One(KeyPart),
    Many(Vec<KeyPart>),
}

/// A timestamp column as nanoseconds (the join's reading: a time nanoseconds cannot hold
/// is an error).
fn nanos(
    array: &arrow_array::ArrayRef,
    column: &str,
) -> std::result::Result<Vec<Option<i64>>, String> {
    if !matches!(array.data_type(), arrow_schema::DataType::Timestamp(_, _)) {
        return Err(format!(
            "`{column}` is {}, not a timestamp column",
            array.data_type()
        ));
    }
    crate::offline::join::timestamps_nanos(array, "the source", column).map_err(|e| e.to_string())
}
