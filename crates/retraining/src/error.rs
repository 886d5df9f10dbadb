//! The retraining service's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in a retraining call.
#[derive(Debug, thiserror::Error)]
pub enum RetrainingError {
    /// A bad policy or request; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// No policy for the model, or an unknown retrain.
    #[error("{0}")]
    NotFound(String),
    /// Refused by the policy's cooldown or its limit of concurrent retrains.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bug or a corrupt record.
    #[error("{0}")]
    Internal(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError for RetrainingError {
    fn code(&self) -> ErrorCode {
        match self {
            RetrainingError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            RetrainingError::NotFound(_) => ErrorCode::NotFound,
            RetrainingError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            RetrainingError::Internal(_) => ErrorCode::Internal,
            RetrainingError::Storage(e) => e.code(),
        }
    }
}

mlops_storage::service_error!(RetrainingError);

/// Results of the retraining service.
pub type Result<T, E = RetrainingError> = std::result::Result<T, E>;

/// An INVALID_ARGUMENT error.
pub fn invalid(msg: impl Into<String>) -> RetrainingError {
    RetrainingError::InvalidArgument(msg.into())
}
