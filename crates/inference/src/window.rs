//! A variant's requests since the last look: answered, failed (for the variant's own
//! reasons: bad input is the caller's), and latencies in log-spaced buckets (about 4%
//! apart, from 10 µs to 100 s) for a p99 without keeping every sample. The analysis takes
//! and resets it every interval; lock-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per factor of ten.
const PER_DECADE: f64 = 60.0;
/// The first bucket's upper edge, in microseconds.
const FIRST_US: f64 = 10.0;
const BUCKETS: usize = 7 * 60 + 2;

/// Counts since the last [`Window::take`].
pub struct Window {
    ok: AtomicU64,
    failed: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

/// What [`Window::take`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    /// Requests answered.
    pub ok: u64,
    /// Requests that failed for the variant's own reasons.
    pub failed: u64,
    /// The 99th percentile latency of all of them, in milliseconds (0 with none).
    pub p99_ms: f64,
}

impl Measured {
    /// Requests in all.
    pub fn requests(&self) -> u64 {
        self.ok + self.failed
    }

    /// Failed over all (0 with none).
    pub fn error_rate(&self) -> f64 {
        if self.requests() == 0 {
            0.0
        } else {
            self.failed as f64 / self.requests() as f64
        }
    }
}

impl Default for Window {
    fn default() -> Self {
        Window {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_US {
        return 0;
    }
    (((us / FIRST_US).log10() * PER_DECADE).ceil() as usize).min(BUCKETS - 1)
}

fn upper_ms(bucket: usize) -> f64 {
    FIRST_US * 10f64.powf(bucket as f64 / PER_DECADE) / 1e3
}

impl Window {
    /// Counts one request.
    pub fn record(&self, ok: bool, latency: Duration) {
        if ok { &self.ok } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted since the last call, and starts again.
    pub fn take(&self) -> Measured {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let ok = self.ok.swap(0, Ordering::Relaxed);
        let failed = self.failed.swap(0, Ordering::Relaxed);
        let total: u64 = counts.iter().sum();
        let mut p99_ms = 0.0;
        if total > 0 {
            let rank = (total as f64 * 0.99).ceil() as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    p99_ms = upper_ms(i);
                    break;
                }
            }
        }
        Measured { ok, failed, p99_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_within_the_bucket_resolution() {
        let w = Window::default();
        for i in 1..=1000u64 {
            w.record(i % 20 != 0, Duration::from_micros(i * 100));
        }
        let m = w.take();
        assert_eq!((m.ok, m.failed), (950, 50));
        assert!((m.error_rate() - 0.05).abs() < 1e-9);
        // the 990th of 0.1..100 ms is 99 ms
        assert!((m.p99_ms - 99.0).abs() / 99.0 < 0.05, "{}", m.p99_ms);
        assert_eq!(w.take(), Measured::default(), "taking resets");
    }
}
