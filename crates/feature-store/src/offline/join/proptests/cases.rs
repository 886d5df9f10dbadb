//! Random, seeded inputs for the join's property tests: tiny key and time domains, so
//! that collisions, duplicates, ties and TTL boundaries are common.

use std::sync::Arc;

use arrow_array::types::{
    ArrowTimestampType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, LargeStringArray, PrimitiveArray,
    RecordBatch, StringArray, StringViewArray, UInt32Array,
};
use arrow_schema::{Field, Schema, SchemaRef, TimeUnit};

use super::super::{JoinKey, JoinView, KeyType};

// ---------------------------------------------------------------------------------------
// A small deterministic PRNG (std only): every case is reproducible from its seed.
// ---------------------------------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random inputs.
// ---------------------------------------------------------------------------------------

const INT_KEYS: &[i64] = &[0, 1, 2, 3];
/// Pairs whose concatenations (plain or with a likely separator) collide.
const STR_PAIRS: &[(&str, &str)] = &[
    ("a", "bc"),
    ("ab", "c"),
    ("abc", ""),
    ("", "abc"),
    ("a", "b"),
    ("b", "a"),
    ("x\u{0}", "y"),
    ("x", "\u{0}y"),
    ("x\u{1f}", "y"),
    ("x", "\u{1f}y"),
    ("p|", "q"),
    ("p", "|q"),
];
const STR_PARTS: &[&str] = &["a", "ab", "bc", "c", "", "abc", "b"];

/// The time domain of one case: `base + 0..12` ticks of `unit` nanoseconds, sometimes
/// one nanosecond off.
struct Clock {
    unit: i64,
    base: i64,
    jitter: bool,
}

impl Clock {
    fn random(rng: &mut Rng) -> Clock {
        let unit = if rng.chance(60) {
            1_000_000_000
        } else {
            1_000_000
        };
        let base = match rng.below(10) {
            0..=5 => 0,
            6 | 7 => -6,
            _ => 1_700_000_000_000_000_000 / unit,
        };
        Clock {
            unit,
            base,
            jitter: rng.chance(30),
        }
    }
    fn instant(&self, rng: &mut Rng, null_percent: usize) -> Option<i64> {
        if rng.chance(null_percent) {
            return None;
        }
        let mut ns = (self.base + rng.below(12) as i64) * self.unit;
        if self.jitter && rng.chance(15) {
            ns += if rng.chance(50) { 1 } else { -1 };
        }
        Some(ns)
    }
    fn ttl(&self, rng: &mut Rng) -> Option<i64> {
        let m = 1 + rng.below(5) as i64;
        match rng.below(20) {
            0..=4 => None,
            5 => Some(1),
            6 => Some(500_000_000),
            7 => Some(i64::MAX),
            8 | 9 => Some(m * self.unit - 1),
            10 | 11 => Some(m * self.unit + 1),
            _ => Some(m * self.unit),
        }
    }
}

fn ts_array<T: ArrowTimestampType>(raw: Vec<Option<i64>>, tz: Option<&str>) -> ArrayRef {
    let a: PrimitiveArray<T> = raw.into_iter().collect();
    Arc::new(match tz {
        Some(tz) => a.with_timezone(tz),
        None => a,
    })
}

/// A timestamp column holding these instants, in a random unit that represents them
/// exactly and a random time zone.
fn time_column(rng: &mut Rng, nanos: &[Option<i64>]) -> ArrayRef {
    let units = [
        (TimeUnit::Second, 1_000_000_000),
        (TimeUnit::Millisecond, 1_000_000),
        (TimeUnit::Microsecond, 1_000),
        (TimeUnit::Nanosecond, 1),
    ];
    let fits: Vec<(TimeUnit, i64)> = units
        .into_iter()
        .filter(|(_, f)| nanos.iter().flatten().all(|v| v % f == 0))
        .collect();
    let (unit, f) = *rng.pick(&fits);
    let tz = *rng.pick(&[None, Some("UTC"), Some("+02:00")]);
    let raw: Vec<Option<i64>> = nanos.iter().map(|v| v.map(|v| v / f)).collect();
    match unit {
        TimeUnit::Second => ts_array::<TimestampSecondType>(raw, tz),
        TimeUnit::Millisecond => ts_array::<TimestampMillisecondType>(raw, tz),
        TimeUnit::Microsecond => ts_array::<TimestampMicrosecondType>(raw, tz),
        TimeUnit::Nanosecond => ts_array::<TimestampNanosecondType>(raw, tz),
    }
}

