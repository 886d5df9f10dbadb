//! A view's rows indexed for as-of lookups: grouped by key, each group sorted by
//! (event time, created time, source order), so the winner for a time `t` is the
//! last entry at or before `t`, found by binary search.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{new_null_array, Array, ArrayRef};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::{JoinError, JoinKey, JoinView, KeyType};

/// The index of `name` in `schema`, or the error naming `table`.
pub(crate) fn column_index(schema: &Schema, table: &str, name: &str) -> Result<usize, JoinError> {
    schema.index_of(name).map_err(|_| JoinError::MissingColumn {
        table: table.to_owned(),
        column: name.to_owned(),
    })
}

fn wrong_type(table: &str, field: &Field, expected: &str) -> JoinError {
    JoinError::WrongType {
        table: table.to_owned(),
        column: field.name().clone(),
        found: field.data_type().to_string(),
        expected: expected.to_owned(),
    }
}

/// Checks that `field` is a timestamp column.
pub(crate) fn check_timestamp(field: &Field, table: &str) -> Result<(), JoinError> {
    match field.data_type() {
        DataType::Timestamp(_, _) => Ok(()),
        _ => Err(wrong_type(table, field, "a timestamp")),
    }
}

/// Checks that `field` can hold keys of type `kind`.
pub(crate) fn check_key(field: &Field, table: &str, kind: KeyType) -> Result<(), JoinError> {
    let ok = match kind {
        KeyType::Int64 => field.data_type().is_integer(),
        KeyType::String => matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
    };
    if ok {
        Ok(())
    } else {
        let expected = match kind {
            KeyType::Int64 => "an integer (the entity's key type is int64)",
            KeyType::String => "a string (the entity's key type is string)",
        };
        Err(wrong_type(table, field, expected))
    }
}

/// A timestamp column's values as nanoseconds since the epoch (UTC; a column without a
/// time zone holds UTC). A time that nanoseconds cannot hold (before 1677 or after 2262)
/// is an error, never a value clamped into a false order.
pub(crate) fn timestamps_nanos(
    array: &ArrayRef,
    table: &str,
    column: &str,
) -> Result<Vec<Option<i64>>, JoinError> {
    let scaled = |values: &mut dyn Iterator<Item = Option<i64>>, factor: i64| {
        values
            .map(|v| match v {
                None => Ok(None),
                Some(v) => v
                    .checked_mul(factor)
                    .map(Some)
                    .ok_or_else(|| JoinError::OutOfRange {
                        table: table.to_owned(),
                        column: column.to_owned(),
                    }),
            })
            .collect()
    };
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => scaled(
            &mut array.as_primitive::<TimestampSecondType>().iter(),
            1_000_000_000,
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled(
            &mut array.as_primitive::<TimestampMillisecondType>().iter(),
            1_000_000,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => scaled(
            &mut array.as_primitive::<TimestampMicrosecondType>().iter(),
            1_000,
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect()),
        other => unreachable!("checked to be a timestamp: {other}"),
    }
}

/// An integer column's values as i64 (a u64 beyond i64 matches nothing).
fn integers(array: &ArrayRef) -> Vec<Option<i64>> {
    macro_rules! widen {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.and_then(|v| i64::try_from(v).ok()))
                .collect()
        };
    }
    match array.data_type() {
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => array.as_primitive::<Int64Type>().iter().collect(),
        DataType::UInt8 => widen!(UInt8Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt64 => widen!(UInt64Type),
        other => unreachable!("checked to be an integer: {other}"),
    }
}

