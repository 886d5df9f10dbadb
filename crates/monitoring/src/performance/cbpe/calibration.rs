//! NannyML's rule for whether the reference scores need calibrating
//! (`nannyml.calibration.needs_calibration`): not when the reference ROC AUC exceeds
//! 0.999; otherwise ten stratified shuffle splits (10% held out), an isotonic calibrator
//! fitted on each training part, and calibration is needed when the expected calibration
//! error (ECE) of the pooled held-out scores is larger before calibrating than after.
//!
//! The splits come from our seeded SplitMix64 (seed 42, NannyML's `random_state`), not
//! numpy's Mersenne Twister, so they are not sklearn's rows: the decision agrees with
//! NannyML's except where the two ECEs are within sampling noise of each other. Held-out
//! scores are sorted stably before binning (numpy's default sort is not stable, so
//! NannyML's bins are not reproducible where scores tie).

use serde::{Deserialize, Serialize};

use super::isotonic::Isotonic;
use crate::performance::metrics::ranking::binary_roc_auc;
use crate::performance::{numeric, PerformanceError};
use crate::stats::rng::Rng;

/// NannyML's `StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=42)`.
const SPLITS: usize = 10;
const TEST_SHARE: f64 = 0.1;
const SEED: u64 = 42;
/// NannyML's ECE bins (`bin_count=10`).
const BINS: usize = 10;
/// Above this reference ROC AUC, scores are taken as already separating (no calibration).
const SEPARATING_AUC: f64 = 0.999;

/// The outcome of the calibration check on the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCheck {
    /// The reference scores' ROC AUC.
    pub reference_roc_auc: f64,
    /// The held-out ECE of the scores as they are, and once calibrated (`None` when the
    /// AUC rule decided alone).
    pub ece_before: Option<f64>,
    pub ece_after: Option<f64>,
    /// Whether the scores are calibrated before estimating.
    pub needed: bool,
}

/// Runs NannyML's check on reference `scores` and `labels` (both classes present,
/// checked by the caller).
pub(crate) fn needs_calibration(
    scores: &[f64],
    labels: &[bool],
) -> Result<CalibrationCheck, PerformanceError> {
    let reference_roc_auc = binary_roc_auc(labels, scores).map_err(PerformanceError::Invalid)?;
    if reference_roc_auc > SEPARATING_AUC {
        return Ok(CalibrationCheck {
            reference_roc_auc,
            ece_before: None,
            ece_after: None,
            needed: false,
        });
    }
    let n = scores.len();
    let n_test = (TEST_SHARE * n as f64).ceil() as usize;
    let n_train = n - n_test;
    let classes: [Vec<usize>; 2] = [
        (0..n).filter(|&i| !labels[i]).collect(),
        (0..n).filter(|&i| labels[i]).collect(),
    ];
    let smallest = classes[0].len().min(classes[1].len());
    if smallest < 2 || n_test < 2 || n_train < 2 {
        return Err(PerformanceError::Invalid(format!(
            "the reference is too small for the calibration check ({n} rows, {smallest} in \
             the smaller class): NannyML's stratified splits need at least 2 rows of each \
             class and 20 rows in all"
        )));
    }
    let counts = [classes[0].len(), classes[1].len()];
    let label = |i: usize| if labels[i] { 1.0 } else { 0.0 };
    let mut rng = Rng::new(SEED);
    let (mut held_labels, mut held_scores, mut held_calibrated) = (vec![], vec![], vec![]);
    for _ in 0..SPLITS {
        let train_counts = approximate_mode(counts, n_train);
        let rest = [counts[0] - train_counts[0], counts[1] - train_counts[1]];
        let test_counts = approximate_mode(rest, n_test);
        let (mut train, mut test) = (Vec::with_capacity(n_train), Vec::with_capacity(n_test));
        for (c, members) in classes.iter().enumerate() {
            let mut perm = members.clone();
            shuffle(&mut perm, &mut rng);
            train.extend_from_slice(&perm[..train_counts[c]]);
            test.extend_from_slice(&perm[train_counts[c]..train_counts[c] + test_counts[c]]);
        }
        let x: Vec<f64> = train.iter().map(|&i| scores[i]).collect();
        let y: Vec<f64> = train.iter().map(|&i| label(i)).collect();
        let calibrator = Isotonic::fit(&x, &y)?;
        for &i in &test {
            held_labels.push(label(i));
            held_scores.push(scores[i]);
            held_calibrated.push(calibrator.predict(scores[i]));
        }
    }
    let bins = bin_edges(held_scores.len(), BINS)?;
    let ece_before = expected_calibration_error(&held_labels, &held_scores, &bins);
    let ece_after = expected_calibration_error(&held_labels, &held_calibrated, &bins);
    Ok(CalibrationCheck {
        reference_roc_auc,
        ece_before: Some(ece_before),
        ece_after: Some(ece_after),
        needed: ece_before > ece_after,
    })
}

