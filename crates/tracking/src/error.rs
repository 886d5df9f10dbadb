//! The tracking service's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in a tracking call.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// A field is missing, malformed or over a limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named experiment, run or artifact does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An experiment with that name exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The entity's state forbids the call (a deleted run, a run without a lease).
    #[error("{0}")]
    FailedPrecondition(String),
    /// An upload is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A dependency cannot be reached: the artifact (blob) store. The message names
    /// no server path; the log has the store's own error.
    #[error("{0}")]
    Unavailable(String),
}

impl ServiceError for TrackingError {
    fn code(&self) -> ErrorCode {
        match self {
            TrackingError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            TrackingError::NotFound(_) => ErrorCode::NotFound,
            TrackingError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            TrackingError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            TrackingError::TooLarge(_) => ErrorCode::OutOfRange,
            TrackingError::Storage(e) => e.code(),
            TrackingError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

mlops_storage::service_error!(TrackingError);

/// A shorthand for results of this crate.
pub type Result<T, E = TrackingError> = std::result::Result<T, E>;

/// An `InvalidArgument` error.
pub fn invalid(msg: impl Into<String>) -> TrackingError {
    TrackingError::InvalidArgument(msg.into())
}
