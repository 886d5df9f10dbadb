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
        // The source read a row group at a time: memory holds the winners, not the history.
        let parquet = self
            .offline
            .open_parquet(wanted.history()?, Some(&columns), &what)
            .await?;
        let (v, created) = (view.clone(), source.created_timestamp_column.clone());
        let timestamp = source.timestamp_field.clone();
        let rt = tokio::runtime::Handle::current();
        let picked = tokio::task::spawn_blocking(move || {
            let bad = |m: String| FeatureStoreError::FailedPrecondition(format!("{what}: {m}"));
            let mut newest = Newest::new(&v, &keys, &timestamp, created.as_deref(), (start, end));
            parquet.read_blocking(&rt, |b| newest.add(&b).map_err(bad))?;
            newest.finish().map_err(bad)
        })
        .await
        .map_err(|e| FeatureStoreError::Internal(format!("materializing: {e}")))??;
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
    range: (i64, i64),
) -> std::result::Result<Picked, String> {
    let mut newest = Newest::new(view, keys, timestamp_field, created_field, range);
    for batch in batches {
        newest.add(batch)?;
    }
    newest.finish()
}

/// The newest row of each key, picked a batch at a time: it holds the winners so far (at
/// most about twice as many rows as keys), never the source.
pub(crate) struct Newest<'a> {
    view: &'a FeatureView,
    keys: &'a [String],
    timestamp_field: &'a str,
    created_field: Option<&'a str>,
    range: (i64, i64),
    /// Per key: its best row so far, and where its values are (batch of `kept`, row).
    best: HashMap<RowKey, (Best, usize, usize)>,
    /// The view's columns of rows that won when they came (some since beaten).
    kept: Vec<arrow_array::RecordBatch>,
    kept_rows: usize,
    /// How many times `kept` was compacted.
    compactions: usize,
    /// Rows seen, for source order.
    seen: usize,
    rows: i64,
    newest: Option<i64>,
}

impl<'a> Newest<'a> {
    pub(crate) fn new(
        view: &'a FeatureView,
        keys: &'a [String],
        timestamp_field: &'a str,
        created_field: Option<&'a str>,
        range: (i64, i64),
    ) -> Self {
        Newest {
            view,
            keys,
            timestamp_field,
            created_field,
            range,
            best: HashMap::new(),
            kept: Vec::new(),
            kept_rows: 0,
            compactions: 0,
            seen: 0,
            rows: 0,
            newest: None,
        }
    }

