//! Errors as data, mapped once: every service's error type says which [`ServiceErrorCode`] each
//! of its outcomes is ([`ServiceError`]), and the code alone decides the gRPC status code and the
//! HTTP status (the pairs of Google's API design guide), so that no service keeps its own table
//! of either.
//!
//! A service turns its error into a [`tonic::Status`] with [`ServiceError::to_status`], in its
//! one `impl From<ServiceErr> for tonic::Status`. Besides the code and the message (the error's
//! text, for people), the status carries `google.rpc` details for programs, in the standard
//! `grpc-status-details-bin` trailer (a `google.rpc.Status`; any gRPC library decodes it):
//!
//! - always a `google.rpc.ErrorInfo`: `reason`, a stable UPPER_SNAKE_CASE code per outcome
//!   ([`ServiceError::reason`]: a program branches on it, never on the message, which may be
//!   reworded), `domain`, the service that answered (`cps-relay`, `dmp-gateway`, `twiin-authz`),
//!   and `metadata` where an outcome has values worth reading ([`ServiceError::error_metadata`]);
//! - a `google.rpc.BadRequest` whose field violations name each invalid request field by its
//!   path in the request, proto field names (`documents[0].metadata.type_code`), for
//!   `INVALID_ARGUMENT` outcomes that know the field ([`ServiceError::field_violations`]);
//! - a `google.rpc.RetryInfo` when the service knows how long to wait
//!   ([`ServiceError::retry_delay`]).
//!
//! **Decision** — `reason` values are part of the API: once released, a reason keeps its meaning
//! and is never reused; docs/api.md ("Errors") lists every one per service.

use std::collections::HashMap;
use std::time::Duration;

use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

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

/// A service's error: its outcome kind, its text as the message callers read, and the
/// `google.rpc` details programs read (module documentation).
pub trait ServiceError: std::fmt::Display {
    /// Which kind of outcome this is.
    fn error_code(&self) -> ServiceErrorCode;

    /// The `google.rpc.ErrorInfo` reason: a stable UPPER_SNAKE_CASE code of this outcome
    /// (`[A-Z][A-Z0-9_]+[A-Z0-9]`, at most 63 characters), one per variant of the service's error.
    fn reason(&self) -> &'static str;

    /// The `google.rpc.ErrorInfo` domain: the service that answered (`dmp-gateway`, ...).
    fn domain(&self) -> &'static str;

    /// The `google.rpc.ErrorInfo` metadata: values of this outcome a program may read (keys in
    /// lowerCamelCase, as the google.rpc guidance asks). None unless the service says so.
    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The invalid request fields (`google.rpc.BadRequest`): each field's path in the request,
    /// in proto field names, and what is wrong with it. None unless the service says so.
    fn field_violations(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// How long the caller should wait before retrying (`google.rpc.RetryInfo`), when known.
    fn retry_delay(&self) -> Option<Duration> {
        None
    }

    /// The message callers read; the error's text unless the service says otherwise.
    fn message(&self) -> String {
        self.to_string()
    }

    /// This error as a gRPC status: the code's gRPC code, [`ServiceError::message`], and the
    /// `google.rpc` details of the module documentation.
    fn to_status(&self) -> tonic::Status {
        let metadata: HashMap<String, String> = self
            .error_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut details = ErrorDetails::with_error_info(self.reason(), self.domain(), metadata);
        let violations: Vec<FieldViolation> = self
            .field_violations()
            .into_iter()
            .map(|(field, description)| FieldViolation::new(field, description))
            .collect();
        if !violations.is_empty() {
            details.set_bad_request(violations);
        }
        if let Some(delay) = self.retry_delay() {
            details.set_retry_info(Some(delay));
        }
        tonic::Status::with_error_details(self.error_code().grpc_code(), self.message(), details)
    }
}

/// The `google.rpc` details of a status, as a caller decodes them (tests, clients in Rust).
pub fn error_details(status: &tonic::Status) -> ErrorDetails {
    status.get_error_details()
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

        fn reason(&self) -> &'static str {
            "CARD_BUSY"
        }

        fn domain(&self) -> &'static str {
            "cps-relay"
        }
    }

    /// An invalid request naming two fields, with a value and a delay.
    #[derive(Debug)]
    struct BadDates;

    impl std::fmt::Display for BadDates {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("from is after to")
        }
    }

    impl ServiceError for BadDates {
        fn error_code(&self) -> ServiceErrorCode {
            ServiceErrorCode::BadRequest
        }

        fn reason(&self) -> &'static str {
            "INVALID_DATE_RANGE"
        }

        fn domain(&self) -> &'static str {
            "dmp-gateway"
        }

        fn error_metadata(&self) -> Vec<(&'static str, String)> {
            vec![("relayId", "local".into())]
        }

        fn field_violations(&self) -> Vec<(String, String)> {
            vec![
                ("query.from".into(), "after query.to".into()),
                ("query.to".into(), "before query.from".into()),
            ]
        }

        fn retry_delay(&self) -> Option<Duration> {
            Some(Duration::from_secs(3))
        }
    }

    #[test]
    fn a_status_carries_the_google_rpc_details() {
        // Through the bytes of the trailer, as a caller reads them.
        let response: http::Response<()> = BadDates.to_status().into_http();
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "from is after to");
        let details = error_details(&status);
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_DATE_RANGE");
        assert_eq!(info.domain, "dmp-gateway");
        assert_eq!(info.metadata.get("relayId").map(String::as_str), Some("local"));
        let bad = details.bad_request().expect("BadRequest");
        let fields: Vec<(&str, &str)> = bad
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("query.from", "after query.to"),
                ("query.to", "before query.from")
            ]
        );
        let retry = details.retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));

        // Without violations or a delay, only ErrorInfo.
        let details = error_details(&Busy.to_status());
        assert_eq!(details.error_info().map(|i| i.reason.as_str()), Some("CARD_BUSY"));
        assert!(details.bad_request().is_none());
        assert!(details.retry_info().is_none());
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
