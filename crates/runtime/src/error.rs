//! One mapping from domain errors to `tonic::Status`.
//!
//! Each crate has its own `thiserror` enum; it implements [`ServiceError`] to say
//! which of a small closed set of codes each variant is. [`to_status`] turns that
//! into a status whose message a person can act on. Internal errors are logged
//! with their detail and answered with a generic message, never a debug dump.

use tonic::{Code, Status};

/// The closed set of error classes every service maps its errors onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; retrying it unchanged will fail again.
    InvalidArgument,
    /// The named entity does not exist.
    NotFound,
    /// The entity to create exists already.
    AlreadyExists,
    /// The request is valid but the entity's state forbids it (e.g. a deleted run).
    FailedPrecondition,
    /// No or an unknown credential.
    Unauthenticated,
    /// The credential's role does not allow the call.
    PermissionDenied,
    /// A bounded resource (connection pool, queue) is full; retry with backoff.
    ResourceExhausted,
    /// A value is past a configured limit (an upload larger than allowed);
    /// retrying it unchanged will fail again.
    OutOfRange,
    /// A query ran past the configured statement timeout; a narrower request may succeed.
    DeadlineExceeded,
    /// A dependency (database, bus) is unreachable; retry later.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// The gRPC code for this class.
    pub fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::OutOfRange => Code::OutOfRange,
            ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }
}

/// A domain error that knows its class.
pub trait ServiceError: std::error::Error {
    /// Which class of error this is.
    fn code(&self) -> ErrorCode;
}

/// Turns a domain error into the status sent to the client.
pub fn to_status<E: ServiceError + ?Sized>(err: &E) -> Status {
    let code = err.code();
    if code == ErrorCode::Internal {
        tracing::error!(error = %err, "internal error");
        return Status::internal("internal error; the server log has the details");
    }
    if code == ErrorCode::Unavailable {
        tracing::warn!(error = %err, "dependency unavailable");
    }
    Status::new(code.grpc(), err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum E {
        #[error("run abc not found")]
        Missing,
        #[error("secret connection string postgres://u:p@h")]
        Broken,
    }
    impl ServiceError for E {
        fn code(&self) -> ErrorCode {
            match self {
                E::Missing => ErrorCode::NotFound,
                E::Broken => ErrorCode::Internal,
            }
        }
    }

    #[test]
    fn maps_codes_and_hides_internal_detail() {
        let s = to_status(&E::Missing);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "run abc not found");
        let s = to_status(&E::Broken);
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("postgres://"));
    }
}
