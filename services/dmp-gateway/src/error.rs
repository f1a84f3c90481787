//! The outcomes of a DMP call that are not a registry answer (SPEC.md §2 "Responses"), mapped
//! once to `tonic::Status`: [`DmpError`] (request refused, SOAP fault, unreadable answer) and
//! [`TransportError`] (relay and DMP connection outcomes, issue 4), which it wraps.
//!
//! **Decision** — a RegistryResponse with status Failure or PartialSuccess is an *answer*, not
//! a gRPC error: the RPC succeeds and carries the status with every RegistryError (code,
//! context, severity, location), so the caller sees all of them. Everything the gateway refuses
//! before sending is `INVALID_ARGUMENT` naming the field; a SOAP fault keeps its reason.

use std::time::Duration;

use dmp_protocol::cda::CdaError;
use dmp_protocol::xades::XadesError;
use dmp_protocol::xds::FieldError;
use service_kit::error::{ServiceError, ServiceErrorCode};
use tonic::Status;

use crate::grant::AccessError;

/// The `google.rpc.ErrorInfo` domain of the gateway's errors.
pub(crate) const DOMAIN: &str = "dmp-gateway";

/// Why a DMP call did not get the DMP's answer.
#[derive(Debug, thiserror::Error)]
pub enum DmpError {
    /// The request is invalid; nothing was sent.
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    /// The caller has no structure configured (`callers.<identity>`), outside development;
    /// nothing was sent.
    #[error(
        "caller {caller} has no structure configured: set callers.\"{caller}\".structure_id and \
         activity_sector (the VIHF's Identifiant_Structure and Secteur_Activite)"
    )]
    CallerNotConfigured {
        /// The authenticated caller.
        caller: String,
    },
    /// A document's CDA cannot be read; nothing was sent.
    #[error("documents[{index}].content: malformed CDA: {reason}")]
    MalformedCda {
        /// Which document.
        index: usize,
        /// What is wrong with it.
        reason: CdaError,
    },
    /// Metadata given by the caller contradicts the CDA header; nothing was sent.
    #[error("documents[{index}].metadata.{field}: `{given}` contradicts the CDA header, which says `{cda}`")]
    CdaContradiction {
        /// Which document.
        index: usize,
        /// The metadata field.
        field: &'static str,
        /// What the caller gave.
        given: String,
        /// What the header says.
        cda: String,
    },
    /// The DMP answered with a SOAP fault.
    #[error("the DMP answered a SOAP fault ({code}{}): {reason}", subcode.as_deref().map(|s| format!(" / {s}")).unwrap_or_default())]
    SoapFault {
        /// `soap:Sender`, `soap:Receiver`, …
        code: String,
        /// The first subcode (`DMPAccessDenied`, …).
        subcode: Option<String>,
        /// The reason text.
        reason: String,
    },
    /// The DMP answered something that is not the expected message.
    #[error("the DMP's answer cannot be read: {0}")]
    MalformedResponse(String),
    /// The DMP answered an HTTP error without a SOAP fault.
    #[error("the DMP answered HTTP {status}: {excerpt}")]
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// Building the signature document failed (signer unavailable or refused).
    #[error("signing the submission: {0}")]
    Signature(#[from] XadesError),
    /// A submission's connection failed after it may have reached the DMP: not retried.
    #[error(
        "{reason}; the submission may or may not have reached the DMP. Resubmitting the same documents is safe: \
         the registry refuses a uniqueId it already stores (XDSDuplicateUniqueIdInRegistry). Documents: {document_unique_ids}"
    )]
    SubmissionInterrupted {
        /// The transport's error.
        reason: String,
        /// The uniqueIds of the submission's documents, comma-separated.
        document_unique_ids: String,
    },
    /// The relay or the connection to the DMP failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The audit log cannot record the request: nothing was sent (fail closed).
    #[error("{0}; nothing was done unlogged, retry later")]
    Audit(#[from] audit_log::AuditError),
}

impl DmpError {
    /// A request refused on `field`.
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DmpError::InvalidArgument(FieldError::new(field, reason))
    }
}