fn int_column(rng: &mut Rng, values: &[Option<i64>], entity: bool) -> ArrayRef {
    let narrow = |v: &Option<i64>| v.map(|v| i32::try_from(v).unwrap());
    match rng.below(5) {
        0 => Arc::new(Int32Array::from_iter(values.iter().map(narrow))),
        1 if entity => Arc::new(UInt32Array::from_iter(
            values.iter().map(|v| v.map(|v| u32::try_from(v).unwrap())),
        )),
        _ => Arc::new(Int64Array::from(values.to_vec())),
    }
}

fn str_column(rng: &mut Rng, values: &[Option<String>]) -> ArrayRef {
    match rng.below(10) {
        0..=5 => Arc::new(StringArray::from(values.to_vec())),
        6..=8 => Arc::new(LargeStringArray::from(values.to_vec())),
        _ => Arc::new(StringViewArray::from(values.to_vec())),
    }
}

/// One row's key values `(id, a, b)` from tiny domains; `unknown` is an id only one
/// side has.
fn random_keys(rng: &mut Rng, unknown: i64) -> (Option<i64>, Option<String>, Option<String>) {
    let id = match rng.below(10) {
        0 => None,
        1 => Some(unknown),
        _ => Some(*rng.pick(INT_KEYS)),
    };
    let (a, b) = if rng.chance(70) {
        let (a, b) = *rng.pick(STR_PAIRS);
        (a.to_string(), b.to_string())
    } else {
        (
            rng.pick(STR_PARTS).to_string(),
            rng.pick(STR_PARTS).to_string(),
        )
    };
    let a = (!rng.chance(8)).then_some(a);
    let b = (!rng.chance(8)).then_some(b);
    (id, a, b)
}

/// A batch of these named columns (all nullable), in a random column order.
fn table(rng: &mut Rng, mut columns: Vec<(String, ArrayRef)>) -> RecordBatch {
    rng.shuffle(&mut columns);
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| Field::new(n, c.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, c)| c).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

/// The batch cut into 1 to 4 slices (some may be empty).
fn split(rng: &mut Rng, batch: &RecordBatch) -> Vec<RecordBatch> {
    let n = batch.num_rows();
    let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(n + 1)).collect();
    cuts.push(0);
    cuts.push(n);
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| batch.slice(w[0], w[1] - w[0]))
        .collect()
}

#[derive(Clone, Copy)]
enum Shape {
    Int,
    Composite,
    Global,
}

fn random_view(rng: &mut Rng, shape: Shape, clock: &Clock, scale: usize) -> JoinView {
    let int_key = || JoinKey {
        name: "id".into(),
        kind: KeyType::Int64,
    };
    let str_key = |n: &str| JoinKey {
        name: n.into(),
        kind: KeyType::String,
    };
    let (name, mut join_keys) = match shape {
        Shape::Int => ("v_int", vec![int_key()]),
        Shape::Composite if rng.chance(50) => ("v_comp", vec![str_key("a"), str_key("b")]),
        Shape::Composite => ("v_comp", vec![int_key(), str_key("a")]),
        Shape::Global => ("v_glob", vec![]),
    };
    rng.shuffle(&mut join_keys);
    let n = rng.below(13 * scale);
    let with_created = rng.chance(50);
    let (mut ids, mut as_, mut bs): (Vec<_>, Vec<Option<String>>, Vec<Option<String>>) =
        (vec![], vec![], vec![]);
    let (mut events, mut created) = (vec![], vec![]);
    for j in 0..n {
        if j > 0 && rng.chance(15) {
            // A copy of the previous row's keys and times: a full tie.
            ids.push(ids[j - 1]);
            as_.push(as_[j - 1].clone());
            bs.push(bs[j - 1].clone());
            events.push(events[j - 1]);
            created.push(created[j - 1]);
            continue;
        }
        let (id, a, b) = random_keys(rng, 5);
        ids.push(id);
        as_.push(a);
        bs.push(b);
        events.push(clock.instant(rng, 8));
        created.push(if with_created {
            clock.instant(rng, 15)
        } else {
            None
        });
    }
    let float: Vec<Option<f64>> = (0..n)
        .map(|j| (!rng.chance(10)).then_some(j as f64 + 0.5))
        .collect();
    let int: Vec<Option<i64>> = (0..n)
        .map(|j| (!rng.chance(10)).then_some(j as i64 * 10 + 1))
        .collect();
    let text: Vec<Option<String>> = (0..n)
        .map(|j| (!rng.chance(10)).then(|| format!("{name}#{j}")))
        .collect();
    let timestamp_field = rng.pick(&["event_ts", "ts", "when"]).to_string();
    let mut columns: Vec<(String, ArrayRef)> = vec![
        (timestamp_field.clone(), time_column(rng, &events)),
        ("f_float".into(), Arc::new(Float64Array::from(float))),
        ("f_int".into(), Arc::new(Int64Array::from(int))),
        ("f_str".into(), Arc::new(StringArray::from(text))),
    ];
    let uses = |k: &str| join_keys.iter().any(|j| j.name == k);
    // Key columns the view does not use are sometimes there too (and must be ignored).
    if uses("id") || rng.chance(30) {
        columns.push(("id".into(), int_column(rng, &ids, false)));
    }
    if uses("a") || rng.chance(30) {
        columns.push(("a".into(), str_column(rng, &as_)));
    }
    if uses("b") || rng.chance(30) {
        columns.push(("b".into(), str_column(rng, &bs)));
    }
    if with_created || rng.chance(20) {
        columns.push(("created".into(), time_column(rng, &created)));
    }
    let batch = table(rng, columns);
    let mut features = vec!["f_float", "f_int", "f_str"];
    rng.shuffle(&mut features);
    let k = if rng.chance(5) { 0 } else { 1 + rng.below(3) };
    JoinView {
        name: name.into(),
        join_keys,
        ttl_nanos: clock.ttl(rng),
        timestamp_field,
        created_field: with_created.then(|| "created".to_string()),
        filter_by_created: rng.chance(30),
        features: features[..k]
            .iter()
            .map(|f| (f.to_string(), format!("{name}__{f}")))
            .collect(),
        batches: split(rng, &batch),
    }
}

