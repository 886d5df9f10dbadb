//! The summary of a categorical column: the exact count of every category while there are
//! at most `MAX_CATEGORIES` (1,000) of them and their names fit `KEY_BUDGET`; after that,
//! the frequent ones (Misra–Gries, in the mergeable form of Agarwal et al., "Mergeable
//! summaries", 2012), the total and missing counts staying exact.
//!
//! When the table overflows, every count is lowered by the count `c` of the first category
//! left out of the largest half (by count, then name; half of `MAX_CATEGORIES` and of
//! `KEY_BUDGET`) and the categories at or below `c` are dropped. Each reduction removes at
//! least `c` from each kept category and from the first one left out: 501 of them, or 24
//! when every name is near `MAX_CATEGORY_BYTES`. So a kept count is at most `N / 501`
//! below the true one (`N / 24` with the longest names; `N` values in all), and a
//! category more frequent than that is always kept (measured: 172 below for a bound of
//! 598). What is not counted under a name is the "other" count,
//! `count() - Σ kept`: in [`CategorySketch::to_sample`] the category `OTHER`.
//!
//! Names are never truncated (a truncated name would not match the reference's); a
//! category longer than `MAX_CATEGORY_BYTES` is counted in "other" and makes the sketch
//! inexact. Encoded it takes at most `KEY_BUDGET` + 28 bytes; in memory the hash table adds
//! about 40 bytes per category.

use std::collections::HashMap;

use super::codec::{corrupt, Reader, Writer};
use super::SketchError;
use crate::drift::Sample;

/// The most categories counted by name.
pub const MAX_CATEGORIES: usize = 1000;
/// The longest category counted by name, in bytes of UTF-8.
pub const MAX_CATEGORY_BYTES: usize = 1024;
/// The budget of the names and counts, in encoded bytes (each category costs its length
/// plus `KEY_OVERHEAD`): 1,000 categories of up to 36 bytes.
pub const KEY_BUDGET: usize = 48_000;
/// A category's encoded length and count, at most.
const KEY_OVERHEAD: usize = 12;
/// The name under which [`CategorySketch::to_sample`] puts the values not counted by
/// name (a NUL byte first: no real category is expected to start so).
pub const OTHER: &str = "\u{0}other";

const MAGIC: &[u8; 4] = b"MLSC";
const VERSION: u8 = 1;

/// A streaming summary of a categorical column in bounded memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CategorySketch {
    counts: HashMap<String, u64>,
    /// Σ (name length + `KEY_OVERHEAD`) over `counts`.
    bytes: usize,
    /// Present values, counted by name or not.
    total: u64,
    missing: u64,
    exact: bool,
}

impl Default for CategorySketch {
    fn default() -> Self {
        CategorySketch {
            counts: HashMap::new(),
            bytes: 0,
            total: 0,
            missing: 0,
            exact: true,
        }
    }
}

fn cost(name: &str) -> usize {
    name.len() + KEY_OVERHEAD
}

impl CategorySketch {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value; `None` is missing.
    pub fn update(&mut self, value: Option<&str>) {
        self.add(value, 1);
    }

    /// Adds `n` values equal to `value`.
    pub fn add(&mut self, value: Option<&str>, n: u64) {
        let Some(name) = value else {
            self.missing = self.missing.saturating_add(n);
            return;
        };
        if n == 0 {
            return;
        }
        self.total = self.total.saturating_add(n);
        if name.len() > MAX_CATEGORY_BYTES {
            self.exact = false;
            return;
        }
        if let Some(c) = self.counts.get_mut(name) {
            *c = c.saturating_add(n);
            return;
        }
        self.counts.insert(name.to_owned(), n);
        self.bytes += cost(name);
        self.settle();
    }

