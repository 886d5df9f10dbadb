//! Columns of Arrow data as drift samples: the column types Evidently infers, and Parquet
//! read one column at a time, so the memory a report needs is that of one column of each
//! window, whatever the number of columns.

use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::drift::{ColumnType, Sample};

/// Evidently's `INTEGER_CARDINALITY_LIMIT`: an integer column with at most this many
/// distinct values is categorical.
pub const INTEGER_CARDINALITY_LIMIT: usize = 10;

/// A column Evidently would not test as numerical or categorical, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableError {
    #[error("column {column:?} has type {ty}, which is neither numerical nor categorical")]
    Unsupported { column: String, ty: DataType },
    #[error("column {column:?} is not in the {side}")]
    Missing { column: String, side: &'static str },
    #[error("reading Parquet: {0}")]
    Parquet(String),
    #[error("reading an Arrow IPC stream: {0}")]
    Ipc(String),
}

/// Whether an Arrow type holds numbers (integers, floats, decimals) or categories
/// (strings, booleans, dictionaries); `None` for anything else.
fn numeric(ty: &DataType) -> Option<bool> {
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64 => Some(true),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => {
            Some(false)
        }
        DataType::Dictionary(_, v) => numeric(v).map(|_| false),
        _ => None,
    }
}

fn is_integer(ty: &DataType) -> bool {
    ty.is_integer()
}

/// The type Evidently infers for a column (its `infer_column_type`): floats are
/// numerical; integers categorical when they hold at most 10 distinct values, else
/// numerical; strings, booleans and dictionaries categorical.
pub fn infer_type(name: &str, array: &dyn Array) -> Result<ColumnType, TableError> {
    let ty = array.data_type();
    match numeric(ty) {
        Some(true) if is_integer(ty) => {
            let sample = to_sample(name, array, ColumnType::Numerical)?;
            Ok(if sample.distinct() <= INTEGER_CARDINALITY_LIMIT {
                ColumnType::Categorical
            } else {
                ColumnType::Numerical
            })
        }
        Some(true) => Ok(ColumnType::Numerical),
        Some(false) => Ok(ColumnType::Categorical),
        None => Err(TableError::Unsupported {
            column: name.to_owned(),
            ty: ty.clone(),
        }),
    }
}

macro_rules! floats {
    ($array:expr, $t:ty) => {{
        let a = $array.as_primitive::<$t>();
        if a.null_count() == 0 {
            // no nulls: straight from the values buffer
            a.values().iter().map(|&x| x as f64).collect::<Vec<f64>>()
        } else {
            a.iter()
                .map(|v| v.map_or(f64::NAN, |x| x as f64))
                .collect::<Vec<f64>>()
        }
    }};
}

/// The values of `array` as a sample of type `ty`: numbers as `f64` (nulls missing) or
/// their text as categories; a numerical type read as categorical keeps its values' text.
pub fn to_sample(name: &str, array: &dyn Array, ty: ColumnType) -> Result<Sample, TableError> {
    let unsupported = || TableError::Unsupported {
        column: name.to_owned(),
        ty: array.data_type().clone(),
    };
    let numbers = numbers_of(array);
    match (ty, numbers) {
        (ColumnType::Numerical, Some(v)) => Ok(Sample::numerical(v)),
        (ColumnType::Numerical, None) => Err(unsupported()),
        (ColumnType::Categorical, Some(v)) => {
            // integers as their text ("3", not "3.0"), as pandas prints them
            Ok(Sample::categorical(v.into_iter().map(number_text)))
        }
        (ColumnType::Categorical, None) => match array.data_type() {
            // the common cases counted from the array's own strings, without a copy each
            DataType::Utf8 => Ok(Sample::categorical(array.as_string::<i32>().iter())),
            DataType::LargeUtf8 => Ok(Sample::categorical(array.as_string::<i64>().iter())),
            DataType::Utf8View => Ok(Sample::categorical(array.as_string_view().iter())),
            _ => {
                let strings = arrow_cast_to_strings(array).ok_or_else(unsupported)?;
                Ok(Sample::categorical(strings))
            }
        },
    }
}

