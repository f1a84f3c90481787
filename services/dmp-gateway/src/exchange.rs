//! What the five DMP transactions share (SPEC.md §2): the [`Transaction`] shape — *validate*
//! the gRPC request (nothing needs the card), *build* the message once the card's professional
//! is known, *parse* the answer — the built [`Message`] and the envelope each attempt wraps it
//! in, and the reading of answers (MTOM or plain SOAP, SOAP faults, WS-Addressing
//! `RelatesTo`, registry status).
//!
//! The transport (mutual TLS with the card, connection pool) posts an [`Outgoing`] to the URL
//! of its web service and hands the answer back as an [`Incoming`].

use bytes::Bytes;
use dmp_protocol::ebrim::{self, ResponseStatus};
use dmp_protocol::mtom::{self, Attachment, HttpBody, Multipart};
use dmp_protocol::soap::{self, Addressing, Envelope};
use dmp_protocol::transactions::WebService;
use dmp_protocol::vihf::{self, LpsIdentity, ProfessionalIdentity, VihfContext, VihfInput};
use dmp_protocol::xades;
use dmp_protocol::xds::Ins;
use dmp_protocol::xds::UniqueId;
use dmp_protocol::xml::Element;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::{DmpError, TransportError};

/// What every `dmp.v1` request carries: who calls, for which patient.
pub trait DmpRequest {
    /// The authentication context (relay, professional, VIHF attributes).
    fn auth_context(&self) -> Option<&pb::AuthenticationContext>;
    /// The same, to complete it (the caller's configured structure).
    fn auth_context_mut(&mut self) -> Option<&mut pb::AuthenticationContext>;
    /// The patient the request is about.
    fn patient(&self) -> Option<&pb::PatientId>;
}

macro_rules! dmp_requests {
    ($($request:ty),*) => {$(
        impl DmpRequest for $request {
            fn auth_context(&self) -> Option<&pb::AuthenticationContext> {
                self.auth_context.as_ref()
            }
            fn auth_context_mut(&mut self) -> Option<&mut pb::AuthenticationContext> {
                self.auth_context.as_mut()
            }
            fn patient(&self) -> Option<&pb::PatientId> {
                self.patient.as_ref()
            }
        }
    )*};
}

dmp_requests!(
    pb::SubmitDocumentsRequest,
    pb::FindDocumentsRequest,
    pb::RetrieveDocumentRequest,
    pb::TestPatientDmpRequest,
    pb::UpdateDocumentStatusRequest,
    pb::SetAuthorizationRequest,
    pb::ListAuthorizationsRequest,
    pb::GetDocumentsRequest,
    pb::GetAssociationsRequest,
    pb::ListPatientsRequest,
    pb::SetDocumentVisibilityRequest
);

/// One DMP transaction: a gRPC request in, a gRPC response out, one message exchanged with the
/// DMP in between.
pub trait Transaction {
    /// The gRPC request.
    type Request: DmpRequest + Send + 'static;
    /// The request once every check that needs neither the card nor the DMP has passed.
    type Valid: std::fmt::Debug + Send + Sync + 'static;
    /// The gRPC response.
    type Response: Send + 'static;

    /// The audit log's name of the use case.
    const USE_CASE: &'static str;
    /// The DMP web service the message goes to.
    const WEB_SERVICE: WebService;
    /// The WS-Addressing action of the message.
    const ACTION: &'static str;
    /// When a failed post may be sent again.
    const RETRY: Retry;

    /// What the audit log records of the request, besides who and which patient.
    fn audit_request(req: &Self::Request) -> serde_json::Value;
    /// What the audit log records of the response: the DMP's verdict (registry status and
    /// error codes, or the authorization) and details.
    fn audit_response(resp: &Self::Response) -> (Option<String>, serde_json::Value);

    /// Checks the request; nothing is sent when this fails (`INVALID_ARGUMENT` naming the field).
    fn validate(
        req: Self::Request,
        settings: &XdsSettings,
        now: time::OffsetDateTime,
    ) -> Result<Self::Valid, DmpError>;
    /// Builds the message for the card's professional.
    fn build(valid: &Self::Valid, ctx: &CallContext<'_>) -> Result<Message, DmpError>;
    /// The documents a XAdES signature document covers (unique id, content), for a
    /// transaction that carries one (TD2.1): the gateway has the card sign it before
    /// [`Transaction::build`].
    fn signed_documents(_valid: &Self::Valid) -> Option<Vec<(&UniqueId, &Bytes)>> {
        None
    }
    /// Reads the DMP's answer.
    fn parse(valid: &Self::Valid, reply: &Reply) -> Result<Self::Response, DmpError>;

    /// The entries (entryUUIDs) the DMP is asked for with ITI-18 GetDocuments before the
    /// message is built, when the request must agree with what the DMP holds.
    fn precheck(_valid: &Self::Valid) -> Option<Vec<String>> {
        None
    }

    /// Checks the request against the DMP's answer to [`Transaction::precheck`]; nothing is
    /// sent when this fails.
    /// What the answer says may complete the request (SetDocumentVisibility writes the entry
    /// back with its metadata).
    fn check(_valid: &mut Self::Valid, _found: &pb::GetDocumentsResponse) -> Result<(), DmpError> {
        Ok(())
    }

    /// The entries (entryUUIDs) whose associations the DMP is asked for with ITI-18
    /// GetAssociations once the answer is parsed, when the answer is completed from them.
    fn follow_up(_response: &Self::Response) -> Option<Vec<String>> {
        None
    }

    /// Completes the answer from the DMP's answer to [`Transaction::follow_up`].
    fn complete(_response: &mut Self::Response, _associations: pb::GetAssociationsResponse) {}

    /// The error of a post that failed after it may have reached the DMP.
    fn interrupted(_valid: &Self::Valid, error: TransportError) -> DmpError {
        DmpError::Transport(error)
    }
}

/// **Decision — retries (SPEC.md §2).**
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Sent once more, in a new envelope (new MessageID), when the connection was lost or the
    /// request never left: FindDocuments, RetrieveDocument, TestPatientDmp.
    Idempotent,
    /// Sent once more, the same message, only when it surely never reached the DMP: a
    /// submission or a status change is never blindly repeated.
    OnlyIfNeverSent,
}

