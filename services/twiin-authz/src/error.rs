//! The outcomes of both use cases (SPEC.md §3.1 and §3.2), mapped once to gRPC status and to the
//! OAuth 2.0 error response (RFC 6749 §5.2) of the token endpoint.
//!
//! The `error_description`s are the seed's Dutch outcome texts. **Decision** — where a step has
//! one fixed text in the seed (steps 6 and 7, 3.1 step 5) it is used verbatim; other steps use
//! the seed's outcome name followed by the specific reason, e.g. "Ongeldige client: aud is niet
//! deze autorisatieserver", so the caller knows what to fix.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    /// A dependency (Stelseltoken, ZORG-AB, AS ZA, audit log) cannot be used: 503 / UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency did not answer in time: 504 / DEADLINE_EXCEEDED.
    #[error("{0}")]
    Timeout(String),
    /// A fault of this service (a key that cannot sign): 500 / INTERNAL.
    #[error("{0}")]
    Internal(String),
}

impl From<platform::audit::AuditError> for AuthzError {
    /// The caller learns that nothing was issued, not why the database failed (that is logged).
    fn from(_: platform::audit::AuditError) -> Self {
        AuthzError::Unavailable(
            "auditlog niet beschikbaar; er is niets uitgegeven, probeer het later opnieuw".into(),
        )
    }
}

/// The canonical name of a gRPC status code (as in the gRPC specification), for the audit log.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl AuthzError {
    /// The HTTP status of the outcome (the seed's).
    pub fn http_status(&self) -> StatusCode {
        match self {
            AuthzError::BadRequest(_)
            | AuthzError::InvalidRequest(_)
            | AuthzError::InvalidClient(_)
            | AuthzError::InvalidGrant(_) => StatusCode::BAD_REQUEST,
            AuthzError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthzError::AccessDenied(_) => StatusCode::FORBIDDEN,
            AuthzError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            AuthzError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthzError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AuthzError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OAuth `error` code.
    pub fn oauth_error(&self) -> &str {
        match self {
            AuthzError::BadRequest(_) | AuthzError::InvalidRequest(_) => "invalid_request",
            AuthzError::InvalidToken(_) => "invalid_token",
            AuthzError::InvalidClient(_) => "invalid_client",
            AuthzError::InvalidGrant(_) => "invalid_grant",
            AuthzError::AccessDenied(_) => "access_denied",
            AuthzError::Upstream { error, .. } => error,
            AuthzError::Unavailable(_) | AuthzError::Timeout(_) => "temporarily_unavailable",
            AuthzError::Internal(_) => "server_error",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> String {
        match self {
            AuthzError::Upstream { description, .. } => description.clone(),
            other => other.to_string(),
        }
    }

    /// The gRPC code of the outcome.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            AuthzError::BadRequest(_) | AuthzError::InvalidRequest(_) | AuthzError::InvalidGrant(_) => {
                tonic::Code::InvalidArgument
            }
            AuthzError::InvalidToken(_) | AuthzError::InvalidClient(_) => tonic::Code::Unauthenticated,
            AuthzError::AccessDenied(_) => tonic::Code::PermissionDenied,
            AuthzError::Upstream { status, .. } => match status {
                400 => tonic::Code::InvalidArgument,
                401 => tonic::Code::Unauthenticated,
                403 => tonic::Code::PermissionDenied,
                429 => tonic::Code::ResourceExhausted,
                504 => tonic::Code::DeadlineExceeded,
                500..=599 => tonic::Code::Unavailable,
                _ => tonic::Code::Unknown,
            },
            AuthzError::Unavailable(_) => tonic::Code::Unavailable,
            AuthzError::Timeout(_) => tonic::Code::DeadlineExceeded,
            AuthzError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<AuthzError> for tonic::Status {
    fn from(e: AuthzError) -> Self {
        let mut status = tonic::Status::new(e.grpc_code(), e.description());
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
        r
    }
}
