//! Where a version's files come from and where the client reads them: the `source`
//! of MLflow's `CreateModelVersion` as what our registry registers (a run's artifact
//! or a logged model), and a registered version's download location.

use mlops_proto::registry::v1 as pb;

use crate::artifacts::{parse_proxy_path, to_proxy_uri, SCHEME};
use crate::error::{ApiError, Result};

/// What a version's `source` asks to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A tracking logged model's whole artifact root.
    LoggedModel(String),
    /// A path under a run's artifact root.
    RunArtifact {
        /// The run.
        run_id: String,
        /// The path under its artifact root.
        path: String,
    },
    /// Another registered version, `models:/<name>/<version>`: copied.
    Registered {
        /// Its model.
        name: String,
        /// Its version.
        version: i64,
    },
    /// A source the registry cannot read: recorded as given, as MLflow records any.
    Reference,
    /// A URI that must lie under the artifact root of `run_id` (checked against the run).
    UnderRun {
        /// The run: named by the URI's shape, or else by the request's `run_id`.
        run_id: String,
        /// The URI, with `mlflow-artifacts://host:port/` reduced to `mlflow-artifacts:/`.
        uri: String,
    },
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_logged_model_id(s: &str) -> bool {
    s.strip_prefix("m-").is_some_and(is_hex32)
}

/// `mlflow-artifacts://host:port/path` names this server too; the path is what counts.
fn without_authority(uri: &str) -> String {
    match uri
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.strip_prefix("//"))
    {
        Some(authority_and_path) => {
            let path = authority_and_path
                .find('/')
                .map(|i| &authority_and_path[i..])
                .unwrap_or("/");
            format!("{SCHEME}{path}")
        }
        None => uri.to_owned(),
    }
}

/// What `source` (with the request's `run_id` and `model_id`) registers. `root` is
/// tracking's artifact root, under which URIs are read as the proxy's.
pub fn parse_source(
    source: &str,
    run_id: &str,
    model_id: &str,
    root: Option<&str>,
) -> Result<Source> {
    let mismatch = |named: &str| {
        ApiError::invalid(format!(
            "Invalid model version source: '{source}'. The run_id request parameter ({run_id}) \
             must name the run that contains the source ({named})."
        ))
    };
    let source_model = source
        .strip_prefix("models:/")
        .map(|rest| rest.trim_matches('/'))
        .filter(|id| is_logged_model_id(id));
    if !model_id.is_empty() {
        if let Some(id) = source_model.filter(|id| *id != model_id) {
            return Err(ApiError::invalid(format!(
                "Invalid model version source: '{source}'. The model_id request parameter \
                 ({model_id}) must name the logged model the source names ({id})."
            )));
        }
        return Ok(Source::LoggedModel(model_id.to_owned()));
    }
    if let Some(id) = source_model {
        return Ok(Source::LoggedModel(id.to_owned()));
    }
    if let Some((name, version)) = source
        .strip_prefix("models:/")
        .and_then(|rest| rest.trim_end_matches('/').rsplit_once('/'))
    {
        if let Ok(version) = version.parse::<i64>() {
            if !name.is_empty() && version > 0 {
                return Ok(Source::Registered {
                    name: name.to_owned(),
                    version,
                });
            }
        }
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (named, path) = rest.split_once('/').unwrap_or((rest, ""));
        if named.is_empty() {
            return Err(ApiError::invalid(format!(
                "Invalid model version source: '{source}': a runs:/ URI names a run, \
                 like runs:/<run_id>/<path>"
            )));
        }
        if !run_id.is_empty() && run_id != named {
            return Err(mismatch(named));
        }
        if !is_hex32(named) {
            // No run here has such an id: a run of another server, recorded as given.
            return Ok(Source::Reference);
        }
        return Ok(Source::RunArtifact {
            run_id: named.to_owned(),
            path: path.trim_matches('/').to_owned(),
        });
    }
    let uri = without_authority(&to_proxy_uri(source, root));
    if let Some(path) = uri.strip_prefix(SCHEME) {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let Some(i) = segs
            .windows(2)
            .position(|w| is_logged_model_id(w[0]) && w[1] == "artifacts")
        {
            if segs.len() > i + 2 {
                return Err(ApiError::invalid(format!(
                    "Invalid model version source: '{source}': a logged model is registered \
                     whole; give models:/{} (or its artifact root)",
                    segs[i]
                )));
            }
            return Ok(Source::LoggedModel(segs[i].to_owned()));
        }
        if let Some(found) = parse_proxy_path(path)?.filter(|f| !f.run_id.is_empty()) {
            if !run_id.is_empty() && run_id != found.run_id {
                return Err(mismatch(&found.run_id));
            }
            return Ok(Source::UnderRun {
                run_id: found.run_id,
                uri,
            });
        }
    }
    if !run_id.is_empty() && source.contains(":/") {
        return Ok(Source::UnderRun {
            run_id: run_id.to_owned(),
            uri,
        });
    }
    Ok(Source::Reference)
}

