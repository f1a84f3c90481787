//! TD3.2 RetrieveDocument: ITI-43 RetrieveDocumentSet over MTOM (SPEC.md §2). The document
//! comes back as a binary part and reaches the caller without a copy.

use dmp_protocol::mtom;
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{Ins, Oid, UniqueId};
use dmp_protocol::xml::{Element, esc, ns};
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// TD3.2.
#[derive(Debug, Clone, Copy)]
pub struct Retrieve;

/// A RetrieveDocument request, checked.
#[derive(Debug, Clone)]
pub struct DocumentRequest {
    patient: Ins,
    vihf: VihfContext,
    /// The caller's, or `xds.repository_unique_id`.
    repository: String,
    document: UniqueId,
}

impl Transaction for Retrieve {
    type Request = pb::RetrieveDocumentRequest;
    type Valid = DocumentRequest;
    type Response = pb::RetrieveDocumentResponse;

    const USE_CASE: &'static str = "td3.2_retrieve_document";
    const WEB_SERVICE: WebService = WebService::Repository;
    const ACTION: &'static str = action::ITI43;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD3.2", "document_unique_id": req.document_unique_id })
    }

    fn audit_response(r: &pb::RetrieveDocumentResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "document_unique_id": r.document_unique_id, "size": r.content.len() }),
        )
    }

    fn validate(
        req: pb::RetrieveDocumentRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<DocumentRequest, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        let repository = if req.repository_unique_id.is_empty() {
            settings.repository_unique_id.clone()
        } else {
            Oid::parse("repository_unique_id", &req.repository_unique_id)?.to_string()
        };
        if req.document_unique_id.is_empty() {
            return Err(DmpError::field("document_unique_id", "required"));
        }
        let document = UniqueId::parse("document_unique_id", &req.document_unique_id)?;
        Ok(DocumentRequest {
            patient,
            vihf,
            repository,
            document,
        })
    }

    fn build(r: &DocumentRequest, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&r.vihf, &r.patient)?;
        let body = format!(
            r#"<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{}"><xdsb:DocumentRequest><xdsb:RepositoryUniqueId>{}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>{}</xdsb:DocumentUniqueId></xdsb:DocumentRequest></xdsb:RetrieveDocumentSetRequest>"#,
            ns::XDSB,
            esc(&r.repository),
            esc(r.document.as_str())
        );
        // ITI-43 requests travel as MTOM too, without attachment.
        Ok(Message::mtom(assertion, body, Vec::new()))
    }

    /// The requested document among the answer's, its content resolved in the MTOM parts.
    fn parse(r: &DocumentRequest, reply: &Reply) -> Result<pb::RetrieveDocumentResponse, DmpError> {
        let document_unique_id = r.document.as_str();
        let set = reply.payload(ns::XDSB, "RetrieveDocumentSetResponse")?;
        let rr = set.child(ns::RS, "RegistryResponse").ok_or_else(|| {
            DmpError::MalformedResponse("RetrieveDocumentSetResponse has no RegistryResponse".into())
        })?;
        let (status, errors) = registry_status(rr)?;
        let mut out = pb::RetrieveDocumentResponse {
            status: status as i32,
            errors,
            ..Default::default()
        };
        let text = |d: &Element, n: &str| {
            d.child(ns::XDSB, n)
                .map(|e| e.text.trim().to_string())
                .unwrap_or_default()
        };
        for d in set.children_named(ns::XDSB, "DocumentResponse") {
            if text(d, "DocumentUniqueId") != document_unique_id {
                continue;
            }
            let doc = d
                .child(ns::XDSB, "Document")
                .ok_or_else(|| DmpError::MalformedResponse("DocumentResponse has no Document".into()))?;
            out.content = mtom::xop_content(doc, reply.multipart())
                .map_err(|e| DmpError::MalformedResponse(e.to_string()))?;
            out.document_unique_id = text(d, "DocumentUniqueId");
            out.repository_unique_id = text(d, "RepositoryUniqueId");
            out.mime_type = text(d, "mimeType");
        }
        if out.document_unique_id.is_empty() && status == pb::RegistryResponseStatus::Success {
            return Err(DmpError::MalformedResponse(format!(
                "the DMP answered Success without the document {document_unique_id}"
            )));
        }
        Ok(out)
    }
}
