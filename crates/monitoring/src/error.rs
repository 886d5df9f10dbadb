//! The monitoring service's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in a monitoring call.
#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    /// A malformed request: an unknown method, a method that does not fit a column, an
    /// unreadable table, a window that does not match the reference.
    #[error("{0}")]
    InvalidArgument(String),
    /// A monitor or report that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A monitor of that name exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A window pushed before any reference.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The reference store cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a corrupt record.
    #[error("{0}")]
    Internal(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError for MonitoringError {
    fn code(&self) -> ErrorCode {
        match self {
            MonitoringError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            MonitoringError::NotFound(_) => ErrorCode::NotFound,
            MonitoringError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            MonitoringError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            MonitoringError::Unavailable(_) => ErrorCode::Unavailable,
            MonitoringError::Internal(_) => ErrorCode::Internal,
            MonitoringError::Storage(e) => e.code(),
        }
    }
}

mlops_storage::service_error!(MonitoringError);

/// Results of the monitoring service.
pub type Result<T, E = MonitoringError> = std::result::Result<T, E>;
