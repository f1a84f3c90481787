//! The outcomes of both use cases (SPEC.md §3.1 and §3.2), each mapped once to a service error
//! code (and through it to the gRPC status), and to the OAuth 2.0 error response (RFC 6749 §5.2)
//! of the token endpoint, whose HTTP status follows the code except where the seed says otherwise.
//!
//! The `error_description`s are the seed's Dutch outcome texts. **Decision** — where a step has
//! one fixed text in the seed (steps 6 and 7, 3.1 step 5) it is used verbatim; other steps use
//! the seed's outcome name followed by the specific reason, e.g. "Ongeldige client: aud is niet
//! deze autorisatieserver", so the caller knows what to fix.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use service_kit::error::{ServiceError, ServiceErrorCode};

/// 3.2 step 6, verbatim from the seed.
pub const NOT_QUALIFIED: &str = "Initiërende applicatie beschikt niet over de vereiste capabilities.";
/// 3.2 step 7, verbatim from the seed.
pub const DESTINATION_REFUSES: &str = "AORTA-deelnemer kan/wil interactie niet ontvangen via Twiin.";
/// 3.1 step 5, verbatim from the seed.
pub const MISSING_AUTHZ_BASE: &str = "AORTA access_token mist vereiste authorization_base";
/// 3.2 step 8: a scope item without a row in the interaction table.
pub const CANNOT_TRANSLATE: &str = "Kan scope niet vertalen";
/// 3.2 step 8: a pull interaction without an authorization base.
pub const PULL_WITHOUT_BASE: &str = "Pull-interactie ontvangen zonder authorization_base";
/// 3.2 step 9.
pub const BSN_MISSING: &str = "BSN van patient ontbreekt";

/// The outcomes of both use cases other than success.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthzError {
    /// 3.1 step 2 and 5: 400 / INVALID_ARGUMENT.
    #[error("{0}")]
    BadRequest(String),
    /// 3.1 step 3: 401 / UNAUTHENTICATED.
    #[error("Ongeldig token: {0}")]
    InvalidToken(String),
    /// 3.2 steps 2, 5, 8, 9: 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// 3.1 and 3.2 step 2, about one field of the request: 400 `invalid_request` /
    /// INVALID_ARGUMENT, with the field (its proto name, the form parameter's too) in the
    /// `google.rpc.BadRequest` details.
    #[error("{message}")]
    InvalidField {
        /// The request field, e.g. `client_assertion`.
        field: &'static str,
        /// The text, e.g. "Ongeldig verzoek: client_assertion ontbreekt".
        message: String,
    },
    /// 3.2 step 3: 400 `invalid_client` (the seed says 400, not RFC 6749's 401).
    #[error("Ongeldige client: {0}")]
    InvalidClient(String),
    /// 3.2 step 4: 400 `invalid_grant`.
    #[error("Ongeldige grant: {0}")]
    InvalidGrant(String),
    /// 3.2 steps 6 and 7: 403 `access_denied`.
    #[error("{0}")]
    AccessDenied(&'static str),
    /// 3.2 step 11: an error answer of the Autorisatie Server ZA, passed on as received.
    #[error("Autorisatie Server ZA: {error}: {description}")]
    Upstream {
        /// Its HTTP status.
        status: u16,
        /// Its OAuth `error`.
        error: String,
        /// Its `error_description`.
        description: String,
    },
    /// A dependency (Stelseltoken, ZORG-AB, AS ZA) cannot be used: 503 / UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// The audit log cannot take the request's events or token ids (its store is down, or did
    /// not commit in time): 503 / UNAVAILABLE, nothing issued (fail closed), with `Retry-After`
    /// (HTTP) or `grpc-retry-pushback-ms` (gRPC): when the store is known to be down, the audit
    /// log's probe interval; else 1 s.
    #[error("auditlog niet beschikbaar; er is niets uitgegeven, probeer het later opnieuw")]
    AuditUnavailable {
        /// When a retry may succeed.
        retry_after: std::time::Duration,
    },
    /// A dependency did not answer in time: 504 / DEADLINE_EXCEEDED.
    #[error("{0}")]
    Timeout(String),
    /// A fault of this service (a key that cannot sign): 500 / INTERNAL.
    #[error("{0}")]
    Internal(String),
}

impl From<audit_log::AuditError> for AuthzError {
    /// The caller learns that nothing was issued and when to retry, not why the database failed
    /// (that is logged).
    fn from(e: audit_log::AuditError) -> Self {
        let retry_after = match e {
            audit_log::AuditError::StoreDown { retry_after, .. } => retry_after,
            _ => std::time::Duration::from_secs(1),
        };
        AuthzError::AuditUnavailable { retry_after }
    }
}

