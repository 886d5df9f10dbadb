use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_schema::DataType;

use super::*;
use crate::table::Columns;

fn rows(columns: Vec<(&str, Values)>) -> LoggedRows {
    let n = match &columns[0].1 {
        Values::Numbers(v) | Values::Integers(v) => v.len(),
        Values::Texts(v) => v.len(),
    };
    LoggedRows {
        rows: n,
        columns: columns
            .into_iter()
            .map(|(name, v)| (name.to_owned(), v))
            .collect(),
    }
}

fn texts(v: &[&str]) -> Values {
    Values::Texts(v.iter().map(|s| Some((*s).to_owned())).collect())
}

#[test]
fn predictions_become_one_table_with_their_kinds_and_nulls_where_a_column_is_missing() {
    let a = rows(vec![
        ("x", Values::Numbers(vec![0.5, f64::NAN])),
        ("city", texts(&["Oslo", "Lima"])),
        ("label", Values::Integers(vec![1.0, 0.0])),
    ]);
    // a later prediction without `city`, with a new column
    let b = rows(vec![
        ("x", Values::Numbers(vec![2.5])),
        ("label", Values::Integers(vec![1.0])),
        ("extra", Values::Numbers(vec![7.0])),
    ]);
    let c1 = encode_chunk(&[&a], 2, &[]).unwrap();
    let c2 = encode_chunk(&[&b], 1, &[]).unwrap();
    let t = assemble(&[c1, c2]).unwrap();
    assert_eq!(t.rows(), 3);
    assert_eq!(t.names(), ["x", "city", "label", "extra"]);
    let x = t.column("x", "t").unwrap();
    assert_eq!(x.data_type(), &DataType::Float64);
    let x = x.as_primitive::<Float64Type>();
    assert_eq!(x.value(0), 0.5);
    assert!(
        x.value(1).is_nan(),
        "NaN stays a value (missing, as in pandas)"
    );
    assert_eq!(x.value(2), 2.5);
    let city = t.column("city", "t").unwrap();
    let city = city.as_string::<i32>();
    assert_eq!(
        city.iter().collect::<Vec<_>>(),
        [Some("Oslo"), Some("Lima"), None]
    );
    let label = t.column("label", "t").unwrap();
    assert_eq!(label.data_type(), &DataType::Int64);
    assert_eq!(
        label.as_primitive::<Int64Type>().values().to_vec(),
        [1, 0, 1]
    );
    let extra = t.column("extra", "t").unwrap();
    assert_eq!(extra.null_count(), 2);
    assert_eq!(extra.as_primitive::<Float64Type>().value(2), 7.0);
}

#[test]
fn a_chunk_keeps_only_the_first_rows_asked_and_the_named_columns() {
    let a = rows(vec![
        ("x", Values::Numbers(vec![1.0, 2.0, 3.0])),
        ("y", Values::Numbers(vec![4.0, 5.0, 6.0])),
    ]);
    let b = rows(vec![
        ("x", Values::Numbers(vec![7.0, 8.0])),
        ("y", Values::Numbers(vec![9.0, 10.0])),
    ]);
    let named = vec!["y".to_owned(), "absent".to_owned()];
    let t = assemble(&[encode_chunk(&[&a, &b], 4, &named).unwrap()]).unwrap();
    assert_eq!(t.rows(), 4);
    assert_eq!(t.names(), ["y", "absent"]);
    let y = t.column("y", "t").unwrap();
    assert_eq!(
        y.as_primitive::<Float64Type>().values().to_vec(),
        [4.0, 5.0, 6.0, 9.0]
    );
    assert_eq!(t.column("absent", "t").unwrap().null_count(), 4);
}

#[test]
fn kinds_that_clash_widen_integers_to_floats_and_numbers_to_text() {
    let ints = rows(vec![
        ("n", Values::Integers(vec![1.0])),
        ("s", Values::Integers(vec![2.0])),
    ]);
    let floats = rows(vec![
        ("n", Values::Numbers(vec![0.5])),
        ("s", texts(&["two"])),
    ]);
    let t = assemble(&[
        encode_chunk(&[&ints], 1, &[]).unwrap(),
        encode_chunk(&[&floats], 1, &[]).unwrap(),
    ])
    .unwrap();
    let n = t.column("n", "t").unwrap();
    assert_eq!(
        n.as_primitive::<Float64Type>().values().to_vec(),
        [1.0, 0.5]
    );
    let s = t.column("s", "t").unwrap();
    assert_eq!(
        s.as_string::<i32>().iter().collect::<Vec<_>>(),
        [Some("2"), Some("two")]
    );
}

#[test]
fn a_column_only_null_in_early_chunks_takes_its_kind_from_the_later_ones() {
    let early = rows(vec![("x", Values::Numbers(vec![1.0]))]);
    let late = rows(vec![
        ("x", Values::Numbers(vec![2.0])),
        ("k", Values::Integers(vec![3.0])),
    ]);
    let named = vec!["x".to_owned(), "k".to_owned()];
    let t = assemble(&[
        encode_chunk(&[&early], 1, &named).unwrap(),
        encode_chunk(&[&late], 1, &named).unwrap(),
    ])
    .unwrap();
    let k = t.column("k", "t").unwrap();
    assert_eq!(k.data_type(), &DataType::Int64, "not the nulls' Float64");
    assert_eq!(k.null_count(), 1);
}

#[test]
fn a_name_twice_in_one_prediction_keeps_the_first() {
    let a = rows(vec![
        ("x", Values::Numbers(vec![1.0])),
        ("x", Values::Numbers(vec![9.0])),
    ]);
    let t = assemble(&[encode_chunk(&[&a], 1, &[]).unwrap()]).unwrap();
    assert_eq!(t.rows(), 1);
    let x = t.column("x", "t").unwrap();
    assert_eq!(x.as_primitive::<Float64Type>().value(0), 1.0);
}
