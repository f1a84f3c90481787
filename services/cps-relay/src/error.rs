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
    /// Data for the signature key that is not a canonical XAdES SignedInfo of a DMP
    /// submission: `INVALID_ARGUMENT`.
    #[error("refused: the data is not the canonical XAdES SignedInfo of a DMP submission: {0}")]
    NotXadesSignedInfo(String),
    /// The relay has no signature key configured: `FAILED_PRECONDITION`.
    #[error("this card has no signature key: {0}")]
    NoSignatureKey(String),
    /// A key asked for a use its certificate's key usage does not allow (the authentication
    /// key for XAdES, the signature key for TLS): `FAILED_PRECONDITION`.
    #[error("refused: {0}")]
    WrongKeyPurpose(String),
    /// A TLS 1.2 transcript whose server is not an allowed one (or that names no verifiable
    /// server), or TLS 1.3 content while `signing.allow_tls13` is off: `INVALID_ARGUMENT`.
    #[error("refused: the handshake is not with an allowed server: {0}")]
    ServerNotAllowed(String),
    /// A signature without an unexpired, unrevoked grant of the current card session:
    /// `FAILED_PRECONDITION`.
    #[error("{0}")]
    NoSessionGrant(String),
    /// One PIN try left and the holder did not set `confirm_final_try`: `FAILED_PRECONDITION`.
    #[error("one try left: confirm with confirm_final_try (a wrong PIN now blocks the card)")]
    FinalTryUnconfirmed,
    /// A Login too soon after wrong PINs: `RESOURCE_EXHAUSTED`, with a `retry-after`.
    #[error("a wrong PIN was given {failures} time(s) in a row: retry in {} s", retry_seconds(*retry_after))]
    PinThrottled {
        /// Wrong PINs in a row.
        failures: u32,
        /// How long to wait before the next attempt.
        retry_after: Duration,
    },
    /// A session grant for a caller outside `access.grant_callers`: `INVALID_ARGUMENT`.
    #[error("grantee {0} is not in access.grant_callers")]
    UnknownGrantee(String),
    /// Too many live session grants: `RESOURCE_EXHAUSTED`.
    #[error("too many live session grants; revoke some or wait for them to expire")]
    GrantLimit,
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

/// Whole seconds to wait, rounded up: a caller that waits that long is never refused again.
pub(crate) fn retry_seconds(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
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
            RelayError::ServerNotAllowed(_) => "server_not_allowed",
            RelayError::NotXadesSignedInfo(_) => "not_xades_signed_info",
            RelayError::NoSignatureKey(_) => "no_signature_key",
            RelayError::WrongKeyPurpose(_) => "wrong_key_purpose",
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

impl ServiceError for RelayError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            RelayError::NoToken { .. }
            | RelayError::NotLoggedIn
            | RelayError::NoPin(_)
            | RelayError::NoSessionGrant(_)
            | RelayError::NoSignatureKey(_)
            | RelayError::WrongKeyPurpose(_)
            | RelayError::FinalTryUnconfirmed => ServiceErrorCode::FailedPrecondition,
            RelayError::TokenNotFound { .. } | RelayError::ObjectNotFound { .. } => {
                ServiceErrorCode::NotFound
            }
            RelayError::WrongPin { .. } => ServiceErrorCode::Unauthenticated,
            RelayError::PinBlocked | RelayError::CallerNotAllowed(_) => ServiceErrorCode::PermissionDenied,
            RelayError::PinFormat(_)
            | RelayError::UnsupportedScheme { .. }
            | RelayError::NotHandshakeData(_)
            | RelayError::NotXadesSignedInfo(_)
            | RelayError::ServerNotAllowed(_)
            | RelayError::UnknownGrantee(_) => ServiceErrorCode::BadRequest,
            RelayError::CardBusy(_) => ServiceErrorCode::Timeout,
            RelayError::RateLimited | RelayError::PinThrottled { .. } | RelayError::GrantLimit => {
                ServiceErrorCode::RateLimited
            }
            RelayError::Device(_) | RelayError::Audit(_) => ServiceErrorCode::Unavailable,
            RelayError::Internal(_) => ServiceErrorCode::Internal,
        }
    }

    /// [`RelayError::kind`] in capitals: one stable reason per outcome (docs/api.md, "Errors").
    fn reason(&self) -> &'static str {
        match self {
            RelayError::NoToken { .. } => "NO_TOKEN",
            RelayError::TokenNotFound { .. } => "TOKEN_NOT_FOUND",
            RelayError::ObjectNotFound { .. } => "OBJECT_NOT_FOUND",
            RelayError::NotLoggedIn => "NOT_LOGGED_IN",
            RelayError::WrongPin { .. } => "WRONG_PIN",
            RelayError::PinBlocked => "PIN_BLOCKED",
            RelayError::PinFormat(_) => "PIN_FORMAT",
            RelayError::NoPin(_) => "NO_PIN",
            RelayError::UnsupportedScheme { .. } => "UNSUPPORTED_SCHEME",
            RelayError::NotHandshakeData(_) => "NOT_HANDSHAKE_DATA",
            RelayError::ServerNotAllowed(_) => "SERVER_NOT_ALLOWED",
            RelayError::NotXadesSignedInfo(_) => "NOT_XADES_SIGNED_INFO",
            RelayError::NoSignatureKey(_) => "NO_SIGNATURE_KEY",
            RelayError::WrongKeyPurpose(_) => "WRONG_KEY_PURPOSE",
            RelayError::NoSessionGrant(_) => "NO_SESSION_GRANT",
            RelayError::FinalTryUnconfirmed => "FINAL_TRY_UNCONFIRMED",
            RelayError::PinThrottled { .. } => "PIN_THROTTLED",
            RelayError::UnknownGrantee(_) => "UNKNOWN_GRANTEE",
            RelayError::GrantLimit => "GRANT_LIMIT",
            RelayError::CardBusy(_) => "CARD_BUSY",
            RelayError::RateLimited => "RATE_LIMITED",
            RelayError::CallerNotAllowed(_) => "CALLER_NOT_ALLOWED",
            RelayError::Device(_) => "DEVICE_ERROR",
            RelayError::Audit(_) => "AUDIT_UNAVAILABLE",
            RelayError::Internal(_) => "INTERNAL",
        }
    }

    fn domain(&self) -> &'static str {
        "cps-relay"
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            RelayError::WrongPin { tries_left: Some(t) } => vec![("triesLeft", t.to_string())],
            RelayError::UnknownGrantee(grantee) => vec![("grantee", grantee.clone())],
            _ => Vec::new(),
        }
    }

    /// The request field of each INVALID_ARGUMENT outcome that has one (the grantee is named in
    /// the metadata instead: it comes from `grantee` or from Login's `grant_to`).
    fn field_violations(&self) -> Vec<(String, String)> {
        let field = match self {
            RelayError::PinFormat(_) => "pin",
            RelayError::UnsupportedScheme { .. } => "scheme",
            RelayError::NotHandshakeData(_) | RelayError::ServerNotAllowed(_) => "data",
            RelayError::NotXadesSignedInfo(_) => "signed_info",
            _ => return Vec::new(),
        };
        vec![(field.to_owned(), self.to_string())]
    }

    fn retry_delay(&self) -> Option<Duration> {
        match self {
            RelayError::PinThrottled { retry_after, .. } => {
                Some(Duration::from_secs(retry_seconds(*retry_after)))
            }
            _ => None,
        }
    }
}

impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        let mut status = e.to_status();
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
