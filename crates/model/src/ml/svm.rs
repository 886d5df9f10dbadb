//! `SVMClassifier` and `SVMRegressor`, as onnxruntime computes them (`svmclassifier.cc`,
//! `svmregressor.cc`): kernels LINEAR/POLY/RBF/SIGMOID, one-vs-one votes, Platt scaling with
//! `prob_a`/`prob_b` and pairwise coupling (`multiclass_probability`).

use tract_onnx::tract_hir::internal::*;

use super::attrs::{AttrError, Attrs};
use super::post::{logistic, probit, PostTransform};
use super::{as_f32, dot, rows_cols, squared_distance, tensor, Kernel, OutShape, OutSpec, OutType};

#[derive(Debug, Clone, Copy, PartialEq)]
enum KernelType {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

/// A kernel and its parameters (`kernel_params` = gamma, coef0, degree).
#[derive(Debug, Clone, Copy)]
struct SvmKernel {
    kind: KernelType,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl SvmKernel {
    fn parse(attrs: &Attrs) -> Result<SvmKernel, AttrError> {
        let kind = match attrs.string_or("kernel_type", "LINEAR").as_str() {
            "LINEAR" => KernelType::Linear,
            "POLY" => KernelType::Poly,
            "RBF" => KernelType::Rbf,
            "SIGMOID" => KernelType::Sigmoid,
            other => return Err(attrs.error(format!("unknown kernel_type {other:?}"))),
        };
        let p = attrs.floats("kernel_params");
        let at = |i: usize| p.get(i).copied().unwrap_or(0.0);
        Ok(SvmKernel {
            kind,
            gamma: at(0),
            coef0: at(1),
            degree: at(2),
        })
    }

    /// `K(x, v)`; `c` is added to a LINEAR dot product.
    fn apply(&self, x: &[f32], v: &[f32], c: f32) -> f32 {
        match self.kind {
            KernelType::Rbf => (-self.gamma * squared_distance(x, v)).exp(),
            KernelType::Linear => dot(x, v) + c,
            KernelType::Poly => {
                let d = self.gamma * dot(x, v) + self.coef0;
                if self.degree == 2.0 {
                    d * d
                } else if self.degree == 3.0 {
                    d * d * d
                } else {
                    d.powf(self.degree)
                }
            }
            KernelType::Sigmoid => (self.gamma * dot(x, v) + self.coef0).tanh(),
        }
    }
}

/// Pairwise coupling of one-vs-one probabilities `r` (`k x k`) into class probabilities `p`.
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0.0f32; k * k];
    let mut qp = vec![0.0f32; k];
    let eps = 0.005f32 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0.0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = qp.iter().map(|&v| (v - pqp).abs()).fold(0.0f32, f32::max);
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

#[derive(Debug)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// `SVMClassifier`.
#[derive(Debug)]
pub(crate) struct SvmClassifier {
    kernel: SvmKernel,
    labels: Labels,
    classes: usize,
    features: usize,
    /// Support vectors, `vectors x features`; empty in liblinear mode.
    support: Vec<f32>,
    vectors_per_class: Vec<usize>,
    starts: Vec<usize>,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    post: PostTransform,
    weights_all_positive: bool,
}

impl SvmClassifier {
    pub fn parse(attrs: &Attrs) -> Result<SvmClassifier, AttrError> {
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
        let classes = match &labels {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        };
        if classes < 2 {
            return Err(attrs.error("a classifier needs at least two class labels"));
        }
        let vectors_per_class = attrs
            .ints("vectors_per_class")
            .iter()
            .map(|&v| attrs.index("vectors_per_class", v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut starts = Vec::with_capacity(vectors_per_class.len());
        let mut total = 0;
        for &v in &vectors_per_class {
            starts.push(total);
            total += v;
        }
        let support = attrs.floats("support_vectors");
        let coefficients = attrs.floats("coefficients");
        let mut kernel = SvmKernel::parse(attrs)?;
        let features = if total > 0 {
            if vectors_per_class.len() != classes || !support.len().is_multiple_of(total) {
                return Err(attrs.error("support_vectors do not match vectors_per_class"));
            }
            if coefficients.len() != (classes - 1) * total {
                return Err(attrs.error("coefficients do not match the support vectors"));
            }
            support.len() / total
        } else {
            kernel.kind = KernelType::Linear;
            if coefficients.is_empty() || !coefficients.len().is_multiple_of(classes) {
                return Err(attrs.error("coefficients are not one row per class"));
            }
            coefficients.len() / classes
        };
        let rho = attrs.floats("rho");
        let pairs = classes * (classes - 1) / 2;
        if rho.len() < if total > 0 { pairs } else { 1 } {
            return Err(attrs.error("rho is too short"));
        }
        let (prob_a, prob_b) = (attrs.floats("prob_a"), attrs.floats("prob_b"));
        if prob_a.len() != prob_b.len() || (!prob_a.is_empty() && prob_a.len() < pairs) {
            return Err(attrs.error("prob_a and prob_b must both have one value per class pair"));
        }
        Ok(SvmClassifier {
            kernel,
            labels,
            classes,
            features,
            weights_all_positive: coefficients.iter().all(|&c| c >= 0.0),
            support,
            vectors_per_class,
            starts,
            coefficients,
            rho,
            prob_a,
            prob_b,
            post: PostTransform::parse(attrs)?,
        })
    }

    fn svc(&self) -> bool {
        !self.support.is_empty()
    }

    fn score_columns(&self) -> usize {
        if self.svc() && self.prob_a.is_empty() {
            if self.classes > 2 {
                self.classes * (self.classes - 1) / 2
            } else {
                2
            }
        } else {
            self.classes
        }
    }

    /// One row: its label's index and its scores (`score_columns` of them). The loops follow
    /// onnxruntime's index arithmetic, to make the correspondence easy to check.
    #[allow(clippy::explicit_counter_loop, clippy::needless_range_loop)]
    fn row(&self, x: &[f32], out: &mut [f32], kernels: &mut Vec<f32>) -> usize {
        let c = self.classes;
        let pairs = c * (c - 1) / 2;
        let have_proba = !self.prob_a.is_empty();
        let mut votes = vec![0usize; c];
        let mut write_additional = -1;
        let n_scores;
        if !self.svc() {
            for (k, o) in out.iter_mut().enumerate().take(c) {
                let w = &self.coefficients[k * self.features..(k + 1) * self.features];
                *o = self.kernel.apply(x, w, self.rho[0]);
            }
            n_scores = c;
        } else {
            kernels.clear();
            kernels.extend(
                self.support
                    .chunks_exact(self.features)
                    .map(|v| self.kernel.apply(x, v, 0.0)),
            );
            let total = kernels.len();
            let mut pair_scores = Vec::with_capacity(pairs);
            let mut idx = 0;
            for i in 0..c - 1 {
                for j in i + 1..c {
                    let mut sum = 0.0f64;
                    let (si, ni) = (self.starts[i], self.vectors_per_class[i]);
                    let (sj, nj) = (self.starts[j], self.vectors_per_class[j]);
                    let row_j = total * (j - 1);
                    let row_i = total * i;
                    for m in 0..ni {
                        sum += (self.coefficients[row_j + si + m] * kernels[si + m]) as f64;
                    }
                    for m in 0..nj {
                        sum += (self.coefficients[row_i + sj + m] * kernels[sj + m]) as f64;
                    }
                    sum += self.rho[idx] as f64;
                    idx += 1;
                    pair_scores.push(sum as f32);
                    votes[if sum > 0.0 { i } else { j }] += 1;
                }
            }
            if have_proba {
                let mut probs = vec![0.0f32; c * c];
                let mut index = 0;
                for i in 0..c - 1 {
                    let mut p1 = i * c + i + 1;
                    let mut p2 = (i + 1) * c + i;
                    for _ in i + 1..c {
                        let val = 1.0
                            - logistic(
                                pair_scores[index] * self.prob_a[index] + self.prob_b[index],
                            );
                        let val = val.clamp(1.0e-7, 1.0 - 1.0e-7);
                        probs[p1] = val;
                        probs[p2] = 1.0 - val;
                        p1 += 1;
                        p2 += c;
                        index += 1;
                    }
                }
                multiclass_probability(c, &probs, &mut out[..c]);
                n_scores = c;
            } else {
                n_scores = pairs;
                if c <= 2 {
                    write_additional = if self.post == PostTransform::None {
                        2
                    } else {
                        0
                    };
                }
                out[..pairs].copy_from_slice(&pair_scores);
            }
        }
        // the label
        let (maxclass, max_weight) = if self.svc() {
            let mut best = 0;
            for k in 1..c {
                if votes[k] > votes[best] {
                    best = k;
                }
            }
            (best, 0.0)
        } else {
            let mut best = 0;
            for k in 1..c {
                if out[k] > out[best] {
                    best = k;
                }
            }
            (best, out[best])
        };
        let label = if pairs == 1 {
            if !have_proba {
                if (self.weights_all_positive && max_weight >= 0.5)
                    || (max_weight > 0.0 && !self.weights_all_positive)
                {
                    1
                } else {
                    maxclass
                }
            } else {
                maxclass
            }
        } else {
            maxclass
        };
        // the scores
        if n_scores > 1 {
            self.post.apply(&mut out[..n_scores]);
        } else if self.post == PostTransform::Probit {
            out[0] = probit(out[0]);
        } else if write_additional >= 0 {
            let s = out[0];
            match write_additional {
                0 | 1 => {
                    out[0] = 1.0 - s;
                    out[1] = s;
                }
                _ if self.post == PostTransform::Logistic => {
                    out[0] = logistic(-s);
                    out[1] = logistic(s);
                }
                _ => {
                    out[0] = -s;
                    out[1] = s;
                }
            }
        }
        label
    }
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        let dt = match self.labels {
            Labels::Ints(_) => DatumType::I64,
            Labels::Strings(_) => DatumType::String,
        };
        vec![
            OutSpec {
                dt: OutType::Fixed(dt),
                shape: OutShape::Rows,
            },
            OutSpec {
                dt: OutType::Fixed(DatumType::F32),
                shape: OutShape::RowsBy(self.score_columns()),
            },
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        if cols != self.features {
            bail!("expected {} features, got {cols}", self.features);
        }
        let x = as_f32(&inputs[0])?;
        let sc = self.score_columns();
        let mut out = vec![0.0f32; rows * sc.max(self.classes)];
        let width = sc.max(self.classes);
        let mut winners = Vec::with_capacity(rows);
        let mut kernels = Vec::new();
        for (r, xr) in x.chunks_exact(cols.max(1)).enumerate().take(rows) {
            winners.push(self.row(xr, &mut out[r * width..(r + 1) * width], &mut kernels));
        }
        let scores: Vec<f32> = out
            .chunks_exact(width.max(1))
            .flat_map(|row| row[..sc].iter().copied())
            .collect();
        let labels = match &self.labels {
            Labels::Ints(l) => tensor(&[rows], winners.iter().map(|&w| l[w]).collect())?,
            Labels::Strings(l) => tensor(&[rows], winners.iter().map(|&w| l[w].clone()).collect())?,
        };
        Ok(tvec!(labels, tensor(&[rows, sc], scores)?))
    }
}

/// `SVMRegressor`.
#[derive(Debug)]
pub(crate) struct SvmRegressor {
    kernel: SvmKernel,
    features: usize,
    support: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
}

impl SvmRegressor {
    pub fn parse(attrs: &Attrs) -> Result<SvmRegressor, AttrError> {
        let n_supports = attrs.index("n_supports", attrs.int_or("n_supports", 0))?;
        let support = attrs.floats("support_vectors");
        let coefficients = attrs.floats("coefficients");
        let rho = attrs.floats("rho").first().copied().unwrap_or(0.0);
        let mut kernel = SvmKernel::parse(attrs)?;
        if coefficients.is_empty() {
            return Err(attrs.error("coefficients are required"));
        }
        let features = if n_supports > 0 {
            if !support.len().is_multiple_of(n_supports) || coefficients.len() != n_supports {
                return Err(attrs.error("support_vectors and coefficients do not match n_supports"));
            }
            support.len() / n_supports
        } else {
            kernel.kind = KernelType::Linear;
            coefficients.len()
        };
        Ok(SvmRegressor {
            kernel,
            features,
            support: if n_supports > 0 { support } else { Vec::new() },
            coefficients,
            rho,
            one_class: attrs.int_or("one_class", 0) != 0,
        })
    }
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::RowsBy(1),
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        if cols != self.features {
            bail!("expected {} features, got {cols}", self.features);
        }
        let x = as_f32(&inputs[0])?;
        let out = x
            .chunks_exact(cols.max(1))
            .take(rows)
            .map(|xr| {
                let y = if self.support.is_empty() {
                    self.kernel.apply(xr, &self.coefficients, self.rho)
                } else {
                    self.support
                        .chunks_exact(self.features)
                        .zip(&self.coefficients)
                        .map(|(v, c)| self.kernel.apply(xr, v, 0.0) * c)
                        .sum::<f32>()
                        + self.rho
                };
                if self.one_class {
                    if y > 0.0 {
                        1.0
                    } else {
                        -1.0
                    }
                } else {
                    y
                }
            })
            .collect();
        Ok(tvec!(tensor(&[rows, 1], out)?))
    }
}
