//! `scipy.special.smirnov(n, x)`: the survival function of the one-sided one-sample
//! Kolmogorov–Smirnov statistic `D_n^+`, a port of xsf's `_smirnov`
//! (`xsf/cephes/kolmogorov.h`), summed in double-double as xsf sums it.

use super::{ldexp, Dd};

/// xsf's `modNX(n, x)`: `(alpha, floor(n·x), n·x)`, the fractional part computed exactly in
/// double-double, rounded up when it is 1.
fn mod_nx(n: i32, x: f64) -> (f64, i32, f64) {
    let nxd = Dd::new(x).mul_f(f64::from(n));
    let nxfloord = nxd.floor();
    let alphad = nxd.sub(nxfloord);
    let mut alpha = alphad.hi;
    let mut nxfloor = nxfloord.hi as i32;
    if alpha == 1.0 {
        nxfloor += 1;
        alpha = 0.0;
    }
    (alpha, nxfloor, nxd.hi)
}

/// xsf's `pow_D(a, m)`: `a^m` in double-double, from `pow(a.hi, m)` corrected for `a.lo`.
fn pow_d(a: Dd, m: i32) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::new(1.0);
        }
        return Dd::new(1.0).div(pow_d(a, -m));
    }
    if a.hi == 0.0 && a.lo == 0.0 {
        return Dd::new(0.0);
    }
    let ans = a.hi.powf(f64::from(m));
    let r = a.lo / a.hi;
    let mut adj = f64::from(m) * r;
    if adj.abs() > 1e-8 {
        if adj.abs() < 1e-4 {
            // first two terms of the Taylor series of (1+r)^m
            adj += (f64::from(m) * r) * ((f64::from(m) - 1.0) / 2.0 * r);
        } else {
            adj = (f64::from(m) * r.ln_1p()).exp_m1();
        }
    }
    Dd::new(ans).add_f(ans * adj)
}

/// xsf's `pow2(a, b, m)`: `(a + b)^m`, with `a + b` formed exactly.
fn pow2(a: f64, b: f64, m: i32) -> f64 {
    pow_d(Dd::new(a).add_f(b), m).hi
}

/// xsf's `pow4_D(a, b, c, d, m)`: `((a + b)/(c + d))^m`.
fn pow4_d(a: f64, b: f64, c: f64, d: f64, m: i32) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::new(1.0);
        }
        return pow4_d(c, d, a, b, -m);
    }
    let big_a = Dd::new(a).add_f(b);
    let big_c = Dd::new(c).add_f(d);
    if big_a.is_zero() {
        return if big_c.is_zero() {
            Dd {
                hi: f64::NAN,
                lo: f64::NAN,
            }
        } else {
            Dd::new(0.0)
        };
    }
    if big_c.is_zero() {
        let inf = if big_a.hi < 0.0 || (big_a.hi == 0.0 && big_a.lo < 0.0) {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Dd { hi: inf, lo: inf };
    }
    pow_d(big_a.div(big_c), m)
}

/// xsf's `nextPowerOf2(x)` (as written there: it rounds `|x|` up by half an ulp-ish).
fn next_power_of_2(x: f64) -> f64 {
    let q = ldexp(x, 1 - 53);
    let mut l = (q + x).abs();
    if l == 0.0 {
        l = x.abs();
    } else {
        let lint = l as i32;
        if f64::from(lint) == l {
            l = f64::from(lint);
        }
    }
    l
}

/// xsf's `SM_MAX_EXPONENT`.
const SM_MAX_EXPONENT: i32 = 960;

/// xsf's `pow2Scaled_D(a, m)`: `a^m` as `(significand, exponent)`, splitting the power so
/// that no intermediate underflows.
fn pow2_scaled_d(a: Dd, m: i32) -> (Dd, i32) {
    if m <= 0 {
        if m == 0 {
            return (Dd::new(1.0), 0);
        }
        let (ans, ae1) = pow2_scaled_d(a, -m);
        let (ans, ae2) = Dd::new(1.0).div(ans).frexp();
        return (ans, -ae1 + ae2);
    }
    let (y, ye) = a.frexp();
    if m == 1 {
        return (y, ye);
    }
    let mut max_expt = SM_MAX_EXPONENT;
    if f64::from(m) * (y.hi - 1.0) / y.hi < f64::from(-SM_MAX_EXPONENT) * std::f64::consts::LN_2 {
        let lg2y = y.hi.ln() / std::f64::consts::LN_2;
        let lg_ans = f64::from(m) * lg2y;
        if lg_ans <= f64::from(-SM_MAX_EXPONENT) {
            max_expt = (next_power_of_2(f64::from(-SM_MAX_EXPONENT) / lg2y + 1.0) / 2.0) as i32;
        }
    }
    if m <= max_expt {
        let ans1 = pow_d(y, m);
        let (ans, ans_e) = ans1.frexp();
        return (ans, ans_e + m * ye);
    }
    let q = m / max_expt;
    let r = m % max_expt;
    // y^m = (y^maxExpt)^q * y^r
    let (y2r, y2r_e) = pow2_scaled_d(y, r);
    let (y2m, y2m_e) = pow2_scaled_d(y, max_expt);
    let (y2mq, y2mq_e) = pow2_scaled_d(y2m, q);
    let (ans, ans_e) = y2r.mul(y2mq).frexp();
    let y2mq_e = y2mq_e + y2m_e * q;
    (ans, ans_e + y2mq_e + y2r_e + m * ye)
}

