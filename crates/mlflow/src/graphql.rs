//! MLflow's GraphQL endpoint, `POST /graphql` (and `GET`), which MLflow's web UI calls
//! for the experiment page (`mlflowGetExperiment`), the run page (`mlflowGetRun`),
//! charts (`mlflowGetMetricHistoryBulkInterval`) and run lists (`mlflowSearchRuns`).
//!
//! No GraphQL engine: the operations are fixed, so each root field is answered by
//! the REST handler MLflow's resolver calls too (the same JSON, the same errors), and
//! the answer is then cut to the query's selection by [`schema`]'s types, with
//! `__typename` where asked, int64s as strings and NaN as `null`, as MLflow's graphene
//! schema writes them. Errors are a list of messages beside `data`, as MLflow answers;
//! a failed root field is `null`. MLflow's limits against batching attacks hold: at
//! most 10 root fields and 10 aliases per level, depth 10, 1,000 selections.

mod document;
pub mod schema;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, Result};
use crate::json::Params;
use crate::state::{AppState, Auth};
use document::{Field, OperationKind, Selection};
use schema::{Kind, Type};

/// MLflow's `_MAX_DEPTH`, `_MAX_SELECTIONS`, and the defaults of
/// `MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS` and `MLFLOW_SERVER_GRAPHQL_MAX_ALIASES`.
const MAX_DEPTH: usize = 10;
const MAX_SELECTIONS: usize = 1000;
const MAX_ROOT_FIELDS: usize = 10;
const MAX_ALIASES: usize = 10;

/// `POST /graphql` with `{"query", "variables", "operationName"}` (or the same as a
/// query string, `variables` JSON-encoded).
pub async fn handle(State(s): State<AppState>, auth: Auth, p: Params) -> Result<Json<Value>> {
    let query = p.required_string("query")?;
    let variables = match p.get("variables") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::invalid("variables must be a JSON object")),
        },
        Some(_) => return Err(ApiError::invalid("variables must be a JSON object")),
    };
    let operation_name = p.string("operationName")?;
    let operation_name = (!operation_name.is_empty()).then_some(operation_name.as_str());
    Ok(Json(
        execute(&s, &auth, &query, &variables, operation_name).await,
    ))
}

/// The answer to one request: `{"data": ..., "errors": [...] | null}`.
pub async fn execute(
    s: &AppState,
    auth: &Auth,
    query: &str,
    variables: &Map<String, Value>,
    operation_name: Option<&str>,
) -> Value {
    let failed = |errors: Vec<String>| json!({ "data": null, "errors": errors });
    let doc = match document::parse(query) {
        Ok(d) => d,
        Err(e) => return failed(vec![e]),
    };
    let op = match doc.operation(operation_name) {
        Ok(op) => op,
        Err(e) => return failed(vec![e]),
    };
    if let Err(e) = check_limits(&op.selection) {
        return failed(vec![e]);
    }
    let root = match op.kind {
        OperationKind::Query => &schema::QUERY,
        OperationKind::Mutation => &schema::MUTATION,
        OperationKind::Subscription => {
            return failed(vec!["Schema is not configured for subscriptions.".into()])
        }
    };
    let mut errors = vec![];
    validate(root, &op.selection, &mut errors);
    if !errors.is_empty() {
        return failed(errors);
    }
    let mut data = Map::new();
    for field in fields_of(&op.selection, root) {
        let value = if field.name == "__typename" {
            Value::String(root.name.into())
        } else {
            let Some(def) = root.field(&field.name) else {
                continue;
            };
            match resolve(s, auth, field, variables).await {
                Ok(v) => write(Some(&v), def.kind, &field.selection),
                Err(e) => {
                    errors.push(e.message);
                    Value::Null
                }
            }
        };
        data.insert(field.response_key().to_owned(), value);
    }
    json!({
        "data": data,
        "errors": if errors.is_empty() { Value::Null } else { json!(errors) },
    })
}

/// The fields of a selection on an object of type `ty`: fragments on other types
/// left out, inline fragments and spreads (expanded by the parser) flattened.
fn fields_of<'a>(sel: &'a [Selection], ty: &Type) -> Vec<&'a Field> {
    let mut out = vec![];
    for s in sel {
        match s {
            Selection::Field(f) => out.push(f),
            Selection::InlineFragment {
                type_condition,
                selection,
            } => {
                if type_condition.as_deref().is_none_or(|t| t == ty.name) {
                    out.extend(fields_of(selection, ty));
                }
            }
        }
    }
    out
}

