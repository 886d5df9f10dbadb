//! `LinearClassifier` and `LinearRegressor`, as onnxruntime computes them
//! (`linearclassifier.cc`, `linearregressor.cc`).

use tract_onnx::tract_hir::internal::*;

use super::attrs::{AttrError, Attrs};
use super::post::{logistic_rational, probit, PostTransform};
use super::{as_f32, dot, rows_cols, tensor, Kernel, OutShape, OutSpec, OutType};

/// `scores[r, t] = x[r] . coefficients[t] + intercepts[t]`, for `targets` rows of coefficients.
fn gemm(x: &[f32], cols: usize, coefficients: &[f32], intercepts: &[f32], out: &mut [f32]) {
    let targets = intercepts.len();
    for (row, scores) in x.chunks_exact(cols).zip(out.chunks_exact_mut(targets)) {
        for (t, score) in scores.iter_mut().enumerate() {
            let w = &coefficients[t * cols..(t + 1) * cols];
            *score = dot(row, w) + intercepts[t];
        }
    }
}

/// [`gemm`] for two targets of which the second is the first negated, as skl2onnx writes a
/// binary logistic regression: one dot product a row. Negation is exact in floating point, so
/// the scores are bit for bit those of [`gemm`] (but for the sign of a zero score).
fn gemm_mirrored(x: &[f32], cols: usize, coefficients: &[f32], intercept: f32, out: &mut [f32]) {
    let w = &coefficients[..cols];
    for (row, pair) in x.chunks_exact(cols).zip(out.chunks_exact_mut(2)) {
        let s = dot(row, w) + intercept;
        pair[0] = s;
        pair[1] = -s;
    }
}

/// onnxruntime's `batched_update_scores_inplace` for `targets` scores per row: LOGISTIC over
/// the whole buffer by MLAS's approximation; with one target only PROBIT applies, and
/// `add_second_class` writes `[1 - s, s]`.
fn post_process(
    post: PostTransform,
    targets: usize,
    add_second_class: bool,
    scores: &mut Vec<f32>,
) {
    if targets > 1 {
        if post == PostTransform::Logistic {
            logistic_rational(scores);
        } else if post != PostTransform::None {
            scores
                .chunks_exact_mut(targets)
                .for_each(|row| post.apply(row));
        }
        return;
    }
    let rows = scores.len();
    if post == PostTransform::Probit {
        scores.iter_mut().for_each(|s| *s = probit(*s));
        if add_second_class {
            scores.resize(rows * 2, 0.0);
        }
    } else if add_second_class {
        *scores = scores.iter().flat_map(|&s| [1.0 - s, s]).collect();
    }
}

/// Class labels of a classifier.
#[derive(Debug)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// `LinearClassifier`.
#[derive(Debug)]
pub(crate) struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: Labels,
    post: PostTransform,
    add_second_class: bool,
    /// Two targets, the second the first negated (see [`gemm_mirrored`]).
    mirrored: bool,
}

impl LinearClassifier {
    pub fn parse(attrs: &Attrs) -> Result<LinearClassifier, AttrError> {
        let coefficients = attrs.floats("coefficients");
        let intercepts = attrs.floats("intercepts");
        let strings = attrs.strings("classlabels_strings");
        let labels = if strings.is_empty() {
            Labels::Ints(attrs.ints("classlabels_ints"))
        } else {
            Labels::Strings(
                strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )
        };
        let n_labels = match &labels {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        };
        if coefficients.is_empty() || intercepts.is_empty() {
            return Err(attrs.error("coefficients and intercepts are required"));
        }
        if !coefficients.len().is_multiple_of(intercepts.len()) {
            return Err(attrs.error("coefficients are not a whole number of rows per intercept"));
        }
        let targets = intercepts.len();
        if targets > 1 && n_labels != targets {
            return Err(attrs.error(format!(
                "{targets} score columns but {n_labels} class labels"
            )));
        }
        let half = coefficients.len() / 2;
        let mirrored = targets == 2
            && intercepts[1].to_bits() == (-intercepts[0]).to_bits()
            && (0..half).all(|i| coefficients[half + i].to_bits() == (-coefficients[i]).to_bits());
        Ok(LinearClassifier {
            add_second_class: targets == 1 && n_labels == 2,
            mirrored,
            coefficients,
            intercepts,
            labels,
            post: PostTransform::parse(attrs)?,
        })
    }

    fn features(&self) -> usize {
        self.coefficients.len() / self.intercepts.len()
    }
}

