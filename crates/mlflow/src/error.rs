//! Errors as MLflow's REST API answers them: a JSON body
//! `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}` and the HTTP status
//! MLflow gives that code (`mlflow/exceptions.py`, `ERROR_CODE_TO_HTTP_STATUS`).
//!
//! The status matters beyond the code: MLflow's client retries 429 and 5xx with
//! backoff for minutes, so a request that will fail again must answer 4xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Code;

/// The MLflow error codes (`mlflow/protos/databricks.proto`) this API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A parameter is missing, malformed or out of range (400).
    InvalidParameterValue,
    /// The named experiment, run or artifact does not exist (404).
    ResourceDoesNotExist,
    /// The entity to create exists already (400).
    ResourceAlreadyExists,
    /// No route for this path (404); MLflow's client falls back to older APIs on it.
    EndpointNotFound,
    /// The path exists but not with this HTTP method (405).
    BadRequest,
    /// A bounded resource is full; retry with backoff (429).
    RequestLimitExceeded,
    /// No or an unknown credential (401).
    Unauthenticated,
    /// The credential's role does not allow the call (403).
    PermissionDenied,
    /// A backend service is unreachable; retry later (503).
    TemporarilyUnavailable,
    /// A backend call ran out of time (504).
    DeadlineExceeded,
    /// MLflow has the call; this platform does not (yet) (501).
    NotImplemented,
    /// The client went away before the answer (499).
    Cancelled,
    /// A bug or an unexpected failure (500).
    InternalError,
}

impl ErrorCode {
    /// The name MLflow's client reads from `error_code`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow's server answers with this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidParameterValue
            | ErrorCode::ResourceAlreadyExists
            | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            // 499 is nginx's "client closed request", which MLflow uses for CANCELLED.
            ErrorCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered in MLflow's format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct ApiError {
    /// MLflow's code (it also decides the HTTP status).
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// Overrides the code's usual status (413 for a body over the limit, 405).
    pub status: Option<StatusCode>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// `INVALID_PARAMETER_VALUE`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidParameterValue, message)
    }

    /// `RESOURCE_DOES_NOT_EXIST`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ResourceDoesNotExist, message)
    }

    /// `NOT_IMPLEMENTED`: MLflow has it, our services cannot express it yet.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotImplemented, message)
    }

    /// MLflow's message for a required parameter that is missing or empty.
    pub fn missing(param: &str) -> Self {
        ApiError::invalid(format!(
            "Missing value for required parameter '{param}'. See the API docs for more information about request parameters."
        ))
    }

    /// The same error answered with `status` instead of the code's usual one.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status of the answer.
    pub fn http_status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.http_status())
    }
}

/// The MLflow code for a gRPC status from one of our services.
///
/// `FAILED_PRECONDITION` (writing to a deleted run or experiment, restoring a live
/// one) becomes `INVALID_PARAMETER_VALUE` with 400: that is what MLflow's own server
/// answers for those cases, and MLflow's `INVALID_STATE` is a 500 that its client
/// would retry for minutes although the answer cannot change.
pub fn code_of(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            ErrorCode::InvalidParameterValue
        }
        Code::NotFound => ErrorCode::ResourceDoesNotExist,
        Code::AlreadyExists => ErrorCode::ResourceAlreadyExists,
        Code::ResourceExhausted => ErrorCode::RequestLimitExceeded,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::Unavailable => ErrorCode::TemporarilyUnavailable,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        Code::Unimplemented => ErrorCode::NotImplemented,
        Code::Cancelled => ErrorCode::Cancelled,
        Code::Ok | Code::Unknown | Code::Aborted | Code::Internal | Code::DataLoss => {
            ErrorCode::InternalError
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let code = code_of(s.code());
        let message = match code {
            ErrorCode::TemporarilyUnavailable => {
                tracing::warn!(error = %s.message(), "a backend service is unavailable");
                format!("a backend service is unavailable: {}", s.message())
            }
            ErrorCode::InternalError => {
                tracing::error!(code = ?s.code(), error = %s.message(), "backend call failed");
                format!("internal error: {}", s.message())
            }
            _ => s.message().to_owned(),
        };
        ApiError::new(code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.code.name(),
            "message": self.message,
        });
        (self.http_status(), axum::Json(body)).into_response()
    }
}

/// A shorthand for handler results.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: Code) -> (u16, &'static str) {
        let e = ApiError::from(tonic::Status::new(code, "x"));
        (e.http_status().as_u16(), e.code.name())
    }

    #[test]
    fn grpc_codes_map_to_mlflow_codes_and_statuses() {
        assert_eq!(answer(Code::NotFound), (404, "RESOURCE_DOES_NOT_EXIST"));
        assert_eq!(
            answer(Code::InvalidArgument),
            (400, "INVALID_PARAMETER_VALUE")
        );
        assert_eq!(
            answer(Code::AlreadyExists),
            (400, "RESOURCE_ALREADY_EXISTS")
        );
        assert_eq!(
            answer(Code::FailedPrecondition),
            (400, "INVALID_PARAMETER_VALUE")
        );
        assert_eq!(
            answer(Code::ResourceExhausted),
            (429, "REQUEST_LIMIT_EXCEEDED")
        );
        assert_eq!(answer(Code::Unauthenticated), (401, "UNAUTHENTICATED"));
        assert_eq!(answer(Code::PermissionDenied), (403, "PERMISSION_DENIED"));
        assert_eq!(answer(Code::Unavailable), (503, "TEMPORARILY_UNAVAILABLE"));
        assert_eq!(answer(Code::DeadlineExceeded), (504, "DEADLINE_EXCEEDED"));
        assert_eq!(answer(Code::Unimplemented), (501, "NOT_IMPLEMENTED"));
        assert_eq!(answer(Code::Internal), (500, "INTERNAL_ERROR"));
        assert_eq!(answer(Code::Unknown), (500, "INTERNAL_ERROR"));
    }

    #[tokio::test]
    async fn the_body_is_mlflows_error_json() {
        let resp = ApiError::from(tonic::Status::not_found("run abc not found")).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "run abc not found"})
        );
        let too_big = ApiError::invalid("too big").with_status(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_big.into_response().status(), 413);
    }
}
