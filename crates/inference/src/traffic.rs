//! Traffic splits: variants with weights beside a deployment's stable target (a canary is one
//! variant; A/B tests are several), a shadow that gets a copy of requests, faults injected to
//! rehearse a rollout, and the route header that keeps one caller on one variant.
//!
//! A request picks its variant by the route header's value: a variant's name (or "stable")
//! goes there; any other value is hashed onto the weights (sticky: the same value, the same
//! variant while the weights stay); no header, a fresh draw. Weights are percents; the
//! stable target gets what the variants leave.

use std::sync::atomic::{AtomicU64, Ordering};

use mlops_proto::inference::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::repository::Selector;

/// The stable target's variant name.
pub const STABLE: &str = "stable";
/// The shadow's variant name (in the prediction log and metrics).
pub const SHADOW: &str = "shadow";
/// The route header when none is set.
pub const DEFAULT_ROUTE_HEADER: &str = "mlops-route";

/// Faults injected into a variant's answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Share of requests answered UNAVAILABLE.
    pub error_rate: f64,
    /// Added before each answer, in microseconds.
    pub delay_us: u64,
}

impl Fault {
    /// Whether it does nothing.
    pub fn is_none(&self) -> bool {
        self.error_rate <= 0.0 && self.delay_us == 0
    }
}

/// A variant as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    /// Its name.
    pub name: String,
    /// Which version (encoded as [`Selector::encode`]).
    pub target: String,
    /// Percent of requests.
    pub weight: u32,
    /// Faults injected.
    pub fault: Fault,
}

/// The shadow as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowSpec {
    /// Which version (encoded as [`Selector::encode`]).
    pub target: String,
    /// Share of requests copied.
    pub share: f64,
    /// Faults injected.
    pub fault: Fault,
}

/// A deployment's split, as stored (JSON) and compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSpec {
    /// The variants besides the stable target.
    pub variants: Vec<VariantSpec>,
    /// The shadow, if any.
    pub shadow: Option<ShadowSpec>,
    /// The route header ("" for [`DEFAULT_ROUTE_HEADER`]).
    pub route_header: String,
    /// The automatic analysis, if any.
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
}

/// The automatic analysis' settings (see `Analysis` in the contract).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSpec {
    /// Between measurements, in milliseconds.
    pub interval_ms: u64,
    /// A variant's error rate at most this; 0: no limit.
    pub max_error_rate: f64,
    /// A variant's error rate at most the stable's plus this; 0: no comparison.
    pub max_error_rate_increase: f64,
    /// A variant's p99 at most this (ms); 0: no limit.
    pub max_p99_ms: f64,
    /// A variant's p99 at most the stable's times this; 0: no comparison.
    pub max_p99_ratio: f64,
    /// Requests a variant needs per measurement.
    pub min_requests: u64,
    /// Failed measurements tolerated.
    pub failure_limit: u32,
    /// Errors in a row tolerated.
    pub consecutive_error_limit: u32,
    /// Successful measurements that promote a single variant; 0: never.
    pub successes_to_promote: u32,
}

impl AnalysisSpec {
    fn from_proto(a: &pb::Analysis) -> Result<AnalysisSpec> {
        if a.interval_ms < 100 {
            return Err(invalid(format!(
                "analysis.interval_ms must be at least 100, not {}",
                a.interval_ms
            )));
        }
        for (what, v, max) in [
            ("max_error_rate", a.max_error_rate, 1.0),
            ("max_error_rate_increase", a.max_error_rate_increase, 1.0),
            ("max_p99_ms", a.max_p99_ms, f64::MAX),
            ("max_p99_ratio", a.max_p99_ratio, f64::MAX),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(invalid(format!(
                    "analysis.{what} must be between 0 and {max}, not {v}"
                )));
            }
        }
        if a.max_error_rate == 0.0
            && a.max_error_rate_increase == 0.0
            && a.max_p99_ms == 0.0
            && a.max_p99_ratio == 0.0
        {
            return Err(invalid(
                "the analysis sets no limit: give at least one of max_error_rate, max_error_rate_increase, max_p99_ms, max_p99_ratio",
            ));
        }
        Ok(AnalysisSpec {
            interval_ms: a.interval_ms,
            max_error_rate: a.max_error_rate,
            max_error_rate_increase: a.max_error_rate_increase,
            max_p99_ms: a.max_p99_ms,
            max_p99_ratio: a.max_p99_ratio,
            min_requests: a.min_requests.max(1),
            failure_limit: a.failure_limit,
            consecutive_error_limit: a.consecutive_error_limit,
            successes_to_promote: a.successes_to_promote,
        })
    }

    fn to_proto(&self) -> pb::Analysis {
        pb::Analysis {
            interval_ms: self.interval_ms,
            max_error_rate: self.max_error_rate,
            max_error_rate_increase: self.max_error_rate_increase,
            max_p99_ms: self.max_p99_ms,
            max_p99_ratio: self.max_p99_ratio,
            min_requests: self.min_requests,
            failure_limit: self.failure_limit,
            consecutive_error_limit: self.consecutive_error_limit,
            successes_to_promote: self.successes_to_promote,
        }
    }
}