/// The path of `uri` under the first of `roots` it lies under (`""` for a root itself).
pub fn path_under(uri: &str, roots: &[String]) -> Option<String> {
    roots.iter().find_map(|root| {
        let root = root.trim_end_matches('/');
        if root.is_empty() {
            return None;
        }
        match uri.strip_prefix(root) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                Some(rest.trim_matches('/').to_owned())
            }
            _ => None,
        }
    })
}

/// Where a version's files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    /// The artifact root of a tracking logged model (asked of tracking).
    LoggedModel(String),
    /// A tracking URI (a run's artifact).
    Uri(String),
}

/// Where the client downloads version `v` from: the logged model or run artifact it
/// was registered from. An upload has no such place.
pub fn download_of(v: &pb::ModelVersion) -> Result<Download> {
    // A reference is downloaded from where it says, as MLflow answers its source.
    if v.reference_only {
        return Ok(Download::Uri(v.source.clone()));
    }
    let l = v.lineage.clone().unwrap_or_default();
    if !l.uploaded_file.is_empty() || v.source.starts_with("upload:") {
        return Err(ApiError::invalid(format!(
            "model `{}` version {} was uploaded ({}); uploaded versions are downloaded with the \
             registry's gRPC API (ListModelVersionFiles, DownloadModelVersionFile)",
            v.name, v.version, v.source
        )));
    }
    if !l.logged_model_id.is_empty() {
        return Ok(Download::LoggedModel(l.logged_model_id));
    }
    if l.run_artifact_uri.is_empty() {
        return Err(ApiError::invalid(format!(
            "model `{}` version {} records no run artifact to download it from ({})",
            v.name, v.version, v.source
        )));
    }
    let root = l.run_artifact_uri.trim_end_matches('/');
    let path = l.artifact_path.trim_matches('/');
    Ok(Download::Uri(if path.is_empty() {
        root.to_owned()
    } else {
        format!("{root}/{path}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const ROOT: &str = "file:///data/artifacts";
    const RUN: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";
    const MODEL: &str = "m-00112233445566778899aabbccddeeff";

    fn run_artifact(run_id: &str, path: &str) -> Source {
        Source::RunArtifact {
            run_id: run_id.into(),
            path: path.into(),
        }
    }

    fn under(run_id: &str, uri: &str) -> Source {
        Source::UnderRun {
            run_id: run_id.into(),
            uri: uri.into(),
        }
    }

    #[test]
    fn sources_name_a_run_artifact_or_a_logged_model() {
        let parse = |source: &str, run_id: &str, model_id: &str| {
            parse_source(source, run_id, model_id, Some(ROOT))
        };
        // runs:/ with or without the request's run_id; nested paths.
        assert_eq!(
            parse(&format!("runs:/{RUN}/model"), "", "").unwrap(),
            run_artifact(RUN, "model")
        );
        assert_eq!(
            parse(&format!("runs:/{RUN}/a/b/"), RUN, "").unwrap(),
            run_artifact(RUN, "a/b")
        );
        assert_eq!(
            parse(&format!("runs:/{RUN}"), "", "").unwrap(),
            run_artifact(RUN, "")
        );
        assert!(parse(&format!("runs:/{RUN}/model"), OTHER, "").is_err());
        assert!(parse("runs:/", "", "").is_err());

        // The proxy's URIs, with or without the server's authority, and the same place
        // spelled under tracking's root.
        let proxied = format!("mlflow-artifacts:/1/{RUN}/artifacts/model");
        assert_eq!(parse(&proxied, "", "").unwrap(), under(RUN, &proxied));
        assert_eq!(
            parse(
                &format!("mlflow-artifacts://localhost:5000/1/{RUN}/artifacts/model"),
                RUN,
                ""
            )
            .unwrap(),
            under(RUN, &proxied)
        );
        assert_eq!(
            parse(&format!("{ROOT}/1/{RUN}/artifacts/model"), "", "").unwrap(),
            under(RUN, &proxied)
        );
        assert!(parse(&proxied, OTHER, "").is_err());
        // A URI outside tracking's root is checked against the run the request names.
        assert_eq!(
            parse("s3://bucket/exp/x/model", RUN, "").unwrap(),
            under(RUN, "s3://bucket/exp/x/model")
        );

        // Logged models by id, by models:/ URI or by their artifact root.
        assert_eq!(
            parse("anything", "", MODEL).unwrap(),
            Source::LoggedModel(MODEL.into())
        );
        assert_eq!(
            parse(&format!("models:/{MODEL}"), RUN, "").unwrap(),
            Source::LoggedModel(MODEL.into())
        );
        assert_eq!(
            parse(&format!("models:/{MODEL}"), "", MODEL).unwrap(),
            Source::LoggedModel(MODEL.into())
        );
        assert!(parse(
            &format!("models:/{MODEL}"),
            "",
            "m-ffffffffffffffffffffffffffffffff"
        )
        .is_err());
        assert_eq!(
            parse(
                &format!("mlflow-artifacts:/1/models/{MODEL}/artifacts"),
                "",
                ""
            )
            .unwrap(),
            Source::LoggedModel(MODEL.into())
        );
        assert!(parse(
            &format!("mlflow-artifacts:/1/models/{MODEL}/artifacts/sub"),
            "",
            ""
        )
        .is_err());

        // Another registered version is copied.
        assert_eq!(
            parse("models:/prod.fraud/3", "", "").unwrap(),
            Source::Registered {
                name: "prod.fraud".into(),
                version: 3
            }
        );
        // Everything else is recorded as given, as MLflow records any source.
        for other in [
            "runs:/run_id/model",
            "models:/fraud/latest",
            "models:/fraud/0",
            "file:///tmp/model",
            "s3://bucket/model",
            "model",
            "mlflow-artifacts:/1/not-a-run/artifacts/model",
        ] {
            assert_eq!(parse(other, "", "").unwrap(), Source::Reference, "{other}");
        }
        assert!(parse(&format!("mlflow-artifacts:/1/{RUN}/artifacts/../x"), "", "").is_err());
    }

    #[test]
    fn uris_lie_under_a_run_root_or_not() {
        let roots = [
            format!("{ROOT}/1/{RUN}/artifacts"),
            format!("mlflow-artifacts:/1/{RUN}/artifacts/"),
        ];
        assert_eq!(
            path_under(&format!("{ROOT}/1/{RUN}/artifacts/model/"), &roots).as_deref(),
            Some("model")
        );
        assert_eq!(
            path_under(&format!("mlflow-artifacts:/1/{RUN}/artifacts/a/b"), &roots).as_deref(),
            Some("a/b")
        );
        assert_eq!(
            path_under(&format!("mlflow-artifacts:/1/{RUN}/artifacts"), &roots).as_deref(),
            Some("")
        );
        assert_eq!(
            path_under(&format!("mlflow-artifacts:/1/{RUN}/artifactsX/a"), &roots),
            None
        );
        assert_eq!(
            path_under(&format!("mlflow-artifacts:/2/{RUN}/artifacts/a"), &roots),
            None
        );
        assert_eq!(path_under("x", &[String::new()]), None);
    }

    #[test]
    fn downloads_come_from_the_logged_model_or_the_run_artifact() {
        let from_run = pb::ModelVersion {
            name: "fraud".into(),
            version: 1,
            source: format!("runs:/{RUN}/model"),
            lineage: Some(pb::Lineage {
                run_id: RUN.into(),
                artifact_path: "model".into(),
                run_artifact_uri: format!("{ROOT}/1/{RUN}/artifacts/"),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            download_of(&from_run).unwrap(),
            Download::Uri(format!("{ROOT}/1/{RUN}/artifacts/model"))
        );
        assert_eq!(
            to_proxy_uri(&format!("{ROOT}/1/{RUN}/artifacts/model"), Some(ROOT)),
            format!("mlflow-artifacts:/1/{RUN}/artifacts/model")
        );

        let mut from_model = from_run.clone();
        from_model.source = format!("models:/{MODEL}");
        from_model.lineage.as_mut().unwrap().logged_model_id = MODEL.into();
        assert_eq!(
            download_of(&from_model).unwrap(),
            Download::LoggedModel(MODEL.into())
        );

        let upload = pb::ModelVersion {
            name: "fraud".into(),
            version: 2,
            source: "upload:model.onnx".into(),
            lineage: Some(pb::Lineage {
                uploaded_file: "model.onnx".into(),
                run_id: RUN.into(),
                run_artifact_uri: format!("{ROOT}/1/{RUN}/artifacts"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = download_of(&upload).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameterValue);
        assert!(err.message.contains("gRPC"), "{}", err.message);
    }
}