/// sklearn's `_approximate_mode` for two classes: `draws` split in proportion to
/// `counts`, floored, the remainder to the larger fractional part (the first class on a
/// tie, where sklearn draws at random).
fn approximate_mode(counts: [usize; 2], draws: usize) -> [usize; 2] {
    let total = (counts[0] + counts[1]) as f64;
    let continuous = counts.map(|c| c as f64 / total * draws as f64);
    let mut floored = continuous.map(|c| c.floor() as usize);
    let mut missing = draws.saturating_sub(floored[0] + floored[1]);
    let remainder = [0, 1].map(|c| continuous[c] - floored[c] as f64);
    let order = if remainder[1] > remainder[0] {
        [1, 0]
    } else {
        [0, 1]
    };
    for c in order {
        if missing > 0 && floored[c] < counts[c] {
            floored[c] += 1;
            missing -= 1;
        }
    }
    floored
}

/// Fisher–Yates.
fn shuffle(values: &mut [usize], rng: &mut Rng) {
    for i in (1..values.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        values.swap(i, j);
    }
}

/// NannyML's `_get_bin_index_edges`: equal-count bins of the sorted scores, `bin_count`
/// of them (fewer for short vectors; the last bin takes the rest).
fn bin_edges(len: usize, bin_count: usize) -> Result<Vec<(usize, usize)>, PerformanceError> {
    let mut bin_count = bin_count;
    if len <= 2 * bin_count {
        bin_count = len / 2;
        if bin_count < 2 {
            return Err(PerformanceError::Invalid(format!(
                "cannot split {len} held-out scores into 2 bins for the calibration check"
            )));
        }
    }
    let width = len / bin_count;
    let mut edges: Vec<usize> = (0..=len).step_by(width).collect();
    let last = edges.len() - 1;
    edges[last] = len;
    Ok(edges.windows(2).map(|w| (w[0], w[1])).collect())
}

/// NannyML's `_calculate_expected_calibration_error`: over bins of the scores sorted,
/// the bin's share times `|mean score - mean label|`, summed.
fn expected_calibration_error(labels: &[f64], scores: &[f64], bins: &[(usize, usize)]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let sorted_scores: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
    let sorted_labels: Vec<f64> = order.iter().map(|&i| labels[i]).collect();
    let total = scores.len() as f64;
    let terms: Vec<f64> = bins
        .iter()
        .map(|&(lo, hi)| {
            let weight = (hi - lo) as f64 / total;
            weight
                * (numeric::mean(&sorted_scores[lo..hi]) - numeric::mean(&sorted_labels[lo..hi]))
                    .abs()
        })
        .collect();
    numeric::sum(&terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_as_nannyml() {
        assert_eq!(
            bin_edges(20, 4).unwrap(),
            vec![(0, 5), (5, 10), (10, 15), (15, 20)]
        );
        // 25 > 2·10: width 2, edges 0, 2, …, 24, the last moved to 25
        let bins = bin_edges(25, 10).unwrap();
        assert_eq!(bins.len(), 12);
        assert_eq!(bins[11], (22, 25));
        assert!(bin_edges(3, 10).is_err());
    }

    #[test]
    fn approximate_mode_fills_the_draws() {
        assert_eq!(approximate_mode([90, 10], 10), [9, 1]);
        assert_eq!(approximate_mode([5, 5], 3), [2, 1]);
        assert_eq!(approximate_mode([7, 13], 18), [6, 12]);
    }
}
