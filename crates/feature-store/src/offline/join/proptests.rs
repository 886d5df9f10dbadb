//! Property tests of the point-in-time join against a brute-force oracle (random,
//! seeded, reproducible inputs), and hand-written cases for the errors and for the
//! boundaries of the rule.

mod cases;
mod oracle;

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema};

use super::{point_in_time_join, JoinError, JoinKey, JoinView, KeyType, SpillJoin};
use cases::{random_case, Case};
use oracle::{column_values, oracle, Value};

// ---------------------------------------------------------------------------------------
// The property: the engine's output is the oracle's.
// ---------------------------------------------------------------------------------------

/// Which join runs: in memory, or spilled to disk in this many partitions per view.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Memory,
    Spill(usize),
}

/// The spilled join over a case: its views' rows added batch by batch, then its entity
/// batches.
fn spilled(case: &Case, parts: usize) -> Result<Vec<RecordBatch>, JoinError> {
    let dir = std::env::temp_dir();
    let counts = vec![parts; case.views.len()];
    let mut join = SpillJoin::prepare(
        &case.schema,
        &case.timestamp_column,
        &case.views,
        &counts,
        &dir,
    )?;
    for (v, view) in case.views.iter().enumerate() {
        for b in &view.batches {
            join.add_source(v, b)?;
        }
    }
    for b in &case.entity {
        join.push(b)?;
    }
    join.finish()?.collect()
}

/// Runs the engine (a panic is a failure) and compares its output with the oracle's.
fn check(case: &Case, engine: Engine) -> Result<(), String> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match engine {
        Engine::Memory => point_in_time_join(
            &case.schema,
            &case.entity,
            &case.timestamp_column,
            &case.views,
        ),
        Engine::Spill(parts) => spilled(case, parts),
    }));
    let out = match run {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("engine error: {e:?}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("engine panicked: {msg}"));
        }
    };
    if out.len() != case.entity.len() {
        return Err(format!(
            "{} output batches for {}",
            out.len(),
            case.entity.len()
        ));
    }
    let winners = oracle(&case.entity, &case.timestamp_column, &case.views);
    // Per output feature: (view index, its name, the source column's type and values).
    let mut features = Vec::new();
    for (v, view) in case.views.iter().enumerate() {
        for (src, name) in &view.features {
            let dtype = view.batches[0]
                .schema()
                .field_with_name(src)
                .unwrap()
                .data_type()
                .clone();
            features.push((v, name.clone(), dtype, column_values(&view.batches, src)));
        }
    }
    let width = case.schema.fields().len();
    let mut row = 0;
    for (b, (input, output)) in case.entity.iter().zip(&out).enumerate() {
        let schema = output.schema();
        if schema.fields().len() != width + features.len() {
            return Err(format!("batch {b}: schema {schema:?}"));
        }
        for (i, field) in case.schema.fields().iter().enumerate() {
            if schema.field(i) != field.as_ref() {
                return Err(format!(
                    "batch {b}: entity field {i} is {:?}",
                    schema.field(i)
                ));
            }
        }
        for (k, (_, name, dtype, _)) in features.iter().enumerate() {
            let f = schema.field(width + k);
            if f.name() != name || f.data_type() != dtype || !f.is_nullable() {
                return Err(format!(
                    "batch {b}: field {} is {f:?}, expected {name}: {dtype}",
                    width + k
                ));
            }
        }
        if output.num_rows() != input.num_rows() {
            return Err(format!(
                "batch {b}: {} rows for {}",
                output.num_rows(),
                input.num_rows()
            ));
        }
        for i in 0..width {
            if output.column(i).as_ref() != input.column(i).as_ref() {
                return Err(format!("batch {b}: entity column {i} changed"));
            }
        }
        for (k, (v, name, _, values)) in features.iter().enumerate() {
            let col = output.column(width + k);
            for r in 0..input.num_rows() {
                let winner = winners[row + r][*v];
                let expected = winner.map_or(Value::Null, |j| values[j].clone());
                let actual = oracle::value(col.as_ref(), r);
                if actual != expected {
                    return Err(format!(
                        "batch {b} row {r} (entity row {}): {name} is {actual:?}, expected {expected:?} (oracle's source row {winner:?})",
                        row + r
                    ));
                }
            }
        }
        row += input.num_rows();
    }
    Ok(())
}

