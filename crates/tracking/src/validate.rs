//! Input limits and key rules, as MLflow documents them (so clients that work
//! against MLflow work here), checked before anything is written.

use crate::error::{invalid, Result};
use mlops_proto::tracking::v1 as pb;

/// Longest metric, param or tag key.
pub const MAX_KEY_LEN: usize = 250;
/// Longest param value.
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// Longest tag value.
pub const MAX_TAG_VALUE_LEN: usize = 8000;
/// Longest experiment name.
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;
/// Longest run name.
pub const MAX_RUN_NAME_LEN: usize = 250;
/// Metrics per `LogBatch`.
pub const MAX_BATCH_METRICS: usize = 1000;
/// Params per `LogBatch`.
pub const MAX_BATCH_PARAMS: usize = 100;
/// Tags per `LogBatch`.
pub const MAX_BATCH_TAGS: usize = 100;
/// Items of all kinds per `LogBatch`.
pub const MAX_BATCH_TOTAL: usize = 1000;
/// Most results one search page returns.
pub const MAX_RESULTS: i32 = 50_000;

/// Checks a metric, param or tag key: 1 to 250 characters of letters, digits,
/// `_ - . / :` and spaces, and not a path that escapes (`..`, leading `/`).
pub fn key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(format!("{kind} key must not be empty")));
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(invalid(format!(
            "{kind} key `{}...` is {} characters long; the limit is {MAX_KEY_LEN}",
            key.chars().take(40).collect::<String>(),
            key.chars().count()
        )));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | ':')))
    {
        return Err(invalid(format!(
            "{kind} key `{key}` contains `{bad}`; keys may contain letters, digits, underscores, dashes, periods, slashes, colons and spaces"
        )));
    }
    if key.starts_with('/') || key.split('/').any(|s| s == "..") {
        return Err(invalid(format!(
            "{kind} key `{key}` must be a relative name without `..` segments"
        )));
    }
    Ok(())
}

/// Checks a value's length.
pub fn value_len(kind: &str, key: &str, value: &str, limit: usize) -> Result<()> {
    let n = value.chars().count();
    if n > limit {
        return Err(invalid(format!(
            "{kind} `{key}` has a value of {n} characters; the limit is {limit}"
        )));
    }
    Ok(())
}

/// Checks a run id's form: 32 lowercase hex characters.
pub fn run_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(invalid("run_id must not be empty"));
    }
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(format!(
            "run_id `{}` is not a run id (32 lowercase hex characters)",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Parses an experiment id: a non-negative decimal integer.
pub fn experiment_id(id: &str) -> Result<i64> {
    if id.is_empty() {
        return Err(invalid("experiment_id must not be empty"));
    }
    id.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
        invalid(format!(
            "experiment_id `{id}` is not an experiment id (a non-negative integer)"
        ))
    })
}

/// Checks an experiment's artifact location given at creation. A location under
/// this server's root (`root_uri`, without a trailing slash) must be a clean
/// relative path below it (see [`location_under_root`]); any other location, which
/// clients write to directly (`s3://other-bucket/x`, `file:///x`), is accepted as
/// MLflow accepts it, unless it has a `..` segment, raw or percent-encoded.
pub fn artifact_location(location: &str, root_uri: &str) -> Result<()> {
    if location.is_empty() {
        return Ok(());
    }
    let refuse = |why: String| {
        invalid(format!(
            "artifact_location `{location}` is not accepted: {why}"
        ))
    };
    let decoded = mlops_storage::blob::percent_decoded(location);
    if String::from_utf8_lossy(&decoded)
        .split(['/', '\\'])
        .any(|seg| seg == "..")
    {
        return Err(refuse(
            "it has a `..` segment (possibly percent-encoded); give the location itself, \
             without `..`, or none for the server's default"
                .into(),
        ));
    }
    let rel = location
        .strip_prefix(root_uri)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .map(|rest| rest.trim_matches('/'));
    match rel {
        Some(rel) if !rel.is_empty() => location_under_root(rel).map_err(refuse),
        _ => Ok(()),
    }
}

/// Checks the part of an artifact location below the server's root: a relative
/// path by the rules of artifact paths, not inside the staging directory where
/// uploads are written before they are renamed into place.
pub fn location_under_root(rel: &str) -> std::result::Result<(), String> {
    mlops_storage::blob::check_relative_path(rel, false)?;
    if rel.split('/').next() == Some(mlops_storage::blob::STAGING_DIR) {
        return Err(format!(
            "`{}` is reserved for uploads in progress",
            mlops_storage::blob::STAGING_DIR
        ));
    }
    Ok(())
}