/// The values of a numeric array as `f64` (nulls NaN); `None` for other types.
fn numbers_of(array: &dyn Array) -> Option<Vec<f64>> {
    Some(match array.data_type() {
        DataType::Float64 => floats!(array, Float64Type),
        DataType::Float32 => floats!(array, Float32Type),
        DataType::Float16 => array
            .as_primitive::<Float16Type>()
            .iter()
            .map(|v| v.map_or(f64::NAN, f64::from))
            .collect(),
        DataType::Int64 => floats!(array, Int64Type),
        DataType::Int32 => floats!(array, Int32Type),
        DataType::Int16 => floats!(array, Int16Type),
        DataType::Int8 => floats!(array, Int8Type),
        DataType::UInt64 => floats!(array, UInt64Type),
        DataType::UInt32 => floats!(array, UInt32Type),
        DataType::UInt16 => floats!(array, UInt16Type),
        DataType::UInt8 => floats!(array, UInt8Type),
        _ => return None,
    })
}

/// The values of a numeric column as `f64` (nulls NaN).
pub fn numbers(name: &str, array: &dyn Array) -> Result<Vec<f64>, TableError> {
    numbers_of(array).ok_or_else(|| TableError::Unsupported {
        column: name.to_owned(),
        ty: array.data_type().clone(),
    })
}

/// The values of a column as text (numbers as categories print them; nulls `None`).
pub fn texts(name: &str, array: &dyn Array) -> Result<Vec<Option<String>>, TableError> {
    match numbers_of(array) {
        Some(v) => Ok(v.into_iter().map(number_text).collect()),
        None => arrow_cast_to_strings(array).ok_or_else(|| TableError::Unsupported {
            column: name.to_owned(),
            ty: array.data_type().clone(),
        }),
    }
}

/// A number as a category: integers as their text ("3", not "3.0"), as pandas prints
/// them; NaN and infinities are missing.
pub(crate) fn number_text(x: f64) -> Option<String> {
    x.is_finite().then(|| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    })
}

/// The values of a string, boolean or dictionary array as optional strings.
fn arrow_cast_to_strings(array: &dyn Array) -> Option<Vec<Option<String>>> {
    Some(match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect(),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect(),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect(),
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map(|b| if b { "True" } else { "False" }.to_owned()))
            .collect(),
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let values = arrow_cast_to_strings(dict.values().as_ref())?;
            let keys = dict.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        None
                    } else {
                        values.get(keys[i]).cloned().flatten()
                    }
                })
                .collect()
        }
        _ => return None,
    })
}

/// A table whose columns are read one at a time.
pub trait Columns: Sync {
    /// The names of its top-level columns, in order.
    fn names(&self) -> Vec<String>;
    /// Its number of rows.
    fn rows(&self) -> u64;
    /// The column `name` (`side` names the table in messages).
    fn column(&self, name: &str, side: &'static str) -> Result<ArrayRef, TableError>;
}

/// An Arrow IPC stream held in memory as record batches.
pub struct Batches {
    schema: std::sync::Arc<Schema>,
    batches: Vec<RecordBatch>,
}

impl Batches {
    /// A table of `batches`, each of `schema`.
    pub fn new(schema: std::sync::Arc<Schema>, batches: Vec<RecordBatch>) -> Self {
        Batches { schema, batches }
    }

    /// Reads an Arrow IPC stream (the streaming format: a schema message, then batches).
    pub fn from_ipc(bytes: &[u8]) -> Result<Self, TableError> {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| TableError::Ipc(e.to_string()))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TableError::Ipc(e.to_string()))?;
        Ok(Batches { schema, batches })
    }

    /// Writes the table as one Parquet file.
    pub fn to_parquet(&self) -> Result<Bytes, TableError> {
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, self.schema.clone(), None)
            .map_err(|e| TableError::Parquet(e.to_string()))?;
        for b in &self.batches {
            w.write(b).map_err(|e| TableError::Parquet(e.to_string()))?;
        }
        w.close().map_err(|e| TableError::Parquet(e.to_string()))?;
        Ok(Bytes::from(buf))
    }
}