/// One join's inputs.
#[derive(Clone)]
pub(super) struct Case {
    pub(super) schema: SchemaRef,
    pub(super) entity: Vec<RecordBatch>,
    pub(super) timestamp_column: String,
    pub(super) views: Vec<JoinView>,
}

/// The case of this seed; `scale` multiplies the tables' sizes.
pub(super) fn random_case(seed: u64, scale: usize) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(seed));
    let rng = &mut rng;
    let clock = Clock::random(rng);
    let n = rng.below(17 * scale);
    let (mut ids, mut as_, mut bs): (Vec<_>, Vec<Option<String>>, Vec<Option<String>>) =
        (vec![], vec![], vec![]);
    let mut times = vec![];
    for i in 0..n {
        if i > 0 && rng.chance(20) {
            // A duplicate of an earlier entity row.
            let r = rng.below(i);
            ids.push(ids[r]);
            as_.push(as_[r].clone());
            bs.push(bs[r].clone());
            times.push(times[r]);
            continue;
        }
        let (id, a, b) = random_keys(rng, 7);
        ids.push(id);
        as_.push(a);
        bs.push(b);
        times.push(clock.instant(rng, 8));
    }
    let labels: ArrayRef = if rng.chance(50) {
        Arc::new(Float64Array::from_iter(
            (0..n).map(|i| (!rng.chance(10)).then_some(i as f64 * 0.25)),
        ))
    } else {
        Arc::new(StringArray::from_iter(
            (0..n).map(|i| (!rng.chance(10)).then(|| format!("label{i}"))),
        ))
    };
    let timestamp_column = rng.pick(&["ts", "event_timestamp"]).to_string();
    let columns: Vec<(String, ArrayRef)> = vec![
        ("id".into(), int_column(rng, &ids, true)),
        ("a".into(), str_column(rng, &as_)),
        ("b".into(), str_column(rng, &bs)),
        (timestamp_column.clone(), time_column(rng, &times)),
        ("label".into(), labels),
    ];
    let batch = table(rng, columns);
    let schema = batch.schema();
    let entity = if rng.chance(3) {
        vec![]
    } else {
        split(rng, &batch)
    };
    let mut shapes = [Shape::Int, Shape::Composite, Shape::Global];
    rng.shuffle(&mut shapes);
    let k = if rng.chance(3) { 0 } else { 1 + rng.below(3) };
    let views = shapes[..k]
        .iter()
        .map(|&s| random_view(rng, s, &clock, scale))
        .collect();
    Case {
        schema,
        entity,
        timestamp_column,
        views,
    }
}