/// A string column of any of Arrow's string layouts.
enum Strings<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl<'a> Strings<'a> {
    fn new(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Utf8 => Strings::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Strings::Large(array.as_string::<i64>()),
            DataType::Utf8View => Strings::View(array.as_string_view()),
            other => unreachable!("checked to be a string: {other}"),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strings::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::Large(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// One key column, read.
enum KeyColumn<'a> {
    Int(Vec<Option<i64>>),
    Str(Strings<'a>),
}

impl<'a> KeyColumn<'a> {
    fn new(array: &'a ArrayRef, kind: KeyType) -> Self {
        match kind {
            KeyType::Int64 => KeyColumn::Int(integers(array)),
            KeyType::String => KeyColumn::Str(Strings::new(array)),
        }
    }

    fn part(&self, i: usize) -> Option<Part> {
        match self {
            KeyColumn::Int(v) => v[i].map(Part::Int),
            KeyColumn::Str(s) => s.get(i).map(|s| Part::Str(s.into())),
        }
    }
}

/// One part of a composite key. Parts are compared as values, so composite keys
/// never collide the way concatenated strings would.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Int(i64),
    Str(Box<str>),
}

/// Row `i`'s composite key; `None` when a part is null.
fn composite(columns: &[KeyColumn<'_>], i: usize) -> Option<Vec<Part>> {
    columns.iter().map(|c| c.part(i)).collect()
}

/// FxHash: keys are not attacker-chosen across requests here, and SipHash would cost
/// the join a third of its time on integer keys.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type FxMap<K> = HashMap<K, u32, BuildHasherDefault<Fx>>;

/// Key → group number.
enum Groups {
    /// A view with no keys: one group.
    Global,
    Int(FxMap<i64>),
    Str(FxMap<Box<str>>),
    Composite(FxMap<Vec<Part>>),
}

impl Groups {
    fn new(keys: &[JoinKey]) -> Self {
        match keys {
            [] => Groups::Global,
            [k] if k.kind == KeyType::Int64 => Groups::Int(FxMap::default()),
            [_] => Groups::Str(FxMap::default()),
            _ => Groups::Composite(FxMap::default()),
        }
    }

    /// The group of row `i` of `columns`, a new one for a new key; `None` for a null
    /// key part (matches nothing).
    fn insert(&mut self, columns: &[KeyColumn<'_>], i: usize) -> Option<u32> {
        fn insert<K: Hash + Eq>(map: &mut FxMap<K>, key: K) -> u32 {
            let next = map.len() as u32;
            *map.entry(key).or_insert(next)
        }
        Some(match (self, columns) {
            (Groups::Global, _) => 0,
            (Groups::Int(map), [KeyColumn::Int(v)]) => insert(map, v[i]?),
            (Groups::Str(map), [KeyColumn::Str(s)]) => {
                let key = s.get(i)?;
                match map.get(key) {
                    Some(&g) => g,
                    None => insert(map, key.into()),
                }
            }
            (Groups::Composite(map), _) => insert(map, composite(columns, i)?),
            _ => unreachable!("a key map reads keys of its own type"),
        })
    }

    /// The group of row `i` of `columns`: `None` for an unknown key or a null part.
    fn find(&self, columns: &[KeyColumn<'_>], i: usize) -> Option<u32> {
        match (self, columns) {
            (Groups::Global, _) => Some(0),
            (Groups::Int(map), [KeyColumn::Int(v)]) => map.get(&v[i]?).copied(),
            (Groups::Str(map), [KeyColumn::Str(s)]) => map.get(s.get(i)?).copied(),
            (Groups::Composite(map), _) => map.get(&composite(columns, i)?).copied(),
            _ => unreachable!("a key map reads keys of its own type"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Groups::Global => 1,
            Groups::Int(m) => m.len(),
            Groups::Str(m) => m.len(),
            Groups::Composite(m) => m.len(),
        }
    }
}

/// A view's source, indexed.
pub(crate) struct ViewIndex {
    groups: Groups,
    /// Group `g`'s entries are `starts[g]..starts[g + 1]`.
    starts: Vec<u32>,
    /// Per entry, sorted by (group, event time, created time, source row): event time.
    times: Vec<i64>,
    /// Per entry: the source row.
    rows: Vec<u32>,
    /// Per entry, when the view filters by created time: the created time.
    created: Option<Vec<Option<i64>>>,
    /// The feature columns, over all of the source's rows.
    features: Vec<ArrayRef>,
}

impl ViewIndex {
    /// Reads and indexes `view`'s source; `table` names it in errors.
    pub(crate) fn build(view: &JoinView, table: &str) -> Result<Self, JoinError> {
        let arrow = |e: arrow_schema::ArrowError| JoinError::Arrow(e.to_string());
        let Some(first) = view.batches.first() else {
            // No rows and no schema: every value is null.
            let groups = Groups::new(&view.join_keys);
            return Ok(ViewIndex {
                starts: vec![0; groups.len() + 1],
                groups,
                times: Vec::new(),
                rows: Vec::new(),
                created: None,
                features: vec![new_null_array(&DataType::Null, 0); view.features.len()],
            });
        };
        let schema = first.schema();
        let concat = |i: usize| -> Result<ArrayRef, JoinError> {
            let parts: Vec<&dyn Array> =
                view.batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow_select::concat::concat(&parts).map_err(arrow)
        };
        let ts_index = column_index(&schema, table, &view.timestamp_field)?;
        check_timestamp(schema.field(ts_index), table)?;
        let created_index = match &view.created_field {
            Some(c) => {
                let i = column_index(&schema, table, c)?;
                check_timestamp(schema.field(i), table)?;
                Some(i)
            }
            None => None,
        };
        let mut key_arrays = Vec::with_capacity(view.join_keys.len());
        for key in &view.join_keys {
            let i = column_index(&schema, table, &key.name)?;
            check_key(schema.field(i), table, key.kind)?;
            key_arrays.push(concat(i)?);
        }
        let mut features = Vec::with_capacity(view.features.len());
        for (column, _) in &view.features {
            features.push(concat(column_index(&schema, table, column)?)?);
        }
        let times = timestamps_nanos(&concat(ts_index)?, table, &view.timestamp_field)?;
        let created = match (created_index, &view.created_field) {
            (Some(i), Some(c)) => timestamps_nanos(&concat(i)?, table, c)?,
            _ => vec![None; times.len()],
        };
        let key_columns: Vec<KeyColumn<'_>> = key_arrays
            .iter()
            .zip(&view.join_keys)
            .map(|(a, k)| KeyColumn::new(a, k.kind))
            .collect();
        let mut groups = Groups::new(&view.join_keys);
        // (group, event time, created time, source row); rows with a null key or time
        // are never candidates.
        if times.len() > u32::MAX as usize {
            return Err(JoinError::Arrow(format!(
                "{table} has {} rows; a view joins at most {} at once",
                times.len(),
                u32::MAX
            )));
        }
        let mut entries: Vec<(u32, i64, Option<i64>, u32)> = Vec::with_capacity(times.len());
        for (row, (&t, &c)) in times.iter().zip(&created).enumerate() {
            let Some(t) = t else { continue };
            if let Some(g) = groups.insert(&key_columns, row) {
                entries.push((g, t, c, row as u32));
            }
        }
        drop(key_columns);
        entries.sort_unstable();
        let mut starts = vec![0u32; groups.len() + 1];
        for e in &entries {
            starts[e.0 as usize + 1] += 1;
        }
        for g in 1..starts.len() {
            starts[g] += starts[g - 1];
        }
        Ok(ViewIndex {
            groups,
            starts,
            times: entries.iter().map(|e| e.1).collect(),
            rows: entries.iter().map(|e| e.3).collect(),
            created: (view.filter_by_created && view.created_field.is_some())
                .then(|| entries.iter().map(|e| e.2).collect()),
            features,
        })
    }

    /// The data types of the feature columns.
    pub(crate) fn feature_types(&self) -> impl Iterator<Item = DataType> + '_ {
        self.features.iter().map(|f| f.data_type().clone())
    }

    /// The feature columns, over the source's rows.
    pub(crate) fn features(&self) -> &[ArrayRef] {
        &self.features
    }

    /// The winning source row for each entity row (keys in `keys`, times in `times`).
    pub(crate) fn lookup(
        &self,
        keys: &[&ArrayRef],
        join_keys: &[JoinKey],
        times: &[Option<i64>],
        ttl_nanos: Option<i64>,
    ) -> Vec<Option<u32>> {
        let columns: Vec<KeyColumn<'_>> = keys
            .iter()
            .zip(join_keys)
            .map(|(a, k)| KeyColumn::new(a, k.kind))
            .collect();
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let t = t?;
                let g = self.groups.find(&columns, i)? as usize;
                let (start, end) = (self.starts[g] as usize, self.starts[g + 1] as usize);
                let group = &self.times[start..end];
                let mut at = group.partition_point(|&e| e <= t);
                let low = ttl_nanos.map(|ttl| t.saturating_sub(ttl));
                if let Some(created) = &self.created {
                    // the greatest entry created by t: entries are sorted by (event,
                    // created, row), so walk back past those created later, no further
                    // than the TTL's window
                    let created = &created[start..end];
                    while at > 0
                        && created[at - 1].is_some_and(|c| c > t)
                        && low.is_none_or(|low| group[at - 1] >= low)
                    {
                        at -= 1;
                    }
                }
                if at == 0 {
                    return None;
                }
                let winner = at - 1;
                match low {
                    Some(low) if group[winner] < low => None,
                    _ => Some(self.rows[start + winner]),
                }
            })
            .collect()
    }
}

/// The partition (of `parts`) of each row's key, the same for a key whatever its
/// columns' integer width or string layout, so a view's rows and the entity rows with
/// the same key meet in the same partition. A row with a null key part is in partition 0
/// (it matches nothing wherever it is).
pub(crate) fn partitions(keys: &[&ArrayRef], join_keys: &[JoinKey], parts: usize) -> Vec<u32> {
    let columns: Vec<KeyColumn<'_>> = keys
        .iter()
        .zip(join_keys)
        .map(|(a, k)| KeyColumn::new(a, k.kind))
        .collect();
    let rows = keys.first().map_or(0, |k| k.len());
    if parts <= 1 || columns.is_empty() {
        return vec![0; rows];
    }
    (0..rows)
        .map(|i| {
            let mut h = Fx::default();
            for c in &columns {
                match c.part(i) {
                    None => return 0,
                    Some(Part::Int(v)) => h.write_i64(v),
                    Some(Part::Str(s)) => {
                        h.write(s.as_bytes());
                        h.write_usize(s.len());
                    }
                }
            }
            // splitmix64's finalizer: every bit of the key moves the partition.
            let mut z = h.finish();
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % parts as u64) as u32
        })
        .collect()
}
