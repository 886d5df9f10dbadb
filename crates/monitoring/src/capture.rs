//! A reference taken from the prediction log: the rows a batch gives a capture become a
//! chunk (an Arrow IPC stream of their columns), and the chunks, once the capture has
//! every row it wants, one table, which is profiled and stored as an uploaded reference
//! is.
//!
//! Column types: a float tensor's columns are Float64, an integer tensor's Int64 (so that
//! Evidently's rule, integers with few distinct values are categorical, applies as it
//! would to the same data in pandas), BYTES and BOOL text. A column missing from some
//! predictions is null there; a column that is text in one prediction and numbers in
//! another is text throughout.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::error::{MonitoringError, Result};
use crate::references::References;
use crate::store::{Monitor, Store};
use crate::table::{number_text, Batches, Columns};
use crate::windows::{LoggedRows, Values};

/// One column's values while a chunk or the table is built.
enum Col {
    /// Only nulls so far: the kind comes with the first value.
    Nulls(usize),
    Floats(Vec<Option<f64>>),
    Integers(Vec<Option<i64>>),
    Texts(Vec<Option<String>>),
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Nulls(n) => *n,
            Col::Floats(v) => v.len(),
            Col::Integers(v) => v.len(),
            Col::Texts(v) => v.len(),
        }
    }

    /// `n` more nulls.
    fn pad(&mut self, n: usize) {
        match self {
            Col::Nulls(k) => *k += n,
            Col::Floats(v) => v.resize(v.len() + n, None),
            Col::Integers(v) => v.resize(v.len() + n, None),
            Col::Texts(v) => v.resize(v.len() + n, None),
        }
    }

    /// The column as text (a clash of kinds).
    fn into_texts(self) -> Vec<Option<String>> {
        match self {
            Col::Nulls(n) => vec![None; n],
            Col::Texts(v) => v,
            Col::Floats(v) => v.into_iter().map(|x| x.and_then(number_text)).collect(),
            Col::Integers(v) => v.into_iter().map(|x| x.map(|i| i.to_string())).collect(),
        }
    }

    fn into_floats(self) -> Vec<Option<f64>> {
        match self {
            Col::Nulls(n) => vec![None; n],
            Col::Floats(v) => v,
            Col::Integers(v) => v.into_iter().map(|x| x.map(|i| i as f64)).collect(),
            Col::Texts(_) => unreachable!("text is never made numbers"),
        }
    }

    /// This column followed by `more`: integers among floats are floats, numbers
    /// among text are text.
    fn then(self, more: Col) -> Col {
        match (self, more) {
            (Col::Nulls(n), Col::Nulls(m)) => Col::Nulls(n + m),
            (mut c, Col::Nulls(m)) => {
                c.pad(m);
                c
            }
            (Col::Nulls(n), Col::Floats(mut b)) => {
                b.splice(0..0, std::iter::repeat_n(None, n));
                Col::Floats(b)
            }
            (Col::Nulls(n), Col::Integers(mut b)) => {
                b.splice(0..0, std::iter::repeat_n(None, n));
                Col::Integers(b)
            }
            (Col::Nulls(n), Col::Texts(mut b)) => {
                b.splice(0..0, std::iter::repeat_n(None, n));
                Col::Texts(b)
            }
            (Col::Integers(mut a), Col::Integers(b)) => {
                a.extend(b);
                Col::Integers(a)
            }
            (Col::Texts(mut a), b) => {
                a.extend(b.into_texts());
                Col::Texts(a)
            }
            (a, Col::Texts(b)) => {
                let mut t = a.into_texts();
                t.extend(b);
                Col::Texts(t)
            }
            (a, b) => {
                let mut f = a.into_floats();
                f.extend(b.into_floats());
                Col::Floats(f)
            }
        }
    }

    fn into_array(self) -> (DataType, ArrayRef) {
        match self {
            Col::Nulls(n) => (
                DataType::Float64,
                Arc::new(arrow_array::Float64Array::new_null(n)),
            ),
            Col::Floats(v) => {
                let mut b = Float64Builder::with_capacity(v.len());
                b.extend(v);
                (DataType::Float64, Arc::new(b.finish()))
            }
            Col::Integers(v) => {
                let mut b = Int64Builder::with_capacity(v.len());
                b.extend(v);
                (DataType::Int64, Arc::new(b.finish()))
            }
            Col::Texts(v) => {
                let mut b = StringBuilder::new();
                b.extend(v);
                (DataType::Utf8, Arc::new(b.finish()))
            }
        }
    }
}

/// Columns by name in first-seen order, each as long as the rows added so far.
#[derive(Default)]
struct Builder {
    order: Vec<String>,
    columns: BTreeMap<String, Col>,
    rows: usize,
}

impl Builder {
    /// Appends the current block's values of column `name` (a column first seen here
    /// has nulls for the rows before).
    fn append(&mut self, name: &str, part: Col) {
        let rows = self.rows;
        let col = self.columns.entry(name.to_owned()).or_insert_with(|| {
            self.order.push(name.to_owned());
            Col::Nulls(rows)
        });
        let before = std::mem::replace(col, Col::Nulls(0));
        *col = before.then(part);
    }

    /// Ends a block of `n` rows: every column not in it gets nulls.
    fn end_rows(&mut self, n: usize) {
        self.rows += n;
        for c in self.columns.values_mut() {
            let short = self.rows - c.len();
            c.pad(short);
        }
    }

