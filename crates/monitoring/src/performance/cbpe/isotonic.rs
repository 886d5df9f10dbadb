//! scikit-learn's `IsotonicRegression(out_of_bounds="clip", increasing=True)` with unit
//! weights, NannyML's calibrator: fitted as sklearn 1.9 fits it (duplicate scores
//! averaged, scipy's PAVA, redundant points trimmed) and predicted as `np.interp` does,
//! so calibrated probabilities match NannyML's to the last bit.

use serde::{Deserialize, Serialize};

use crate::performance::{check_aligned, check_finite, PerformanceError};

/// `np.finfo(np.float64).resolution`: sklearn's `_make_unique` merges scores closer than
/// this to the first of their group.
const RESOLUTION: f64 = 1e-15;

/// A fitted isotonic calibrator: the increasing step-linear map through its thresholds
/// (sklearn's `X_thresholds_`, `y_thresholds_`), constant beyond the first and last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Thresholds", into = "Thresholds")]
pub struct Isotonic {
    x: Vec<f64>,
    y: Vec<f64>,
}

/// A stored calibrator, checked on the way in (a corrupt one must not panic later).
#[derive(Serialize, Deserialize)]
struct Thresholds {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl From<Isotonic> for Thresholds {
    fn from(iso: Isotonic) -> Self {
        Thresholds { x: iso.x, y: iso.y }
    }
}

impl TryFrom<Thresholds> for Isotonic {
    type Error = String;

    fn try_from(t: Thresholds) -> Result<Self, String> {
        let finite = t.x.iter().chain(&t.y).all(|v| v.is_finite());
        let increasing = t.x.windows(2).all(|w| w[0] < w[1]);
        if t.x.is_empty() || t.x.len() != t.y.len() || !finite || !increasing {
            return Err(format!(
                "not an isotonic calibrator: {} scores and {} probabilities, which must be as \
                 many, at least one, finite, the scores increasing",
                t.x.len(),
                t.y.len()
            ));
        }
        Ok(Isotonic { x: t.x, y: t.y })
    }
}

impl Isotonic {
    /// Fits `y` (the labels as 0.0/1.0) on the scores `x`: row-aligned, finite, at least
    /// one row.
    pub fn fit(x: &[f64], y: &[f64]) -> Result<Isotonic, PerformanceError> {
        check_aligned("the scores", x.len(), "the labels", y.len())?;
        if x.is_empty() {
            return Err(PerformanceError::Empty("the calibration scores"));
        }
        check_finite("the calibration scores", x)?;
        check_finite("the calibration labels", y)?;
        // np.lexsort((y, X)): by score, then by label
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(y[a].total_cmp(&y[b])));
        let (ux, mut uy, mut uw) = make_unique(&order, x, y);
        pava(&mut uy, &mut uw);
        // keep the ends and every point whose value differs from a neighbour's
        let n = uy.len();
        let keep = |i: usize| i == 0 || i + 1 == n || uy[i] != uy[i - 1] || uy[i] != uy[i + 1];
        let (x, y) = (0..n).filter(|&i| keep(i)).map(|i| (ux[i], uy[i])).unzip();
        Ok(Isotonic { x, y })
    }

    /// The calibrated probability of a score: clipped to the fitted range, then
    /// `np.interp` through the thresholds.
    pub fn predict(&self, t: f64) -> f64 {
        let (x, y) = (&self.x, &self.y);
        let last = x.len() - 1;
        if last == 0 {
            return y[0];
        }
        let t = t.max(x[0]).min(x[last]);
        // j with x[j] <= t < x[j + 1], or the last point
        let j = x.partition_point(|&v| v <= t).saturating_sub(1);
        if j == last || x[j] == t {
            return y[j];
        }
        let slope = (y[j + 1] - y[j]) / (x[j + 1] - x[j]);
        slope * (t - x[j]) + y[j]
    }

    /// The thresholds (scores, calibrated probabilities).
    pub fn thresholds(&self) -> (&[f64], &[f64]) {
        (&self.x, &self.y)
    }
}

/// sklearn's `_make_unique`: over the rows in `order` (sorted by score), one point per
/// group of scores within [`RESOLUTION`] of the group's first, its label the group's
/// mean and its weight the group's size.
fn make_unique(order: &[usize], x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut ux, mut uy, mut uw) = (Vec::new(), Vec::new(), Vec::new());
    let mut current_x = x[order[0]];
    let (mut current_y, mut current_w) = (0.0, 0.0);
    for &i in order {
        if x[i] - current_x >= RESOLUTION {
            ux.push(current_x);
            uw.push(current_w);
            uy.push(current_y / current_w);
            current_x = x[i];
            current_w = 1.0;
            current_y = y[i];
        } else {
            current_w += 1.0;
            current_y += y[i];
        }
    }
    ux.push(current_x);
    uw.push(current_w);
    uy.push(current_y / current_w);
    (ux, uy, uw)
}

/// scipy's `pava` (Busing 2022, Algorithm 1, as `scipy.optimize.isotonic_regression`
/// runs it): the increasing least-squares fit of `x` with weights `w`, in place.
fn pava(x: &mut [f64], w: &mut [f64]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    // block k spans x[r[k]..r[k + 1]]
    let mut r = vec![0usize; n + 1];
    r[1] = 1;
    let mut b = 0usize;
    let (mut xb_prev, mut wb_prev) = (x[0], w[0]);
    let mut i = 1;
    while i < n {
        b += 1;
        let (mut xb, mut wb) = (x[i], w[i]);
        if xb_prev >= xb {
            b -= 1;
            let mut sb = wb_prev * xb_prev + wb * xb;
            wb += wb_prev;
            xb = sb / wb;
            while i < n - 1 && xb >= x[i + 1] {
                i += 1;
                sb += w[i] * x[i];
                wb += w[i];
                xb = sb / wb;
            }
            while b > 0 && x[b - 1] >= xb {
                b -= 1;
                sb += w[b] * x[b];
                wb += w[b];
                xb = sb / wb;
            }
        }
        x[b] = xb;
        xb_prev = xb;
        w[b] = wb;
        wb_prev = wb;
        r[b + 1] = i + 1;
        i += 1;
    }
    // spread each block's value over its elements, last block first
    for k in (0..=b).rev() {
        let value = x[k];
        x[r[k]..r[k + 1]].fill(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_violators_and_interpolates() {
        let iso = Isotonic::fit(&[0.1, 0.2, 0.3, 0.4], &[0.0, 1.0, 0.0, 1.0]).unwrap();
        // 0.2 and 0.3 pool to 0.5
        assert_eq!(
            iso.thresholds(),
            (&[0.1, 0.2, 0.3, 0.4][..], &[0.0, 0.5, 0.5, 1.0][..])
        );
        assert_eq!(iso.predict(0.0), 0.0);
        assert_eq!(iso.predict(0.25), 0.5);
        assert!((iso.predict(0.35) - 0.75).abs() < 1e-15);
        assert_eq!(iso.predict(2.0), 1.0);
    }

    #[test]
    fn one_point_is_constant() {
        let iso = Isotonic::fit(&[0.3, 0.3], &[0.0, 1.0]).unwrap();
        assert!(Isotonic::fit(&[], &[]).is_err());
        let stored = serde_json::to_string(&iso).unwrap();
        assert_eq!(serde_json::from_str::<Isotonic>(&stored).unwrap(), iso);
        let corrupt = r#"{"x":[0.5,0.2],"y":[0.1,0.9]}"#;
        assert!(serde_json::from_str::<Isotonic>(corrupt).is_err());
        assert_eq!(iso.predict(0.9), 0.5);
    }
}