impl ServiceError for DmpError {
    fn error_code(&self) -> ServiceErrorCode {
        use ServiceErrorCode as C;
        match self {
            DmpError::InvalidArgument(_)
            | DmpError::MalformedCda { .. }
            | DmpError::CdaContradiction { .. } => C::BadRequest,
            // SOAP 1.2 Sender faults (and SOAP 1.1 Client) blame the request: the DMP refused what
            // the professional asked (VIHF, authorization, content). Receiver faults are the
            // DMP's own trouble and may pass.
            DmpError::SoapFault { code, .. } => {
                let local = code.rsplit(':').next().unwrap_or(code);
                match local {
                    "Sender" | "Client" => C::FailedPrecondition,
                    "Receiver" | "Server" => C::Unavailable,
                    _ => C::Internal,
                }
            }
            DmpError::HttpStatus { status, .. } if *status >= 500 => C::Unavailable,
            DmpError::HttpStatus {
                status: 401 | 403, ..
            } => C::PermissionDenied,
            DmpError::HttpStatus { .. } => C::FailedPrecondition,
            DmpError::MalformedResponse(_) => C::Internal,
            DmpError::Signature(_) => C::FailedPrecondition,
            DmpError::CallerNotConfigured { .. } => C::PermissionDenied,
            DmpError::Transport(t) => t.error_code(),
            DmpError::SubmissionInterrupted { .. } | DmpError::Audit(_) => C::Unavailable,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            DmpError::InvalidArgument(_) => "INVALID_FIELD",
            DmpError::MalformedCda { .. } => "MALFORMED_CDA",
            DmpError::CdaContradiction { .. } => "CDA_CONTRADICTION",
            DmpError::SoapFault { .. } => "DMP_SOAP_FAULT",
            DmpError::MalformedResponse(_) => "DMP_MALFORMED_RESPONSE",
            DmpError::HttpStatus { .. } => "DMP_HTTP_ERROR",
            DmpError::Signature(_) => "SIGNATURE_FAILED",
            DmpError::CallerNotConfigured { .. } => "CALLER_NOT_CONFIGURED",
            DmpError::SubmissionInterrupted { .. } => "SUBMISSION_INTERRUPTED",
            DmpError::Transport(t) => t.reason(),
            DmpError::Audit(_) => "AUDIT_UNAVAILABLE",
        }
    }

    fn domain(&self) -> &'static str {
        DOMAIN
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            DmpError::SoapFault { code, subcode, .. } => {
                let mut md = vec![("soapCode", code.clone())];
                if let Some(s) = subcode {
                    md.push(("soapSubcode", s.clone()));
                }
                md
            }
            DmpError::HttpStatus { status, .. } => vec![("httpStatus", status.to_string())],
            DmpError::SubmissionInterrupted {
                document_unique_ids, ..
            } => vec![("documentUniqueIds", document_unique_ids.clone())],
            DmpError::Transport(t) => t.error_metadata(),
            _ => Vec::new(),
        }
    }

    /// Every refusal before sending names its field, as the message does.
    fn field_violations(&self) -> Vec<(String, String)> {
        match self {
            DmpError::InvalidArgument(e) => vec![(e.field.clone(), e.reason.clone())],
            DmpError::MalformedCda { index, reason } => {
                vec![(
                    format!("documents[{index}].content"),
                    format!("malformed CDA: {reason}"),
                )]
            }
            DmpError::CdaContradiction {
                index,
                field,
                given,
                cda,
            } => vec![(
                format!("documents[{index}].metadata.{field}"),
                format!("`{given}` contradicts the CDA header, which says `{cda}`"),
            )],
            DmpError::Transport(t) => t.field_violations(),
            _ => Vec::new(),
        }
    }
}

impl From<DmpError> for Status {
    fn from(e: DmpError) -> Status {
        e.to_status()
    }
}

/// The relay and DMP connection outcomes (issue 4).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The call names a relay the gateway does not know (no SSRF: it dials configured relays only).
    #[error("unknown relay_id `{relay_id}`; the gateway's configured relays are: {known}")]
    UnknownRelay {
        /// The relay asked for.
        relay_id: String,
        /// The configured ones.
        known: String,
    },
    /// The relay cannot be reached.
    #[error("cps-relay `{relay_id}` unreachable: {reason}")]
    RelayUnreachable {
        /// The relay.
        relay_id: String,
        /// Why.
        reason: String,
    },
    /// The relay answered with an error, passed on with its code.
    #[error("cps-relay refused: {message}")]
    RelayRefused {
        /// The relay's gRPC code.
        code: tonic::Code,
        /// The relay's message.
        message: String,
    },
    /// No CertificateVerify signature in time.
    #[error("cps-relay did not sign the TLS handshake within {0:?}")]
    SignatureDeadline(Duration),
    /// The card is another professional's.
    #[error("the card in relay `{relay_id}` belongs to professional {card}, not {expected}")]
    WrongProfessional {
        /// The relay.
        relay_id: String,
        /// The professional the call names.
        expected: String,
        /// The card's professional.
        card: String,
    },
    /// The DMP's server certificate does not verify.
    #[error("the DMP's server certificate was rejected: {0}")]
    DmpCertificateInvalid(String),
    /// The DMP refused the card in the handshake.
    #[error("the DMP refused the professional's card certificate (TLS alert {0})")]
    CardRefusedByDmp(String),
    /// Another TLS failure.
    #[error("TLS failure with the DMP: {0}")]
    Tls(String),
    /// No TCP connection to the DMP.
    #[error("cannot reach the DMP at {address}: {reason}")]
    DmpUnreachable {
        /// host:port.
        address: String,
        /// Why.
        reason: String,
    },
    /// The connection broke after the request may have been sent.
    #[error("the connection to the DMP was lost: {0}")]
    ConnectionLost(String),
    /// No answer in time.
    #[error("the DMP did not answer within {0:?}")]
    DmpTimeout(Duration),
    /// `dmp.max_response_bytes` exceeded.
    #[error("the DMP's answer is larger than the configured limit of {0} bytes")]
    ResponseTooLarge(usize),
    /// The HTTP request could not be made.
    #[error("invalid request to the DMP: {0}")]
    Request(String),
    /// The caller may not act for the professional (session grant, card session).
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl TransportError {
    /// The gRPC code the caller gets (its [`ServiceErrorCode`]'s).
    pub fn code(&self) -> tonic::Code {
        self.error_code().grpc_code()
    }

    /// Whether the request surely never reached the DMP (so even a submission may be retried).
    pub(crate) fn before_sending(&self) -> bool {
        !matches!(
            self,
            TransportError::ConnectionLost(_)
                | TransportError::DmpTimeout(_)
                | TransportError::ResponseTooLarge(_)
        )
    }
}