    fn finish(mut self) -> Result<RecordBatch, String> {
        let mut fields = Vec::with_capacity(self.order.len());
        let mut arrays = Vec::with_capacity(self.order.len());
        for name in &self.order {
            let col = self
                .columns
                .remove(name)
                .expect("every named column is built");
            let (ty, array) = col.into_array();
            fields.push(Field::new(name, ty, true));
            arrays.push(array);
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| format!("building the captured rows: {e}"))
    }
}

/// Rows `0..n` of a logged column.
fn logged(values: &Values, n: usize) -> Col {
    match values {
        Values::Numbers(v) => Col::Floats(v[..n].iter().map(|&x| Some(x)).collect()),
        // through f64, as the log decodes every number (exact below 2^53)
        Values::Integers(v) => Col::Integers(
            v[..n]
                .iter()
                .map(|&x| x.is_finite().then_some(x as i64))
                .collect(),
        ),
        Values::Texts(v) => Col::Texts(v[..n].to_vec()),
    }
}

/// The first `keep` rows of `predictions`, in order, as an Arrow IPC stream: every
/// column, or only `columns` when it names some (a named column no prediction has is all
/// nulls).
pub fn encode_chunk(
    predictions: &[&LoggedRows],
    keep: usize,
    columns: &[String],
) -> Result<Vec<u8>, String> {
    let mut b = Builder::default();
    for name in columns {
        b.append(name, Col::Nulls(0));
    }
    let mut left = keep;
    for p in predictions {
        if left == 0 {
            break;
        }
        let n = p.rows.min(left);
        let mut seen = std::collections::HashSet::new();
        for (name, values) in &p.columns {
            // a name twice in one prediction (an output named as an input): the first
            if (columns.is_empty() || columns.contains(name)) && seen.insert(name) {
                b.append(name, logged(values, n));
            }
        }
        b.end_rows(n);
        left -= n;
    }
    let batch = b.finish()?;
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
        .map_err(|e| format!("encoding the captured rows: {e}"))?;
    w.write(&batch)
        .and_then(|_| w.finish())
        .map_err(|e| format!("encoding the captured rows: {e}"))?;
    drop(w);
    Ok(out)
}

/// One column of a decoded chunk.
fn chunk_column(array: &dyn Array) -> Result<Col, String> {
    Ok(match array.data_type() {
        DataType::Float64 => Col::Floats(array.as_primitive::<Float64Type>().iter().collect()),
        DataType::Int64 => Col::Integers(array.as_primitive::<Int64Type>().iter().collect()),
        DataType::Utf8 => Col::Texts(
            array
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect(),
        ),
        other => return Err(format!("a captured chunk has a column of type {other}")),
    })
}

/// The chunks of a capture (in row order) as one table.
pub fn assemble(chunks: &[Vec<u8>]) -> Result<Batches, String> {
    let mut b = Builder::default();
    for chunk in chunks {
        let t = Batches::from_ipc(chunk).map_err(|e| format!("a captured chunk: {e}"))?;
        let rows = t.rows() as usize;
        for name in t.names() {
            let a = t
                .column(&name, "capture")
                .map_err(|e| format!("a captured chunk: {e}"))?;
            // a column that is all nulls here says nothing about its kind
            let part = if a.null_count() == a.len() {
                Col::Nulls(a.len())
            } else {
                chunk_column(a.as_ref())?
            };
            b.append(&name, part);
        }
        b.end_rows(rows);
    }
    let batch = b.finish()?;
    Ok(Batches::new(batch.schema(), vec![batch]))
}

/// Makes `m`'s complete capture its next reference version; a table that cannot be a
/// reference (a method that does not fit a column's inferred type, say) stops the capture
/// with the reason, shown on the monitor.
pub async fn finish(store: &Store, references: &References, m: &Monitor) -> Result<()> {
    let Some(capture) = m.capture.clone() else {
        return Ok(());
    };
    let chunks = store.capture_chunks(&capture.id).await?;
    let mut spec = m.spec.clone();
    let built = tokio::task::spawn_blocking(move || {
        let table = assemble(&chunks).map_err(MonitoringError::Internal)?;
        // the log has no targets: CBPE is fitted only on an uploaded reference
        if let Some(p) = spec.performance.as_mut() {
            if !table.names().contains(&p.target_column) {
                p.target_column.clear();
            }
        }
        let profile = crate::service::profile_of(&table, &spec)?;
        let cbpe = match &spec.performance {
            Some(p) => crate::outcomes::fit(p, &table).map_err(MonitoringError::InvalidArgument)?,
            None => None,
        };
        let parquet = table
            .to_parquet()
            .map_err(|e| MonitoringError::Internal(e.to_string()))?;
        Ok::<_, MonitoringError>((table.rows() as i64, profile, cbpe, parquet))
    })
    .await
    .map_err(|e| MonitoringError::Internal(format!("building a captured reference: {e}")))?;
    let (rows, profile, cbpe, parquet) = match built {
        Ok(b) => b,
        Err(MonitoringError::InvalidArgument(why)) => {
            tracing::warn!(monitor = %m.name, reason = %why, "the captured rows cannot be a reference");
            return store.fail_capture(&m.name, &capture.id, &why).await;
        }
        Err(e) => return Err(e),
    };
    if let Some(r) = references
        .save(
            store,
            &m.name,
            parquet,
            rows,
            &profile,
            cbpe.as_ref(),
            Some(&capture.id),
        )
        .await?
    {
        tracing::info!(monitor = %m.name, version = r.version, rows, "a reference taken from the prediction log");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