impl Retry {
    pub(crate) fn allows(self, e: &TransportError) -> bool {
        match self {
            Retry::Idempotent => matches!(e, TransportError::ConnectionLost(_)) || e.before_sending(),
            Retry::OnlyIfNeverSent => e.before_sending(),
        }
    }
}

/// What building a message needs besides the validated request.
pub struct CallContext<'a> {
    /// The professional on the card (from the certificate the TLS handshake used).
    pub professional: &'a ProfessionalIdentity,
    /// The software identity the VIHF names.
    pub lps: &'a LpsIdentity,
    /// The `xds` configuration section.
    pub settings: &'a XdsSettings,
    /// The submission's XAdES signature document, made by the professional's card (signature
    /// key, through the relay's SignXadesSignedInfo) before the message is built.
    pub signature_document: Option<&'a str>,
    /// Or, offline (tests and tools), a local key that signs it while the message is built.
    pub signer: Option<&'a dyn xades::Signer>,
    /// The URL of the web service (WS-Addressing `To`).
    pub endpoint: &'a str,
    /// The time written into the message.
    pub now: time::OffsetDateTime,
}

impl CallContext<'_> {
    /// The VIHF assertion of the call: the card's professional must be the one the call names.
    pub(crate) fn vihf(&self, context: &VihfContext, patient: &Ins) -> Result<String, DmpError> {
        Ok(vihf::build(&VihfInput {
            professional: self.professional,
            context,
            patient,
            lps: self.lps,
            issue_instant: self.now,
        })?)
    }
}

/// A built message: the VIHF, the SOAP Body's content and, for MTOM, its attachments. Built
/// once per call; each attempt wraps it in its own envelope.
#[derive(Debug, Clone)]
pub struct Message {
    vihf: String,
    body: String,
    /// `Some` for an MTOM message (even without attachment, as ITI-43 requests).
    attachments: Option<Vec<Attachment>>,
}

impl Message {
    /// A plain SOAP 1.2 message.
    pub(crate) fn soap(vihf: String, body: String) -> Message {
        Message {
            vihf,
            body,
            attachments: None,
        }
    }

    /// An MTOM message.
    pub(crate) fn mtom(vihf: String, body: String, attachments: Vec<Attachment>) -> Message {
        Message {
            vihf,
            body,
            attachments: Some(attachments),
        }
    }

    /// The message in a SOAP 1.2 envelope with fresh WS-Addressing headers.
    pub(crate) fn outgoing(&self, web_service: WebService, action: &str, to: &str) -> Outgoing {
        let addressing = Addressing::new(to, action);
        let envelope = soap::request_envelope(&addressing, &self.vihf, &self.body);
        let body = match &self.attachments {
            Some(attachments) => mtom::write(envelope, action, attachments.clone()),
            None => HttpBody::soap(envelope, action),
        };
        Outgoing {
            web_service,
            addressing,
            body,
        }
    }
}

/// A message to post.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub web_service: WebService,
    /// Its WS-Addressing headers (the answer must relate to `message_id`).
    pub addressing: Addressing,
    /// The HTTP body and its Content-Type.
    pub body: HttpBody,
}

/// The DMP's answer.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// HTTP status.
    pub status: u16,
    /// HTTP Content-Type.
    pub content_type: String,
    /// HTTP body.
    pub body: Bytes,
}

/// An answer opened: its envelope, and the MTOM parts when it came as MTOM.
#[derive(Debug, Clone)]
pub struct Reply {
    envelope: Envelope,
    multipart: Option<Multipart>,
}

impl Reply {
    /// The Body's payload, which must be `name` in namespace `ns_`.
    pub(crate) fn payload(&self, ns_: &str, name: &str) -> Result<&Element, DmpError> {
        match &self.envelope.payload {
            Some(p) if p.is(ns_, name) => Ok(p),
            Some(p) => Err(DmpError::MalformedResponse(format!(
                "expected <{name}>, got <{}>",
                p.name
            ))),
            None => Err(DmpError::MalformedResponse("the SOAP Body is empty".into())),
        }
    }

