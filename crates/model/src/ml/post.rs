//! Post transforms of scores, as onnxruntime's `ml_common.h` computes them (in `f32`).

use super::attrs::{AttrError, Attrs};

/// `post_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(attrs: &Attrs) -> Result<PostTransform, AttrError> {
        match attrs.string_or("post_transform", "NONE").as_str() {
            "NONE" => Ok(PostTransform::None),
            "LOGISTIC" => Ok(PostTransform::Logistic),
            "SOFTMAX" => Ok(PostTransform::Softmax),
            "SOFTMAX_ZERO" => Ok(PostTransform::SoftmaxZero),
            "PROBIT" => Ok(PostTransform::Probit),
            other => Err(attrs.error(format!("unknown post_transform {other:?}"))),
        }
    }

    /// Transforms one row of two or more scores in place.
    pub fn apply(self, scores: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
            PostTransform::Softmax => softmax(scores),
            PostTransform::SoftmaxZero => softmax_zero(scores),
        }
    }
}

/// `1 / (1 + e^-x)`, computed on `|x|` for stability.
pub(crate) fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// The logistic function over a whole buffer, as onnxruntime's `MlasComputeLogistic` computes
/// it for `LinearClassifier` scores of two or more columns: Eigen's rational approximation, an
/// odd polynomial over an even one in `x` clamped to [-18, 18], the result clamped to [0, 1].
/// Written lane by lane without branches so that it compiles to vector instructions; a NaN
/// stays a NaN.
pub(crate) fn logistic_rational(values: &mut [f32]) {
    // The published constants, rounded to `f32` as the C source's `f` literals are.
    const ALPHA: [f64; 5] = [
        4.370_310_125_798_01e-11,
        1.156_273_244_599_42e-07,
        6.085_748_646_001_43e-05,
        8.513_771_333_047_01e-03,
        2.482_879_470_615_29e-01,
    ];
    const BETA: [f64; 6] = [
        6.102_473_897_556_81e-13,
        5.761_021_369_934_27e-09,
        6.291_067_850_170_40e-06,
        1.701_988_173_740_94e-03,
        1.168_176_569_044_53e-01,
        9.931_519_210_231_80e-01,
    ];
    for v in values.iter_mut() {
        let x = v.clamp(-18.0, 18.0);
        let x2 = x * x;
        let p = ALPHA[1..]
            .iter()
            .fold(ALPHA[0] as f32, |p, &a| p * x2 + a as f32)
            * x;
        let q = BETA[1..]
            .iter()
            .fold(BETA[0] as f32, |q, &b| q * x2 + b as f32);
        *v = (p / q + 0.5).clamp(0.0, 1.0);
    }
}

/// The inverse error function, by onnxruntime's approximation (Winitzki).
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// `sqrt(2) * erfinv(2x - 1)`.
pub(crate) fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

pub(crate) fn softmax(values: &mut [f32]) {
    let max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax that leaves (near) zero scores out of the sum, as onnxruntime does.
pub(crate) fn softmax_zero(values: &mut [f32]) {
    let max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_and_softmax_are_probabilities() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(-3.0) + logistic(3.0) - 1.0).abs() < 1e-6);
        let mut v = [1.0, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }

    #[test]
    fn the_rational_logistic_is_the_logistic() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let mut ys = xs.clone();
        logistic_rational(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            assert!((y - logistic(x)).abs() < 2e-6, "logistic({x}) = {y}");
        }
        let mut edges = [f32::NEG_INFINITY, f32::INFINITY, f32::NAN, 0.0];
        logistic_rational(&mut edges);
        assert!(edges[0] < 1e-6 && edges[1] > 1.0 - 1e-6, "{edges:?}");
        assert!(edges[2].is_nan());
        assert_eq!(edges[3], 0.5);
    }

    #[test]
    fn probit_is_the_normal_quantile() {
        assert!(probit(0.5).abs() < 1e-3);
        assert!((probit(0.975) - 1.96).abs() < 1e-2);
    }
}
