//! A loaded model's serving settings: Triton's `max_batch_size` and `dynamic_batching`, and the
//! share of its predictions logged, from the service's defaults, overridden per model by a
//! load request's parameters (flat, or Triton's `config` JSON), stored with the model so a
//! restart keeps them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::InferenceConfig;
use crate::error::{invalid, Result};
use crate::repository::Selector;

/// How one model is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Most rows per request and per batch.
    pub max_batch_size: u32,
    /// Whether requests are batched together.
    pub dynamic_batching: bool,
    /// The longest the oldest request of a batch waits for others, in microseconds.
    pub max_queue_delay_us: u64,
    /// Batch sizes run as soon as they are reached.
    pub preferred_batch_size: Vec<u32>,
    /// Requests waiting before new ones are refused.
    pub max_queue_size: u32,
    /// From arrival to the start of computation, in microseconds; 0: none.
    pub default_timeout_us: u64,
    /// The share of its predictions on the prediction log, 0 to 1; `None`: the service's
    /// (`--prediction-log-sample`), whatever it is when the model is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_log_sample: Option<f64>,
}

impl Settings {
    /// The service's defaults.
    pub fn defaults(c: &InferenceConfig) -> Settings {
        Settings {
            max_batch_size: c.max_batch_size,
            dynamic_batching: c.dynamic_batching,
            max_queue_delay_us: c.max_queue_delay_us,
            preferred_batch_size: c.preferred_batch_size.clone(),
            max_queue_size: c.max_queue_size,
            default_timeout_us: c.default_timeout_us,
            prediction_log_sample: None,
        }
    }

    fn check(self) -> Result<Settings> {
        if self.max_batch_size == 0 {
            return Err(invalid("max_batch_size must be at least 1"));
        }
        if self.max_queue_size == 0 {
            return Err(invalid("max_queue_size must be at least 1"));
        }
        if let Some(p) = self
            .preferred_batch_size
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(invalid(format!(
                "preferred_batch_size {p} is not between 1 and max_batch_size ({})",
                self.max_batch_size
            )));
        }
        if self.max_queue_delay_us > 10_000_000 {
            return Err(invalid(
                "max_queue_delay_us is at most 10000000 (10 s)".to_string(),
            ));
        }
        Ok(self)
    }
}

/// The parameters a load request may carry.
pub const LOAD_PARAMETERS: &[&str] = &[
    "version",
    "alias",
    "config",
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_us",
    "preferred_batch_size",
    "max_queue_size",
    "default_timeout_us",
    "prediction_log_sample",
];

fn uint(key: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(format!(
            "parameter {key:?} must be a non-negative integer, not {v}"
        ))
    })
}

fn u32_of(key: &str, v: &Value) -> Result<u32> {
    u32::try_from(uint(key, v)?).map_err(|_| invalid(format!("parameter {key:?} is too large")))
}

fn share(key: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| (0.0..=1.0).contains(x))
    .ok_or_else(|| {
        invalid(format!(
            "parameter {key:?} must be a number from 0 to 1, not {v}"
        ))
    })
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(invalid(format!(
            "parameter {key:?} must be true or false, not {v}"
        ))),
    }
}

fn sizes(key: &str, v: &Value) -> Result<Vec<u32>> {
    match v {
        Value::Array(items) => items.iter().map(|i| u32_of(key, i)).collect(),
        Value::String(s) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| u32_of(key, &Value::String(p.into())))
            .collect(),
        other => Ok(vec![u32_of(key, other)?]),
    }
}