impl Columns for Batches {
    fn names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    fn column(&self, name: &str, side: &'static str) -> Result<ArrayRef, TableError> {
        let index = self
            .schema
            .index_of(name)
            .map_err(|_| TableError::Missing {
                column: name.to_owned(),
                side,
            })?;
        let parts: Vec<&dyn Array> = self
            .batches
            .iter()
            .map(|b| b.column(index).as_ref())
            .collect();
        match parts.len() {
            0 => Ok(arrow_array::new_empty_array(
                self.schema.field(index).data_type(),
            )),
            1 => Ok(self.batches[0].column(index).clone()),
            _ => arrow_select::concat::concat(&parts).map_err(|e| TableError::Ipc(e.to_string())),
        }
    }
}

/// A Parquet file held in memory, read one column at a time.
pub struct ParquetTable {
    bytes: Bytes,
    schema: std::sync::Arc<Schema>,
    rows: u64,
}

impl ParquetTable {
    /// Opens the file's footer.
    pub fn new(bytes: Bytes) -> Result<Self, TableError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .map_err(|e| TableError::Parquet(e.to_string()))?;
        let schema = builder.schema().clone();
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        Ok(ParquetTable {
            bytes,
            schema,
            rows,
        })
    }
}

impl Columns for ParquetTable {
    fn names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    /// The column `name`, all row groups concatenated.
    fn column(&self, name: &str, side: &'static str) -> Result<ArrayRef, TableError> {
        let index = self
            .schema
            .index_of(name)
            .map_err(|_| TableError::Missing {
                column: name.to_owned(),
                side,
            })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(self.bytes.clone())
            .map_err(|e| TableError::Parquet(e.to_string()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| TableError::Parquet(e.to_string()))?;
        let mut parts: Vec<ArrayRef> = Vec::new();
        for batch in reader {
            let batch: RecordBatch = batch.map_err(|e| TableError::Parquet(e.to_string()))?;
            parts.push(batch.column(0).clone());
        }
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        match refs.len() {
            0 => Ok(arrow_array::new_empty_array(
                self.schema.field(index).data_type(),
            )),
            1 => Ok(parts.swap_remove(0)),
            _ => {
                arrow_select::concat::concat(&refs).map_err(|e| TableError::Parquet(e.to_string()))
            }
        }
    }
}

/// The columns both tables share, in the reference's order.
pub fn shared_columns(reference: &[String], current: &[String]) -> Vec<String> {
    let cur: BTreeSet<&String> = current.iter().collect();
    reference
        .iter()
        .filter(|c| cur.contains(c))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn types_are_inferred_as_evidently_infers_them() {
        let floats = Float64Array::from(vec![1.0, 2.0]);
        assert_eq!(infer_type("f", &floats), Ok(ColumnType::Numerical));
        let few = Int64Array::from((0..100).map(|i| i % 10).collect::<Vec<_>>());
        assert_eq!(infer_type("i", &few), Ok(ColumnType::Categorical));
        let many = Int64Array::from((0..100).map(|i| i % 11).collect::<Vec<_>>());
        assert_eq!(infer_type("i", &many), Ok(ColumnType::Numerical));
        let s = StringArray::from(vec![Some("a"), None]);
        assert_eq!(infer_type("s", &s), Ok(ColumnType::Categorical));
        let sample = to_sample("i", &few, ColumnType::Categorical).expect("categories");
        assert_eq!((sample.distinct(), sample.len()), (10, 100));
    }

    #[test]
    fn parquet_is_read_one_column_at_a_time() {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef,
            ),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ])
        .expect("a batch");
        let mut buf = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).expect("a writer");
        w.write(&batch).expect("written");
        w.close().expect("closed");
        let t = ParquetTable::new(Bytes::from(buf)).expect("a table");
        assert_eq!(
            (t.names(), t.rows()),
            (vec!["a".to_owned(), "b".to_owned()], 2)
        );
        let a = t.column("a", "reference").expect("column a");
        let s = to_sample("a", a.as_ref(), ColumnType::Numerical).expect("a sample");
        assert_eq!((s.len(), s.missing()), (1, 1));
        assert_eq!(
            t.column("c", "reference").unwrap_err().to_string(),
            "column \"c\" is not in the reference"
        );
    }
}
