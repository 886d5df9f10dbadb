//! A brute-force oracle for the point-in-time join, written from the module's
//! documented rule and independent of the engine: the Arrow inputs become plain Rust
//! values, and every entity row scans every row of every view.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt32Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use super::super::JoinView;

/// One key part's value: integers of any width compare as i64, strings as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
    Int(i64),
    Str(String),
}

/// One cell, for comparing the engine's output with the source row the oracle chose.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Value {
    Null,
    /// The bits of an f64 (so that the comparison is exact).
    F64(u64),
    Int(i64),
    Str(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::F64(bits) => write!(f, "{:?}", f64::from_bits(*bits)),
            Value::Int(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The column `name` of every batch, in order (panics when a batch lacks it).
fn columns<'a>(batches: &'a [RecordBatch], name: &str) -> Vec<&'a dyn Array> {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("oracle: no column {name}"))
                .as_ref()
        })
        .collect()
}

/// A key column's values.
pub(super) fn keys(col: &dyn Array) -> Vec<Option<Key>> {
    (0..col.len())
        .map(|i| {
            if col.is_null(i) {
                return None;
            }
            Some(match col.data_type() {
                DataType::Int64 => Key::Int(col.as_primitive::<Int64Type>().value(i)),
                DataType::Int32 => Key::Int(i64::from(col.as_primitive::<Int32Type>().value(i))),
                DataType::UInt32 => Key::Int(i64::from(col.as_primitive::<UInt32Type>().value(i))),
                DataType::Utf8 => Key::Str(col.as_string::<i32>().value(i).to_string()),
                DataType::LargeUtf8 => Key::Str(col.as_string::<i64>().value(i).to_string()),
                DataType::Utf8View => Key::Str(col.as_string_view().value(i).to_string()),
                other => panic!("oracle: no key of type {other}"),
            })
        })
        .collect()
}

/// A timestamp column's instants in nanoseconds since the epoch (the time zone does
/// not change the instant).
pub(super) fn nanos(col: &dyn Array) -> Vec<Option<i64>> {
    let (factor, raw): (i64, Vec<Option<i64>>) = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (
            1_000_000_000,
            col.as_primitive::<TimestampSecondType>().iter().collect(),
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => (
            1_000_000,
            col.as_primitive::<TimestampMillisecondType>()
                .iter()
                .collect(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (
            1_000,
            col.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect(),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (
            1,
            col.as_primitive::<TimestampNanosecondType>()
                .iter()
                .collect(),
        ),
        other => panic!("oracle: not a timestamp: {other}"),
    };
    raw.into_iter()
        .map(|v| v.map(|v| v.checked_mul(factor).expect("oracle: instant overflows")))
        .collect()
}

/// One cell of a feature column.
pub(super) fn value(col: &dyn Array, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Float64 => Value::F64(col.as_primitive::<Float64Type>().value(i).to_bits()),
        DataType::Int64 => Value::Int(col.as_primitive::<Int64Type>().value(i)),
        DataType::Utf8 => Value::Str(col.as_string::<i32>().value(i).to_string()),
        other => panic!("oracle: no feature of type {other}"),
    }
}

/// The column `name` over all batches (their concatenation), as plain values.
pub(super) fn column_values(batches: &[RecordBatch], name: &str) -> Vec<Value> {
    columns(batches, name)
        .into_iter()
        .flat_map(|c| (0..c.len()).map(move |i| value(c, i)))
        .collect()
}

/// The timestamp column `name` over all batches, in nanoseconds.
pub(super) fn column_nanos(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    columns(batches, name).into_iter().flat_map(nanos).collect()
}

/// Per row (over all batches), the values of the key columns `names`, in order.
fn key_rows(batches: &[RecordBatch], names: &[&str]) -> Vec<Vec<Option<Key>>> {
    let mut rows = Vec::new();
    for batch in batches {
        let parts: Vec<Vec<Option<Key>>> = names
            .iter()
            .map(|n| {
                keys(
                    batch
                        .column_by_name(n)
                        .expect("oracle: key column")
                        .as_ref(),
                )
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(parts.iter().map(|p| p[i].clone()).collect());
        }
    }
    rows
}

/// Whether an entity key matches a source key: every part non-null and equal (an
/// empty key, a global view's, matches every row).
fn same_key(entity: &[Option<Key>], source: &[Option<Key>]) -> bool {
    entity.len() == source.len()
        && entity
            .iter()
            .zip(source)
            .all(|(e, s)| matches!((e, s), (Some(e), Some(s)) if e == s))
}

/// For one view, per entity row: the index (in the concatenation of the view's
/// batches) of the winning source row, if any.
fn view_winners(
    entity: &[RecordBatch],
    times: &[Option<i64>],
    view: &JoinView,
) -> Vec<Option<usize>> {
    let names: Vec<&str> = view.join_keys.iter().map(|k| k.name.as_str()).collect();
    let entity_keys = key_rows(entity, &names);
    let source_keys = key_rows(&view.batches, &names);
    let events = column_nanos(&view.batches, &view.timestamp_field);
    let created = match &view.created_field {
        Some(c) => column_nanos(&view.batches, c),
        None => vec![None; events.len()],
    };
    times
        .iter()
        .zip(&entity_keys)
        .map(|(t, key)| {
            let t = (*t)?;
            // (row, (event_ts, created_ts)); `None < Some(_)` is the "missing or null
            // created is lower than any value" rule.
            let mut best: Option<(usize, (i64, Option<i64>))> = None;
            for (j, source_key) in source_keys.iter().enumerate() {
                if !same_key(key, source_key) {
                    continue;
                }
                let Some(e) = events[j] else { continue };
                if e > t {
                    continue;
                }
                if let Some(ttl) = view.ttl_nanos {
                    if i128::from(e) < i128::from(t) - i128::from(ttl) {
                        continue;
                    }
                }
                // written after t: not known at t
                if view.filter_by_created && created[j].is_some_and(|c| c > t) {
                    continue;
                }
                let rank = (e, created[j]);
                // `>=`: on a full tie the later row in source order wins.
                if best.as_ref().is_none_or(|(_, b)| rank >= *b) {
                    best = Some((j, rank));
                }
            }
            best.map(|(j, _)| j)
        })
        .collect()
}

/// Per entity row (over all batches, in order), per view: the winning source row.
pub(super) fn oracle(
    entity: &[RecordBatch],
    timestamp_column: &str,
    views: &[JoinView],
) -> Vec<Vec<Option<usize>>> {
    let times = column_nanos(entity, timestamp_column);
    let per_view: Vec<Vec<Option<usize>>> = views
        .iter()
        .map(|v| view_winners(entity, &times, v))
        .collect();
    (0..times.len())
        .map(|row| per_view.iter().map(|w| w[row]).collect())
        .collect()
}