impl TrafficSpec {
    /// Whether everything goes to the stable target.
    pub fn is_empty(&self) -> bool {
        self.variants.is_empty() && self.shadow.is_none()
    }

    /// The route header in effect, lower case.
    pub fn header(&self) -> String {
        if self.route_header.is_empty() {
            DEFAULT_ROUTE_HEADER.to_owned()
        } else {
            self.route_header.to_ascii_lowercase()
        }
    }

    /// How it is stored: "" for none.
    pub fn encode(&self) -> String {
        if self == &TrafficSpec::default() {
            String::new()
        } else {
            serde_json::to_string(self).expect("traffic serializes")
        }
    }

    /// The inverse of [`TrafficSpec::encode`].
    pub fn decode(s: &str) -> Option<TrafficSpec> {
        if s.is_empty() {
            Some(TrafficSpec::default())
        } else {
            serde_json::from_str(s).ok()
        }
    }

    /// Checks and converts the API's message.
    pub fn from_proto(t: &pb::Traffic) -> Result<TrafficSpec> {
        let mut variants = Vec::with_capacity(t.variants.len());
        let mut total = 0u32;
        for v in &t.variants {
            check_name(&v.name)?;
            if variants.iter().any(|o: &VariantSpec| o.name == v.name) {
                return Err(invalid(format!("variant {:?} is named twice", v.name)));
            }
            if v.weight > 100 {
                return Err(invalid(format!(
                    "variant {:?}: weight {} is a percent, at most 100",
                    v.name, v.weight
                )));
            }
            total += v.weight;
            variants.push(VariantSpec {
                name: v.name.clone(),
                target: target(v.target.as_ref(), &format!("variant {:?}", v.name))?.encode(),
                weight: v.weight,
                fault: fault(v.fault.as_ref(), &format!("variant {:?}", v.name))?,
            });
        }
        if total > 100 {
            return Err(invalid(format!(
                "the variants' weights add up to {total}%; at most 100 (the stable target gets the rest)"
            )));
        }
        let shadow = match &t.shadow {
            None => None,
            Some(s) => {
                if !(s.share > 0.0 && s.share <= 1.0) {
                    return Err(invalid(format!(
                        "shadow.share must be above 0 and at most 1, not {}",
                        s.share
                    )));
                }
                Some(ShadowSpec {
                    target: target(s.target.as_ref(), "the shadow")?.encode(),
                    share: s.share,
                    fault: fault(s.fault.as_ref(), "the shadow")?,
                })
            }
        };
        let header = t.route_header.trim();
        if !header.is_empty()
            && !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(format!(
                "route_header {header:?} is not a header name (letters, digits, \"-\" and \"_\")"
            )));
        }
        let analysis = match &t.analysis {
            None => None,
            Some(_) if variants.is_empty() => {
                return Err(invalid(
                    "an analysis needs a variant to measure: add a canary or variants",
                ))
            }
            Some(a) => Some(AnalysisSpec::from_proto(a)?),
        };
        Ok(TrafficSpec {
            variants,
            shadow,
            route_header: header.to_ascii_lowercase(),
            analysis,
        })
    }

    /// The API's message.
    pub fn to_proto(&self) -> pb::Traffic {
        let fault = |f: &Fault| {
            (!f.is_none()).then_some(pb::Fault {
                error_rate: f.error_rate,
                delay_us: f.delay_us,
            })
        };
        let target = |t: &str| Selector::decode(t).map(|s| crate::deployments::target(&s));
        pb::Traffic {
            variants: self
                .variants
                .iter()
                .map(|v| pb::Variant {
                    name: v.name.clone(),
                    target: target(&v.target),
                    weight: v.weight,
                    fault: fault(&v.fault),
                })
                .collect(),
            shadow: self.shadow.as_ref().map(|s| pb::Shadow {
                target: target(&s.target),
                share: s.share,
                fault: fault(&s.fault),
            }),
            route_header: self.route_header.clone(),
            analysis: self.analysis.as_ref().map(AnalysisSpec::to_proto),
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(format!(
            "variant name {name:?}: letters, digits, \"-\" and \"_\", 1 to 63 of them"
        )));
    }
    if name == STABLE || name == SHADOW {
        return Err(invalid(format!(
            "variant name {name:?} is reserved (the deployment's own target and its mirror)"
        )));
    }
    Ok(())
}