/// `batches` without their `row`-th row (counted over all batches).
fn without_row(batches: &[RecordBatch], mut row: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for b in batches {
        let n = b.num_rows();
        if row < n {
            let parts = [b.slice(0, row), b.slice(row + 1, n - row - 1)];
            out.push(arrow_select::concat::concat_batches(&b.schema(), &parts).unwrap());
            row = usize::MAX;
        } else {
            row = row.saturating_sub(n);
            out.push(b.clone());
        }
    }
    out
}

/// Smaller variants of a case: a view, a feature, a row or a batch boundary fewer.
fn smaller(case: &Case) -> Vec<Case> {
    let mut out = Vec::new();
    let rows = |bs: &[RecordBatch]| bs.iter().map(RecordBatch::num_rows).sum::<usize>();
    for v in 0..case.views.len() {
        let mut c = case.clone();
        c.views.remove(v);
        out.push(c);
        for f in 0..case.views[v].features.len() {
            let mut c = case.clone();
            c.views[v].features.remove(f);
            out.push(c);
        }
        for r in 0..rows(&case.views[v].batches) {
            let mut c = case.clone();
            c.views[v].batches = without_row(&case.views[v].batches, r);
            out.push(c);
        }
        if case.views[v].batches.len() > 1 {
            let mut c = case.clone();
            let b = &case.views[v].batches;
            c.views[v].batches =
                vec![arrow_select::concat::concat_batches(&b[0].schema(), b).unwrap()];
            out.push(c);
        }
    }
    for r in 0..rows(&case.entity) {
        let mut c = case.clone();
        c.entity = without_row(&case.entity, r);
        out.push(c);
    }
    if case.entity.len() > 1 {
        let mut c = case.clone();
        c.entity = vec![arrow_select::concat::concat_batches(&case.schema, &case.entity).unwrap()];
        out.push(c);
    }
    out
}

std::thread_local! {
    /// Whether this thread is shrinking (its engine panics are expected and silent).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Greedily shrinks a failing case.
fn shrink(mut case: Case, engine: Engine) -> Case {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    while let Some(c) = smaller(&case)
        .into_iter()
        .find(|c| check(c, engine).is_err())
    {
        case = c;
    }
    QUIET.with(|q| q.set(false));
    case
}

/// A cell, for messages.
fn cell(col: &dyn Array, i: usize) -> String {
    if col.is_null(i) {
        return "null".into();
    }
    match col.data_type() {
        DataType::Timestamp(..) => format!("{}ns", oracle::nanos(col)[i].unwrap_or_default()),
        DataType::Float64 => format!("{:?}", oracle::value(col, i)),
        _ => match &oracle::keys(col)[i] {
            Some(oracle::Key::Int(v)) => v.to_string(),
            Some(oracle::Key::Str(s)) => format!("{s:?}"),
            None => "null".into(),
        },
    }
}

fn describe_batches(batches: &[RecordBatch]) -> String {
    let mut s = String::new();
    for (b, batch) in batches.iter().enumerate() {
        let schema = batch.schema();
        s += &format!("  batch {b}:\n");
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| format!("{}={}", f.name(), cell(c.as_ref(), i)))
                .collect();
            s += &format!("    {}\n", cells.join(" "));
        }
    }
    s
}

fn describe(case: &Case) -> String {
    let mut s = format!(
        "entity table (time `{}`), {:?}\n",
        case.timestamp_column,
        case.schema.fields()
    );
    s += &describe_batches(&case.entity);
    for v in &case.views {
        s += &format!(
            "view {} keys {:?} ttl {:?} ts `{}` created {:?} features {:?}\n",
            v.name, v.join_keys, v.ttl_nanos, v.timestamp_field, v.created_field, v.features
        );
        s += &describe_batches(&v.batches);
    }
    s
}

