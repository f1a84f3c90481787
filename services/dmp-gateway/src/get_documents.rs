//! GetDocuments: the ITI-18 RegistryStoredQuery GetDocuments, entries by entryUUID or by
//! uniqueId (never both, as ITI-18 requires). UpdateDocumentStatus asks it first, to check its
//! target against what the DMP holds.

use dmp_protocol::ebrim;
use dmp_protocol::transactions::{GET_DOCUMENTS, WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{self, Ins, RegistryEntry, UniqueId};
use dmp_protocol::xml::ns;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// GetDocuments.
#[derive(Debug, Clone, Copy)]
pub struct GetDocuments;

/// A GetDocuments request, checked.
#[derive(Debug, Clone)]
pub struct DocumentsQuery {
    patient: Ins,
    vihf: VihfContext,
    slot: (String, String),
}

impl Transaction for GetDocuments {
    type Request = pb::GetDocumentsRequest;
    type Valid = DocumentsQuery;
    type Response = pb::GetDocumentsResponse;

    const USE_CASE: &'static str = "td3.1_get_documents";
    const WEB_SERVICE: WebService = WebService::Registry;
    const ACTION: &'static str = action::ITI18;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({
            "transaction": "TD3.1 GetDocuments",
            "entry_uuids": req.entry_uuids,
            "unique_ids": req.unique_ids,
        })
    }

    fn audit_response(r: &pb::GetDocumentsResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "documents_found": r.documents.len() }),
        )
    }

    fn validate(
        req: pb::GetDocumentsRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<DocumentsQuery, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        let slot = match (req.entry_uuids.is_empty(), req.unique_ids.is_empty()) {
            (false, true) => {
                for (i, id) in req.entry_uuids.iter().enumerate() {
                    xds::check_entry_id(&format!("entry_uuids[{i}]"), id)?;
                }
                (
                    "$XDSDocumentEntryEntryUUID".to_string(),
                    ebrim::query_list(&req.entry_uuids),
                )
            }
            (true, false) => {
                for (i, id) in req.unique_ids.iter().enumerate() {
                    UniqueId::parse(&format!("unique_ids[{i}]"), id)?;
                }
                (
                    "$XDSDocumentEntryUniqueId".to_string(),
                    ebrim::query_list(&req.unique_ids),
                )
            }
            _ => {
                return Err(DmpError::field(
                    "entry_uuids",
                    "give entry_uuids or unique_ids, not both and not neither (ITI-18 GetDocuments)",
                ));
            }
        };
        Ok(DocumentsQuery { patient, vihf, slot })
    }

    fn build(q: &DocumentsQuery, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&q.vihf, &q.patient)?;
        Ok(Message::soap(
            assertion,
            ebrim::adhoc_query(GET_DOCUMENTS, std::slice::from_ref(&q.slot)),
        ))
    }

    fn parse(_: &DocumentsQuery, reply: &Reply) -> Result<pb::GetDocumentsResponse, DmpError> {
        let r = reply.payload(ns::QUERY, "AdhocQueryResponse")?;
        let (status, errors) = registry_status(r)?;
        let documents = r
            .child(ns::RIM, "RegistryObjectList")
            .map(|l| {
                ebrim::read_object_list(l)
                    .extrinsic_objects
                    .iter()
                    .map(|e| conversions::document_entry(&RegistryEntry::from_rim(e)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(pb::GetDocumentsResponse {
            status: status as i32,
            errors,
            documents,
        })
    }
}
