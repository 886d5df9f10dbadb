//! The checks MLflow's server makes on a model version's `source` before it
//! registers anything (`_validate_source_run`, `_validate_source_model` and
//! `_validate_non_local_source_contains_relative_paths` in its handlers), with its
//! words, which clients and MLflow's own tests match:
//! - a local source (a path, or a `file:` URI) must lie inside the artifact
//!   directory of the run named by `run_id` (of the logged model named by
//!   `model_id`), so a caller cannot register, and later read through the
//!   registry, an arbitrary file of the server's;
//! - any other URI must be an absolute path without `.` or `..` segments, however
//!   they are escaped, and without NUL bytes;
//! - a `file:` URI naming another host is an error (MLflow answers it 500).

use std::path::{Component, Path, PathBuf};

use crate::error::{ApiError, ErrorCode, Result};

/// What MLflow's server makes of a source before it looks at runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// A path on the server's filesystem: absolute, `.` and `..` resolved.
    Local(PathBuf),
    /// A URI of some other scheme.
    Remote,
}

/// The scheme of `uri` as Python's `urlparse` finds it (`""` for none).
fn scheme(uri: &str) -> &str {
    match uri.find(':') {
        Some(i)
            if uri[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && uri[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            &uri[..i]
        }
        _ => "",
    }
}

/// The host and path of `uri` past its scheme, as `urlparse` splits them (the
/// query and fragment dropped).
fn host_and_path(uri: &str) -> (&str, &str) {
    let rest = &uri[scheme(uri).len()..];
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (&after[..end], &after[end..])
        }
        None => ("", rest),
    }
}

/// Whether `source` is local to the server, as MLflow's `is_local_uri` decides.
/// `cwd` resolves a relative path (MLflow resolves it against its own).
pub fn locality(source: &str, cwd: &Path) -> Result<Locality> {
    let path = match scheme(source) {
        "" => source,
        "file" => {
            let (host, path) = host_and_path(source);
            let host = host.rsplit('@').next().unwrap_or("");
            let host = host.split(':').next().unwrap_or("");
            if !(host.is_empty()
                || host == "."
                || host.starts_with("localhost")
                || host.starts_with("127.0.0.1"))
            {
                return Err(ApiError::new(
                    ErrorCode::InternalError,
                    format!(
                        "{source} is not a valid remote uri. For remote access on windows, please \
                         consider using a different scheme such as SMB (e.g. \
                         smb://<hostname>/<path>)."
                    ),
                ));
            }
            path
        }
        _ => return Ok(Locality::Remote),
    };
    let decoded = decode_once(path, false);
    Ok(Locality::Local(resolve(&cwd.join(decoded))))
}