fn run_property(seeds: std::ops::Range<u64>, scale: usize, engine: Engine) {
    let total = seeds.end - seeds.start;
    let failing: Vec<(u64, String)> = seeds
        .filter_map(|seed| {
            check(&random_case(seed, scale), engine)
                .err()
                .map(|e| (seed, e))
        })
        .collect();
    if let Some((seed, error)) = failing.first() {
        let minimal = shrink(random_case(*seed, scale), engine);
        let minimal_error = check(&minimal, engine).unwrap_err();
        let seeds: Vec<u64> = failing.iter().take(20).map(|(s, _)| *s).collect();
        panic!(
            "{engine:?}: {} of {total} cases fail (seeds {seeds:?}…); seed {seed}: {error}\n\
             minimal case: {minimal_error}\n{}",
            failing.len(),
            describe(&minimal)
        );
    }
}

#[test]
fn property_join_matches_oracle() {
    run_property(0..500, 1, Engine::Memory);
}

#[test]
fn property_join_matches_oracle_larger_tables() {
    run_property(10_000..10_100, 4, Engine::Memory);
}

#[test]
fn property_spilled_join_matches_oracle() {
    // One partition (everything spilled and read back), a few, and more partitions than
    // keys (most of them empty).
    run_property(0..300, 1, Engine::Spill(1));
    run_property(0..300, 1, Engine::Spill(3));
    run_property(0..300, 1, Engine::Spill(16));
}

#[test]
fn property_spilled_join_matches_oracle_larger_tables() {
    run_property(10_000..10_050, 4, Engine::Spill(5));
}

// ---------------------------------------------------------------------------------------
// Hand-written cases.
// ---------------------------------------------------------------------------------------

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, c)| c).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn ints(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

fn nanos(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v.to_vec()))
}

fn view(name: &str, batches: Vec<RecordBatch>, features: &[(&str, &str)]) -> JoinView {
    JoinView {
        name: name.into(),
        join_keys: vec![JoinKey {
            name: "id".into(),
            kind: KeyType::Int64,
        }],
        ttl_nanos: None,
        timestamp_field: "event_ts".into(),
        created_field: None,
        filter_by_created: false,
        features: features
            .iter()
            .map(|(s, o)| (s.to_string(), o.to_string()))
            .collect(),
        batches,
    }
}

fn entity() -> RecordBatch {
    batch(vec![
        ("id", ints(&[1])),
        ("ts", nanos(&[Some(10)])),
        ("label", ints(&[0])),
    ])
}

fn source() -> RecordBatch {
    batch(vec![
        ("id", ints(&[1])),
        ("event_ts", nanos(&[Some(5)])),
        ("value", ints(&[7])),
    ])
}

fn join_err(entity: RecordBatch, views: &[JoinView]) -> JoinError {
    point_in_time_join(&entity.schema(), &[entity], "ts", views).unwrap_err()
}

fn missing(table: &str, column: &str) -> JoinError {
    JoinError::MissingColumn {
        table: table.into(),
        column: column.into(),
    }
}

