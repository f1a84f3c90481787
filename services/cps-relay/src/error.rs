//! The relay's outcomes (SPEC.md §1 "Errors"), mapped once to gRPC status codes.

use std::time::Duration;

use crate::scheme::Scheme;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no card: {reason}")]
    NoToken { reason: String },
    #[error("token not found: {what}")]
    TokenNotFound { what: String },
    #[error("{what} not found on the token")]
    ObjectNotFound { what: String },
    #[error("the card holder is not logged in: call Login with the card PIN first")]
    NotLoggedIn,
    #[error("wrong PIN{}", tries_left.map(|t| format!(" ({t} tries left before the card blocks)")).unwrap_or_default())]
    WrongPin { tries_left: Option<u32> },
    #[error("the card PIN is blocked: unblock the card with its PUK (or have it reissued)")]
    PinBlocked,
    #[error("invalid PIN format: {0}")]
    PinFormat(&'static str),
    #[error("this backend has no PIN: {0}")]
    NoPin(&'static str),
    #[error("unsupported signature scheme {requested}; this key supports {supported}")]
    UnsupportedScheme { requested: String, supported: String },
    #[error("refused: the data is not TLS handshake signing input: {0}")]
    NotHandshakeData(String),
    #[error("the card stayed busy for {0:?}; try again")]
    CardBusy(Duration),
    #[error("too many signature requests from this caller; slow down")]
    RateLimited,
    #[error("caller not allowed: {0}")]
    CallerNotAllowed(String),
    #[error("card or module error: {0}")]
    Device(String),
    #[error(transparent)]
    Audit(#[from] platform::audit::AuditError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RelayError {
    pub fn unsupported(requested: Scheme, supported: &[Scheme]) -> Self {
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
    pub fn kind(&self) -> &'static str {
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

impl RelayError {
    /// The gRPC status code of this outcome (SPEC.md §1).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            RelayError::NoToken { .. } | RelayError::NotLoggedIn | RelayError::NoPin(_) => {
                Code::FailedPrecondition
            }
            RelayError::TokenNotFound { .. } | RelayError::ObjectNotFound { .. } => Code::NotFound,
            RelayError::WrongPin { .. } => Code::Unauthenticated,
            RelayError::PinBlocked | RelayError::CallerNotAllowed(_) => Code::PermissionDenied,
            RelayError::PinFormat(_)
            | RelayError::UnsupportedScheme { .. }
            | RelayError::NotHandshakeData(_) => Code::InvalidArgument,
            RelayError::CardBusy(_) => Code::DeadlineExceeded,
            RelayError::RateLimited => Code::ResourceExhausted,
            RelayError::Device(_) | RelayError::Audit(_) => Code::Unavailable,
            RelayError::Internal(_) => Code::Internal,
        }
    }
}

impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
