//! The inference service's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in an inference call.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The request does not match the model (names, types, shapes, sizes) or is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The model (or version) is not in the registry.
    #[error("{0}")]
    NotFound(String),
    /// The model exists but is not loaded here, is loading, or failed to load.
    #[error("{0}")]
    Unavailable(String),
    /// The model's queue is full.
    #[error("{0}")]
    Exhausted(String),
    /// The request waited past its timeout before its computation started.
    #[error("{0}")]
    Timeout(String),
    /// The call is valid but cannot be done in this state (a version that is not READY).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The model failed while running.
    #[error("{0}")]
    Internal(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError for InferenceError {
    fn code(&self) -> ErrorCode {
        match self {
            InferenceError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            InferenceError::NotFound(_) => ErrorCode::NotFound,
            InferenceError::Unavailable(_) => ErrorCode::Unavailable,
            InferenceError::Exhausted(_) => ErrorCode::ResourceExhausted,
            InferenceError::Timeout(_) => ErrorCode::DeadlineExceeded,
            InferenceError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            InferenceError::Internal(_) => ErrorCode::Internal,
            InferenceError::Storage(e) => e.code(),
        }
    }
}

mlops_storage::service_error!(InferenceError);

impl InferenceError {
    /// Triton's failure `reason` label: `REJECTED` (bad request, full queue, timeout),
    /// `BACKEND` (the model failed), `OTHER`.
    pub fn reason(&self) -> &'static str {
        match self {
            InferenceError::InvalidArgument(_)
            | InferenceError::Exhausted(_)
            | InferenceError::Timeout(_)
            | InferenceError::NotFound(_)
            | InferenceError::Unavailable(_)
            | InferenceError::FailedPrecondition(_) => "REJECTED",
            InferenceError::Internal(_) => "BACKEND",
            InferenceError::Storage(_) => "OTHER",
        }
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = InferenceError> = std::result::Result<T, E>;

/// An `InvalidArgument` error.
pub fn invalid(msg: impl Into<String>) -> InferenceError {
    InferenceError::InvalidArgument(msg.into())
}
