//! The registry's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in a registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field is missing, malformed or over a limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named model, version, alias, run or artifact does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A model with that name exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The entity's state forbids the call (a version not READY, a gate policy).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency cannot be reached: the tracking service, or the model file (blob)
    /// store, whose messages name no server path (the log has the store's own error).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError for RegistryError {
    fn code(&self) -> ErrorCode {
        match self {
            RegistryError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            RegistryError::NotFound(_) => ErrorCode::NotFound,
            RegistryError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            RegistryError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            RegistryError::Unavailable(_) => ErrorCode::Unavailable,
            RegistryError::Storage(e) => e.code(),
        }
    }
}

mlops_storage::service_error!(RegistryError);

/// A shorthand for results of this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// An `InvalidArgument` error.
pub fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::InvalidArgument(msg.into())
}

/// A `FailedPrecondition` error.
pub fn precondition(msg: impl Into<String>) -> RegistryError {
    RegistryError::FailedPrecondition(msg.into())
}