    /// The MTOM parts, if the answer came as MTOM.
    pub(crate) fn multipart(&self) -> Option<&Multipart> {
        self.multipart.as_ref()
    }
}

/// Opens the DMP's answer: MTOM or plain SOAP, SOAP faults turned into errors, WS-Addressing
/// `RelatesTo` checked against the request.
pub(crate) fn open_response(incoming: &Incoming, request: &Addressing) -> Result<Reply, DmpError> {
    let (mime, _) = mtom::parse_content_type(&incoming.content_type);
    let (xml, multipart) = if mime == "multipart/related" {
        let mp = mtom::parse(&incoming.content_type, &incoming.body)
            .map_err(|e| DmpError::MalformedResponse(e.to_string()))?;
        (mp.root.body.clone(), Some(mp))
    } else {
        (incoming.body.clone(), None)
    };
    let envelope = match soap::parse_envelope(&xml) {
        Ok(e) => e,
        // An HTTP error page: its status says more than the parser.
        Err(_) if !(200..300).contains(&incoming.status) => {
            let excerpt: String =
                String::from_utf8_lossy(&incoming.body[..incoming.body.len().min(300)]).into();
            return Err(DmpError::HttpStatus {
                status: incoming.status,
                excerpt,
            });
        }
        Err(e) => return Err(DmpError::MalformedResponse(e.to_string())),
    };
    if let Some(f) = envelope.fault() {
        return Err(DmpError::SoapFault {
            code: f.code,
            subcode: f.subcode,
            reason: f.reason,
        });
    }
    if !(200..300).contains(&incoming.status) {
        return Err(DmpError::HttpStatus {
            status: incoming.status,
            excerpt: "a SOAP answer with an HTTP error status".into(),
        });
    }
    if let Some(r) = envelope.relates_to()
        && r != request.message_id
    {
        return Err(DmpError::MalformedResponse(format!(
            "the answer relates to message {r}, not to the request {}",
            request.message_id
        )));
    }
    Ok(Reply { envelope, multipart })
}

/// The status and errors of a `rs:RegistryResponse` (or of a response extending it).
pub(crate) fn registry_status(
    e: &Element,
) -> Result<(pb::RegistryResponseStatus, Vec<pb::RegistryError>), DmpError> {
    let urn = e
        .attr("status")
        .ok_or_else(|| DmpError::MalformedResponse(format!("<{}> has no status", e.name)))?;
    let status = ResponseStatus::from_urn(urn)
        .ok_or_else(|| DmpError::MalformedResponse(format!("unknown registry status `{urn}`")))?;
    Ok((
        conversions::response_status(status),
        conversions::registry_errors(ebrim::read_errors(e)),
    ))
}

/// A registry status and its error codes, as the audit log records them
/// (`REGISTRY_RESPONSE_STATUS_FAILURE XDSDuplicateUniqueIdInRegistry`).
pub(crate) fn registry_verdict(status: i32, errors: &[pb::RegistryError]) -> Option<String> {
    let name = pb::RegistryResponseStatus::try_from(status)
        .map(|s| s.as_str_name().to_owned())
        .ok()?;
    let codes: Vec<&str> = errors.iter().map(|e| e.error_code.as_str()).collect();
    Some(if codes.is_empty() {
        name
    } else {
        format!("{name} {}", codes.join(","))
    })
}

/// A request validated and built, without transport: what would be posted, and how its answer
/// is read.
pub struct Prepared<X: Transaction> {
    /// The validated request.
    pub valid: X::Valid,
    /// The message in its first envelope.
    pub outgoing: Outgoing,
}

/// Validates and builds a request for the professional of `ctx` (who must be the one the
/// request names), as the RPCs do once the card is known.
pub fn prepare<X: Transaction>(req: X::Request, ctx: &CallContext<'_>) -> Result<Prepared<X>, DmpError> {
    if let Some(a) = req.auth_context()
        && a.professional_id != ctx.professional.id
    {
        return Err(DmpError::field(
            "auth_context.professional_id",
            format!(
                "`{}` is not the professional of the card, whose certificate says `{}`",
                a.professional_id, ctx.professional.id
            ),
        ));
    }
    let valid = X::validate(req, ctx.settings, ctx.now)?;
    let outgoing = X::build(&valid, ctx)?.outgoing(X::WEB_SERVICE, X::ACTION, ctx.endpoint);
    Ok(Prepared { valid, outgoing })
}

impl<X: Transaction> std::fmt::Debug for Prepared<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("valid", &self.valid)
            .field("outgoing", &self.outgoing)
            .finish()
    }
}

impl<X: Transaction> Prepared<X> {
    /// Reads the answer to [`Prepared::outgoing`].
    pub fn parse(&self, incoming: &Incoming) -> Result<X::Response, DmpError> {
        X::parse(&self.valid, &open_response(incoming, &self.outgoing.addressing)?)
    }
}