/// MLflow's `check_query_safety`: depth, selections, root fields, aliases per level.
fn check_limits(root: &[Selection]) -> std::result::Result<(), String> {
    fn level<'a>(sel: &'a [Selection], out: &mut Vec<&'a Field>) {
        for s in sel {
            match s {
                Selection::Field(f) => out.push(f),
                Selection::InlineFragment { selection, .. } => level(selection, out),
            }
        }
    }
    let mut total = 0;
    let mut stack = vec![(root, 1)];
    while let Some((sel, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!("Query exceeds maximum depth of {MAX_DEPTH}"));
        }
        let mut fields = vec![];
        level(sel, &mut fields);
        if depth == 1 && fields.len() > MAX_ROOT_FIELDS {
            return Err(format!(
                "GraphQL queries should have at most {MAX_ROOT_FIELDS} root fields, got {} \
                 root fields. To increase the limit, set the \
                 MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS environment variable.",
                fields.len()
            ));
        }
        let aliases = fields.iter().filter(|f| f.alias.is_some()).count();
        if aliases > MAX_ALIASES {
            return Err(format!(
                "GraphQL queries should have at most {MAX_ALIASES} aliases, got {aliases} \
                 aliases. To increase the limit, set the MLFLOW_SERVER_GRAPHQL_MAX_ALIASES \
                 environment variable."
            ));
        }
        for f in fields {
            total += 1;
            if total > MAX_SELECTIONS {
                return Err(format!(
                    "Query exceeds maximum total selections of {MAX_SELECTIONS}"
                ));
            }
            if !f.selection.is_empty() {
                stack.push((&f.selection, depth + 1));
            }
        }
    }
    Ok(())
}

/// The scalar type's name a field is declared with, for messages.
fn scalar_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "String",
        Kind::Long => "LongString",
        Kind::Float => "Float",
        Kind::Bool => "Boolean",
        Kind::Strings => "[String]",
        Kind::Obj(t) | Kind::Nullable(t) | Kind::List(t) => t.name,
    }
}

/// graphql-core's validation messages for fields the schema lacks, objects without
/// a selection and scalars with one.
fn validate(ty: &Type, sel: &[Selection], errors: &mut Vec<String>) {
    for f in fields_of(sel, ty) {
        if f.name == "__typename" {
            continue;
        }
        let Some(def) = ty.field(&f.name) else {
            errors.push(format!(
                "Cannot query field '{}' on type '{}'.",
                f.name, ty.name
            ));
            continue;
        };
        match def.kind {
            Kind::Obj(t) | Kind::Nullable(t) | Kind::List(t) => {
                if f.selection.is_empty() {
                    errors.push(format!(
                        "Field '{}' of type '{}' must have a selection of subfields. Did you \
                         mean '{} {{ ... }}'?",
                        f.name, t.name, f.name
                    ));
                } else {
                    validate(t, &f.selection, errors);
                }
            }
            scalar if !f.selection.is_empty() => errors.push(format!(
                "Field '{}' must not have a selection since type '{}' has no subfields.",
                f.name,
                scalar_name(scalar)
            )),
            _ => {}
        }
    }
}

/// `raw` (REST JSON) written as a value of `kind`, cut to `sel`.
fn write(raw: Option<&Value>, kind: Kind, sel: &[Selection]) -> Value {
    let raw = raw.filter(|v| !v.is_null());
    match kind {
        Kind::Str => match raw {
            None => Value::String(String::new()),
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(other) => Value::String(other.to_string()),
        },
        Kind::Long => match raw {
            None => Value::String("0".into()),
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(other) => Value::String(other.to_string()),
        },
        Kind::Float => raw
            .and_then(crate::json::parse_float)
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Kind::Bool => Value::Bool(raw.and_then(Value::as_bool).unwrap_or(false)),
        Kind::Strings => match raw {
            Some(Value::Array(items)) => Value::Array(items.clone()),
            _ => Value::Array(vec![]),
        },
        Kind::Obj(t) => project(raw.unwrap_or(&Value::Null), t, sel),
        Kind::Nullable(t) => raw.map_or(Value::Null, |v| project(v, t, sel)),
        Kind::List(t) => match raw {
            Some(Value::Array(items)) => {
                Value::Array(items.iter().map(|v| project(v, t, sel)).collect())
            }
            _ => Value::Array(vec![]),
        },
    }
}

/// The fields `sel` asks of an object of type `ty` read from its REST JSON `v`.
fn project(v: &Value, ty: &Type, sel: &[Selection]) -> Value {
    let mut out = Map::new();
    for f in fields_of(sel, ty) {
        let value = if f.name == "__typename" {
            Value::String(ty.name.into())
        } else {
            match ty.field(&f.name) {
                Some(def) => write(v.get(def.json), def.kind, &f.selection),
                None => Value::Null,
            }
        };
        out.insert(f.response_key().to_owned(), value);
    }
    Value::Object(out)
}

