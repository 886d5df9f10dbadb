//! The feature store's errors and their gRPC codes.

use mlops_runtime::{ErrorCode, ServiceError};
use mlops_storage::StorageError;

/// Everything that can go wrong in a feature store call.
#[derive(Debug, thiserror::Error)]
pub enum FeatureStoreError {
    /// A malformed request or definition set, an unknown view or feature, a table that
    /// does not fit the query.
    #[error("{0}")]
    InvalidArgument(String),
    /// A definition or a file that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Data that does not match its definition.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The offline store cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a corrupt record.
    #[error("{0}")]
    Internal(String),
    /// The database failed or is saturated.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServiceError for FeatureStoreError {
    fn code(&self) -> ErrorCode {
        match self {
            FeatureStoreError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            FeatureStoreError::NotFound(_) => ErrorCode::NotFound,
            FeatureStoreError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            FeatureStoreError::Unavailable(_) => ErrorCode::Unavailable,
            FeatureStoreError::Internal(_) => ErrorCode::Internal,
            FeatureStoreError::Storage(e) => e.code(),
        }
    }
}

mlops_storage::service_error!(FeatureStoreError);

/// Results of the feature store.
pub type Result<T, E = FeatureStoreError> = std::result::Result<T, E>;