impl ServiceError for AuthzError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            AuthzError::BadRequest(_)
            | AuthzError::InvalidRequest(_)
            | AuthzError::InvalidField { .. }
            | AuthzError::InvalidGrant(_) => ServiceErrorCode::BadRequest,
            AuthzError::InvalidToken(_) | AuthzError::InvalidClient(_) => ServiceErrorCode::Unauthenticated,
            AuthzError::AccessDenied(_) => ServiceErrorCode::PermissionDenied,
            AuthzError::Upstream { status, .. } => ServiceErrorCode::from_peer_http_status(*status),
            AuthzError::Unavailable(_) | AuthzError::AuditUnavailable { .. } => ServiceErrorCode::Unavailable,
            AuthzError::Timeout(_) => ServiceErrorCode::Timeout,
            AuthzError::Internal(_) => ServiceErrorCode::Internal,
        }
    }

    /// Stable per outcome; 3.2's follow its OAuth error (docs/api.md, "Errors").
    fn reason(&self) -> &'static str {
        match self {
            AuthzError::BadRequest(m) if m == MISSING_AUTHZ_BASE => "MISSING_AUTHORIZATION_BASE",
            AuthzError::BadRequest(_) | AuthzError::InvalidRequest(_) => "INVALID_REQUEST",
            AuthzError::InvalidField { .. } => "INVALID_REQUEST_FIELD",
            AuthzError::InvalidToken(_) => "INVALID_SOURCE_TOKEN",
            AuthzError::InvalidClient(_) => "INVALID_CLIENT",
            AuthzError::InvalidGrant(_) => "INVALID_GRANT",
            AuthzError::AccessDenied(m) if *m == NOT_QUALIFIED => "INITIATOR_NOT_QUALIFIED",
            AuthzError::AccessDenied(m) if *m == DESTINATION_REFUSES => "DESTINATION_REFUSES_TWIIN",
            AuthzError::AccessDenied(_) => "ACCESS_DENIED",
            AuthzError::Upstream { .. } => "AS_ZA_ERROR",
            AuthzError::Unavailable(_) => "DEPENDENCY_UNAVAILABLE",
            AuthzError::AuditUnavailable { .. } => "AUDIT_UNAVAILABLE",
            AuthzError::Timeout(_) => "DEPENDENCY_TIMEOUT",
            AuthzError::Internal(_) => "INTERNAL",
        }
    }

    fn domain(&self) -> &'static str {
        "twiin-authz"
    }

    /// The OAuth error the HTTP face would answer, and an AS ZA error's own status.
    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        let mut md = vec![("oauthError", self.oauth_error().to_owned())];
        if let AuthzError::Upstream { status, .. } = self {
            md.push(("httpStatus", status.to_string()));
        }
        md
    }

    fn field_violations(&self) -> Vec<(String, String)> {
        match self {
            AuthzError::InvalidField { field, message } => vec![((*field).to_owned(), message.clone())],
            _ => Vec::new(),
        }
    }

    fn message(&self) -> String {
        self.description()
    }

    /// RetryInfo when the audit log is known to be down (as `Retry-After` on the HTTP face).
    fn retry_delay(&self) -> Option<std::time::Duration> {
        self.retry_after()
    }
}

impl AuthzError {
    /// The HTTP status of the OAuth error response: the code's, except `invalid_client`, which
    /// the seed answers with 400 (not RFC 6749's 401), and an AS ZA error, passed on as received.
    pub fn http_status(&self) -> StatusCode {
        match self {
            AuthzError::InvalidClient(_) => StatusCode::BAD_REQUEST,
            AuthzError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            other => other.error_code().http_status(),
        }
    }

    /// The OAuth `error` code.
    pub fn oauth_error(&self) -> &str {
        match self {
            AuthzError::BadRequest(_) | AuthzError::InvalidRequest(_) | AuthzError::InvalidField { .. } => {
                "invalid_request"
            }
            AuthzError::InvalidToken(_) => "invalid_token",
            AuthzError::InvalidClient(_) => "invalid_client",
            AuthzError::InvalidGrant(_) => "invalid_grant",
            AuthzError::AccessDenied(_) => "access_denied",
            AuthzError::Upstream { error, .. } => error,
            AuthzError::Unavailable(_) | AuthzError::AuditUnavailable { .. } | AuthzError::Timeout(_) => {
                "temporarily_unavailable"
            }
            AuthzError::Internal(_) => "server_error",
        }
    }

    /// When the caller may retry, for `Retry-After` (whole seconds, at least 1): known only when
    /// the audit log is down.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            AuthzError::AuditUnavailable { retry_after } => {
                Some((*retry_after).max(std::time::Duration::from_secs(1)))
            }
            _ => None,
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> String {
        match self {
            AuthzError::Upstream { description, .. } => description.clone(),
            other => other.to_string(),
        }
    }
}

impl From<AuthzError> for tonic::Status {
    fn from(e: AuthzError) -> Self {
        let mut status = e.to_status();
        let md = status.metadata_mut();
        if let Ok(v) = e.oauth_error().parse() {
            md.insert("oauth-error", v);
        }
        // Metadata values are ASCII: the description is percent-encoded there (it is plain in
        // the status message).
        let encoded: String = url::form_urlencoded::byte_serialize(e.description().as_bytes()).collect();
        if let Ok(v) = encoded.parse() {
            md.insert("oauth-error-description", v);
        }
        md.insert(
            "http-status",
            tonic::metadata::MetadataValue::from(e.http_status().as_u16() as u32),
        );
        if let Some(after) = e.retry_after() {
            // gRPC's retry pushback (A6): clients with a retry policy wait this long.
            md.insert(
                "grpc-retry-pushback-ms",
                tonic::metadata::MetadataValue::from(after.as_millis().min(u128::from(u32::MAX)) as u32),
            );
        }
        status
    }
}

impl IntoResponse for AuthzError {
    fn into_response(self) -> Response {
        let mut r = (
            self.http_status(),
            Json(json!({"error": self.oauth_error(), "error_description": self.description()})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        r
    }
}
