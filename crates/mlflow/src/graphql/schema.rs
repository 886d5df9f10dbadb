//! The part of MLflow's GraphQL schema (`mlflow/server/graphql`) that this gateway
//! answers: each object type's fields with the key of the REST JSON they come from
//! and how the value is written (MLflow's `LongString` for int64s, `null` for a NaN
//! float).

/// How a field's value is written.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string (a missing one is `""`, as a proto2 default is).
    Str,
    /// An int64 as a string (MLflow's `LongString`, so JavaScript keeps every digit).
    Long,
    /// A float; NaN and the infinities, which GraphQL cannot carry, are `null`.
    Float,
    /// A boolean.
    Bool,
    /// A list of strings.
    Strings,
    /// A message field: a missing one is an empty object, as proto2 reads it.
    Obj(&'static Type),
    /// An object that may be absent (`null`): errors, and what a resolver adds.
    Nullable(&'static Type),
    /// A repeated message field.
    List(&'static Type),
}

/// A field: its GraphQL name, the REST JSON key it reads, how it is written.
#[derive(Debug)]
pub struct Field {
    /// The name in queries (camelCase).
    pub name: &'static str,
    /// The key in the REST JSON (snake_case).
    pub json: &'static str,
    /// How it is written.
    pub kind: Kind,
}

/// An object type.
#[derive(Debug)]
pub struct Type {
    /// Its name (`__typename`).
    pub name: &'static str,
    /// Its fields.
    pub fields: &'static [Field],
}

impl Type {
    /// The field named `name` in queries.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn f(name: &'static str, json: &'static str, kind: Kind) -> Field {
    Field { name, json, kind }
}

use Kind::{Bool, Float, List, Long, Nullable, Obj, Str, Strings};

pub static ERROR_DETAIL: Type = Type {
    name: "ErrorDetail",
    fields: &[f("field", "field", Str), f("message", "message", Str)],
};
pub static API_ERROR: Type = Type {
    name: "ApiError",
    fields: &[
        f("code", "error_code", Str),
        f("message", "message", Str),
        f("helpUrl", "help_url", Str),
        f("traceId", "trace_id", Str),
        f("errorDetails", "error_details", List(&ERROR_DETAIL)),
    ],
};

macro_rules! key_value {
    ($id:ident, $name:literal) => {
        pub static $id: Type = Type {
            name: $name,
            fields: &[f("key", "key", Str), f("value", "value", Str)],
        };
    };
}
key_value!(EXPERIMENT_TAG, "MlflowExperimentTag");
key_value!(RUN_TAG, "MlflowRunTag");
key_value!(PARAM, "MlflowParam");
key_value!(INPUT_TAG, "MlflowInputTag");
key_value!(VERSION_TAG, "MlflowModelVersionTag");

pub static EXPERIMENT: Type = Type {
    name: "MlflowExperiment",
    fields: &[
        f("experimentId", "experiment_id", Str),
        f("name", "name", Str),
        f("artifactLocation", "artifact_location", Str),
        f("lifecycleStage", "lifecycle_stage", Str),
        f("lastUpdateTime", "last_update_time", Long),
        f("creationTime", "creation_time", Long),
        f("tags", "tags", List(&EXPERIMENT_TAG)),
        f(
            "effectiveTraceArchivalRetention",
            "effective_trace_archival_retention",
            Str,
        ),
        f("workspace", "workspace", Str),
    ],
};

pub static RUN_INFO: Type = Type {
    name: "MlflowRunInfo",
    fields: &[
        f("runId", "run_id", Str),
        f("runUuid", "run_uuid", Str),
        f("runName", "run_name", Str),
        f("experimentId", "experiment_id", Str),
        f("userId", "user_id", Str),
        f("status", "status", Str),
        f("startTime", "start_time", Long),
        f("endTime", "end_time", Long),
        f("artifactUri", "artifact_uri", Str),
        f("lifecycleStage", "lifecycle_stage", Str),
    ],
};

const METRIC_FIELDS: &[Field] = &[
    f("key", "key", Str),
    f("value", "value", Float),
    f("timestamp", "timestamp", Long),
    f("step", "step", Long),
    f("datasetName", "dataset_name", Str),
    f("datasetDigest", "dataset_digest", Str),
    f("modelId", "model_id", Str),
    f("runId", "run_id", Str),
];
pub static METRIC: Type = Type {
    name: "MlflowMetricExtension",
    fields: METRIC_FIELDS,
};
pub static METRIC_WITH_RUN_ID: Type = Type {
    name: "MlflowMetricWithRunId",
    fields: &[
        f("key", "key", Str),
        f("value", "value", Float),
        f("timestamp", "timestamp", Long),
        f("step", "step", Long),
        f("runId", "run_id", Str),
    ],
};

pub static RUN_DATA: Type = Type {
    name: "MlflowRunData",
    fields: &[
        f("metrics", "metrics", List(&METRIC)),
        f("params", "params", List(&PARAM)),
        f("tags", "tags", List(&RUN_TAG)),
    ],
};

pub static DATASET: Type = Type {
    name: "MlflowDataset",
    fields: &[
        f("name", "name", Str),
        f("digest", "digest", Str),
        f("sourceType", "source_type", Str),
        f("source", "source", Str),
        f("schema", "schema", Str),
        f("profile", "profile", Str),
    ],
};
pub static DATASET_INPUT: Type = Type {
    name: "MlflowDatasetInput",
    fields: &[
        f("tags", "tags", List(&INPUT_TAG)),
        f("dataset", "dataset", Obj(&DATASET)),
    ],
};
pub static MODEL_INPUT: Type = Type {
    name: "MlflowModelInput",
    fields: &[f("modelId", "model_id", Str)],
};
pub static RUN_INPUTS: Type = Type {
    name: "MlflowRunInputs",
    fields: &[
        f("datasetInputs", "dataset_inputs", List(&DATASET_INPUT)),
        f("modelInputs", "model_inputs", List(&MODEL_INPUT)),
    ],
};
pub static MODEL_OUTPUT: Type = Type {
    name: "MlflowModelOutput",
    fields: &[f("modelId", "model_id", Str), f("step", "step", Long)],
};
pub static RUN_OUTPUTS: Type = Type {
    name: "MlflowRunOutputs",
    fields: &[f("modelOutputs", "model_outputs", List(&MODEL_OUTPUT))],
};

pub static MODEL_VERSION: Type = Type {
    name: "MlflowModelVersion",
    fields: &[
        f("name", "name", Str),
        f("version", "version", Str),
        f("creationTimestamp", "creation_timestamp", Long),
        f("lastUpdatedTimestamp", "last_updated_timestamp", Long),
        f("userId", "user_id", Str),
        f("currentStage", "current_stage", Str),
        f("description", "description", Str),
        f("source", "source", Str),
        f("runId", "run_id", Str),
        f("status", "status", Str),
        f("statusMessage", "status_message", Str),
        f("tags", "tags", List(&VERSION_TAG)),
        f("runLink", "run_link", Str),
        f("aliases", "aliases", Strings),
        f("modelId", "model_id", Str),
    ],
};

/// A run with what MLflow's schema extension adds: its experiment and the model
/// versions registered from it.
pub static RUN: Type = Type {
    name: "MlflowRunExtension",
    fields: &[
        f("info", "info", Obj(&RUN_INFO)),
        f("data", "data", Obj(&RUN_DATA)),
        f("inputs", "inputs", Obj(&RUN_INPUTS)),
        f("outputs", "outputs", Obj(&RUN_OUTPUTS)),
        f("experiment", "experiment", Nullable(&EXPERIMENT)),
        f("modelVersions", "model_versions", List(&MODEL_VERSION)),
    ],
};

pub static GET_RUN: Type = Type {
    name: "MlflowGetRunResponse",
    fields: &[
        f("run", "run", Nullable(&RUN)),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static GET_EXPERIMENT: Type = Type {
    name: "MlflowGetExperimentResponse",
    fields: &[
        f("experiment", "experiment", Nullable(&EXPERIMENT)),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static SEARCH_RUNS: Type = Type {
    name: "MlflowSearchRunsResponse",
    fields: &[
        f("runs", "runs", List(&RUN)),
        f("nextPageToken", "next_page_token", Str),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static METRIC_HISTORY: Type = Type {
    name: "MlflowGetMetricHistoryBulkIntervalResponse",
    fields: &[
        f("metrics", "metrics", List(&METRIC_WITH_RUN_ID)),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static FILE_INFO: Type = Type {
    name: "MlflowFileInfo",
    fields: &[
        f("path", "path", Str),
        f("isDir", "is_dir", Bool),
        f("fileSize", "file_size", Long),
    ],
};
pub static LIST_ARTIFACTS: Type = Type {
    name: "MlflowListArtifactsResponse",
    fields: &[
        f("rootUri", "root_uri", Str),
        f("files", "files", List(&FILE_INFO)),
        f("nextPageToken", "next_page_token", Str),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static SEARCH_MODEL_VERSIONS: Type = Type {
    name: "MlflowSearchModelVersionsResponse",
    fields: &[
        f("modelVersions", "model_versions", List(&MODEL_VERSION)),
        f("nextPageToken", "next_page_token", Str),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static DATASET_SUMMARY: Type = Type {
    name: "MlflowDatasetSummary",
    fields: &[
        f("experimentId", "experiment_id", Str),
        f("name", "name", Str),
        f("digest", "digest", Str),
        f("context", "context", Str),
    ],
};
pub static SEARCH_DATASETS: Type = Type {
    name: "MlflowSearchDatasetsResponse",
    fields: &[
        f(
            "datasetSummaries",
            "dataset_summaries",
            List(&DATASET_SUMMARY),
        ),
        f("apiError", "api_error", Nullable(&API_ERROR)),
    ],
};
pub static TEST: Type = Type {
    name: "Test",
    fields: &[f("output", "output", Str)],
};

/// The root fields: the query type's, MLflow's `QueryType` with its extension. The
/// JSON key is unused at the root (resolvers answer each field).
pub static QUERY: Type = Type {
    name: "Query",
    fields: &[
        f("mlflowGetExperiment", "", Nullable(&GET_EXPERIMENT)),
        f("mlflowGetRun", "", Nullable(&GET_RUN)),
        f("mlflowSearchRuns", "", Nullable(&SEARCH_RUNS)),
        f(
            "mlflowGetMetricHistoryBulkInterval",
            "",
            Nullable(&METRIC_HISTORY),
        ),
        f("mlflowListArtifacts", "", Nullable(&LIST_ARTIFACTS)),
        f(
            "mlflowSearchModelVersions",
            "",
            Nullable(&SEARCH_MODEL_VERSIONS),
        ),
        f("test", "", Nullable(&TEST)),
    ],
};

/// The mutation type's root fields (MLflow serves its run search as a mutation too).
pub static MUTATION: Type = Type {
    name: "Mutation",
    fields: &[
        f("mlflowSearchRuns", "", Nullable(&SEARCH_RUNS)),
        f("mlflowSearchDatasets", "", Nullable(&SEARCH_DATASETS)),
        f("testMutation", "", Nullable(&TEST)),
    ],
};
