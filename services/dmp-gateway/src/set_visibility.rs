//! TD3.3a/b SetDocumentVisibility: mask or unmask a document to professionals, make it visible
//! to the patient or their legal representatives. The entry is looked up first (ITI-18
//! GetDocuments): it must be the Approved document the caller names, and the change must keep
//! to the DMP's rules (`dmp_protocol::xds::visibility`); then ITI-57 UpdateDocumentSet writes
//! the entry again, as a new version of the same logical entry (`lid`), with its
//! confidentialityCodes changed.
//!
//! **Decision:** the registry answer does not say the entry's version, so `PreviousVersion` is
//! written as `1`; the DMP's visibility changes do not make versions the caller can see.

use dmp_protocol::ebrim::{self, Association, ObjectList, Slot};
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::visibility::{self, Restriction};
use dmp_protocol::xds::{self, Author, Code, DocumentEntry, Dtm, Ins, Oid, SubmissionSet, UniqueId};
use dmp_protocol::xml::ns;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// TD3.3a/b.
#[derive(Debug, Clone, Copy)]
pub struct SetVisibility;

/// A SetDocumentVisibility request, checked; `entry` is filled from the DMP's answer.
#[derive(Debug, Clone)]
pub struct VisibilityChange {
    patient: Ins,
    vihf: VihfContext,
    entry_uuid: String,
    document_unique_id: UniqueId,
    new: Vec<Restriction>,
    current: Vec<Restriction>,
    entry: Option<DocumentEntry>,
    source_id: Oid,
    content_type_code: Code,
}

fn to_pb(r: &[Restriction]) -> Vec<i32> {
    r.iter()
        .map(|r| match r {
            Restriction::MaskedToProfessionals => pb::Visibility::MaskedToProfessionals,
            Restriction::HiddenFromPatient => pb::Visibility::HiddenFromPatient,
            Restriction::HiddenFromLegalRepresentatives => pb::Visibility::HiddenFromLegalRepresentatives,
        } as i32)
        .collect()
}

impl Transaction for SetVisibility {
    type Request = pb::SetDocumentVisibilityRequest;
    type Valid = VisibilityChange;
    type Response = pb::SetDocumentVisibilityResponse;

    const USE_CASE: &'static str = "td3.3ab_set_document_visibility";
    const WEB_SERVICE: WebService = WebService::Registry;
    const ACTION: &'static str = action::ITI57;
    const RETRY: Retry = Retry::OnlyIfNeverSent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({
            "transaction": "TD3.3a/b",
            "document_unique_id": req.document_unique_id,
            "visibility": req.visibility,
        })
    }

    fn audit_response(r: &pb::SetDocumentVisibilityResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "entry_uuid": r.entry_uuid, "visibility": r.visibility }),
        )
    }

    fn validate(
        req: pb::SetDocumentVisibilityRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<VisibilityChange, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        xds::check_entry_id("entry_uuid", &req.entry_uuid)?;
        let document_unique_id = UniqueId::parse("document_unique_id", &req.document_unique_id)?;
        let mut new = conversions::visibility("visibility", &req.visibility)?;
        visibility::check(&new).map_err(|rule| DmpError::field("visibility", rule.to_string()))?;
        new.sort();
        Ok(VisibilityChange {
            patient,
            vihf,
            entry_uuid: req.entry_uuid,
            document_unique_id,
            new,
            current: Vec::new(),
            entry: None,
            source_id: Oid::parse("xds.source_id", &settings.source_id)?,
            content_type_code: settings.status_update_code()?,
        })
    }

    fn precheck(c: &VisibilityChange) -> Option<Vec<String>> {
        Some(vec![c.entry_uuid.clone()])
    }

    fn check(c: &mut VisibilityChange, found: &pb::GetDocumentsResponse) -> Result<(), DmpError> {
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
        if doc.status() != pb::DocumentStatus::Approved {
            return Err(DmpError::field(
                "entry_uuid",
                format!(
                    "the document is {}: only an Approved document's visibility changes",
                    doc.status().as_str_name()
                ),
            ));
        }
        let mut entry = conversions::registered_entry(doc, &c.patient, "Document01")?;
        let codes: Vec<(&str, &str)> = entry
            .confidentiality_codes
            .iter()
            .map(|k| (k.code.as_str(), k.scheme.as_str()))
            .collect();
        c.current = visibility::of_codes(codes);
        visibility::check_change(&c.current, &c.new)
            .map_err(|rule| DmpError::field("visibility", rule.to_string()))?;
        entry
            .confidentiality_codes
            .retain(|k| Restriction::from_code(&k.code, &k.scheme).is_none());
        entry.confidentiality_codes.extend(c.new.iter().map(|r| r.code()));
        c.entry = Some(entry);
        Ok(())
    }

    /// A submission set of the card's professional, the entry's new version (`lid` = the
    /// entryUUID) and its HasMember association.
    fn build(c: &VisibilityChange, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let entry = c.entry.as_ref().ok_or_else(|| {
            DmpError::MalformedResponse("the entry was not looked up before the update".into())
        })?;
        let assertion = ctx.vihf(&c.vihf, &c.patient)?;
        let set = SubmissionSet {
            entry_id: "SubmissionSet01".into(),
            unique_id: UniqueId::generate(),
            source_id: c.source_id.clone(),
            patient: c.patient.clone(),
            submission_time: Dtm::from_offset_datetime(ctx.now),
            title: None,
            comments: None,
            content_type_code: c.content_type_code.clone(),
            author: Author {
                id: ctx.professional.id.clone(),
                family: ctx.professional.family.clone(),
                given: ctx.professional.given.clone(),
                role: None,
                specialty: c.vihf.specialty.clone(),
                institution: None,
            },
        };
        let mut object = entry.to_rim();
        object.object.lid = Some(c.entry_uuid.clone());
        let list = ObjectList {
            packages: vec![set.to_rim()],
            extrinsic_objects: vec![object],
            associations: vec![Association {
                id: "Association01".into(),
                association_type: xds::association::HAS_MEMBER.into(),
                source: set.entry_id.clone(),
                target: entry.entry_id.clone(),
                status: None,
                slots: vec![
                    Slot {
                        name: "SubmissionSetStatus".into(),
                        values: vec!["Original".into()],
                    },
                    Slot {
                        name: "PreviousVersion".into(),
                        values: vec!["1".into()],
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

    fn parse(c: &VisibilityChange, reply: &Reply) -> Result<pb::SetDocumentVisibilityResponse, DmpError> {
        let (status, errors) = registry_status(reply.payload(ns::RS, "RegistryResponse")?)?;
        let now = if status == pb::RegistryResponseStatus::Success {
            &c.new
        } else {
            &c.current
        };
        Ok(pb::SetDocumentVisibilityResponse {
            status: status as i32,
            errors,
            visibility: to_pb(now),
            entry_uuid: c.entry_uuid.clone(),
        })
    }
}
