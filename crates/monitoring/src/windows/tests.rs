use mlops_proto::events::v1::{PredictionLogged, PredictionTensor};

use super::*;
use crate::drift::ColumnType;

fn tensor(name: &str, datatype: &str, shape: &[i64], raw: Vec<u8>) -> PredictionTensor {
    PredictionTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        raw: raw.into(),
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes(v: &[&str]) -> Vec<u8> {
    v.iter()
        .flat_map(|s| {
            let mut b = (s.len() as u32).to_le_bytes().to_vec();
            b.extend_from_slice(s.as_bytes());
            b
        })
        .collect()
}

fn event() -> PredictionLogged {
    PredictionLogged {
        deployment: "churn".into(),
        version: 3,
        inputs: vec![
            tensor(
                "input",
                "FP32",
                &[2, 3],
                f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ),
            tensor("city", "BYTES", &[2], bytes(&["Oslo", "Lima"])),
        ],
        outputs: vec![
            tensor(
                "label",
                "INT64",
                &[2],
                [1i64, 0].iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            tensor(
                "probabilities",
                "FP32",
                &[2, 2],
                f32s(&[0.25, 0.75, 0.5, 0.5]),
            ),
        ],
        ..Default::default()
    }
}

#[test]
fn tensors_become_columns_by_name_and_feature() {
    let rows = logged_rows(&event(), &[]).unwrap();
    assert_eq!(rows.rows, 2);
    let names: Vec<&str> = rows.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "input_0",
            "input_1",
            "input_2",
            "city",
            "label",
            "probabilities_0",
            "probabilities_1"
        ]
    );
    assert_eq!(rows.columns[1].1, Values::Numbers(vec![2.0, 5.0]));
    assert_eq!(
        rows.columns[3].1,
        Values::Texts(vec![Some("Oslo".into()), Some("Lima".into())])
    );
    // an integer tensor stays apart from the floats
    assert_eq!(rows.columns[4].1, Values::Integers(vec![1.0, 0.0]));
    assert_eq!(rows.columns[6].1, Values::Numbers(vec![0.75, 0.5]));
}

#[test]
fn input_columns_name_the_features_of_every_input_in_order() {
    let names: Vec<String> = ["a", "b", "c", "town"].map(String::from).to_vec();
    let rows = logged_rows(&event(), &names).unwrap();
    let got: Vec<&str> = rows.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        got,
        [
            "a",
            "b",
            "c",
            "town",
            "label",
            "probabilities_0",
            "probabilities_1"
        ]
    );
    let few = logged_rows(&event(), &names[..2]).unwrap_err();
    assert!(few.contains("more features"), "{few}");
    let mut many = names.clone();
    many.push("extra".into());
    let err = logged_rows(&event(), &many).unwrap_err();
    assert!(err.contains("fewer"), "{err}");
}

#[test]
fn unreadable_tensors_are_errors_not_panics() {
    let mut e = event();
    e.inputs[0].raw = f32s(&[1.0]).into();
    assert!(logged_rows(&e, &[]).unwrap_err().contains("needs 24"));
    let mut e = event();
    e.inputs[1].shape = vec![3];
    assert!(logged_rows(&e, &[]).unwrap_err().contains("3 rows"));
    let mut e = event();
    e.inputs[1].raw = vec![9, 0, 0, 0, b'x'].into();
    assert!(logged_rows(&e, &[]).unwrap_err().contains("framing"));
    let mut e = event();
    e.inputs[0].datatype = "COMPLEX".into();
    assert!(logged_rows(&e, &[])
        .unwrap_err()
        .contains("unknown datatype"));
    let mut e = event();
    e.inputs[0].shape = vec![2, -3];
    assert!(logged_rows(&e, &[]).unwrap_err().contains("bad shape"));
    assert!(logged_rows(&PredictionLogged::default(), &[]).is_err());
}

