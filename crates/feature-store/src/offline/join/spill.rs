//! The join when the views' history does not fit in memory. Each keyed view's rows, and
//! the entity rows' keys, are split by a hash of the key into partitions on disk (Arrow
//! IPC files in a directory of their own, removed when the join is dropped); each
//! partition is joined alone by the in-memory join (the same code, so the same rule);
//! then each view's results are put back into the entity table's order. Memory holds one
//! partition of one view at a time, or while merging about one entity batch per view; a
//! view with no keys is held whole (every entity row may take any of its rows).
//!
//! Its steps: [`SpillJoin::prepare`] checks what the in-memory join checks, on the views'
//! schemas; [`SpillJoin::add_source`] takes each view's rows in source order (which
//! breaks full ties, so a view's rows must come in that order); [`SpillJoin::push`] takes
//! the entity table a batch at a time; [`SpillJoin::finish`] joins partition by partition
//! and returns the output, one batch per entity batch, in the entity table's order.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{new_empty_array, Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use super::index::{column_index, partitions, timestamps_nanos};
use super::{Join, JoinError, JoinKey, JoinView, ENTITY};

/// The most partitions a view is split into (each an open file while it is split).
pub const MAX_PARTITIONS: usize = 512;

fn io_error(what: &str, e: impl std::fmt::Display) -> JoinError {
    JoinError::Spill(format!("{what}: {e}"))
}

/// One file of batches in the spill directory: written, closed, then read. A file never
/// written reads as no batches.
struct Spill {
    path: PathBuf,
    schema: SchemaRef,
    writer: Option<StreamWriter<BufWriter<File>>>,
}

