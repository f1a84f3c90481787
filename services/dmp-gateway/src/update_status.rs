//! TD3.3c/d UpdateDocumentStatus: delete, archive or unarchive a document with ITI-57
//! UpdateDocumentSet (SPEC.md §2): a submission set authored by the card's professional and an
//! `UpdateAvailabilityStatus` association carrying the original and the new status.
//!
//! The target is first looked up (ITI-18 GetDocuments): the entryUUID must be the document the
//! caller names, in the status the caller believes, or nothing is sent.
//!
//! Like a submission, a status change is resent only when it surely never reached the DMP.

use dmp_protocol::ebrim::{self, Association, ObjectList, Slot};
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{self, Author, AvailabilityStatus, Code, Dtm, Ins, Oid, SubmissionSet, UniqueId};
use dmp_protocol::xml::ns;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// TD3.3c/d.
#[derive(Debug, Clone, Copy)]
pub struct UpdateStatus;

/// An UpdateDocumentStatus request, checked: an allowed change of one entry's status.
#[derive(Debug, Clone)]
pub struct StatusChange {
    patient: Ins,
    vihf: VihfContext,
    entry_uuid: String,
    document_unique_id: UniqueId,
    current: AvailabilityStatus,
    new: AvailabilityStatus,
    source_id: Oid,
    content_type_code: Code,
}

impl Transaction for UpdateStatus {
    type Request = pb::UpdateDocumentStatusRequest;
    type Valid = StatusChange;
    type Response = pb::UpdateDocumentStatusResponse;

    const USE_CASE: &'static str = "td3.3_update_document_status";
    const WEB_SERVICE: WebService = WebService::Registry;
    const ACTION: &'static str = action::ITI57;
    const RETRY: Retry = Retry::OnlyIfNeverSent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({
            "transaction": "TD3.3",
            "document_unique_id": req.document_unique_id,
            "new_status": req.new_status,
        })
    }

    fn audit_response(r: &pb::UpdateDocumentStatusResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "entry_uuid": r.entry_uuid, "new_status": r.new_status }),
        )
    }

    fn validate(
        req: pb::UpdateDocumentStatusRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<StatusChange, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        if req.entry_uuid.is_empty() {
            return Err(DmpError::field(
                "entry_uuid",
                "required (the entryUUID FindDocuments returned)",
            ));
        }
        xds::check_entry_id("entry_uuid", &req.entry_uuid)?;
        if req.document_unique_id.is_empty() {
            return Err(DmpError::field(
                "document_unique_id",
                "required (the uniqueId FindDocuments returned with the entryUUID)",
            ));
        }
        let document_unique_id = UniqueId::parse("document_unique_id", &req.document_unique_id)?;
        let change = conversions::availability(req.current_status)
            .zip(conversions::availability(req.new_status))
            .filter(|(current, new)| current.may_become(*new));
        let Some((current, new)) = change else {
            let name = |s: i32| {
                pb::DocumentStatus::try_from(s)
                    .unwrap_or(pb::DocumentStatus::Unspecified)
                    .as_str_name()
            };
            return Err(DmpError::field(
                "new_status",
                format!(
                    "{} → {} is not a DMP status change (archive APPROVED→ARCHIVED, unarchive ARCHIVED→APPROVED, \
                     delete APPROVED or ARCHIVED→DELETED)",
                    name(req.current_status),
                    name(req.new_status)
                ),
            ));
        };
        Ok(StatusChange {
            patient,
            vihf,
            entry_uuid: req.entry_uuid,
            document_unique_id,
            current,
            new,
            source_id: Oid::parse("xds.source_id", &settings.source_id)?,
            content_type_code: settings.status_update_code()?,
        })
    }

    /// The submission set is the card's professional's, with a fresh uniqueId.
    fn build(c: &StatusChange, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&c.vihf, &c.patient)?;
        let author = Author {
            id: ctx.professional.id.clone(),
            family: ctx.professional.family.clone(),
            given: ctx.professional.given.clone(),
            role: None,
            specialty: c.vihf.specialty.clone(),
            institution: None,
        };
        let set = SubmissionSet {
            entry_id: "SubmissionSet01".into(),
            unique_id: UniqueId::generate(),
            source_id: c.source_id.clone(),
            patient: c.patient.clone(),
            submission_time: Dtm::from_offset_datetime(ctx.now),
            title: None,
            comments: None,
            content_type_code: c.content_type_code.clone(),
            author,
        };
        let list = ObjectList {
            packages: vec![set.to_rim()],
            associations: vec![Association {
                id: "Association01".into(),
                association_type: xds::association::UPDATE_AVAILABILITY_STATUS.into(),
                source: set.entry_id.clone(),
                target: c.entry_uuid.clone(),
                status: None,
                slots: vec![
                    Slot {
                        name: "OriginalStatus".into(),
                        values: vec![c.current.urn().into()],
                    },
                    Slot {
                        name: "NewStatus".into(),
                        values: vec![c.new.urn().into()],
                    },
                ],
            }],
            ..Default::default()
        };
        let mut body = format!(
            r#"<lcm:SubmitObjectsRequest xmlns:lcm="{}" {}>"#,
            ns::LCM,
            ebrim::RIM_XMLNS
        );
        ebrim::write_object_list(&mut body, &list);
        body.push_str("</lcm:SubmitObjectsRequest>");
        Ok(Message::soap(assertion, body))
    }

    /// The DMP is asked for the entry first.
    fn precheck(c: &StatusChange) -> Option<Vec<String>> {
        Some(vec![c.entry_uuid.clone()])
    }

    /// The entry must be the document the caller names, in the status the caller believes.
    fn check(c: &mut StatusChange, found: &pb::GetDocumentsResponse) -> Result<(), DmpError> {
        let Some(doc) = found.documents.iter().find(|d| d.entry_uuid == c.entry_uuid) else {
            return Err(DmpError::field(
                "entry_uuid",
                format!(
                    "the DMP holds no document {} for this patient that the professional may see",
                    c.entry_uuid
                ),
            ));
        };
        if doc.unique_id != c.document_unique_id.as_str() {
            return Err(DmpError::field(
                "document_unique_id",
                format!(
                    "`{}` is not the document of entry {}, which is `{}`",
                    c.document_unique_id.as_str(),
                    c.entry_uuid,
                    doc.unique_id
                ),
            ));
        }
        let current = conversions::status_to_pb(Some(c.current));
        if doc.status() != current {
            return Err(DmpError::field(
                "current_status",
                format!(
                    "the document is {} at the DMP, not {}: search it again",
                    doc.status().as_str_name(),
                    current.as_str_name()
                ),
            ));
        }
        Ok(())
    }

    fn parse(c: &StatusChange, reply: &Reply) -> Result<pb::UpdateDocumentStatusResponse, DmpError> {
        let (status, errors) = registry_status(reply.payload(ns::RS, "RegistryResponse")?)?;
        let now = if status == pb::RegistryResponseStatus::Success {
            c.new
        } else {
            c.current
        };
        Ok(pb::UpdateDocumentStatusResponse {
            status: status as i32,
            errors,
            new_status: conversions::status_to_pb(Some(now)) as i32,
            entry_uuid: c.entry_uuid.clone(),
            document_unique_id: c.document_unique_id.to_string(),
        })
    }
}
