//! xsf's double-double arithmetic (`xsf/cephes/dd_real.h`, from the qd package), with
//! C's `ldexp` and `frexp`: what `smirnov` computes in, and what `kolmogorov` carries
//! numpy's `longdouble` products in.

/// `ldexp(x, e)`: `x·2^e` with a single rounding (musl's `scalbn`).
pub(crate) fn ldexp(x: f64, e: i32) -> f64 {
    let p2 = |k: i32| f64::from_bits(((0x3ff + k) as u64) << 52);
    let mut y = x;
    let mut n = e;
    if n > 1023 {
        y *= p2(1023);
        n -= 1023;
        if n > 1023 {
            y *= p2(1023);
            n -= 1023;
            n = n.min(1023);
        }
    } else if n < -1022 {
        // 2^-1022 · 2^53: the intermediate stays normal, so only the last step rounds
        y *= p2(-1022) * p2(53);
        n += 1022 - 53;
        if n < -1022 {
            y *= p2(-1022) * p2(53);
            n += 1022 - 53;
            n = n.max(-1022);
        }
    }
    y * p2(n)
}

/// `frexp(x)`: `(m, e)` with `x = m·2^e`, `0.5 <= |m| < 1` (`(x, 0)` for 0, inf, NaN).
pub(crate) fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let ee = ((bits >> 52) & 0x7ff) as i32;
    if ee == 0 {
        if x == 0.0 {
            return (x, 0);
        }
        let (m, e) = frexp(x * f64::from_bits(0x43f0_0000_0000_0000)); // 2^64
        return (m, e - 64);
    }
    if ee == 0x7ff {
        return (x, 0);
    }
    let m = f64::from_bits((bits & 0x800f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000);
    (m, ee - 0x3fe)
}

/// xsf's `double_double` (`cephes/dd_real.h`, from the qd package): an unevaluated sum
/// `hi + lo`, with the operations `_smirnov` uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dd {
    pub(crate) hi: f64,
    pub(crate) lo: f64,
}

/// `fl(a+b)` and its error, assuming `|a| >= |b|`.
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    (s, b - c)
}

/// `fl(a+b)` and its error.
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    let d = b - c;
    let e = s - c;
    (s, (a - e) + d)
}

/// `fl(a·b)` and its error (by a fused multiply-add).
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Dd {
    pub(crate) const fn new(x: f64) -> Self {
        Self { hi: x, lo: 0.0 }
    }

    pub(crate) fn add(self, rhs: Self) -> Self {
        let (s1, s2) = two_sum(self.hi, rhs.hi);
        let (t1, t2) = two_sum(self.lo, rhs.lo);
        let (s1, s2) = quick_two_sum(s1, s2 + t1);
        let (hi, lo) = quick_two_sum(s1, s2 + t2);
        Self { hi, lo }
    }

    pub(crate) fn add_f(self, rhs: f64) -> Self {
        let (s1, s2) = two_sum(self.hi, rhs);
        let (hi, lo) = quick_two_sum(s1, s2 + self.lo);
        Self { hi, lo }
    }

    pub(crate) fn sub_f(self, rhs: f64) -> Self {
        let (s1, s2) = two_sum(self.hi, -rhs);
        let (hi, lo) = quick_two_sum(s1, s2 + self.lo);
        Self { hi, lo }
    }

    fn neg(self) -> Self {
        Self {
            hi: -self.hi,
            lo: -self.lo,
        }
    }

    pub(crate) fn sub(self, rhs: Self) -> Self {
        self.add(rhs.neg())
    }

    pub(crate) fn mul(self, rhs: Self) -> Self {
        let (p1, p2) = two_prod(self.hi, rhs.hi);
        let p2 = p2 + (self.hi * rhs.lo + self.lo * rhs.hi);
        let (hi, lo) = quick_two_sum(p1, p2);
        Self { hi, lo }
    }

    /// `double_double * double` (and `double * double_double`, the same operations).
    pub(crate) fn mul_f(self, rhs: f64) -> Self {
        let (p1, e1) = two_prod(self.hi, rhs);
        let (p2, e2) = two_prod(self.lo, rhs);
        let (hi, lo) = quick_two_sum(p1, e2 + p2 + e1);
        Self { hi, lo }
    }

    pub(crate) fn div(self, rhs: Self) -> Self {
        let q1 = self.hi / rhs.hi;
        let r = self.sub(rhs.mul_f(q1));
        let q2 = r.hi / rhs.hi;
        let r = r.sub(rhs.mul_f(q2));
        let q3 = r.hi / rhs.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Self { hi: q1, lo: q2 }.add_f(q3)
    }

    pub(crate) fn div_f(self, rhs: f64) -> Self {
        self.div(Self::new(rhs))
    }

    pub(crate) fn is_zero(self) -> bool {
        self.hi == 0.0 && self.lo == 0.0
    }

    pub(crate) fn floor(self) -> Self {
        let hi = self.hi.floor();
        if hi == self.hi {
            let (hi, lo) = quick_two_sum(hi, self.lo.floor());
            Self { hi, lo }
        } else {
            Self { hi, lo: 0.0 }
        }
    }

    pub(crate) fn ldexp(self, e: i32) -> Self {
        Self {
            hi: ldexp(self.hi, e),
            lo: ldexp(self.lo, e),
        }
    }

    /// `(b, e)` with `0.5 <= |b.hi| < 1` (or `|b.hi| == 1` with `b.lo` of the other sign).
    pub(crate) fn frexp(self) -> (Self, i32) {
        let (mut man, mut exponent) = frexp(self.hi);
        let mut b1 = ldexp(self.lo, -exponent);
        if man.abs() == 0.5 && man * b1 < 0.0 {
            man *= 2.0;
            b1 *= 2.0;
            exponent -= 1;
        }
        (Self { hi: man, lo: b1 }, exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_double_helpers() {
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(-0.75), (-0.75, 0));
        assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
        assert_eq!(ldexp(0.5, 4), 8.0);
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(1.0, 2000), f64::INFINITY);
        assert_eq!(ldexp(ldexp(1.0, -1000), 1500), ldexp(1.0, 500));
        let third = Dd::new(1.0).div_f(3.0);
        let back = third.mul_f(3.0);
        assert!((back.hi - 1.0).abs() <= f64::EPSILON && back.lo.abs() < 1e-30);
    }
}