#[test]
fn errors_name_the_table_and_column() {
    let v = || view("v", vec![source()], &[("value", "value")]);
    let no_ts = batch(vec![("id", ints(&[1]))]);
    assert_eq!(join_err(no_ts, &[v()]), missing("the entity table", "ts"));
    let no_id = batch(vec![("ts", nanos(&[Some(10)]))]);
    assert_eq!(join_err(no_id, &[v()]), missing("the entity table", "id"));
    let str_id = batch(vec![
        ("id", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
        ("ts", nanos(&[Some(10)])),
    ]);
    let e = join_err(str_id, &[v()]);
    assert!(
        matches!(&e, JoinError::WrongType { table, column, .. } if table == "the entity table" && column == "id"),
        "{e:?}"
    );
    let int_ts = batch(vec![("id", ints(&[1])), ("ts", ints(&[10]))]);
    let e = join_err(int_ts, &[v()]);
    assert!(
        matches!(&e, JoinError::WrongType { table, column, .. } if table == "the entity table" && column == "ts"),
        "{e:?}"
    );
    let bad = view("v", vec![source()], &[("nope", "nope")]);
    assert_eq!(
        join_err(entity(), &[bad]),
        missing("feature view v", "nope")
    );
    let mut no_event = v();
    no_event.timestamp_field = "when".into();
    assert_eq!(
        join_err(entity(), &[no_event]),
        missing("feature view v", "when")
    );
    let str_source = batch(vec![
        ("id", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
        ("event_ts", nanos(&[Some(5)])),
        ("value", ints(&[7])),
    ]);
    let e = join_err(
        entity(),
        &[view("w", vec![str_source], &[("value", "value")])],
    );
    assert!(
        matches!(&e, JoinError::WrongType { table, column, .. } if table == "feature view w" && column == "id"),
        "{e:?}"
    );
}

#[test]
fn duplicate_output_columns_are_refused() {
    let a = view("a", vec![source()], &[("value", "x")]);
    let b = view("b", vec![source()], &[("value", "x")]);
    assert_eq!(
        join_err(entity(), &[a, b]),
        JoinError::DuplicateColumn("x".into())
    );
    let c = view("c", vec![source()], &[("value", "label")]);
    assert_eq!(
        join_err(entity(), &[c]),
        JoinError::DuplicateColumn("label".into())
    );
}

/// Joins one entity row (id 1, time `t` ns) with source rows `(event_ts, created)`
/// (all id 1; the value is the row's index) and returns the value chosen.
fn chosen(t: i64, rows: &[(i64, Option<i64>)], created: bool, ttl: Option<i64>) -> Option<i64> {
    chosen_with(t, rows, created, ttl, false)
}

/// [`chosen`], filtering by created time when `filter` is set.
fn chosen_with(
    t: i64,
    rows: &[(i64, Option<i64>)],
    created: bool,
    ttl: Option<i64>,
    filter: bool,
) -> Option<i64> {
    let n = rows.len();
    let mut columns = vec![
        ("id", ints(&vec![1; n])),
        (
            "event_ts",
            nanos(&rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>()),
        ),
        ("value", ints(&(0..n as i64).collect::<Vec<_>>())),
    ];
    if created {
        columns.push((
            "created",
            nanos(&rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        ));
    }
    let source = batch(columns);
    // The source in two batches, so that source order spans batches.
    let cut = n / 2;
    let mut v = view(
        "v",
        vec![source.slice(0, cut), source.slice(cut, n - cut)],
        &[("value", "value")],
    );
    v.ttl_nanos = ttl;
    v.created_field = created.then(|| "created".into());
    v.filter_by_created = filter;
    let e = batch(vec![("id", ints(&[1])), ("ts", nanos(&[Some(t)]))]);
    let out = point_in_time_join(&e.schema(), &[e], "ts", &[v]).unwrap();
    let col = out[0].column_by_name("value").unwrap();
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    col.is_valid(0).then(|| col.value(0))
}

#[test]
fn ttl_boundaries_are_inclusive_to_the_nanosecond() {
    let t = 10_000_000_000;
    let ttl = Some(3_000_000_000);
    // event_ts == t - ttl is a candidate; one nanosecond earlier is not.
    assert_eq!(chosen(t, &[(t - 3_000_000_000, None)], false, ttl), Some(0));
    assert_eq!(chosen(t, &[(t - 3_000_000_001, None)], false, ttl), None);
    // event_ts == t is a candidate; one nanosecond later is not.
    assert_eq!(chosen(t, &[(t, None)], false, ttl), Some(0));
    assert_eq!(chosen(t, &[(t + 1, None)], false, None), None);
    assert_eq!(chosen(t, &[(t, None), (t + 1, None)], false, ttl), Some(0));
    // A one-nanosecond TTL admits only event_ts == t and t - 1.
    assert_eq!(chosen(t, &[(t - 1, None)], false, Some(1)), Some(0));
    assert_eq!(chosen(t, &[(t - 2, None)], false, Some(1)), None);
    // An unlimited TTL has no lower end.
    assert_eq!(
        chosen(t, &[(-5_000_000_000_000, None)], false, None),
        Some(0)
    );
}

#[test]
fn filtered_by_created_time_a_row_written_after_t_is_not_a_candidate() {
    let t = 10_000_000_000;
    let f = |rows: &[(i64, Option<i64>)], ttl| chosen_with(t, rows, true, ttl, true);
    // created == t is known at t; one nanosecond later is not, and the next best wins
    assert_eq!(f(&[(t - 5, Some(t))], None), Some(0));
    assert_eq!(f(&[(t - 5, Some(t + 1))], None), None);
    assert_eq!(
        f(&[(t - 9, Some(t - 9)), (t - 5, Some(t + 1))], None),
        Some(0)
    );
    // without the filter the backfilled row wins, as before
    assert_eq!(
        chosen_with(
            t,
            &[(t - 9, Some(t - 9)), (t - 5, Some(t + 1))],
            true,
            None,
            false
        ),
        Some(1)
    );
    // among rows of one event time, the latest created by t
    assert_eq!(
        f(
            &[
                (t - 5, Some(t - 3)),
                (t - 5, Some(t - 1)),
                (t - 5, Some(t + 7))
            ],
            None
        ),
        Some(1)
    );
    // a row without a created time is not filtered
    assert_eq!(f(&[(t - 5, None), (t - 2, Some(t + 1))], None), Some(0));
    // the TTL still bounds the window: the earlier row known at t is too old
    assert_eq!(
        f(&[(t - 9, Some(t - 9)), (t - 5, Some(t + 1))], Some(6)),
        None
    );
    // a view without a created column is not filtered
    assert_eq!(chosen_with(t, &[(t - 5, None)], false, None, true), Some(0));
}

#[test]
fn ties_go_to_created_then_to_the_last_row() {
    // A full tie: the last row in source order wins (with or without a created column).
    assert_eq!(
        chosen(10, &[(5, Some(3)), (5, Some(3))], true, None),
        Some(1)
    );
    assert_eq!(
        chosen(10, &[(5, None), (5, None), (5, None)], false, None),
        Some(2)
    );
    assert_eq!(chosen(10, &[(5, None), (5, None)], true, None), Some(1));
    // created breaks a tie on event_ts; a null created is lower than any value.
    assert_eq!(
        chosen(10, &[(5, Some(4)), (5, Some(3))], true, None),
        Some(0)
    );
    assert_eq!(
        chosen(10, &[(5, Some(-100)), (5, None)], true, None),
        Some(0)
    );
    assert_eq!(
        chosen(10, &[(5, None), (5, Some(-100))], true, None),
        Some(1)
    );
    // A later event_ts beats a later created.
    assert_eq!(
        chosen(10, &[(6, Some(0)), (5, Some(9))], true, None),
        Some(0)
    );
}

#[test]
fn a_view_without_rows_gives_nulls_keyed_or_global() {
    for keys in [true, false] {
        let mut v = view("empty", vec![], &[("value", "value")]);
        if !keys {
            v.join_keys.clear();
        }
        let e = entity();
        let out = point_in_time_join(&e.schema(), &[e], "ts", &[v]).unwrap();
        assert_eq!(out[0].num_rows(), 1);
        assert_eq!(out[0].column(3).logical_null_count(), 1, "keys: {keys}");
    }
}

#[test]
fn a_time_nanoseconds_cannot_hold_is_an_error_not_a_clamped_value() {
    let far =
        |secs: i64| -> ArrayRef { Arc::new(arrow_array::TimestampSecondArray::from(vec![secs])) };
    // Year 2286 against a row of year 2603: clamped, both would be i64::MAX and match.
    let e = batch(vec![("id", ints(&[1])), ("ts", far(10_000_000_000))]);
    let s = batch(vec![
        ("id", ints(&[1])),
        ("event_ts", far(20_000_000_000)),
        ("value", ints(&[7])),
    ]);
    let err = join_err(e, &[view("v", vec![s], &[("value", "value")])]);
    assert_eq!(
        err,
        JoinError::OutOfRange {
            table: "feature view v".into(),
            column: "event_ts".into()
        }
    );
    let e = batch(vec![("id", ints(&[1])), ("ts", far(10_000_000_000))]);
    let err = join_err(e, &[view("v", vec![source()], &[("value", "value")])]);
    assert_eq!(
        err,
        JoinError::OutOfRange {
            table: "the entity table".into(),
            column: "ts".into()
        }
    );
}
