//! The outcomes of a DMP call that are not a registry answer (SPEC.md §2 "Responses"), mapped
//! once to `tonic::Status`: [`DmpError`] (request refused, SOAP fault, unreadable answer) and
//! [`TransportError`] (relay and DMP connection outcomes, issue 4), which it wraps.
//!
//! **Decision** — a RegistryResponse with status Failure or PartialSuccess is an *answer*, not
//! a gRPC error: the RPC succeeds and carries the status with every RegistryError (code,
//! context, severity, location), so the caller sees all of them. Everything the gateway refuses
//! before sending is `INVALID_ARGUMENT` naming the field; a SOAP fault keeps its reason.

use std::time::Duration;

use tonic::{Code, Status};

use crate::xds::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum DmpError {
    /// The request is invalid; nothing was sent.
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    /// A document's CDA cannot be read; nothing was sent.
    #[error("documents[{index}].content: malformed CDA: {reason}")]
    MalformedCda { index: usize, reason: String },
    /// Metadata given by the caller contradicts the CDA header; nothing was sent.
    #[error("documents[{index}].metadata.{field}: `{given}` contradicts the CDA header, which says `{cda}`")]
    CdaContradiction {
        index: usize,
        field: &'static str,
        given: String,
        cda: String,
    },
    /// The DMP answered with a SOAP fault.
    #[error("the DMP answered a SOAP fault ({code}{}): {reason}", subcode.as_deref().map(|s| format!(" / {s}")).unwrap_or_default())]
    SoapFault {
        code: String,
        subcode: Option<String>,
        reason: String,
    },
    /// The DMP answered something that is not the expected message.
    #[error("the DMP's answer cannot be read: {0}")]
    MalformedResponse(String),
    /// The DMP answered an HTTP error without a SOAP fault.
    #[error("the DMP answered HTTP {status}: {excerpt}")]
    HttpStatus { status: u16, excerpt: String },
    /// Building the signature document failed (signer unavailable or refused).
    #[error("signing the submission: {0}")]
    Signature(String),
    /// A submission's connection failed after it may have reached the DMP: not retried.
    #[error(
        "{reason}; the submission may or may not have reached the DMP. Resubmitting the same documents is safe: \
         the registry refuses a uniqueId it already stores (XDSDuplicateUniqueIdInRegistry). Documents: {document_unique_ids}"
    )]
    SubmissionInterrupted {
        reason: String,
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
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DmpError::InvalidArgument(FieldError::new(field, reason))
    }
}

impl From<DmpError> for Status {
    fn from(e: DmpError) -> Status {
        let code = match &e {
            DmpError::InvalidArgument(_)
            | DmpError::MalformedCda { .. }
            | DmpError::CdaContradiction { .. } => Code::InvalidArgument,
            // SOAP 1.2 Sender faults (and SOAP 1.1 Client) blame the request: the DMP refused what
            // the professional asked (VIHF, authorization, content). Receiver faults are the
            // DMP's own trouble and may pass.
            DmpError::SoapFault { code, .. } => {
                let local = code.rsplit(':').next().unwrap_or(code);
                match local {
                    "Sender" | "Client" => Code::FailedPrecondition,
                    "Receiver" | "Server" => Code::Unavailable,
                    _ => Code::Internal,
                }
            }
            DmpError::HttpStatus { status, .. } if *status >= 500 => Code::Unavailable,
            DmpError::HttpStatus {
                status: 401 | 403, ..
            } => Code::PermissionDenied,
            DmpError::HttpStatus { .. } => Code::FailedPrecondition,
            DmpError::MalformedResponse(_) => Code::Internal,
            DmpError::Signature(_) => Code::FailedPrecondition,
            DmpError::Transport(t) => t.code(),
            DmpError::SubmissionInterrupted { .. } | DmpError::Audit(_) => Code::Unavailable,
        };
        Status::new(code, e.to_string())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("unknown relay_id `{relay_id}`; the gateway's configured relays are: {known}")]
    UnknownRelay { relay_id: String, known: String },
    #[error("cps-relay `{relay_id}` unreachable: {reason}")]
    RelayUnreachable { relay_id: String, reason: String },
    #[error("cps-relay refused: {message}")]
    RelayRefused { code: tonic::Code, message: String },
    #[error("cps-relay did not sign the TLS handshake within {0:?}")]
    SignatureDeadline(Duration),
    #[error("the card in relay `{relay_id}` belongs to professional {card}, not {expected}")]
    WrongProfessional {
        relay_id: String,
        expected: String,
        card: String,
    },
    #[error("the DMP's server certificate was rejected: {0}")]
    DmpCertificateInvalid(String),
    #[error("the DMP refused the professional's card certificate (TLS alert {0})")]
    CardRefusedByDmp(String),
    #[error("TLS failure with the DMP: {0}")]
    Tls(String),
    #[error("cannot reach the DMP at {address}: {reason}")]
    DmpUnreachable { address: String, reason: String },
    #[error("the connection to the DMP was lost: {0}")]
    ConnectionLost(String),
    #[error("the DMP did not answer within {0:?}")]
    DmpTimeout(Duration),
    #[error("the DMP's answer is larger than the configured limit of {0} bytes")]
    ResponseTooLarge(usize),
    #[error("invalid request to the DMP: {0}")]
    Request(String),
}

impl TransportError {
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            TransportError::UnknownRelay { .. } | TransportError::Request(_) => Code::InvalidArgument,
            TransportError::RelayRefused { code, .. } => *code,
            TransportError::SignatureDeadline(_) | TransportError::DmpTimeout(_) => Code::DeadlineExceeded,
            TransportError::WrongProfessional { .. } | TransportError::CardRefusedByDmp(_) => {
                Code::PermissionDenied
            }
            TransportError::ResponseTooLarge(_) => Code::ResourceExhausted,
            TransportError::RelayUnreachable { .. }
            | TransportError::DmpCertificateInvalid(_)
            | TransportError::Tls(_)
            | TransportError::DmpUnreachable { .. }
            | TransportError::ConnectionLost(_) => Code::Unavailable,
        }
    }

    /// Whether the request surely never reached the DMP (so even a submission may be retried).
    pub fn before_sending(&self) -> bool {
        !matches!(
            self,
            TransportError::ConnectionLost(_)
                | TransportError::DmpTimeout(_)
                | TransportError::ResponseTooLarge(_)
        )
    }
}

impl From<TransportError> for tonic::Status {
    fn from(e: TransportError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