/// xsf's `computeAv`: the term `C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1)` of the Smirnov sum,
/// with the binomial coefficient given as `(Cman, Cexpt)`.
fn compute_av(n: i32, x: f64, v: i32, cman: Dd, cexpt: i32) -> Dd {
    let nf = f64::from(n);
    let t2x = Dd::new(f64::from(n - v)).div_f(nf).sub_f(x);
    let (t2, t2e) = pow2_scaled_d(t2x, n - v);
    let t1x = Dd::new(f64::from(v)).div_f(nf).add_f(x);
    let (t1, t1e) = pow2_scaled_d(t1x, v - 1);
    let ans = t1.mul(t2).mul(cman);
    ans.ldexp(cexpt + t1e + t2e)
}

/// xsf's `updateBinomial`: `C(n, j+1) = C(n, j)·(n-j)/(j+1)`, kept as a normalized
/// double-double significand and an integer exponent.
fn update_binomial(cman: &mut Dd, cexpt: &mut i32, n: i32, j: i32) {
    let rat = Dd::new(f64::from(n - j)).div_f(f64::from(j) + 1.0);
    let (man2, expt) = cman.mul(rat).frexp();
    *cexpt += expt;
    *cman = man2;
}

/// `scipy.special.smirnov(n, x)`: `P(D_n^+ >= x)` for the one-sided one-sample statistic,
/// a port of xsf's `_smirnov(n, x).sf` (Birnbaum–Tingey sum, summed in double-double from
/// whichever end has fewer or smaller terms, with early termination).
pub(crate) fn smirnov_sf(n: u64, x: f64) -> f64 {
    let Ok(n) = i32::try_from(n) else {
        return f64::NAN;
    };
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = f64::from(n);
    let (alpha, nxfl, _nx) = mod_nx(n, x);
    let mut n1mxfl = n - nxfl - if alpha == 0.0 { 0 } else { 1 };
    let mut n1mxceil = n - nxfl;
    // if alpha is 0, the last term is in neither sum
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }

    // x <= 1/n
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = pow2(1.0, x, n - 1);
        return 1.0 - x * t;
    }
    // x so big that the sf underflows
    if f64::from(-2 * n) * x * x < MINLOG {
        return 0.0;
    }
    // x >= 1 - 1/n
    if nxfl >= n - 1 {
        return pow2(1.0, -x, n);
    }
    // n too big to sum: an approximation (ks_2samp gets here with both samples above 2e6)
    if n > SMIRNOV_MAX_COMPUTE_N {
        let logp = -(6.0 * nf * x + 1.0).powf(2.0) / 18.0 / nf;
        let sf = if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 - (-logp.exp_m1())
        };
        return sf.clamp(0.0, 1.0);
    }

    // the upper sum when few terms and x small, else the lower sum
    let n_upper_terms = n - n1mxceil + 1;
    let use_upper = (n_upper_terms <= 1 && x < 0.5)
        || (n >= SM_UPPERSUM_MIN_N && n_upper_terms <= SM_UPPER_MAX_TERMS && x <= 0.5 / nf.sqrt());

    let (start, step, n_terms, mut aj) = if use_upper {
        (n, -1, n - n1mxceil + 1, pow4_d(1.0, x, 1.0, 0.0, n - 1))
    } else {
        let t2 = pow4_d(1.0, -x, 1.0, 0.0, n);
        (0, 1, n1mxfl + 1, t2.div_f(x))
    };
    let vmid = n / 2;
    let mut cman = Dd::new(1.0);
    let mut cexpt = 0;
    let mut aj_sum = Dd::new(0.0).add(aj);
    update_binomial(&mut cman, &mut cexpt, n, 0);

    for j in 1..n_terms {
        let v = start + j * step;
        aj = compute_av(n, x, v, cman, cexpt);
        if aj.hi.is_finite() && !aj.is_zero() {
            aj_sum = aj_sum.add(aj);
        }
        // safe to stop early?
        if !aj.is_zero() {
            if f64::from(4 * (n_terms - j)) * aj.hi.abs() < f64::EPSILON * aj_sum.hi
                && j != n_terms - 1
            {
                break;
            }
        } else if j > vmid {
            break;
        }
        update_binomial(&mut cman, &mut cexpt, n, j);
    }
    let prob = aj_sum.mul_f(x).hi;
    let sf = if step < 0 { 1.0 - prob } else { prob };
    sf.clamp(0.0, 1.0)
}

/// cephes' `MINLOG`, `log(2^-1074)`-ish as xsf defines it.
const MINLOG: f64 = -745.1332191019412;
const SMIRNOV_MAX_COMPUTE_N: i32 = 1_000_000;
const SM_UPPER_MAX_TERMS: i32 = 3;
const SM_UPPERSUM_MIN_N: i32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_cases() {
        // smirnov(1, x) = 1 - x; smirnov(n, x) for x <= 1/n is 1 - x (1 + x)^(n-1)
        assert_eq!(smirnov_sf(1, 0.25), 0.75);
        assert!((smirnov_sf(4, 0.2) - (1.0 - 0.2 * 1.2f64.powi(3))).abs() < 1e-15);
    }
}