/// Reads a load request's parameters: which version to serve, and the settings over
/// `base` (the model's stored settings, or the service's defaults).
pub fn from_load_parameters(
    base: &Settings,
    params: &HashMap<String, Value>,
) -> Result<(Selector, Settings)> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !LOAD_PARAMETERS.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "unknown load parameter {unknown:?}; known: {}",
            LOAD_PARAMETERS.join(", ")
        )));
    }
    let selector = match (params.get("version"), params.get("alias")) {
        (Some(_), Some(_)) => {
            return Err(invalid("give a version or an alias to load, not both"));
        }
        (Some(v), None) => {
            let n = uint("version", v)?;
            if n == 0 {
                return Err(invalid("parameter \"version\" must be at least 1"));
            }
            Selector::Version(n as i64)
        }
        (None, Some(Value::String(a))) if !a.is_empty() => Selector::Alias(a.clone()),
        (None, Some(v)) => {
            return Err(invalid(format!(
                "parameter \"alias\" must be an alias name, not {v}"
            )))
        }
        (None, None) => Selector::Default,
    };
    let mut s = base.clone();
    if let Some(config) = params.get("config") {
        let text = config
            .as_str()
            .ok_or_else(|| invalid("parameter \"config\" must be a JSON string"))?;
        let c: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("parameter \"config\" is not JSON: {e}")))?;
        if let Some(v) = c.get("max_batch_size") {
            s.max_batch_size = u32_of("config.max_batch_size", v)?;
        }
        if let Some(db) = c.get("dynamic_batching") {
            s.dynamic_batching = true;
            if let Some(v) = db.get("max_queue_delay_microseconds") {
                s.max_queue_delay_us =
                    uint("config.dynamic_batching.max_queue_delay_microseconds", v)?;
            }
            if let Some(v) = db.get("preferred_batch_size") {
                s.preferred_batch_size = sizes("config.dynamic_batching.preferred_batch_size", v)?;
            }
            if let Some(policy) = db.get("default_queue_policy") {
                if let Some(v) = policy.get("max_queue_size") {
                    s.max_queue_size = u32_of(
                        "config.dynamic_batching.default_queue_policy.max_queue_size",
                        v,
                    )?;
                }
                if let Some(v) = policy.get("default_timeout_microseconds") {
                    s.default_timeout_us = uint(
                        "config.dynamic_batching.default_queue_policy.default_timeout_microseconds",
                        v,
                    )?;
                }
            }
        }
    }
    for (key, v) in params {
        match key.as_str() {
            "max_batch_size" => s.max_batch_size = u32_of(key, v)?,
            "dynamic_batching" => s.dynamic_batching = boolean(key, v)?,
            "max_queue_delay_us" => s.max_queue_delay_us = uint(key, v)?,
            "preferred_batch_size" => s.preferred_batch_size = sizes(key, v)?,
            "max_queue_size" => s.max_queue_size = u32_of(key, v)?,
            "default_timeout_us" => s.default_timeout_us = uint(key, v)?,
            "prediction_log_sample" => s.prediction_log_sample = Some(share(key, v)?),
            _ => {}
        }
    }
    Ok((selector, s.check()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Settings {
        Settings {
            max_batch_size: 64,
            dynamic_batching: false,
            max_queue_delay_us: 500,
            preferred_batch_size: vec![],
            max_queue_size: 100,
            default_timeout_us: 0,
            prediction_log_sample: None,
        }
    }

    fn params(v: Value) -> HashMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn flat_parameters_and_triton_config_override_the_defaults() {
        let (sel, s) = from_load_parameters(
            &base(),
            &params(
                json!({"version": "3", "dynamic_batching": true, "preferred_batch_size": "4,8"}),
            ),
        )
        .unwrap();
        assert_eq!(sel, Selector::Version(3));
        assert!(s.dynamic_batching);
        assert_eq!(s.preferred_batch_size, vec![4, 8]);
        let config = r#"{"max_batch_size": 32, "dynamic_batching": {"max_queue_delay_microseconds": 100,
            "preferred_batch_size": [16], "default_queue_policy": {"max_queue_size": 7}}}"#;
        let (sel, s) = from_load_parameters(
            &base(),
            &params(json!({"config": config, "alias": "champion"})),
        )
        .unwrap();
        assert_eq!(sel, Selector::Alias("champion".into()));
        assert_eq!(
            (s.max_batch_size, s.max_queue_delay_us, s.max_queue_size),
            (32, 100, 7)
        );
        assert!(s.dynamic_batching);
    }

    #[test]
    fn a_model_logs_its_own_share_of_predictions_or_the_services() {
        assert_eq!(base().prediction_log_sample, None);
        for (v, want) in [(json!("0"), 0.0), (json!(0.25), 0.25), (json!("1"), 1.0)] {
            let (_, s) =
                from_load_parameters(&base(), &params(json!({"prediction_log_sample": v})))
                    .unwrap();
            assert_eq!(s.prediction_log_sample, Some(want));
        }
        // Stored settings from before the field read as the service's share.
        let old = r#"{"max_batch_size": 8, "dynamic_batching": false, "max_queue_delay_us": 0,
            "preferred_batch_size": [], "max_queue_size": 1, "default_timeout_us": 0}"#;
        let s: Settings = serde_json::from_str(old).unwrap();
        assert_eq!(s.prediction_log_sample, None);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        for (p, needle) in [
            (json!({"verison": 1}), "unknown load parameter \"verison\""),
            (json!({"version": -1}), "non-negative integer"),
            (json!({"version": 1, "alias": "a"}), "not both"),
            (json!({"max_batch_size": 0}), "at least 1"),
            (
                json!({"preferred_batch_size": [128]}),
                "not between 1 and max_batch_size",
            ),
            (json!({"config": "{"}), "not JSON"),
            (json!({"dynamic_batching": "yes"}), "true or false"),
            (
                json!({"prediction_log_sample": "1.5"}),
                "from 0 to 1, not \"1.5\"",
            ),
            (
                json!({"prediction_log_sample": -0.1}),
                "from 0 to 1, not -0.1",
            ),
            (json!({"prediction_log_sample": "all"}), "from 0 to 1"),
        ] {
            let err = from_load_parameters(&base(), &params(p)).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
