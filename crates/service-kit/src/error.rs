//! Errors as data, mapped once: every service's error type says which [`ServiceErrorCode`] each
//! of its outcomes is ([`ServiceError`]), and the code alone decides the gRPC status code and the
//! HTTP status (the pairs of Google's API design guide), so that no service keeps its own table
//! of either.
//!
//! A service turns its error into a [`tonic::Status`] with [`ServiceError::to_status`] (message:
//! the error's text), in its one `impl From<ServiceErr> for tonic::Status`.

/// The kinds of outcome a service answers with, each with one gRPC code and one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceErrorCode {
    /// The request is malformed or a value is out of range: `INVALID_ARGUMENT`, 400.
    BadRequest,
    /// The caller is not who it must be, or its credentials are not valid: `UNAUTHENTICATED`, 401.
    Unauthenticated,
    /// The caller is known but may not do this: `PERMISSION_DENIED`, 403.
    PermissionDenied,
    /// What the request names does not exist: `NOT_FOUND`, 404.
    NotFound,
    /// The system is not in the state the call needs (e.g. nobody logged in): `FAILED_PRECONDITION`, 400.
    FailedPrecondition,
    /// The caller sends too much: `RESOURCE_EXHAUSTED`, 429.
    RateLimited,
    /// A bug or an impossible state on our side: `INTERNAL`, 500.
    Internal,
    /// A dependency (database, device, peer) cannot be used now; retrying later may work:
    /// `UNAVAILABLE`, 503.
    Unavailable,
    /// Something we waited for did not answer in time: `DEADLINE_EXCEEDED`, 504.
    Timeout,
    /// A peer answered with an error we cannot classify: `UNKNOWN`, 500.
    Unknown,
}

impl ServiceErrorCode {
    /// The gRPC status code of this outcome.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ServiceErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ServiceErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ServiceErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ServiceErrorCode::NotFound => tonic::Code::NotFound,
            ServiceErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ServiceErrorCode::RateLimited => tonic::Code::ResourceExhausted,
            ServiceErrorCode::Internal => tonic::Code::Internal,
            ServiceErrorCode::Unavailable => tonic::Code::Unavailable,
            ServiceErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ServiceErrorCode::Unknown => tonic::Code::Unknown,
        }
    }

    /// The HTTP status of this outcome.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            ServiceErrorCode::BadRequest => http::StatusCode::BAD_REQUEST,
            ServiceErrorCode::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            ServiceErrorCode::PermissionDenied => http::StatusCode::FORBIDDEN,
            ServiceErrorCode::NotFound => http::StatusCode::NOT_FOUND,
            ServiceErrorCode::FailedPrecondition => http::StatusCode::BAD_REQUEST,
            ServiceErrorCode::RateLimited => http::StatusCode::TOO_MANY_REQUESTS,
            ServiceErrorCode::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
            ServiceErrorCode::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            ServiceErrorCode::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            ServiceErrorCode::Unknown => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The outcome to pass on when a peer we called over gRPC answered `code`: the same kind,
    /// where the kinds above have it; codes they do not distinguish fold into the nearest.
    pub fn from_peer_grpc_code(code: tonic::Code) -> ServiceErrorCode {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::OutOfRange => ServiceErrorCode::BadRequest,
            Code::Unauthenticated => ServiceErrorCode::Unauthenticated,
            Code::PermissionDenied => ServiceErrorCode::PermissionDenied,
            Code::NotFound => ServiceErrorCode::NotFound,
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => {
                ServiceErrorCode::FailedPrecondition
            }
            Code::ResourceExhausted => ServiceErrorCode::RateLimited,
            Code::Internal | Code::DataLoss => ServiceErrorCode::Internal,
            Code::Unavailable => ServiceErrorCode::Unavailable,
            Code::DeadlineExceeded => ServiceErrorCode::Timeout,
            Code::Ok | Code::Cancelled | Code::Unknown | Code::Unimplemented => ServiceErrorCode::Unknown,
        }
    }

    /// The outcome to pass on when a peer we called over HTTP answered `status`: its client
    /// errors are the caller's, its server errors make it unavailable to us.
    pub fn from_peer_http_status(status: u16) -> ServiceErrorCode {
        match status {
            400 => ServiceErrorCode::BadRequest,
            401 => ServiceErrorCode::Unauthenticated,
            403 => ServiceErrorCode::PermissionDenied,
            429 => ServiceErrorCode::RateLimited,
            504 => ServiceErrorCode::Timeout,
            500..=599 => ServiceErrorCode::Unavailable,
            _ => ServiceErrorCode::Unknown,
        }
    }
}

/// A service's error: its outcome kind, and its text as the message callers read.
pub trait ServiceError: std::fmt::Display {
    /// Which kind of outcome this is.
    fn error_code(&self) -> ServiceErrorCode;

    /// The message callers read; the error's text unless the service says otherwise.
    fn message(&self) -> String {
        self.to_string()
    }

    /// This error as a gRPC status: the code's gRPC code and [`ServiceError::message`].
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.error_code().grpc_code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Busy;

    impl std::fmt::Display for Busy {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the card is busy")
        }
    }

    impl ServiceError for Busy {
        fn error_code(&self) -> ServiceErrorCode {
            ServiceErrorCode::Timeout
        }
    }

    #[test]
    fn a_status_carries_the_code_and_the_text() {
        let status = Busy.to_status();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(status.message(), "the card is busy");
        assert_eq!(Busy.error_code().http_status(), http::StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn peer_grpc_codes_keep_their_kind() {
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::Unauthenticated,
            tonic::Code::PermissionDenied,
            tonic::Code::NotFound,
            tonic::Code::FailedPrecondition,
            tonic::Code::ResourceExhausted,
            tonic::Code::Internal,
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unknown,
        ] {
            assert_eq!(ServiceErrorCode::from_peer_grpc_code(code).grpc_code(), code);
        }
        assert_eq!(
            ServiceErrorCode::from_peer_grpc_code(tonic::Code::Aborted),
            ServiceErrorCode::FailedPrecondition
        );
    }

    #[test]
    fn peer_statuses() {
        assert_eq!(
            ServiceErrorCode::from_peer_http_status(502),
            ServiceErrorCode::Unavailable
        );
        assert_eq!(
            ServiceErrorCode::from_peer_http_status(504),
            ServiceErrorCode::Timeout
        );
        assert_eq!(
            ServiceErrorCode::from_peer_http_status(418),
            ServiceErrorCode::Unknown
        );
    }
}