impl ServiceError for TransportError {
    fn error_code(&self) -> ServiceErrorCode {
        use ServiceErrorCode as C;
        match self {
            TransportError::UnknownRelay { .. } | TransportError::Request(_) => C::BadRequest,
            // The relay's own outcome, passed on as it is.
            TransportError::RelayRefused { code, .. } => C::from_peer_grpc_code(*code),
            TransportError::SignatureDeadline(_) | TransportError::DmpTimeout(_) => C::Timeout,
            TransportError::WrongProfessional { .. } | TransportError::CardRefusedByDmp(_) => {
                C::PermissionDenied
            }
            TransportError::ResponseTooLarge(_) => C::RateLimited,
            TransportError::Access(a) => a.error_code(),
            TransportError::RelayUnreachable { .. }
            | TransportError::DmpCertificateInvalid(_)
            | TransportError::Tls(_)
            | TransportError::DmpUnreachable { .. }
            | TransportError::ConnectionLost(_) => C::Unavailable,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            TransportError::UnknownRelay { .. } => "UNKNOWN_RELAY",
            TransportError::RelayUnreachable { .. } => "RELAY_UNREACHABLE",
            TransportError::RelayRefused { .. } => "RELAY_REFUSED",
            TransportError::SignatureDeadline(_) => "SIGNATURE_DEADLINE",
            TransportError::WrongProfessional { .. } => "WRONG_PROFESSIONAL",
            TransportError::DmpCertificateInvalid(_) => "DMP_CERTIFICATE_INVALID",
            TransportError::CardRefusedByDmp(_) => "CARD_REFUSED_BY_DMP",
            TransportError::Tls(_) => "DMP_TLS_FAILURE",
            TransportError::DmpUnreachable { .. } => "DMP_UNREACHABLE",
            TransportError::ConnectionLost(_) => "DMP_CONNECTION_LOST",
            TransportError::DmpTimeout(_) => "DMP_TIMEOUT",
            TransportError::ResponseTooLarge(_) => "DMP_RESPONSE_TOO_LARGE",
            TransportError::Request(_) => "DMP_REQUEST_INVALID",
            TransportError::Access(a) => a.reason(),
        }
    }

    fn domain(&self) -> &'static str {
        DOMAIN
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            TransportError::UnknownRelay { relay_id, .. }
            | TransportError::RelayUnreachable { relay_id, .. }
            | TransportError::WrongProfessional { relay_id, .. } => vec![("relayId", relay_id.clone())],
            // The relay's own gRPC code, by its canonical name (e.g. `FAILED_PRECONDITION`).
            TransportError::RelayRefused { code, .. } => vec![("relayCode", code_name(*code).to_owned())],
            TransportError::Access(a) => a.error_metadata(),
            _ => Vec::new(),
        }
    }

    fn field_violations(&self) -> Vec<(String, String)> {
        match self {
            TransportError::UnknownRelay { known, .. } => vec![(
                "auth_context.relay_id".to_owned(),
                format!("not a relay of the gateway's configuration ({known})"),
            )],
            _ => Vec::new(),
        }
    }
}

/// A gRPC code's canonical name, as `google.rpc.Code` spells it.
fn code_name(code: tonic::Code) -> &'static str {
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

impl From<TransportError> for tonic::Status {
    fn from(e: TransportError) -> Self {
        e.to_status()
    }
}