impl Kernel for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        let dt = match self.labels {
            Labels::Ints(_) => DatumType::I64,
            Labels::Strings(_) => DatumType::String,
        };
        let columns = if self.add_second_class {
            2
        } else {
            self.intercepts.len()
        };
        vec![
            OutSpec {
                dt: OutType::Fixed(dt),
                shape: OutShape::Rows,
            },
            OutSpec {
                dt: OutType::Fixed(DatumType::F32),
                shape: OutShape::RowsBy(columns),
            },
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        if cols != self.features() {
            bail!("expected {} features, got {cols}", self.features());
        }
        let x = as_f32(&inputs[0])?;
        let targets = self.intercepts.len();
        let mut scores = vec![0.0f32; rows * targets];
        if self.mirrored {
            gemm_mirrored(
                &x,
                cols,
                &self.coefficients,
                self.intercepts[0],
                &mut scores,
            );
        } else {
            gemm(&x, cols, &self.coefficients, &self.intercepts, &mut scores);
        }
        let winners: Vec<usize> = if targets == 1 {
            scores.iter().map(|&s| usize::from(s > 0.0)).collect()
        } else {
            scores
                .chunks_exact(targets)
                .map(|row| {
                    let mut best = 0;
                    for (j, &s) in row.iter().enumerate().skip(1) {
                        if s > row[best] {
                            best = j;
                        }
                    }
                    best
                })
                .collect()
        };
        let labels = match &self.labels {
            Labels::Ints(l) if targets == 1 => {
                let (neg, pos) = if l.len() == 2 { (l[0], l[1]) } else { (0, 1) };
                tensor(
                    &[rows],
                    winners
                        .iter()
                        .map(|&w| if w == 1 { pos } else { neg })
                        .collect(),
                )?
            }
            Labels::Strings(l) if targets == 1 => {
                let (neg, pos) = if l.len() == 2 {
                    (l[0].clone(), l[1].clone())
                } else {
                    ("0".to_string(), "1".to_string())
                };
                tensor(
                    &[rows],
                    winners
                        .iter()
                        .map(|&w| if w == 1 { pos.clone() } else { neg.clone() })
                        .collect(),
                )?
            }
            Labels::Ints(l) => tensor(&[rows], winners.iter().map(|&w| l[w]).collect())?,
            Labels::Strings(l) => tensor(&[rows], winners.iter().map(|&w| l[w].clone()).collect())?,
        };
        post_process(self.post, targets, self.add_second_class, &mut scores);
        let columns = scores.len() / rows.max(1);
        let columns = if rows == 0 {
            if self.add_second_class {
                2
            } else {
                targets
            }
        } else {
            columns
        };
        Ok(tvec!(labels, tensor(&[rows, columns], scores)?))
    }
}

/// `LinearRegressor`.
#[derive(Debug)]
pub(crate) struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    post: PostTransform,
}

impl LinearRegressor {
    pub fn parse(attrs: &Attrs) -> Result<LinearRegressor, AttrError> {
        let targets = attrs.index("targets", attrs.int_or("targets", 1))?;
        let coefficients = attrs.floats("coefficients");
        let mut intercepts = attrs.floats("intercepts");
        if intercepts.is_empty() {
            intercepts = vec![0.0; targets];
        }
        if targets == 0
            || intercepts.len() != targets
            || !coefficients.len().is_multiple_of(targets)
        {
            return Err(attrs.error(format!(
                "{} coefficients and {} intercepts do not make {targets} targets",
                coefficients.len(),
                intercepts.len()
            )));
        }
        Ok(LinearRegressor {
            coefficients,
            intercepts,
            post: PostTransform::parse(attrs)?,
        })
    }
}

impl Kernel for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::RowsBy(self.intercepts.len()),
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        let targets = self.intercepts.len();
        if cols * targets != self.coefficients.len() {
            bail!(
                "expected {} features, got {cols}",
                self.coefficients.len() / targets
            );
        }
        let x = as_f32(&inputs[0])?;
        let mut scores = vec![0.0f32; rows * targets];
        gemm(&x, cols, &self.coefficients, &self.intercepts, &mut scores);
        post_process(self.post, targets, false, &mut scores);
        Ok(tvec!(tensor(&[rows, targets], scores)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_scores_are_the_general_ones_bit_for_bit() {
        let cols = 30;
        let w: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.71).sin() * 3.0).collect();
        let coefficients: Vec<f32> = w.iter().map(|v| -v).chain(w.iter().copied()).collect();
        let intercepts = [-0.575_198_9, 0.575_198_9];
        let x: Vec<f32> = (0..cols * 37)
            .map(|i| (i as f32 * 0.13).cos() * 50.0)
            .collect();
        let mut general = vec![0.0; 37 * 2];
        let mut mirrored = vec![0.0; 37 * 2];
        gemm(&x, cols, &coefficients, &intercepts, &mut general);
        gemm_mirrored(&x, cols, &coefficients, intercepts[0], &mut mirrored);
        assert_eq!(
            general.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            mirrored.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
