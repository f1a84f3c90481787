//! The relay's outcomes (SPEC.md §1 "Errors"), each mapped once to a service error code (and so
//! to its gRPC status code).

use std::time::Duration;

use service_kit::StartError;
use service_kit::error::{ServiceError, ServiceErrorCode};

use crate::scheme::Scheme;

/// What a relay call (or opening the card) can end in.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No card (reader empty, module or token unusable): `FAILED_PRECONDITION`.
    #[error("no card: {reason}")]
    NoToken {
        /// What is missing.
        reason: String,
    },
    /// The configured token is not present: `NOT_FOUND`.
    #[error("token not found: {what}")]
    TokenNotFound {
        /// The token asked for.
        what: String,
    },
    /// The key or certificate is not on the token: `NOT_FOUND`.
    #[error("{what} not found on the token")]
    ObjectNotFound {
        /// The object asked for.
        what: String,
    },
    /// The card holder has not logged in: `FAILED_PRECONDITION`.
    #[error("the card holder is not logged in: call Login with the card PIN first")]
    NotLoggedIn,
    /// Wrong PIN: `UNAUTHENTICATED`.
    #[error("wrong PIN{}", tries_left.map(|t| format!(" ({t} tries left before the card blocks)")).unwrap_or_default())]
    WrongPin {
        /// Tries before the card blocks, when the card tells.
        tries_left: Option<u32>,
    },
    /// The PIN is blocked: `PERMISSION_DENIED`.
    #[error("the card PIN is blocked: unblock the card with its PUK (or have it reissued)")]
    PinBlocked,
    /// A PIN that cannot be a CPS PIN: `INVALID_ARGUMENT`.
    #[error("invalid PIN format: {0}")]
    PinFormat(&'static str),
    /// The software backend has no PIN: `FAILED_PRECONDITION`.
    #[error("this backend has no PIN: {0}")]
    NoPin(&'static str),
    /// A scheme the key cannot sign with: `INVALID_ARGUMENT`.
    #[error("unsupported signature scheme {requested}; this key supports {supported}")]
    UnsupportedScheme {
        /// The scheme asked for.
        requested: String,
        /// The schemes the key offers.
        supported: String,
    },
    /// The data is not TLS handshake signing input (not a signing oracle): `INVALID_ARGUMENT`.
    #[error("refused: the data is not TLS handshake signing input: {0}")]
    NotHandshakeData(String),
    /// The card stayed busy for `card_wait`: `DEADLINE_EXCEEDED`.
    #[error("the card stayed busy for {0:?}; try again")]
    CardBusy(Duration),
    /// Too many signatures from this caller: `RESOURCE_EXHAUSTED`.
    #[error("too many signature requests from this caller; slow down")]
    RateLimited,
    /// A caller without an allowed certificate: `PERMISSION_DENIED`.
    #[error("caller not allowed: {0}")]
    CallerNotAllowed(String),
    /// The card or the PKCS#11 module failed: `UNAVAILABLE`.
    #[error("card or module error: {0}")]
    Device(String),
    /// The audit log cannot record the call (fail closed): `UNAVAILABLE`.
    #[error(transparent)]
    Audit(#[from] audit_log::AuditError),
    /// A bug: `INTERNAL`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RelayError {
    pub(crate) fn unsupported(requested: Scheme, supported: &[Scheme]) -> Self {
        let list: Vec<&str> = supported.iter().map(|s| s.name()).collect();
        RelayError::UnsupportedScheme {
            requested: requested.name().to_owned(),
            supported: if list.is_empty() {
                "no scheme".into()
            } else {
                list.join(", ")
            },
        }
    }

    /// Short stable name for metrics and audit.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RelayError::NoToken { .. } => "no_token",
            RelayError::TokenNotFound { .. } => "token_not_found",
            RelayError::ObjectNotFound { .. } => "object_not_found",
            RelayError::NotLoggedIn => "not_logged_in",
            RelayError::WrongPin { .. } => "wrong_pin",
            RelayError::PinBlocked => "pin_blocked",
            RelayError::PinFormat(_) => "pin_format",
            RelayError::NoPin(_) => "no_pin",
            RelayError::UnsupportedScheme { .. } => "unsupported_scheme",
            RelayError::NotHandshakeData(_) => "not_handshake_data",
            RelayError::CardBusy(_) => "card_busy",
            RelayError::RateLimited => "rate_limited",
            RelayError::CallerNotAllowed(_) => "caller_not_allowed",
            RelayError::Device(_) => "device_error",
            RelayError::Audit(_) => "audit_unavailable",
            RelayError::Internal(_) => "internal",
        }
    }
}

impl ServiceError for RelayError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            RelayError::NoToken { .. } | RelayError::NotLoggedIn | RelayError::NoPin(_) => {
                ServiceErrorCode::FailedPrecondition
            }
            RelayError::TokenNotFound { .. } | RelayError::ObjectNotFound { .. } => {
                ServiceErrorCode::NotFound
            }
            RelayError::WrongPin { .. } => ServiceErrorCode::Unauthenticated,
            RelayError::PinBlocked | RelayError::CallerNotAllowed(_) => ServiceErrorCode::PermissionDenied,
            RelayError::PinFormat(_)
            | RelayError::UnsupportedScheme { .. }
            | RelayError::NotHandshakeData(_) => ServiceErrorCode::BadRequest,
            RelayError::CardBusy(_) => ServiceErrorCode::Timeout,
            RelayError::RateLimited => ServiceErrorCode::RateLimited,
            RelayError::Device(_) | RelayError::Audit(_) => ServiceErrorCode::Unavailable,
            RelayError::Internal(_) => ServiceErrorCode::Internal,
        }
    }
}

impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        e.to_status()
    }
}

/// A card backend that cannot be opened stops start-up.
impl From<RelayError> for StartError {
    fn from(e: RelayError) -> Self {
        StartError::Unusable(format!("card backend: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_audit_log_answers_unavailable() {
        let err = RelayError::from(audit_log::AuditError::Unavailable("cannot connect".into()));
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "audit log unavailable: cannot connect");
    }
}