/// Checks a whole `LogBatch` (and the single-item calls, which are batches of one).
pub fn batch(metrics: &[pb::Metric], params: &[pb::Param], tags: &[pb::Tag]) -> Result<()> {
    if metrics.len() > MAX_BATCH_METRICS {
        return Err(invalid(format!(
            "a batch may hold at most {MAX_BATCH_METRICS} metrics; this one has {}",
            metrics.len()
        )));
    }
    if params.len() > MAX_BATCH_PARAMS {
        return Err(invalid(format!(
            "a batch may hold at most {MAX_BATCH_PARAMS} params; this one has {}",
            params.len()
        )));
    }
    if tags.len() > MAX_BATCH_TAGS {
        return Err(invalid(format!(
            "a batch may hold at most {MAX_BATCH_TAGS} tags; this one has {}",
            tags.len()
        )));
    }
    let total = metrics.len() + params.len() + tags.len();
    if total > MAX_BATCH_TOTAL {
        return Err(invalid(format!(
            "a batch may hold at most {MAX_BATCH_TOTAL} items in all; this one has {total}"
        )));
    }
    let mut last_key: Option<&str> = None;
    for m in metrics {
        // Batches usually repeat one key many times; check each distinct run once.
        if last_key != Some(m.key.as_str()) {
            key("metric", &m.key)?;
            last_key = Some(&m.key);
        }
    }
    let mut seen = std::collections::HashMap::new();
    for p in params {
        key("param", &p.key)?;
        value_len("param", &p.key, &p.value, MAX_PARAM_VALUE_LEN)?;
        if let Some(prev) = seen.insert(p.key.as_str(), p.value.as_str()) {
            if prev != p.value {
                return Err(invalid(format!(
                    "param `{}` appears twice in the batch with different values `{prev}` and `{}`",
                    p.key, p.value
                )));
            }
        }
    }
    for t in tags {
        key("tag", &t.key)?;
        value_len("tag", &t.key, &t.value, MAX_TAG_VALUE_LEN)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(key("metric", "val/loss:epoch 1").is_ok());
        assert!(key("metric", "").is_err());
        assert!(key("metric", "../x").is_err());
        assert!(key("metric", "/x").is_err());
        assert!(key("metric", "a;b")
            .unwrap_err()
            .to_string()
            .contains("`;`"));
        assert!(key("param", &"k".repeat(251))
            .unwrap_err()
            .to_string()
            .contains("limit is 250"));
    }

    #[test]
    fn batch_limits() {
        let m = pb::Metric {
            key: "m".into(),
            ..Default::default()
        };
        assert!(batch(&vec![m.clone(); 1000], &[], &[]).is_ok());
        assert!(batch(&vec![m; 1001], &[], &[])
            .unwrap_err()
            .to_string()
            .contains("at most 1000 metrics"));
        let p = |v: &str| pb::Param {
            key: "p".into(),
            value: v.into(),
        };
        assert!(batch(&[], &[p("a"), p("a")], &[]).is_ok());
        let e = batch(&[], &[p("a"), p("b")], &[]).unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("`b`"), "{e}");
        assert!(batch(&[], &vec![p("a"); 101], &[]).is_err());
    }

    #[test]
    fn artifact_locations() {
        const ROOT: &str = "file:///srv/artifacts";
        for ok in [
            "",
            "s3://other-bucket/team/x",
            "file:///tmp/elsewhere",
            "file:///srv/artifacts/team/x",
            "file:///srv/artifacts",
            "file:///srv/artifacts2/x",
            "gs://b/a%20b",
        ] {
            assert!(artifact_location(ok, ROOT).is_ok(), "{ok}");
        }
        for bad in [
            "file:///srv/artifacts/../../x",
            "file:///srv/artifacts/x%2f..%2f..",
            "file:///srv/artifacts/x%2F..%2F..%2Fetc",
            "file:///srv/artifacts/%2e%2e/x",
            "s3://other-bucket/a/../b",
            "mlflow-artifacts:/x%2f..%2f..",
            "/srv/artifacts/..",
            "C:\\a\\..\\b",
        ] {
            let e = artifact_location(bad, ROOT).unwrap_err().to_string();
            assert!(e.contains("`..`"), "{bad}: {e}");
        }
        // Under the root: the rules of artifact paths, and not the staging area.
        for bad in [
            "file:///srv/artifacts/a//b",
            "file:///srv/artifacts/a%2fb",
            "file:///srv/artifacts/.staging/tracking",
            "file:///srv/artifacts/x#1",
        ] {
            assert!(artifact_location(bad, ROOT).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(run_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(run_id("xyz").is_err());
        assert_eq!(experiment_id("12").unwrap(), 12);
        assert!(experiment_id("-1").is_err());
        assert!(experiment_id("abc").is_err());
    }
}
