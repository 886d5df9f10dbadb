//! The charts of a report: a column's distribution in the reference and in the window,
//! in the same bins, as shares of each side's values — for a person to look at (the
//! drift methods bin their own way). Numerical: equal-width bins over both sides' range,
//! counted on the sorted values by binary search (a few microseconds per column whatever
//! the rows); categorical: the most frequent categories of both sides, the rest in one
//! bin.

use serde::{Deserialize, Serialize};

use crate::drift::Sample;

/// Bins of a numerical chart.
pub const BINS: usize = 20;
/// Bars of a categorical chart, the last one "(other)" when there are more categories.
pub const CATEGORIES: usize = 20;
/// The name of the bin of the less frequent categories.
pub const OTHER: &str = "(other)";

/// One column's chart data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Numerical: the bins' edges (one more than the bins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: each bin's category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Each bin's share of the reference's and of the window's values.
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// A numerical side: sorted values, with weights when each stands for several (a sketch).
pub struct Side<'a> {
    pub values: &'a [f64],
    pub weights: Option<&'a [u64]>,
}

impl<'a> Side<'a> {
    /// The values of an exact numerical sample.
    pub fn of(s: &'a Sample) -> Option<Self> {
        s.values().map(|values| Side {
            values,
            weights: None,
        })
    }
}

/// The chart of two samples of the same type; `None` when a side has no values.
pub fn histogram(reference: &Sample, current: &Sample) -> Option<Histogram> {
    match (reference.categories(), current.categories()) {
        (Some(r), Some(c)) => categorical(r, c),
        _ => numerical(&Side::of(reference)?, &Side::of(current)?),
    }
}

/// The chart of two numerical sides.
pub fn numerical(reference: &Side<'_>, current: &Side<'_>) -> Option<Histogram> {
    let (r0, r1) = (reference.values.first()?, reference.values.last()?);
    let (c0, c1) = (current.values.first()?, current.values.last()?);
    let (lo, hi) = (r0.min(*c0), r1.max(*c1));
    let edges: Vec<f64> = if hi > lo {
        let width = (hi - lo) / BINS as f64;
        (0..=BINS)
            .map(|i| if i == BINS { hi } else { lo + width * i as f64 })
            .collect()
    } else {
        vec![lo - 0.5, lo + 0.5]
    };
    Some(Histogram {
        reference: shares(reference, &edges),
        current: shares(current, &edges),
        edges,
        categories: Vec::new(),
    })
}

/// Each bin's share of `side`: bins `[a, b)`, the last one closed.
fn shares(side: &Side<'_>, edges: &[f64]) -> Vec<f64> {
    let v = side.values;
    let bins = edges.len() - 1;
    // the number of values (or their weight) below each inner edge
    let weight_below = |k: usize| -> f64 {
        match side.weights {
            None => k as f64,
            Some(w) => w[..k].iter().sum::<u64>() as f64,
        }
    };
    let total = weight_below(v.len());
    let mut below = Vec::with_capacity(bins + 1);
    below.push(0.0);
    for e in &edges[1..bins] {
        below.push(weight_below(v.partition_point(|x| x < e)));
    }
    below.push(total);
    below.windows(2).map(|w| (w[1] - w[0]) / total).collect()
}

/// The chart of two categorical samples' counts.
fn categorical(reference: &[(String, u64)], current: &[(String, u64)]) -> Option<Histogram> {
    let (rt, ct) = (total(reference), total(current));
    if rt == 0 || ct == 0 {
        return None;
    }
    let mut all: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (k, n) in reference {
        all.entry(k).or_default().0 += n;
    }
    for (k, n) in current {
        all.entry(k).or_default().1 += n;
    }
    let mut ranked: Vec<(&str, (u64, u64))> = all.into_iter().collect();
    // most frequent over both sides (as shares, so a small window weighs as much)
    let weight = |(r, c): (u64, u64)| r as f64 / rt as f64 + c as f64 / ct as f64;
    ranked.sort_by(|a, b| weight(b.1).total_cmp(&weight(a.1)).then(a.0.cmp(b.0)));
    let keep = if ranked.len() > CATEGORIES {
        CATEGORIES - 1
    } else {
        ranked.len()
    };
    let mut h = Histogram::default();
    for (k, (r, c)) in &ranked[..keep] {
        h.categories.push((*k).to_owned());
        h.reference.push(*r as f64 / rt as f64);
        h.current.push(*c as f64 / ct as f64);
    }
    if keep < ranked.len() {
        let (r, c) = ranked[keep..]
            .iter()
            .fold((0, 0), |(a, b), (_, (r, c))| (a + r, b + c));
        h.categories.push(OTHER.to_owned());
        h.reference.push(r as f64 / rt as f64);
        h.current.push(c as f64 / ct as f64);
    }
    Some(h)
}

fn total(counts: &[(String, u64)]) -> u64 {
    counts.iter().map(|(_, n)| n).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerical_bins_cover_both_sides_and_sum_to_one() {
        let r = Sample::numerical((0..100).map(f64::from));
        let c = Sample::numerical((50..150).map(f64::from));
        let h = histogram(&r, &c).unwrap();
        assert_eq!(h.edges.len(), BINS + 1);
        assert_eq!((h.edges[0], h.edges[BINS]), (0.0, 149.0));
        for side in [&h.reference, &h.current] {
            assert!((side.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // the first bins hold only reference values, the last only current ones
        assert!(h.reference[0] > 0.0 && h.current[0] == 0.0);
        assert!(h.current[BINS - 1] > 0.0 && h.reference[BINS - 1] == 0.0);
    }

    #[test]
    fn weights_count_as_that_many_values() {
        let values = [1.0, 2.0, 3.0];
        let weighted = Side {
            values: &values,
            weights: Some(&[1, 2, 1]),
        };
        let expanded = [1.0, 2.0, 2.0, 3.0];
        let plain = Side {
            values: &expanded,
            weights: None,
        };
        assert_eq!(
            numerical(&weighted, &plain).unwrap().reference,
            numerical(&plain, &plain).unwrap().reference
        );
    }

    #[test]
    fn constant_columns_have_one_bin() {
        let r = Sample::numerical([2.0, 2.0]);
        let h = histogram(&r, &r).unwrap();
        assert_eq!(
            (h.edges.clone(), h.reference.clone()),
            (vec![1.5, 2.5], vec![1.0])
        );
    }

    #[test]
    fn categories_beyond_the_bars_are_merged() {
        let names: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
        let r = Sample::categorical(names.iter().map(Some));
        let c = Sample::categorical([Some("k00"), Some("new"), None]);
        let h = histogram(&r, &c).unwrap();
        assert_eq!(h.categories.len(), CATEGORIES);
        assert_eq!(h.categories.last().unwrap(), OTHER);
        assert!(h.categories.contains(&"new".to_owned()));
        assert!((h.current.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((h.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(histogram(&Sample::categorical([None::<&str>]), &c).is_none());
    }
}