fn target(t: Option<&pb::Target>, what: &str) -> Result<Selector> {
    use pb::target::Choice;
    match t.and_then(|t| t.choice.as_ref()) {
        Some(Choice::Alias(a)) if !a.trim().is_empty() => Ok(Selector::Alias(a.clone())),
        Some(Choice::Version(v)) if *v >= 1 => Ok(Selector::Version(*v)),
        _ => Err(invalid(format!(
            "{what} needs a target: an alias or a version of at least 1"
        ))),
    }
}

fn fault(f: Option<&pb::Fault>, what: &str) -> Result<Fault> {
    let Some(f) = f else {
        return Ok(Fault::default());
    };
    if !(0.0..=1.0).contains(&f.error_rate) {
        return Err(invalid(format!(
            "{what}: fault.error_rate must be between 0 and 1, not {}",
            f.error_rate
        )));
    }
    if f.delay_us > 60_000_000 {
        return Err(invalid(format!(
            "{what}: fault.delay_us is at most 60000000 (a minute)"
        )));
    }
    Ok(Fault {
        error_rate: f.error_rate,
        delay_us: f.delay_us,
    })
}

/// A number in [0, 1) from a shared counter through splitmix64: cheap, lock-free, and evenly
/// spread over any run of requests.
pub fn draw() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    unit(mix(z))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The point in [0, 1) a route key stands for (FNV-1a, then mixed): the same key, the same point.
pub fn point_of(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    unit(mix(h))
}

/// Which of `weights` (percents, in order; the rest is the stable target's) the point `p`
/// in [0, 1) falls in: `Some(index)`, or `None` for the stable target.
pub fn pick(weights: impl IntoIterator<Item = u32>, p: f64) -> Option<usize> {
    let mut edge = 0.0;
    for (i, w) in weights.into_iter().enumerate() {
        edge += f64::from(w) / 100.0;
        if p < edge {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_draws_within_a_tenth_of_a_percent() {
        let mut counts = [0usize; 3];
        let n = 100_000;
        for _ in 0..n {
            match pick([10, 25], draw()) {
                Some(i) => counts[i] += 1,
                None => counts[2] += 1,
            }
        }
        let share = |c: usize| c as f64 * 100.0 / n as f64;
        assert!((share(counts[0]) - 10.0).abs() < 0.5, "{counts:?}");
        assert!((share(counts[1]) - 25.0).abs() < 0.5, "{counts:?}");
        assert!((share(counts[2]) - 65.0).abs() < 0.5, "{counts:?}");
    }

    #[test]
    fn a_key_always_lands_on_the_same_variant_and_keys_spread() {
        let mut canary = 0;
        for user in 0..10_000 {
            let key = format!("user-{user}");
            let first = pick([20], point_of(&key));
            assert_eq!(first, pick([20], point_of(&key)));
            canary += usize::from(first.is_some());
        }
        assert!((1_800..2_200).contains(&canary), "{canary}");
    }

    #[test]
    fn bad_traffic_is_refused_with_the_reason() {
        let v = |name: &str, weight, version| pb::Variant {
            name: name.into(),
            target: Some(pb::Target {
                choice: Some(pb::target::Choice::Version(version)),
            }),
            weight,
            fault: None,
        };
        let t = |variants| pb::Traffic {
            variants,
            ..Default::default()
        };
        let err = |t: pb::Traffic| TrafficSpec::from_proto(&t).unwrap_err().to_string();
        assert!(err(t(vec![v("a", 60, 2), v("b", 50, 3)])).contains("add up to 110"));
        assert!(err(t(vec![v("stable", 10, 2)])).contains("reserved"));
        assert!(err(t(vec![v("a b", 10, 2)])).contains("letters"));
        assert!(err(t(vec![v("a", 10, 0)])).contains("needs a target"));
        assert!(err(t(vec![v("a", 10, 2), v("a", 10, 3)])).contains("twice"));
        let mut shadow = t(vec![]);
        shadow.shadow = Some(pb::Shadow {
            target: Some(pb::Target {
                choice: Some(pb::target::Choice::Alias("challenger".into())),
            }),
            share: 0.0,
            fault: None,
        });
        assert!(err(shadow.clone()).contains("shadow.share"));
        shadow.shadow.as_mut().unwrap().share = 1.0;
        let ok = TrafficSpec::from_proto(&shadow).unwrap();
        assert_eq!(TrafficSpec::decode(&ok.encode()), Some(ok.clone()));
        assert_eq!(ok.header(), DEFAULT_ROUTE_HEADER);
        assert_eq!(TrafficSpec::decode(""), Some(TrafficSpec::default()));
    }
}