    /// Takes the next rows of the source, in source order.
    pub(crate) fn add(
        &mut self,
        batch: &arrow_array::RecordBatch,
    ) -> std::result::Result<(), String> {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))
        };
        let times = nanos(col(self.timestamp_field)?, self.timestamp_field)?;
        let created = match self.created_field {
            Some(c) => nanos(col(c)?, c)?,
            None => vec![None; batch.num_rows()],
        };
        let key_columns: Vec<&arrow_array::ArrayRef> = self
            .keys
            .iter()
            .map(|k| col(k))
            .collect::<std::result::Result<_, _>>()?;
        let features: Vec<usize> = self
            .view
            .schema
            .iter()
            .map(|f| {
                batch
                    .schema()
                    .index_of(&f.name)
                    .map_err(|_| format!("no column `{}`", f.name))
            })
            .collect::<std::result::Result<_, _>>()?;
        // Winners from this batch point at `here`, the batch `kept` gets next.
        let here = self.kept.len();
        let (start, end) = self.range;
        let mut won = false;
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
            self.rows += 1;
            self.newest = Some(self.newest.map_or(t, |n: i64| n.max(t)));
            let candidate = (t, created[i], self.seen + i);
            let entry = self.best.entry(key).or_insert((candidate, here, i));
            if candidate >= entry.0 {
                *entry = (candidate, here, i);
                won = true;
            }
        }
        self.seen += batch.num_rows();
        if !won {
            return Ok(());
        }
        // Keep only this batch's winners, and only the view's columns.
        let mut rows: Vec<u32> = self
            .best
            .values()
            .filter(|(_, b, _)| *b == here)
            .map(|&(_, _, r)| r as u32)
            .collect();
        rows.sort_unstable();
        let mut at = vec![0usize; batch.num_rows()];
        for (n, &r) in rows.iter().enumerate() {
            at[r as usize] = n;
        }
        for (_, b, r) in self.best.values_mut() {
            if *b == here {
                *r = at[*r];
            }
        }
        let taken = batch
            .project(&features)
            .and_then(|b| {
                arrow_select::take::take_record_batch(&b, &arrow_array::UInt32Array::from(rows))
            })
            .map_err(|e| e.to_string())?;
        self.kept_rows += taken.num_rows();
        self.kept.push(taken);
        if self.kept_rows > 2 * self.best.len() + 4096 {
            self.compact()?;
        }
        Ok(())
    }

    /// Puts the current winners into one batch, dropping the rows since beaten.
    fn compact(&mut self) -> std::result::Result<(), String> {
        let mut entries: Vec<&mut (Best, usize, usize)> = self.best.values_mut().collect();
        let indices: Vec<(usize, usize)> = entries.iter().map(|e| (e.1, e.2)).collect();
        let columns = (0..self.kept[0].num_columns())
            .map(|c| {
                let arrays: Vec<&dyn arrow_array::Array> =
                    self.kept.iter().map(|b| b.column(c).as_ref()).collect();
                arrow_select::interleave::interleave(&arrays, &indices)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let batch = arrow_array::RecordBatch::try_new_with_options(
            self.kept[0].schema(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )
        .map_err(|e| e.to_string())?;
        for (n, e) in entries.iter_mut().enumerate() {
            (e.1, e.2) = (0, n);
        }
        self.kept_rows = batch.num_rows();
        self.kept = vec![batch];
        self.compactions += 1;
        Ok(())
    }

    /// The winners, encoded.
    pub(crate) fn finish(self) -> std::result::Result<Picked, String> {
        let mut writes = Vec::with_capacity(self.best.len());
        for (key, ((t, c, _), b, i)) in self.best {
            let batch = &self.kept[b];
            let mut values: HashMap<&str, Option<Val>> =
                HashMap::with_capacity(self.view.schema.len());
            for f in &self.view.schema {
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
            rows: self.rows,
            newest: self.newest,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, TimestampNanosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::defs::{FeatureDef, ValueType};

    /// Batch by batch, with winners compacted on the way, the pick is a scan's: per key
    /// the greatest (event time, created time, source order) in the range.
    #[test]
    fn the_newest_rows_picked_a_batch_at_a_time_are_a_full_scans() {
        let view = FeatureView {
            name: "v".into(),
            entities: vec!["e".into()],
            ttl_nanos: 0,
            source: "s".into(),
            online: true,
            schema: vec![FeatureDef {
                name: "row".into(),
                dtype: ValueType::Int64,
            }],
            description: String::new(),
            tags: Default::default(),
        };
        let ts = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Nanosecond, None), true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            ts("t"),
            ts("c"),
            Field::new("row", DataType::Int64, false),
        ]));
        let (keys, batches, per) = (5000u64, 20, 2000);
        let mut state = 7u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let (range, mut all, mut source) = ((2, 18), Vec::new(), Vec::new());
        for b in 0..batches {
            let (mut ks, mut times, mut created, mut ids) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in 0..per {
                let row = (b * per + i) as i64;
                let k = (next(20) > 0).then(|| next(keys) as i64);
                // Time moves on from batch to batch (most rows win), with ties.
                let t = (next(30) > 0).then(|| (b + next(3) as usize) as i64);
                let c = (next(3) > 0).then(|| next(4) as i64);
                ks.push(k);
                times.push(t);
                created.push(c);
                ids.push(row);
                all.push((k, t, c, row));
            }
            source.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ks)),
                        Arc::new(TimestampNanosecondArray::from(times)),
                        Arc::new(TimestampNanosecondArray::from(created)),
                        Arc::new(Int64Array::from(ids)),
                    ],
                )
                .unwrap(),
            );
        }
        let keys_ = vec!["k".to_string()];
        let mut newest = Newest::new(&view, &keys_, "t", Some("c"), range);
        for b in &source {
            newest.add(b).unwrap();
        }
        assert!(
            newest.compactions > 0,
            "the case is big enough to compact the winners"
        );
        let picked = newest.finish().unwrap();
        // The scan.
        let mut expected: HashMap<i64, (i64, Option<i64>, i64)> = HashMap::new();
        let in_range = all.iter().filter_map(|&(k, t, c, row)| match (k, t) {
            (Some(k), Some(t)) if t >= range.0 && t <= range.1 => Some((k, (t, c, row))),
            _ => None,
        });
        let mut rows = 0;
        for (k, cand) in in_range {
            rows += 1;
            let e = expected.entry(k).or_insert(cand);
            if cand >= *e {
                *e = cand;
            }
        }
        assert_eq!(picked.rows, rows);
        assert_eq!(picked.writes.len(), expected.len());
        let encoded: HashMap<String, i64> = expected
            .keys()
            .map(|&k| (encode_key(&[KeyPart::Int(k)]), k))
            .collect();
        for w in &picked.writes {
            let k = encoded[&w.key];
            let (t, c, row) = expected[&k];
            assert_eq!((w.event_ts, w.created_ts), (t, c), "key {k}");
            let want: HashMap<&str, Option<Val>> = [("row", Some(Val::Int64(row)))].into();
            assert_eq!(w.payload, serde_json::to_string(&want).unwrap(), "key {k}");
        }
    }
}
