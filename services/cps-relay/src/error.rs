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
    #[error("refused: the handshake is not with an allowed server: {0}")]
    ServerNotAllowed(String),
    #[error("{0}")]
    NoSessionGrant(String),
    #[error("one try left: confirm with confirm_final_try (a wrong PIN now blocks the card)")]
    FinalTryUnconfirmed,
    #[error("a wrong PIN was given {failures} time(s) in a row: retry in {} s", retry_seconds(*retry_after))]
    PinThrottled { failures: u32, retry_after: Duration },
    #[error("grantee {0} is not in access.grant_callers")]
    UnknownGrantee(String),
    #[error("too many live session grants; revoke some or wait for them to expire")]
    GrantLimit,
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

/// Whole seconds to wait, rounded up: a caller that waits that long is never refused again.
pub fn retry_seconds(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
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
            RelayError::ServerNotAllowed(_) => "server_not_allowed",
            RelayError::NoSessionGrant(_) => "no_session_grant",
            RelayError::FinalTryUnconfirmed => "final_try_unconfirmed",
            RelayError::PinThrottled { .. } => "pin_throttled",
            RelayError::UnknownGrantee(_) => "unknown_grantee",
            RelayError::GrantLimit => "grant_limit",
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
            RelayError::NoToken { .. }
            | RelayError::NotLoggedIn
            | RelayError::NoPin(_)
            | RelayError::NoSessionGrant(_)
            | RelayError::FinalTryUnconfirmed => Code::FailedPrecondition,
            RelayError::TokenNotFound { .. } | RelayError::ObjectNotFound { .. } => Code::NotFound,
            RelayError::WrongPin { .. } => Code::Unauthenticated,
            RelayError::PinBlocked | RelayError::CallerNotAllowed(_) => Code::PermissionDenied,
            RelayError::PinFormat(_)
            | RelayError::UnsupportedScheme { .. }
            | RelayError::NotHandshakeData(_)
            | RelayError::ServerNotAllowed(_)
            | RelayError::UnknownGrantee(_) => Code::InvalidArgument,
            RelayError::CardBusy(_) => Code::DeadlineExceeded,
            RelayError::RateLimited | RelayError::PinThrottled { .. } | RelayError::GrantLimit => {
                Code::ResourceExhausted
            }
            RelayError::Device(_) | RelayError::Audit(_) => Code::Unavailable,
            RelayError::Internal(_) => Code::Internal,
        }
    }
}

impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        let mut status = tonic::Status::new(e.code(), e.to_string());
        if let RelayError::PinThrottled { retry_after, .. } = e {
            // Seconds, as HTTP's Retry-After: the holder's UI can wait without parsing text.
            let secs = retry_seconds(retry_after).to_string();
            if let Ok(v) = secs.parse() {
                status.metadata_mut().insert("retry-after", v);
            }
        }
        status
    }
}