#[test]
fn every_datatype_decodes() {
    let one = |datatype: &str, raw: Vec<u8>| {
        let e = PredictionLogged {
            inputs: vec![tensor("v", datatype, &[1], raw)],
            ..Default::default()
        };
        logged_rows(&e, &[]).unwrap().columns.remove(0).1
    };
    let n = |x: f64| Values::Numbers(vec![x]);
    let i = |x: f64| Values::Integers(vec![x]);
    assert_eq!(
        one("BOOL", vec![1]),
        Values::Texts(vec![Some("True".into())])
    );
    assert_eq!(one("UINT8", vec![200]), i(200.0));
    assert_eq!(one("INT8", vec![0xff]), i(-1.0));
    assert_eq!(one("UINT16", 65535u16.to_le_bytes().to_vec()), i(65535.0));
    assert_eq!(one("INT16", (-2i16).to_le_bytes().to_vec()), i(-2.0));
    assert_eq!(one("FP16", 0x3c00u16.to_le_bytes().to_vec()), n(1.0));
    assert_eq!(one("FP16", 0xc000u16.to_le_bytes().to_vec()), n(-2.0));
    assert_eq!(one("BF16", 0x3fc0u16.to_le_bytes().to_vec()), n(1.5));
    assert_eq!(one("UINT32", 7u32.to_le_bytes().to_vec()), i(7.0));
    assert_eq!(one("INT32", (-7i32).to_le_bytes().to_vec()), i(-7.0));
    assert_eq!(one("FP32", 0.5f32.to_le_bytes().to_vec()), n(0.5));
    assert_eq!(one("UINT64", 9u64.to_le_bytes().to_vec()), i(9.0));
    assert_eq!(one("INT64", (-9i64).to_le_bytes().to_vec()), i(-9.0));
    assert_eq!(one("FP64", 0.1f64.to_le_bytes().to_vec()), n(0.1));
}

#[test]
fn specs_are_checked() {
    let ok = PredictionLogSpec {
        window_rows: 1000,
        ..Default::default()
    };
    ok.check("churn").unwrap();
    assert!(ok.check("").unwrap_err().contains("deployment"));
    let none = PredictionLogSpec::default();
    assert!(none
        .check("churn")
        .unwrap_err()
        .contains("window_rows or window_seconds"));
    let neg = PredictionLogSpec {
        window_seconds: -1,
        ..ok.clone()
    };
    assert!(neg.check("churn").is_err());
    let dup = PredictionLogSpec {
        input_columns: vec!["a".into(), "a".into()],
        ..ok.clone()
    };
    assert!(dup.check("churn").unwrap_err().contains("repeated"));
    for bad in [-1, MAX_REFERENCE_ROWS + 1] {
        let r = PredictionLogSpec {
            reference_rows: bad,
            ..ok.clone()
        };
        assert!(r.check("churn").unwrap_err().contains("reference_rows"));
    }
    let r = PredictionLogSpec {
        reference_rows: MAX_REFERENCE_ROWS,
        ..ok.clone()
    };
    r.check("churn").unwrap();
    assert_eq!(ok.deployment("churn"), "churn");
}

#[test]
fn time_windows_are_aligned_to_the_epoch() {
    let s = PredictionLogSpec {
        window_seconds: 60,
        ..Default::default()
    };
    assert_eq!(s.time_window(125_000), Some((120_000, 180_000)));
    assert_eq!(s.time_window(-1), Some((-60_000, 0)));
    let rows_only = PredictionLogSpec {
        window_rows: 5,
        ..Default::default()
    };
    assert_eq!(rows_only.time_window(125_000), None);
}

#[test]
fn a_window_state_round_trips_and_corruption_is_an_error() {
    let profile = vec![
        ColumnProfile {
            name: "input_0".into(),
            column_type: ColumnType::Numerical,
            count: 0,
            missing: 0,
            distinct: 0,
        },
        ColumnProfile {
            name: "city".into(),
            column_type: ColumnType::Categorical,
            count: 0,
            missing: 0,
            distinct: 0,
        },
        ColumnProfile {
            name: "absent".into(),
            column_type: ColumnType::Numerical,
            count: 0,
            missing: 0,
            distinct: 0,
        },
    ];
    let rows = logged_rows(&event(), &[]).unwrap();
    let index = [Some(0), Some(3), None];
    let mut w = WindowState::new(&profile);
    w.add_row(&rows, &index, 0, 10);
    w.add_row(&rows, &index, 1, 5);
    assert_eq!((w.rows, w.first_ms, w.last_ms), (2, 5, 10));
    let back = WindowState::decode(&w.encode()).unwrap();
    assert_eq!((back.rows, back.first_ms, back.last_ms), (2, 5, 10));
    assert_eq!(back.columns[0].to_sample(), w.columns[0].to_sample());
    assert_eq!(back.columns[1].to_sample(), w.columns[1].to_sample());
    // a column the prediction does not have counts as missing
    assert_eq!(back.columns[2].missing(), 2);
    let bytes = w.encode();
    assert!(WindowState::decode(&bytes[..bytes.len() - 3]).is_err());
    assert!(WindowState::decode(&[]).is_err());
    assert!(WindowState::decode(&[2, 0, 0]).is_err());
}
