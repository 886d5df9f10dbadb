//! A column's values as the drift methods read them: numerical values sorted, or the
//! counts of each category; missing values (NaN, infinities, nulls) removed and counted,
//! as Evidently removes them before it tests a column.

use super::method::ColumnType;

/// One column of a reference or a current window.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    values: Values,
    missing: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    /// Finite values, sorted ascending.
    Numerical(Vec<f64>),
    /// (category, count > 0), sorted by category.
    Categorical(Vec<(String, u64)>),
}

impl Sample {
    /// A numerical column: NaN and infinities are missing.
    pub fn numerical(values: impl IntoIterator<Item = f64>) -> Self {
        let values = values.into_iter();
        let mut v: Vec<f64> = Vec::with_capacity(values.size_hint().0);
        let mut missing = 0;
        for x in values {
            if x.is_finite() {
                // x + 0.0 is x, except that -0.0 becomes 0.0: one value, as in pandas
                v.push(x + 0.0);
            } else {
                missing += 1;
            }
        }
        crate::stats::sort_floats(&mut v);
        Sample {
            values: Values::Numerical(v),
            missing,
        }
    }

    /// A categorical column: `None` is missing.
    pub fn categorical<S: AsRef<str>>(values: impl IntoIterator<Item = Option<S>>) -> Self {
        let mut counts = std::collections::HashMap::<String, u64>::new();
        let mut missing = 0;
        for v in values {
            match v {
                Some(s) => {
                    if let Some(c) = counts.get_mut(s.as_ref()) {
                        *c += 1;
                    } else {
                        counts.insert(s.as_ref().to_owned(), 1);
                    }
                }
                None => missing += 1,
            }
        }
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Sample {
            values: Values::Categorical(counts),
            missing,
        }
    }

    /// A categorical column from the count of each category (zero counts are dropped).
    pub fn from_counts(counts: impl IntoIterator<Item = (String, u64)>, missing: u64) -> Self {
        let mut c: std::collections::BTreeMap<String, u64> = Default::default();
        for (k, n) in counts {
            *c.entry(k).or_default() += n;
        }
        Sample {
            values: Values::Categorical(c.into_iter().filter(|(_, n)| *n > 0).collect()),
            missing,
        }
    }

    /// The type of its values.
    pub fn column_type(&self) -> ColumnType {
        match self.values {
            Values::Numerical(_) => ColumnType::Numerical,
            Values::Categorical(_) => ColumnType::Categorical,
        }
    }

    /// How many values are present (missing ones excluded).
    pub fn len(&self) -> u64 {
        match &self.values {
            Values::Numerical(v) => v.len() as u64,
            Values::Categorical(c) => c.iter().map(|(_, n)| n).sum(),
        }
    }

    /// Whether no value is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many values were missing (NaN, infinite or null).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The categories with their counts, sorted by category (a categorical sample).
    pub fn categories(&self) -> Option<&[(String, u64)]> {
        match &self.values {
            Values::Categorical(c) => Some(c),
            Values::Numerical(_) => None,
        }
    }

    /// The sorted values of a numerical column (`None` for a categorical one).
    pub fn values(&self) -> Option<&[f64]> {
        match &self.values {
            Values::Numerical(v) => Some(v),
            Values::Categorical(_) => None,
        }
    }

    /// The number of distinct values.
    pub fn distinct(&self) -> usize {
        match &self.values {
            Values::Numerical(v) => super::super::stats::tie_counts(v).len(),
            Values::Categorical(c) => c.len(),
        }
    }

    /// The distinct values as keys, with their counts, in key order.
    fn keyed(&self) -> Vec<(Key<'_>, u64)> {
        match &self.values {
            Values::Numerical(v) => {
                let mut out: Vec<(Key<'_>, u64)> = Vec::new();
                for &x in v {
                    match out.last_mut() {
                        Some((Key::Num(k), n)) if *k == x => *n += 1,
                        _ => out.push((Key::Num(x), 1)),
                    }
                }
                out
            }
            Values::Categorical(c) => c.iter().map(|(k, n)| (Key::Str(k), *n)).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key<'a> {
    Num(f64),
    Str(&'a str),
}

impl Key<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Str(a), Key::Str(b)) => a.cmp(b),
            (Key::Num(_), Key::Str(_)) => std::cmp::Ordering::Less,
            (Key::Str(_), Key::Num(_)) => std::cmp::Ordering::Greater,
        }
    }
}

/// The number of distinct values of both samples together, counted up to `limit` (a
/// larger number is reported as `limit + 1`): what the default choice of method needs,
/// without listing every value of a long numerical column.
pub fn distinct_up_to(reference: &Sample, current: &Sample, limit: usize) -> usize {
    match (&reference.values, &current.values) {
        (Values::Numerical(r), Values::Numerical(c)) => {
            let (mut i, mut j, mut n) = (0, 0, 0);
            let mut last: Option<f64> = None;
            while (i < r.len() || j < c.len()) && n <= limit {
                let x = if j == c.len() || (i < r.len() && r[i] <= c[j]) {
                    i += 1;
                    r[i - 1]
                } else {
                    j += 1;
                    c[j - 1]
                };
                if last != Some(x) {
                    n += 1;
                    last = Some(x);
                }
            }
            n
        }
        _ => aligned_counts(reference, current).len().min(limit + 1),
    }
}

/// The counts of every value present in either sample, as (reference, current) pairs in
/// ascending order of the values (Evidently's `keys`, its value counts filled with 0).
pub fn aligned_counts(reference: &Sample, current: &Sample) -> Vec<(u64, u64)> {
    let (r, c) = (reference.keyed(), current.keyed());
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(r.len().max(c.len()));
    while i < r.len() || j < c.len() {
        let order = match (r.get(i), c.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push((r[i].1, 0));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push((0, c[j].1));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((r[i].1, c[j].1));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_are_removed_and_counted() {
        let s = Sample::numerical([1.0, f64::NAN, 3.0, f64::INFINITY, -0.0, 0.0]);
        assert_eq!(s.values(), Some(&[0.0, 0.0, 1.0, 3.0][..]));
        assert_eq!((s.len(), s.missing(), s.distinct()), (4, 2, 3));
        let c = Sample::categorical([Some("b"), None, Some("a"), Some("b")]);
        assert_eq!((c.len(), c.missing(), c.distinct()), (3, 1, 2));
    }

    #[test]
    fn distinct_values_are_counted_up_to_a_limit() {
        let r = Sample::numerical([1.0, 1.0, 2.0, 5.0]);
        let c = Sample::numerical([2.0, 3.0, 3.0]);
        assert_eq!(distinct_up_to(&r, &c, 10), 4);
        assert_eq!(distinct_up_to(&r, &c, 2), 3);
        let a = Sample::categorical([Some("x"), Some("y")]);
        assert_eq!(distinct_up_to(&a, &a, 5), 2);
    }

    #[test]
    fn counts_align_over_the_union_of_values() {
        let r = Sample::numerical([1.0, 1.0, 2.0]);
        let c = Sample::numerical([2.0, 3.0]);
        assert_eq!(aligned_counts(&r, &c), vec![(2, 0), (1, 1), (0, 1)]);
        let r = Sample::categorical([Some("x"), Some("y")]);
        let c = Sample::from_counts([("y".to_owned(), 4), ("z".to_owned(), 0)], 0);
        assert_eq!(aligned_counts(&r, &c), vec![(1, 0), (1, 4)]);
    }
}
