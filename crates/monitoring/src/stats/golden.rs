//! Test-only readers of the golden fixtures, shared by the `stats` modules' tests:
//!
//! - [`scipy_a`]: `fixtures/scipy_a.json` (written by `scripts/monitoring/scipy_golden_a.py`),
//!   for `ks`, `kolmogorov`, `contingency`, `fisher`, `location` and `special`;
//! - [`scipy_b`]: `fixtures/scipy_b.json` (written by `scripts/monitoring/scipy_golden_b.py`),
//!   for `anderson`, `cvm`, `epps` and `mmd`.

pub(crate) mod scipy_a {
    //! Reading `fixtures/scipy_a.json`: floats stored as their Python reprs, samples inline
    //! or as generator specs.

    use serde_json::Value;

    pub(crate) fn fixture() -> Value {
        serde_json::from_str(include_str!("../../fixtures/scipy_a.json"))
            .expect("fixtures/scipy_a.json is valid JSON")
    }

    /// A float stored as the string of its Python `repr`.
    pub(crate) fn num(v: &Value) -> f64 {
        let s = v.as_str().expect("floats are stored as strings");
        s.parse().expect("a Python float repr")
    }

    pub(crate) fn int(v: &Value) -> u64 {
        v.as_u64().expect("an unsigned integer")
    }

    /// A sample: inline (list of float strings) or a generator spec, evaluated with the
    /// same IEEE operations as the Python script's `gen`.
    pub(crate) fn sample(v: &Value) -> Vec<f64> {
        if let Some(list) = v.as_array() {
            return list.iter().map(num).collect();
        }
        let n = int(&v["n"]);
        match v["kind"].as_str() {
            Some("unit") => {
                let (k, m) = (int(&v["mul"]), int(&v["mod"]));
                let (s, o) = (float_or_int(&v["scale"]), float_or_int(&v["offset"]));
                (0..n)
                    .map(|i| ((i * k) % m) as f64 / m as f64 * s + o)
                    .collect()
            }
            Some("int") => {
                let (k, c, m) = (int(&v["mul"]), int(&v["add"]), int(&v["mod"]));
                let o = float_or_int(&v["offset"]);
                (0..n).map(|i| ((i * k + c) % m) as f64 + o).collect()
            }
            other => panic!("unknown generator {other:?}"),
        }
    }

    /// Generator parameters are plain JSON numbers (short decimals: exact either way).
    fn float_or_int(v: &Value) -> f64 {
        v.as_f64().expect("a number")
    }

    /// `|got - want| <= max(rtol·|want|, 1e-300)`, NaN matching NaN and infinities
    /// matching exactly; returns the relative error (0 when equal).
    pub(crate) fn check(got: f64, want: f64, rtol: f64, what: &str) -> f64 {
        if want.is_nan() || got.is_nan() {
            assert!(
                want.is_nan() && got.is_nan(),
                "{what}: got {got:e}, scipy {want:e}"
            );
            return 0.0;
        }
        if got == want {
            return 0.0;
        }
        let err = (got - want).abs();
        assert!(
            err <= (rtol * want.abs()).max(1e-300),
            "{what}: got {got:e}, scipy {want:e} (relative error {:e})",
            err / want.abs()
        );
        if want.abs() < 1e-300 {
            0.0
        } else {
            err / want.abs()
        }
    }
}

pub(crate) mod scipy_b {
    //! Reading `fixtures/scipy_b.json`: sample expansion and error measures.

    use serde_json::Value;

    /// The fixture written by `scripts/monitoring/scipy_golden_b.py`.
    pub(crate) fn fixture(text: &str) -> Value {
        serde_json::from_str(text).expect("scipy_b.json parses")
    }

    /// A float of the fixture: the script writes each as its Python repr in a string
    /// (serde_json without `float_roundtrip` may parse a JSON number an ulp off; Rust's
    /// `str::parse` is correctly rounded), `null` standing for NaN.
    pub(crate) fn num(v: &Value) -> f64 {
        match v {
            Value::Null => f64::NAN,
            Value::String(s) => s.parse().unwrap_or_else(|_| panic!("float {s}")),
            Value::Number(n) => n.as_f64().expect("number"),
            other => panic!("not a float: {other}"),
        }
    }

    /// A sample of the fixture: an inline list, or `{"gen": spec}` expanded exactly as the
    /// script's `gen_sample` does (SplitMix64, exact IEEE operations only).
    pub(crate) fn sample(v: &Value) -> Vec<f64> {
        if let Some(list) = v.as_array() {
            return list.iter().map(num).collect();
        }
        let spec = &v["gen"];
        let mut state = spec["seed"].as_u64().expect("seed");
        let n = spec["n"].as_u64().expect("n") as usize;
        let kind = spec.get("kind").and_then(Value::as_str).unwrap_or("ih4");
        let loc = spec.get("loc").map_or(0.0, num);
        let scale = spec.get("scale").map_or(1.0, num);
        let decimals = spec.get("decimals").and_then(Value::as_i64);
        let mut uniform = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 * 2f64.powi(-53)
        };
        (0..n)
            .map(|_| {
                let x = match kind {
                    "ih4" => {
                        let (u1, u2, u3, u4) = (uniform(), uniform(), uniform(), uniform());
                        loc + scale * (((u1 + u2) + (u3 + u4)) - 2.0)
                    }
                    "uniform" => loc + scale * uniform(),
                    other => panic!("unknown generator kind {other}"),
                };
                match decimals {
                    Some(d) => {
                        let p = 10f64.powi(d as i32);
                        (x * p).round_ties_even() / p
                    }
                    None => x,
                }
            })
            .collect()
    }

    /// The expected number of a case field (`null` stands for NaN).
    pub(crate) fn expected(case: &Value, key: &str) -> f64 {
        num(&case[key])
    }

    /// `|got - want| / |want|`, 0 when both are equal (NaN equals NaN here), infinite when
    /// only one is NaN.
    pub(crate) fn rel_err(got: f64, want: f64) -> f64 {
        if got == want || (got.is_nan() && want.is_nan()) {
            0.0
        } else if got.is_nan() || want.is_nan() {
            f64::INFINITY
        } else {
            (got - want).abs() / want.abs()
        }
    }
}
