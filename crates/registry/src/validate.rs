//! Request checks with MLflow's limits and naming rules, each failing with a message
//! that says what is wrong and what is accepted.

use crate::error::{invalid, Result};

/// Longest registered model name.
pub const MAX_MODEL_NAME_LEN: usize = 256;
/// Longest alias.
pub const MAX_ALIAS_LEN: usize = 255;
/// Longest tag key.
pub const MAX_TAG_KEY_LEN: usize = 250;
/// Longest tag value (MLflow's registry tag limit).
pub const MAX_TAG_VALUE_LEN: usize = 5000;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 65_535;

/// A registered model name: not empty, at most 256 characters, no `/` (it would be
/// ambiguous in `models:/<name>/<version>` URIs), no control characters.
pub fn model_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(invalid("registered model name must not be empty"));
    }
    let n = name.chars().count();
    if n > MAX_MODEL_NAME_LEN {
        return Err(invalid(format!(
            "registered model name is {n} characters long; the limit is {MAX_MODEL_NAME_LEN}"
        )));
    }
    if name.contains('/') {
        return Err(invalid(format!(
            "registered model name `{name}` contains `/`, which models:/ URIs cannot carry; use `-` or `.` instead"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "registered model name must not contain control characters",
        ));
    }
    Ok(())
}

/// A version number: 1 or more.
/// A free-text field recorded as given: at most `max` characters, no control characters.
pub fn given(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(format!(
            "{field} is {n} characters; at most {max} are allowed"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not hold control characters")));
    }
    Ok(())
}

pub fn version(v: i64) -> Result<()> {
    if v < 1 {
        return Err(invalid(format!(
            "version must be a positive number (1, 2, ...), got {v}"
        )));
    }
    Ok(())
}

/// An alias, by MLflow's rules: letters, digits, `_` and `-`, at most 255 characters,
/// and not `latest` or `v<number>` (reserved for version references), in any case.
pub fn alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(invalid("alias must not be empty"));
    }
    let n = alias.chars().count();
    if n > MAX_ALIAS_LEN {
        return Err(invalid(format!(
            "alias is {n} characters long; the limit is {MAX_ALIAS_LEN}"
        )));
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(format!(
            "alias `{alias}` may only contain letters, digits, `_` and `-`"
        )));
    }
    let lower = alias.to_lowercase();
    if lower == "latest" {
        return Err(invalid(
            "alias `latest` is reserved: it always means the newest version",
        ));
    }
    if let Some(rest) = lower.strip_prefix('v') {
        if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!(
                "alias `{alias}` is reserved: `v<number>` names a version; pick another name like `champion`"
            )));
        }
    }
    Ok(())
}

/// A tag key and value.
pub fn tag(key: &str, value: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(invalid("tag key must not be empty"));
    }
    let n = key.chars().count();
    if n > MAX_TAG_KEY_LEN {
        return Err(invalid(format!(
            "tag key is {n} characters long; the limit is {MAX_TAG_KEY_LEN}"
        )));
    }
    let n = value.chars().count();
    if n > MAX_TAG_VALUE_LEN {
        return Err(invalid(format!(
            "value of tag `{key}` is {n} characters long; the limit is {MAX_TAG_VALUE_LEN}"
        )));
    }
    Ok(())
}

/// A description.
pub fn description(d: &str) -> Result<()> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_LEN {
        return Err(invalid(format!(
            "description is {n} characters long; the limit is {MAX_DESCRIPTION_LEN}"
        )));
    }
    Ok(())
}

/// A file name for an upload: one path segment.
pub fn file_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(
            "file_name is required, like `model.onnx` (a `.onnx` file has its signature read)",
        ));
    }
    if name.contains('/')
        || name.contains('\\')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        return Err(invalid(format!(
            "file_name `{name}` must be a plain file name without directories, like `model.onnx`"
        )));
    }
    Ok(())
}

/// A tracking run id: 32 lowercase hex characters.
pub fn run_id(id: &str) -> Result<()> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "run_id `{id}` is not a run id (32 hex characters)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_mlflow_rules() {
        for ok in [
            "champion",
            "challenger",
            "prod-2",
            "a_b",
            "v",
            "v1a",
            "version3",
        ] {
            assert!(alias(ok).is_ok(), "{ok}");
        }
        for bad in ["", "latest", "LATEST", "v1", "V12", "a b", "a/b", "x.y"] {
            assert!(alias(bad).is_err(), "{bad}");
        }
        assert!(alias(&"a".repeat(256)).is_err());
    }

    #[test]
    fn model_names() {
        assert!(model_name("fraud-detector").is_ok());
        assert!(model_name("Fraud Detector v2").is_ok());
        for bad in ["", "  ", "a/b", "a\nb"] {
            assert!(model_name(bad).is_err(), "{bad:?}");
        }
        assert!(model_name(&"m".repeat(257)).is_err());
    }

    #[test]
    fn file_names_and_run_ids() {
        assert!(file_name("model.onnx").is_ok());
        for bad in ["", "a/b.onnx", "..", "a\\b"] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
        assert!(run_id(&"a".repeat(32)).is_ok());
        assert!(run_id("nope").is_err());
    }
}