/// `camelCase` → `snake_case`, for the input objects' keys (graphene camel-cases the
/// proto's field names; MLflow's resolvers read them back as the proto's).
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The field's `input` argument as the REST handler's parameters.
fn input(field: &Field, variables: &Map<String, Value>) -> Result<Params> {
    let Some((_, value)) = field.arguments.iter().find(|(name, _)| name == "input") else {
        return Ok(Params::default());
    };
    match value.to_json(variables) {
        Value::Null => Ok(Params::default()),
        Value::Object(m) => Params::from_value(Value::Object(
            m.into_iter().map(|(k, v)| (snake(&k), v)).collect(),
        )),
        _ => Err(ApiError::invalid(format!(
            "the input of {} must be an input object",
            field.name
        ))),
    }
}

/// Whether the selection of a run (`run { ... }` or `runs { ... }`) asks for `name`.
fn asks(run_field: Option<&Field>, name: &str) -> bool {
    run_field.is_some_and(|f| {
        fields_of(&f.selection, &schema::RUN)
            .iter()
            .any(|f| f.name == name)
    })
}

/// The sub-field `name` of a root field.
fn child<'a>(field: &'a Field, ty: &Type, name: &str) -> Option<&'a Field> {
    fields_of(&field.selection, ty)
        .into_iter()
        .find(|f| f.name == name)
}

/// A root field's answer as REST JSON.
async fn resolve(
    s: &AppState,
    auth: &Auth,
    field: &Field,
    variables: &Map<String, Value>,
) -> Result<Value> {
    let st = || State(s.clone());
    let p = input(field, variables)?;
    Ok(match field.name.as_str() {
        "mlflowGetExperiment" => {
            crate::tracking::get_experiment(st(), auth.clone(), p)
                .await?
                .0
        }
        "mlflowGetRun" => {
            let mut v = crate::tracking::get_run(st(), auth.clone(), p).await?.0;
            let run_field = child(field, &schema::GET_RUN, "run");
            if let Some(run) = v.get_mut("run") {
                extend_runs(s, auth, std::slice::from_mut(run), run_field).await?;
            }
            v
        }
        "mlflowSearchRuns" => {
            let mut v = crate::tracking::search_runs(st(), auth.clone(), p).await?.0;
            let run_field = child(field, &schema::SEARCH_RUNS, "runs");
            if let Some(Value::Array(runs)) = v.get_mut("runs") {
                extend_runs(s, auth, runs, run_field).await?;
            }
            v
        }
        "mlflowGetMetricHistoryBulkInterval" => {
            crate::history::bulk_interval(st(), auth.clone(), p)
                .await?
                .0
        }
        "mlflowSearchDatasets" => crate::ui::search_datasets(st(), auth.clone(), p).await?.0,
        "mlflowListArtifacts" => {
            crate::artifacts::list_run_artifacts(st(), auth.clone(), p)
                .await?
                .0
        }
        "mlflowSearchModelVersions" => {
            crate::registry::search_model_versions(st(), auth.clone(), p)
                .await?
                .0
        }
        "test" | "testMutation" => {
            let echo = field
                .arguments
                .iter()
                .find(|(name, _)| name == "inputString")
                .map(|(_, v)| v.to_json(variables))
                .unwrap_or(Value::Null);
            json!({ "output": echo })
        }
        other => return Err(ApiError::invalid(format!("no resolver for {other}"))),
    })
}