impl Spill {
    fn new(path: PathBuf, schema: SchemaRef) -> Self {
        Spill {
            path,
            schema,
            writer: None,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), JoinError> {
        if self.writer.is_none() {
            let file = File::create(&self.path)
                .map_err(|e| io_error(&format!("creating {}", self.path.display()), e))?;
            self.writer = Some(
                StreamWriter::try_new(BufWriter::new(file), &self.schema)
                    .map_err(|e| io_error("writing the spill", e))?,
            );
        }
        let writer = self.writer.as_mut().expect("opened above");
        writer
            .write(batch)
            .map_err(|e| io_error(&format!("writing {}", self.path.display()), e))
    }

    fn close(&mut self) -> Result<(), JoinError> {
        if let Some(mut w) = self.writer.take() {
            w.finish()
                .map_err(|e| io_error(&format!("writing {}", self.path.display()), e))?;
            w.into_inner()
                .map_err(|e| io_error(&format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }

    /// The batches written, in order.
    fn read(&self) -> Result<Batches, JoinError> {
        if !self.path.exists() {
            return Ok(Batches(None));
        }
        let file = File::open(&self.path)
            .map_err(|e| io_error(&format!("reading {}", self.path.display()), e))?;
        let reader = StreamReader::try_new(BufReader::new(file), None)
            .map_err(|e| io_error(&format!("reading {}", self.path.display()), e))?;
        Ok(Batches(Some(reader)))
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The batches of a spill file.
struct Batches(Option<StreamReader<BufReader<File>>>);

impl Iterator for Batches {
    type Item = Result<RecordBatch, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .as_mut()?
            .next()
            .map(|r| r.map_err(|e| io_error("reading the spill", e)))
    }
}

/// One view of a spilled join.
struct View {
    /// The view; its `batches` hold one empty batch of the kept columns (for types).
    view: JoinView,
    /// The columns kept from the source: keys, event time, created time, features.
    kept: Vec<String>,
    /// Where its keys are in the entity table.
    entity_keys: Vec<usize>,
    /// Its partitions' rows, or `None` for a view held whole.
    parts: Option<Vec<Spill>>,
    /// A held view's rows.
    held: Vec<RecordBatch>,
}

/// A point-in-time join that spills to disk (see the module).
pub struct SpillJoin {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    entity_schema: SchemaRef,
    timestamp_column: String,
    ts_index: usize,
    views: Vec<View>,
    entity: Spill,
}

impl SpillJoin {
    /// Checks the entity schema against the views as [`Join::prepare`] does, and makes
    /// the join's directory under `dir`. Each view's `batches` are read for their schema
    /// only (a view with no batch has no rows); its rows come through `add_source`.
    /// `parts[i]` is the number of partitions of view `i` (at most `MAX_PARTITIONS`).
    pub fn prepare(
        entity_schema: &SchemaRef,
        timestamp_column: &str,
        views: &[JoinView],
        parts: &[usize],
        dir: &Path,
    ) -> Result<Self, JoinError> {
        let typed: Vec<JoinView> = views
            .iter()
            .map(|v| JoinView {
                batches: v
                    .batches
                    .first()
                    .map(|b| vec![RecordBatch::new_empty(b.schema())])
                    .unwrap_or_default(),
                ..v.clone()
            })
            .collect();
        // Every check of the in-memory join, on no rows: the same errors, the same schema.
        let checked = Join::prepare(entity_schema, timestamp_column, &typed)?;
        let dir = tempfile::Builder::new()
            .prefix("mlops-join-")
            .tempdir_in(dir)
            .map_err(|e| io_error(&format!("creating a directory in {}", dir.display()), e))?;
        let mut spilled = Vec::with_capacity(typed.len());
        for (i, view) in typed.into_iter().enumerate() {
            let mut kept: Vec<String> = view.join_keys.iter().map(|k| k.name.clone()).collect();
            kept.push(view.timestamp_field.clone());
            kept.extend(view.created_field.clone());
            kept.extend(view.features.iter().map(|(c, _)| c.clone()));
            let mut seen = std::collections::HashSet::new();
            kept.retain(|c| seen.insert(c.clone()));
            let entity_keys = view
                .join_keys
                .iter()
                .map(|k| column_index(entity_schema, ENTITY, &k.name))
                .collect::<Result<Vec<_>, _>>()?;
            let view = match view.batches.first() {
                Some(b) => JoinView {
                    batches: vec![project(b, &kept, &view.name)?],
                    ..view
                },
                None => view,
            };
            let n = parts.get(i).copied().unwrap_or(1).clamp(1, MAX_PARTITIONS);
            // A view with no features to take needs no rows at all.
            let split =
                !view.join_keys.is_empty() && !view.batches.is_empty() && !view.features.is_empty();
            let parts = split.then(|| {
                (0..n)
                    .map(|p| {
                        Spill::new(
                            dir.path().join(format!("v{i}-source-{p}")),
                            view.batches[0].schema(),
                        )
                    })
                    .collect()
            });
            spilled.push(View {
                view,
                kept,
                entity_keys,
                parts,
                held: Vec::new(),
            });
        }
        let entity = Spill::new(dir.path().join("entity"), entity_schema.clone());
        Ok(SpillJoin {
            schema: checked.schema().clone(),
            ts_index: column_index(entity_schema, ENTITY, timestamp_column)?,
            entity_schema: entity_schema.clone(),
            timestamp_column: timestamp_column.to_owned(),
            views: spilled,
            entity,
            dir,
        })
    }

    /// The output's schema, as [`Join::schema`].
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Takes the next rows of view `view`'s source, in source order.
    pub fn add_source(&mut self, view: usize, batch: &RecordBatch) -> Result<(), JoinError> {
        let v = &mut self.views[view];
        if v.view.features.is_empty() {
            return Ok(());
        }
        let batch = project(batch, &v.kept, &v.view.name)?;
        let Some(parts) = &mut v.parts else {
            v.held.push(batch);
            return Ok(());
        };
        let keys: Vec<&ArrayRef> = v
            .view
            .join_keys
            .iter()
            .map(|k| batch.column_by_name(&k.name).expect("projected above"))
            .collect();
        split(&batch, &keys, &v.view.join_keys, parts)
    }

    /// Takes the entity table's next batch.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), JoinError> {
        // A time out of range is the caller's error now, not at the end.
        timestamps_nanos(batch.column(self.ts_index), ENTITY, &self.timestamp_column)?;
        self.entity.write(batch)
    }

    /// Joins what was added and returns the output, a batch per entity batch.
    pub fn finish(mut self) -> Result<Output, JoinError> {
        self.entity.close()?;
        let mut columns = Vec::new();
        let mut held = Vec::new();
        for i in 0..self.views.len() {
            match self.views[i].parts.is_some() {
                true => {
                    let file = self.join_view(i)?;
                    columns.push(Some(file.read()?));
                }
                false => {
                    let v = &mut self.views[i];
                    let batches = std::mem::take(&mut v.held);
                    held.push(JoinView {
                        batches: if batches.is_empty() {
                            v.view.batches.clone()
                        } else {
                            batches
                        },
                        ..v.view.clone()
                    });
                    columns.push(None);
                }
            }
        }
        let held_join = Join::prepare(&self.entity_schema, &self.timestamp_column, &held)?;
        Ok(Output {
            entity: self.entity.read()?,
            schema: self.schema,
            entity_width: self.entity_schema.fields().len(),
            widths: self.views.iter().map(|v| v.view.features.len()).collect(),
            columns,
            held: held_join,
            _dir: self.dir,
        })
    }

    /// Joins view `i` partition by partition; returns the file of its feature columns,
    /// a batch per entity batch.
    fn join_view(&mut self, i: usize) -> Result<Spill, JoinError> {
        let arrow = |e: arrow_schema::ArrowError| JoinError::Arrow(e.to_string());
        let out_schema = Arc::new(
            self.schema
                .project(&self.feature_range(i).collect::<Vec<_>>())
                .map_err(arrow)?,
        );
        let dir = self.dir.path();
        let v = &mut self.views[i];
        let mut parts = v.parts.take().expect("a spilled view");
        for p in &mut parts {
            p.close()?;
        }
        let n = parts.len();
        // The entity rows' keys and times, split as the view's rows were.
        let mut cols = v.entity_keys.clone();
        cols.push(self.ts_index);
        let keyed = Arc::new(self.entity_schema.project(&cols).map_err(arrow)?);
        let mut entity_parts: Vec<Spill> = (0..n)
            .map(|p| Spill::new(dir.join(format!("v{i}-entity-{p}")), keyed.clone()))
            .collect();
        for batch in self.entity.read()? {
            let batch = batch?.project(&cols).map_err(arrow)?;
            let keys: Vec<&ArrayRef> = batch.columns()[..cols.len() - 1].iter().collect();
            split(&batch, &keys, &v.view.join_keys, &mut entity_parts)?;
        }
        // Each partition joined alone, by the in-memory join; its results come in its
        // entity rows' order.
        let mut results = Vec::with_capacity(n);
        for (p, (source, entity)) in parts.iter().zip(&mut entity_parts).enumerate() {
            entity.close()?;
            let mut batches = source.read()?.collect::<Result<Vec<_>, _>>()?;
            source.remove();
            if batches.is_empty() {
                batches = v.view.batches.clone();
            }
            let join = Join::prepare(
                &keyed,
                &self.timestamp_column,
                &[JoinView {
                    batches,
                    ..v.view.clone()
                }],
            )?;
            let mut result = Spill::new(dir.join(format!("v{i}-result-{p}")), out_schema.clone());
            for batch in entity.read()? {
                let out = join.apply(&batch?)?;
                let features = out.columns()[keyed.fields().len()..].to_vec();
                result
                    .write(&RecordBatch::try_new(out_schema.clone(), features).map_err(arrow)?)?;
            }
            entity.remove();
            result.close()?;
            results.push(result);
        }
        // The partitions' results merged back into the entity table's order.
        let mut merged = Spill::new(dir.join(format!("v{i}-columns")), out_schema.clone());
        let mut cursors = results
            .iter()
            .map(|r| {
                Ok(Cursor {
                    batches: r.read()?,
                    batch: None,
                    at: 0,
                })
            })
            .collect::<Result<Vec<_>, JoinError>>()?;
        for batch in self.entity.read()? {
            let batch = batch?;
            let keys: Vec<&ArrayRef> = v.entity_keys.iter().map(|&k| batch.column(k)).collect();
            let rows = partitions(&keys, &v.view.join_keys, n);
            let columns = merge(&rows, &mut cursors, &out_schema)?;
            let options =
                arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            merged.write(
                &RecordBatch::try_new_with_options(out_schema.clone(), columns, &options)
                    .map_err(arrow)?,
            )?;
        }
        drop(cursors);
        for r in &results {
            r.remove();
        }
        merged.close()?;
        Ok(merged)
    }

    /// The output columns of view `i`'s features.
    fn feature_range(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.entity_schema.fields().len()
            + self.views[..i]
                .iter()
                .map(|v| v.view.features.len())
                .sum::<usize>();
        start..start + self.views[i].view.features.len()
    }
}

/// The columns `kept` of `batch` (a view's source), by name.
fn project(batch: &RecordBatch, kept: &[String], view: &str) -> Result<RecordBatch, JoinError> {
    let schema = batch.schema();
    let indices = kept
        .iter()
        .map(|c| column_index(&schema, &format!("feature view {view}"), c))
        .collect::<Result<Vec<_>, _>>()?;
    batch
        .project(&indices)
        .map_err(|e| JoinError::Arrow(e.to_string()))
}

/// Writes each row of `batch` to the partition of its key, keeping the rows' order.
fn split(
    batch: &RecordBatch,
    keys: &[&ArrayRef],
    join_keys: &[JoinKey],
    parts: &mut [Spill],
) -> Result<(), JoinError> {
    let of = partitions(keys, join_keys, parts.len());
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); parts.len()];
    for (row, &p) in of.iter().enumerate() {
        rows[p as usize].push(row as u32);
    }
    for (p, rows) in rows.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let part = if rows.len() == batch.num_rows() {
            batch.clone()
        } else {
            arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| JoinError::Arrow(e.to_string()))?
        };
        parts[p].write(&part)?;
    }
    Ok(())
}

