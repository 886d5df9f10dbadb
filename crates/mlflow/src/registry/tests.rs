//! Unit tests of the registry endpoints' request parsing and JSON.

use super::*;
use axum::body::Body;
use axum::http::{header, Request};
use tower::ServiceExt;

/// Calls the gateway's router with no services behind it (port 1): what answers
/// before a backend call, and the 503 of the calls that reach one.
async fn call(method: &str, uri: &str, body: Option<&str>) -> (u16, Value) {
    let config = crate::MlflowConfig::local(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "http://127.0.0.1:1",
        "http://127.0.0.1:1",
    );
    let app = crate::router(AppState::new(&config).unwrap());
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn routes_take_mlflows_methods_and_check_requests_first() {
    const API: &str = "/api/2.0/mlflow";
    // The methods of model_registry.proto, and no others.
    for (method, path, body) in [
        (
            "PATCH",
            "registered-models/update",
            Some(r#"{"name": "m"}"#),
        ),
        (
            "DELETE",
            "registered-models/delete",
            Some(r#"{"name": "m"}"#),
        ),
        ("GET", "registered-models/get-latest-versions?name=m", None),
        (
            "POST",
            "registered-models/get-latest-versions",
            Some(r#"{"name": "m"}"#),
        ),
        ("GET", "registered-models/alias?name=m&alias=a", None),
        ("DELETE", "registered-models/alias?name=m&alias=a", None),
        (
            "DELETE",
            "model-versions/delete-tag",
            Some(r#"{"name": "m", "version": "1", "key": "k"}"#),
        ),
        ("GET", "model-versions/search", None),
    ] {
        let (status, body) = call(method, &format!("{API}/{path}"), body).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (503, Some("TEMPORARILY_UNAVAILABLE")),
            "{method} {path}: {body}"
        );
    }
    for (method, path) in [
        ("POST", "registered-models/search"),
        ("POST", "model-versions/get"),
        ("POST", "registered-models/update"),
        ("GET", "model-versions/transition-stage"),
    ] {
        let (status, _) = call(method, &format!("{API}/{path}"), Some("{}")).await;
        assert_eq!(status, 405, "{method} {path}");
    }
    // Malformed requests are refused before any backend call.
    for (method, path, body, needle) in [
        (
            "GET",
            "model-versions/get?name=m&version=one",
            None,
            "must be an integer",
        ),
        ("GET", "model-versions/get?name=m", None, "'version'"),
        ("GET", "registered-models/get", None, "'name'"),
        (
            "POST",
            "model-versions/transition-stage",
            Some(r#"{"name": "m", "version": "1", "stage": "prod"}"#),
            "Invalid Model Version stage",
        ),
        (
            "POST",
            "registered-models/get-latest-versions",
            Some(r#"{"name": "m", "stages": ["Live"]}"#),
            "Invalid Model Version stage",
        ),
        (
            "GET",
            "registered-models/search?max_results=1001",
            None,
            "Invalid value \"1001\" for parameter 'max_results' supplied",
        ),
        (
            "POST",
            "model-versions/create",
            Some(r#"{"name": "m", "source": "runs:/abc/model", "run_id": "def"}"#),
            "must name the run that contains the source",
        ),
    ] {
        let (status, body) = call(method, &format!("{API}/{path}"), body).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE")),
            "{method} {path}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{method} {path}: {message}");
    }
}

#[test]
fn versions_are_positive_integers_as_strings_or_numbers() {
    assert_eq!(parse_version("1").unwrap(), 1);
    assert_eq!(parse_version(" 12 ").unwrap(), 12);
    assert_eq!(parse_version("+3").unwrap(), 3);
    for bad in ["", "x", "1.5", "1e3", "v1", "-", "99999999999999999999"] {
        let err = parse_version(bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{bad}");
        assert!(
            err.message.contains("must be an integer"),
            "{bad}: {}",
            err.message
        );
    }
    assert!(parse_version("0").unwrap_err().message.contains("positive"));
    assert!(parse_version("-2").is_err());

    let p = |v: Value| Params::from_value(v).unwrap();
    assert_eq!(version(&p(json!({"version": "7"}))).unwrap(), 7);
    assert_eq!(version(&p(json!({"version": 7}))).unwrap(), 7);
    assert!(version(&p(json!({"version": 1.5}))).is_err());
    assert!(version(&p(json!({"version": true}))).is_err());
    let missing = version(&p(json!({"version": ""}))).unwrap_err();
    assert!(missing.message.contains("'version'"), "{}", missing.message);
    assert!(version(&p(json!({}))).is_err());
}

#[test]
fn page_sizes_follow_mlflows_limits() {
    // Models: unset is the registry's default (100, as MLflow's); above 1000 refused.
    assert_eq!(page_size(None, 0, 1000, 1000).unwrap(), 0);
    assert_eq!(page_size(Some(2), 0, 1000, 1000).unwrap(), 2);
    let err = page_size(Some(1001), 0, 1000, 1000).unwrap_err();
    assert!(err.message.contains("at most 1000"), "{}", err.message);
    assert!(page_size(Some(0), 0, 1000, 1000).is_err());
    assert!(page_size(Some(-1), 0, 1000, 1000).is_err());
    // Versions: MLflow takes up to 200,000; the registry serves 10,000 per page.
    assert_eq!(page_size(None, 10_000, 200_000, 10_000).unwrap(), 10_000);
    assert_eq!(
        page_size(Some(50_000), 10_000, 200_000, 10_000).unwrap(),
        10_000
    );
    assert!(page_size(Some(200_001), 10_000, 200_000, 10_000).is_err());
}

#[test]
fn the_clients_prompt_clause_is_taken_off() {
    let clause = "tag.`mlflow.prompt.is_prompt` != 'true'";
    assert_eq!(without_prompt_clause(clause), (String::new(), true));
    assert_eq!(
        without_prompt_clause(&format!("name LIKE 'a%' AND {clause}")),
        ("name LIKE 'a%'".to_owned(), true)
    );
    assert_eq!(
        without_prompt_clause("name = 'x' and  tags.`mlflow.prompt.is_prompt` != 'true' "),
        ("name = 'x'".to_owned(), true)
    );
    // Without the clause, prompts are still left out, as MLflow's server does.
    assert_eq!(
        without_prompt_clause("name = 'x'"),
        ("name = 'x'".to_owned(), true)
    );
    assert_eq!(without_prompt_clause(""), (String::new(), true));
    // A filter about prompts of its own is the registry's to answer.
    let own = "tags.`mlflow.prompt.is_prompt` = 'true'";
    assert_eq!(without_prompt_clause(own), (own.to_owned(), false));
    // Not a clause of its own: `xAND`.
    let glued = format!("name = 'xAND {clause}");
    assert_eq!(without_prompt_clause(&glued).0, glued);
}

#[test]
fn booleans_from_json_or_strings() {
    let p = |v: Value| Params::from_value(v).unwrap();
    assert_eq!(opt_bool(&p(json!({"b": true})), "b").unwrap(), Some(true));
    assert_eq!(
        opt_bool(&p(json!({"b": "False"})), "b").unwrap(),
        Some(false)
    );
    assert_eq!(opt_bool(&p(json!({})), "b").unwrap(), None);
    assert!(opt_bool(&p(json!({"b": 1})), "b").is_err());
}