/// Adds what MLflow's `MlflowRunExtension` resolves to each run, when the query asks:
/// its experiment, and the model versions registered from it.
async fn extend_runs(
    s: &AppState,
    auth: &Auth,
    runs: &mut [Value],
    run_field: Option<&Field>,
) -> Result<()> {
    if asks(run_field, "experiment") {
        let mut seen: Map<String, Value> = Map::new();
        for run in runs.iter_mut() {
            let id = run["info"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !seen.contains_key(&id) {
                let p = Params::from_value(json!({ "experiment_id": id }))?;
                let got = crate::tracking::get_experiment(State(s.clone()), auth.clone(), p)
                    .await?
                    .0;
                seen.insert(id.clone(), got["experiment"].clone());
            }
            run["experiment"] = seen[&id].clone();
        }
    }
    if asks(run_field, "modelVersions") {
        for run in runs.iter_mut() {
            let id = run["info"]["run_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let p = Params::from_value(json!({
                "filter": format!("run_id = '{}'", id.replace('\'', "")),
            }))?;
            let got = crate::registry::search_model_versions(State(s.clone()), auth.clone(), p)
                .await?
                .0;
            run["model_versions"] = got
                .get("model_versions")
                .cloned()
                .unwrap_or_else(|| json!([]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_json() -> Value {
        json!({
            "info": {"run_id": "abc", "run_uuid": "abc", "run_name": "r", "experiment_id": "1",
                     "user_id": "u", "status": "FINISHED", "start_time": 1700000000123_i64,
                     "artifact_uri": "mlflow-artifacts:/1/abc/artifacts", "lifecycle_stage": "active"},
            "data": {"metrics": [{"key": "loss", "value": "NaN", "timestamp": 5, "step": 9007199254740993_i64},
                                 {"key": "acc", "value": 0.5, "timestamp": 5, "step": 1}],
                     "params": [{"key": "lr", "value": "0.1"}]},
            "experiment": {"experiment_id": "1", "name": "e", "creation_time": 3},
        })
    }

    fn cut(query: &str) -> std::result::Result<Value, Vec<String>> {
        let doc = document::parse(query).map_err(|e| vec![e])?;
        let op = doc.operation(None).map_err(|e| vec![e])?;
        let mut errors = vec![];
        validate(&schema::RUN, &op.selection, &mut errors);
        if errors.is_empty() {
            Ok(project(&run_json(), &schema::RUN, &op.selection))
        } else {
            Err(errors)
        }
    }

    #[test]
    fn a_run_is_cut_to_the_selection_with_typenames_longs_as_strings_and_nan_as_null() {
        let v = cut(
            "{ __typename info { runUuid startTime endTime status __typename } \
               data { metrics { key value step } params { key value } tags { key } } \
               experiment { name creationTime tags { key } } \
               inputs { datasetInputs { dataset { name } } } modelVersions { version } }",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "__typename": "MlflowRunExtension",
                "info": {"runUuid": "abc", "startTime": "1700000000123", "endTime": "0",
                         "status": "FINISHED", "__typename": "MlflowRunInfo"},
                "data": {"metrics": [{"key": "loss", "value": null, "step": "9007199254740993"},
                                     {"key": "acc", "value": 0.5, "step": "1"}],
                         "params": [{"key": "lr", "value": "0.1"}], "tags": []},
                "experiment": {"name": "e", "creationTime": "3", "tags": []},
                "inputs": {"datasetInputs": []},
                "modelVersions": [],
            })
        );
    }

    #[test]
    fn aliases_and_fragments() {
        let v = cut(
            "{ i: info { id: runId } ...on MlflowRunExtension { data { params { key } } } \
               ... on Other { info { runName } } }",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"i": {"id": "abc"}, "data": {"params": [{"key": "lr"}]}})
        );
    }

    #[test]
    fn unknown_fields_and_missing_or_extra_selections_are_refused() {
        let errors = cut("{ info { nope } data experiment { name { x } } }").unwrap_err();
        assert_eq!(
            errors,
            [
                "Cannot query field 'nope' on type 'MlflowRunInfo'.",
                "Field 'data' of type 'MlflowRunData' must have a selection of subfields. \
                 Did you mean 'data { ... }'?",
                "Field 'name' must not have a selection since type 'String' has no subfields.",
            ]
        );
    }

    #[test]
    fn mlflows_limits_against_batching() {
        let roots: String = (0..11).map(|i| format!("a{i}: test ")).collect();
        let doc = document::parse(&format!("{{ {roots} }}")).unwrap();
        let err = check_limits(&doc.operation(None).unwrap().selection).unwrap_err();
        assert!(err.contains("at most 10 root fields, got 11"), "{err}");

        let aliases: String = (0..11).map(|i| format!("k{i}: key ")).collect();
        let doc = document::parse(&format!(
            "{{ run {{ data {{ params {{ {aliases} }} }} }} }}"
        ))
        .unwrap();
        let err = check_limits(&doc.operation(None).unwrap().selection).unwrap_err();
        assert!(err.contains("at most 10 aliases, got 11"), "{err}");

        let deep = format!("{}{}", "{ a ".repeat(11), "}".repeat(11));
        let doc = document::parse(&deep).unwrap();
        let err = check_limits(&doc.operation(None).unwrap().selection).unwrap_err();
        assert_eq!(err, "Query exceeds maximum depth of 10");
    }

    #[test]
    fn input_keys_become_the_rest_parameters() {
        assert_eq!(snake("experimentIds"), "experiment_ids");
        assert_eq!(snake("runUuid"), "run_uuid");
        assert_eq!(snake("filter"), "filter");
    }
}