/// `path` with `.` and `..` resolved lexically (`/..` stays `/`).
fn resolve(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(seg) => out.push(seg),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The local directory a `file:` artifact URI (or plain path) names, resolved.
pub fn local_dir(uri: &str) -> Option<PathBuf> {
    let path = match scheme(uri) {
        "" => uri,
        "file" => host_and_path(uri).1,
        _ => return None,
    };
    let path = PathBuf::from(decode_once(path, false));
    path.is_absolute().then(|| resolve(&path))
}

/// MLflow's refusal of a local source outside the artifact directory of the run (or
/// logged model) the request names.
pub fn outside_artifacts(source: &str, by_model: bool) -> ApiError {
    let (param, owner) = if by_model {
        ("model_id", "model_id")
    } else {
        ("run_id", "run_id")
    };
    ApiError::invalid(format!(
        "Invalid model version source: '{source}'. To use a local path as a model version \
         source, the {param} request parameter has to be specified and the local path has to \
         be contained within the artifact directory of the run specified by the {owner}."
    ))
}

/// `s` with `%XX` escapes (and `+` for a space) decoded until nothing changes, as
/// MLflow unquotes a remote source before it looks for `..` (`unquote_plus`).
fn decode_all(s: &str) -> String {
    let mut s = s.to_owned();
    loop {
        let next = decode_once(&s, true);
        if next == s {
            return s;
        }
        s = next;
    }
}

/// `s` with its `%XX` escapes decoded once, and `+` as a space when `plus`. A local
/// path is decoded once and keeps its `+` (MLflow's `url2pathname`).
fn decode_once(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) if plus => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// MLflow's check of a non-local source: an absolute path, no `.` or `..`
/// segments however escaped, no NUL byte.
pub fn check_remote(source: &str) -> Result<()> {
    let refused = || {
        ApiError::invalid(format!(
            "Invalid model version source: '{source}'. If supplying a source as an http, https, \
             local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must \
             be provided without relative path references present. Please provide an absolute \
             path."
        ))
    };
    let decoded = decode_all(source);
    if decoded.split('/').any(|seg| seg == "..") {
        return Err(refused());
    }
    let (_, path) = host_and_path(&decoded);
    if path.contains('\0') {
        return Err(refused());
    }
    // Slashes merged and trailing ones dropped, the path must already be resolved.
    let merged: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if !path.starts_with('/') || merged.contains(&".") {
        return Err(refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CWD: &str = "/srv/mlflow";

    fn local(source: &str) -> Option<PathBuf> {
        match locality(source, Path::new(CWD)).unwrap() {
            Locality::Local(p) => Some(p),
            Locality::Remote => None,
        }
    }

    #[test]
    fn local_sources_are_paths_and_file_uris_resolved() {
        assert_eq!(local("/data/a/model"), Some("/data/a/model".into()));
        assert_eq!(local("file:///data/a/model/.."), Some("/data/a".into()));
        assert_eq!(
            local("file://localhost/data/a/./m"),
            Some("/data/a/m".into())
        );
        assert_eq!(
            local("relative/model"),
            Some("/srv/mlflow/relative/model".into())
        );
        assert_eq!(local("file:/data/%61"), Some("/data/a".into()));
        // Decoded once, `+` kept, as MLflow's url2pathname does for a path.
        assert_eq!(local("/data/a+b/%2561"), Some("/data/a+b/%61".into()));
        for remote in [
            "s3://b/m",
            "runs:/abc/model",
            "models:/m/1",
            "mlflow-artifacts:/1/x",
        ] {
            assert_eq!(local(remote), None, "{remote}");
        }
        let err = locality("file://123.456.789.123/path/to/source", Path::new(CWD)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InternalError);
        assert!(
            err.message.contains("is not a valid remote uri"),
            "{}",
            err.message
        );
        assert_eq!(
            local_dir("file:///data/1/r/artifacts/"),
            Some("/data/1/r/artifacts".into())
        );
        assert_eq!(local_dir("s3://b/1/r/artifacts"), None);
    }

    #[test]
    fn remote_sources_must_be_absolute_and_resolved() {
        for ok in [
            "mlflow-artifacts:/models",
            "mlflow-artifacts:/models///",
            "mlflow-artifacts:/models/foo///bar",
            "mlflow-artifacts://host:9000/models",
            "mlflow-artifacts://host:9000/models/artifact/..../",
            "s3://bucket/path/model",
            "runs:/0123/model",
        ] {
            assert!(check_remote(ok).is_ok(), "{ok}");
        }
        for bad in [
            "mlflow-artifacts://host:9000/models/../../../",
            "http://host:9000/models/../../../",
            "https://host/api/2.0/mlflow-artifacts/artifacts/../../../",
            "s3a://my_bucket/api/2.0/mlflow-artifacts/artifacts/../../../",
            "mlflow-artifacts://host:9000/models/..%2f..%2fartifacts",
            "mlflow-artifacts://host:9000/models/..%252f..%252fartifacts",
            "mlflow-artifacts://host:9000/models/artifact%00",
            "dbfs:/0123/artifacts/a%3f/../../../../",
            "s3://bucket/a/./b",
            "s3://bucket",
        ] {
            let err = check_remote(bad).unwrap_err();
            assert!(
                err.message
                    .contains("If supplying a source as an http, https,"),
                "{bad}"
            );
            assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{bad}");
        }
    }
}