    /// Adds every value of `values`.
    pub fn extend<'a>(&mut self, values: impl IntoIterator<Item = Option<&'a str>>) {
        for v in values {
            self.update(v);
        }
    }

    /// Adds the values `other` summarizes (another partition, replica or window).
    pub fn merge(&mut self, other: &CategorySketch) {
        self.total = self.total.saturating_add(other.total);
        self.missing = self.missing.saturating_add(other.missing);
        self.exact &= other.exact;
        for (name, &n) in &other.counts {
            match self.counts.get_mut(name.as_str()) {
                Some(c) => *c = c.saturating_add(n),
                None => {
                    self.counts.insert(name.clone(), n);
                    self.bytes += cost(name);
                }
            }
        }
        self.settle();
    }

    /// Keeps the frequent half when the table is over its limits.
    fn settle(&mut self) {
        if self.counts.len() <= MAX_CATEGORIES && self.bytes <= KEY_BUDGET {
            return;
        }
        let mut entries: Vec<(String, u64)> = self.counts.drain().collect();
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let (mut keep, mut bytes) = (0, 0);
        while keep < entries.len()
            && keep < MAX_CATEGORIES / 2
            && bytes + cost(&entries[keep].0) <= KEY_BUDGET / 2
        {
            bytes += cost(&entries[keep].0);
            keep += 1;
        }
        let cut = entries.get(keep).map_or(0, |e| e.1);
        entries.truncate(keep);
        self.counts = entries
            .into_iter()
            .filter(|e| e.1 > cut)
            .map(|(k, c)| (k, c - cut))
            .collect();
        self.bytes = self.counts.keys().map(|k| cost(k)).sum();
        self.exact = false;
    }

    /// How many values are present (missing ones excluded), exactly.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// How many values were missing.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Whether every value is counted under its own name.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// The categories counted by name and their counts (lower bounds once inexact), by
    /// name.
    pub fn counts(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.counts.iter().map(|(k, &c)| (k.as_str(), c)).collect();
        v.sort_unstable();
        v
    }

    /// The values not counted under their own name (0 while exact).
    pub fn other(&self) -> u64 {
        self.total - self.counts.values().sum::<u64>()
    }

    /// The column as a sample: exact while [`CategorySketch::is_exact`]; else the kept
    /// categories and [`OTHER`] for the rest.
    pub fn to_sample(&self) -> Sample {
        let rest = (!self.exact).then(|| (OTHER.to_owned(), self.other()));
        let kept = self.counts.iter().map(|(k, &c)| (k.clone(), c));
        Sample::from_counts(kept.chain(rest), self.missing)
    }

    /// The size of [`CategorySketch::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.encode().len()
    }

    /// The versioned binary form (little-endian varints, categories by name).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, VERSION);
        w.u8(u8::from(self.exact));
        w.varint(self.total);
        w.varint(self.missing);
        let counts = self.counts();
        w.varint(counts.len() as u64);
        for (name, n) in counts {
            w.varint(name.len() as u64);
            w.bytes(name.as_bytes());
            w.varint(n);
        }
        w.finish()
    }

    /// Reads [`CategorySketch::encode`]'s output, checking every invariant.
    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        let mut r = Reader::open(bytes, MAGIC, "a categorical sketch", VERSION)?;
        let exact = match r.u8("the flags")? {
            0 => false,
            1 => true,
            f => return Err(corrupt(format!("flags {f}, 0 or 1 expected"))),
        };
        let total = r.varint("the count")?;
        let missing = r.varint("the missing count")?;
        let n = r.len(MAX_CATEGORIES, "the number of categories")?;
        let mut s = CategorySketch {
            total,
            missing,
            exact,
            ..Default::default()
        };
        let (mut sum, mut last): (u128, Option<&str>) = (0, None);
        for _ in 0..n {
            let len = r.len(MAX_CATEGORY_BYTES, "a category's length")?;
            let name = std::str::from_utf8(r.bytes(len, "a category")?)
                .map_err(|e| corrupt(format!("a category is not UTF-8: {e}")))?;
            let c = r.varint("a category's count")?;
            if c == 0 || last.is_some_and(|l| l >= name) {
                return Err(corrupt(format!(
                    "category {name:?} with count {c}: ascending names and counts > 0 expected"
                )));
            }
            last = Some(name);
            sum += u128::from(c);
            s.bytes += cost(name);
            s.counts.insert(name.to_owned(), c);
        }
        r.finish()?;
        let sum_ok = if exact {
            sum == u128::from(total)
        } else {
            sum <= u128::from(total)
        };
        if !sum_ok || s.bytes > KEY_BUDGET {
            return Err(corrupt(format!(
                "categories counting {sum} in {} bytes, the header says {total} values{}",
                s.bytes,
                if exact { ", all by name" } else { "" }
            )));
        }
        Ok(s)
    }
}