/// Where the merge is in one partition's results.
struct Cursor {
    batches: Batches,
    batch: Option<RecordBatch>,
    at: usize,
}

/// The feature columns of one entity batch whose rows are in the partitions `rows`,
/// taken in order from each partition's results.
fn merge(
    rows: &[u32],
    cursors: &mut [Cursor],
    schema: &SchemaRef,
) -> Result<Vec<ArrayRef>, JoinError> {
    if rows.is_empty() {
        return Ok(schema
            .fields()
            .iter()
            .map(|f| new_empty_array(f.data_type()))
            .collect());
    }
    let mut sources: Vec<RecordBatch> = Vec::new();
    let mut slot = vec![usize::MAX; cursors.len()];
    let mut take = Vec::with_capacity(rows.len());
    for &p in rows {
        let p = p as usize;
        let c = &mut cursors[p];
        while c.batch.as_ref().is_none_or(|b| c.at >= b.num_rows()) {
            let next = c.batches.next().ok_or_else(|| {
                JoinError::Spill(format!("partition {p}'s results ended early"))
            })??;
            c.batch = Some(next);
            c.at = 0;
            slot[p] = usize::MAX;
        }
        if slot[p] == usize::MAX {
            sources.push(c.batch.clone().expect("loaded above"));
            slot[p] = sources.len() - 1;
        }
        take.push((slot[p], c.at));
        c.at += 1;
    }
    (0..schema.fields().len())
        .map(|f| {
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(f).as_ref()).collect();
            arrow_select::interleave::interleave(&arrays, &take)
                .map_err(|e| JoinError::Arrow(e.to_string()))
        })
        .collect()
}

/// The output of a spilled join: a batch per entity batch, in order. It holds the
/// join's directory until dropped.
pub struct Output {
    entity: Batches,
    schema: SchemaRef,
    entity_width: usize,
    widths: Vec<usize>,
    /// Per view: the file of its feature columns, or `None` for a held view.
    columns: Vec<Option<Batches>>,
    /// The held views, joined in memory.
    held: Join,
    _dir: tempfile::TempDir,
}

impl Output {
    /// The output's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch, JoinError>> {
        let batch = match self.entity.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let held = self.held.apply(&batch)?;
            let mut held_columns = held.columns()[self.entity_width..].iter();
            let mut columns = batch.columns().to_vec();
            for (file, &width) in self.columns.iter_mut().zip(&self.widths) {
                match file {
                    Some(file) => {
                        let part = file.next().ok_or_else(|| {
                            JoinError::Spill("a view's columns ended early".into())
                        })??;
                        columns.extend(part.columns().iter().cloned());
                    }
                    None => columns.extend(held_columns.by_ref().take(width).cloned()),
                }
            }
            RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| JoinError::Arrow(e.to_string()))
        })())
    }
}

impl Iterator for Output {
    type Item = Result<RecordBatch, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}
