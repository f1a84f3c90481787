//! TD3.1 FindDocuments: the ITI-18 RegistryStoredQuery FindDocuments (SPEC.md §2), with the
//! patient, the availability statuses (Approved when none is given), creation and service time
//! ranges, code filters (class, type, practice setting, facility, format, confidentiality,
//! event) and authors; the answer's entries are read leniently into `dmp.v1` entries.
//! Submissions' signature documents are not clinical documents and are left out.
//!
//! **Decision — replacements in the results (issue 15):** an ITI-18 FindDocuments answer holds
//! DocumentEntries only (the official TD3.1 answer carries no association), so when it found
//! documents the gateway asks once more, on the same connection and under the same VIHF, for
//! their associations (ITI-18 GetAssociations, one query for the whole answer) and fills each
//! entry's `replaces_entry_uuid` / `replaced_by_entry_uuid` from the RPLC ones. If that second query fails at the
//! registry, the documents are still answered, with its errors and `PARTIAL_SUCCESS`; if it
//! fails in transport, the call fails as FindDocuments would (it is retried once like it).

use std::fmt::Write as _;

use dmp_protocol::ebrim;
use dmp_protocol::transactions::{FIND_DOCUMENTS, WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{self, AvailabilityStatus, Ins, RegistryEntry};
use dmp_protocol::xml::{esc, esc_attr, ns};
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// TD3.1.
#[derive(Debug, Clone, Copy)]
pub struct Find;

/// A FindDocuments request, checked: the patient and the query's slots.
#[derive(Debug, Clone)]
pub struct FindQuery {
    patient: Ins,
    vihf: VihfContext,
    /// Slot name and its single value, in the order written.
    slots: Vec<(String, String)>,
}

/// `('a','b')`, quotes doubled inside values.
fn quoted_list(values: &[String]) -> String {
    let inner: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect();
    format!("({})", inner.join(","))
}

impl Transaction for Find {
    type Request = pb::FindDocumentsRequest;
    type Valid = FindQuery;
    type Response = pb::FindDocumentsResponse;

    const USE_CASE: &'static str = "td3.1_find_documents";
    const WEB_SERVICE: WebService = WebService::Registry;
    const ACTION: &'static str = action::ITI18;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD3.1", "statuses": req.statuses })
    }

    fn audit_response(r: &pb::FindDocumentsResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "documents_found": r.documents.len() }),
        )
    }

    fn validate(
        req: pb::FindDocumentsRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<FindQuery, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        let mut slots: Vec<(String, String)> = vec![(
            "$XDSDocumentEntryPatientId".into(),
            format!("'{}'", patient.to_cx()),
        )];
        let mut statuses = Vec::new();
        for (i, s) in req.statuses.iter().enumerate() {
            let status = conversions::availability(*s).ok_or_else(|| {
                DmpError::field(format!("statuses[{i}]"), format!("{s} is not a document status"))
            })?;
            statuses.push(status.urn().to_string());
        }
        if statuses.is_empty() {
            statuses.push(AvailabilityStatus::Approved.urn().into());
        }
        slots.push(("$XDSDocumentEntryStatus".into(), quoted_list(&statuses)));
        for (name, range, slot) in [
            ("creation_time", &req.creation_time, "CreationTime"),
            ("service_start_time", &req.service_start_time, "ServiceStartTime"),
            ("service_stop_time", &req.service_stop_time, "ServiceStopTime"),
        ] {
            let Some(r) = range else { continue };
            let from = r
                .from
                .as_ref()
                .map(|t| conversions::dtm(&format!("{name}.from"), t))
                .transpose()?;
            let to =
                r.to.as_ref()
                    .map(|t| conversions::dtm(&format!("{name}.to"), t))
                    .transpose()?;
            if let (Some(a), Some(b)) = (&from, &to)
                && a > b
            {
                return Err(DmpError::field(
                    format!("{name}.to"),
                    format!("{} is before {name}.from {}", b.as_str(), a.as_str()),
                ));
            }
            if let Some(a) = from {
                slots.push((format!("$XDSDocumentEntry{slot}From"), a.as_str().to_string()));
            }
            if let Some(b) = to {
                slots.push((format!("$XDSDocumentEntry{slot}To"), b.as_str().to_string()));
            }
        }
        for (name, codes, slot) in [
            ("class_codes", &req.class_codes, "ClassCode"),
            ("type_codes", &req.type_codes, "TypeCode"),
            (
                "practice_setting_codes",
                &req.practice_setting_codes,
                "PracticeSettingCode",
            ),
            (
                "healthcare_facility_type_codes",
                &req.healthcare_facility_type_codes,
                "HealthcareFacilityTypeCode",
            ),
            ("format_codes", &req.format_codes, "FormatCode"),
            (
                "confidentiality_codes",
                &req.confidentiality_codes,
                "ConfidentialityCode",
            ),
            ("event_codes", &req.event_codes, "EventCodeList"),
        ] {
            if codes.is_empty() {
                continue;
            }
            let mut values = Vec::new();
            for (i, c) in codes.iter().enumerate() {
                let mut c = c.clone();
                if c.display_name.is_empty() {
                    // A query needs no display name.
                    c.display_name = c.code.clone();
                }
                values.push(conversions::code(&format!("{name}[{i}]"), Some(&c))?.to_query_value());
            }
            slots.push((format!("$XDSDocumentEntry{slot}"), quoted_list(&values)));
        }
        if !req.author_ids.is_empty() {
            let mut patterns = Vec::new();
            for (i, id) in req.author_ids.iter().enumerate() {
                xds::check_professional_id(&format!("author_ids[{i}]"), id)?;
                // ITI-18 matches authorPerson (an XCN starting with the id) with LIKE patterns.
                patterns.push(format!("{id}^%"));
            }
            slots.push(("$XDSDocumentEntryAuthorPerson".into(), quoted_list(&patterns)));
        }
        Ok(FindQuery { patient, vihf, slots })
    }

    fn build(q: &FindQuery, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&q.vihf, &q.patient)?;
        let mut body = format!(
            r#"<query:AdhocQueryRequest xmlns:query="{}" {}><query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/><rim:AdhocQuery id="{FIND_DOCUMENTS}">"#,
            ns::QUERY,
            ebrim::RIM_XMLNS
        );
        for (name, value) in &q.slots {
            let _ = write!(
                body,
                r#"<rim:Slot name="{}"><rim:ValueList><rim:Value>{}</rim:Value></rim:ValueList></rim:Slot>"#,
                esc_attr(name),
                esc(value)
            );
        }
        body.push_str("</rim:AdhocQuery></query:AdhocQueryRequest>");
        Ok(Message::soap(assertion, body))
    }

    /// The AdhocQueryResponse's entries, typed.
    fn parse(_: &FindQuery, reply: &Reply) -> Result<pb::FindDocumentsResponse, DmpError> {
        let r = reply.payload(ns::QUERY, "AdhocQueryResponse")?;
        let (status, errors) = registry_status(r)?;
        let documents = r
            .child(ns::RIM, "RegistryObjectList")
            .map(|l| {
                ebrim::read_object_list(l)
                    .extrinsic_objects
                    .iter()
                    .map(RegistryEntry::from_rim)
                    .filter(|e| !conversions::is_signature_document(e))
                    .map(|e| conversions::document_entry(&e))
                    .collect()
            })
            .unwrap_or_default();
        Ok(pb::FindDocumentsResponse {
            status: status as i32,
            errors,
            documents,
        })
    }

    fn follow_up(r: &pb::FindDocumentsResponse) -> Option<Vec<String>> {
        let uuids: Vec<String> = r
            .documents
            .iter()
            .map(|d| d.entry_uuid.clone())
            // An entry whose id the DMP wrote unusably cannot be asked about.
            .filter(|id| xds::check_entry_id("entry_uuid", id).is_ok())
            .collect();
        (!uuids.is_empty() && r.status != pb::RegistryResponseStatus::Failure as i32).then_some(uuids)
    }

    fn complete(r: &mut pb::FindDocumentsResponse, found: pb::GetAssociationsResponse) {
        name_replacements(&mut r.documents, &found.associations);
        if found.status != pb::RegistryResponseStatus::Success as i32 {
            r.errors.extend(found.errors);
            if r.status == pb::RegistryResponseStatus::Success as i32 {
                r.status = pb::RegistryResponseStatus::PartialSuccess as i32;
            }
        }
    }
}

/// Each entry's `replaces_entry_uuid` / `replaced_by_entry_uuid`, from the RPLC associations (source: the new
/// document; target: the one it replaced).
fn name_replacements(documents: &mut [pb::DocumentEntry], associations: &[pb::DocumentAssociation]) {
    for a in associations
        .iter()
        .filter(|a| a.association_type == xds::association::RPLC)
    {
        for d in documents.iter_mut() {
            if d.entry_uuid == a.source {
                d.replaces_entry_uuid.clone_from(&a.target);
            }
            if d.entry_uuid == a.target {
                d.replaced_by_entry_uuid.clone_from(&a.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> pb::DocumentEntry {
        pb::DocumentEntry {
            entry_uuid: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rplc_associations_name_both_sides_and_others_are_ignored() {
        let mut docs = vec![
            entry("urn:uuid:old"),
            entry("urn:uuid:new"),
            entry("urn:uuid:alone"),
        ];
        let assoc = |t: &str, s: &str, d: &str| pb::DocumentAssociation {
            id: "a".into(),
            association_type: t.into(),
            source: s.into(),
            target: d.into(),
        };
        name_replacements(
            &mut docs,
            &[
                assoc(xds::association::RPLC, "urn:uuid:new", "urn:uuid:old"),
                assoc(xds::association::HAS_MEMBER, "urn:uuid:alone", "urn:uuid:old"),
            ],
        );
        assert_eq!(docs[0].replaced_by_entry_uuid, "urn:uuid:new");
        assert_eq!(docs[0].replaces_entry_uuid, "");
        assert_eq!(docs[1].replaces_entry_uuid, "urn:uuid:old");
        assert_eq!(docs[1].replaced_by_entry_uuid, "");
        assert_eq!(
            (
                docs[2].replaces_entry_uuid.as_str(),
                docs[2].replaced_by_entry_uuid.as_str()
            ),
            ("", "")
        );
    }

    const ID: &str = "urn:uuid:7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn a_failed_association_query_keeps_the_documents_and_says_partial_success() {
        let mut r = pb::FindDocumentsResponse {
            status: pb::RegistryResponseStatus::Success as i32,
            errors: Vec::new(),
            documents: vec![entry(ID), entry("not-a-uuid")],
        };
        // The unusable id is not asked about.
        assert_eq!(Find::follow_up(&r), Some(vec![ID.to_string()]));
        Find::complete(
            &mut r,
            pb::GetAssociationsResponse {
                status: pb::RegistryResponseStatus::Failure as i32,
                errors: vec![pb::RegistryError {
                    error_code: "XDSRegistryError".into(),
                    ..Default::default()
                }],
                associations: Vec::new(),
            },
        );
        assert_eq!(r.status, pb::RegistryResponseStatus::PartialSuccess as i32);
        assert_eq!(r.documents.len(), 2);
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn nothing_found_asks_nothing_more() {
        let r = pb::FindDocumentsResponse {
            status: pb::RegistryResponseStatus::Success as i32,
            ..Default::default()
        };
        assert_eq!(Find::follow_up(&r), None);
    }
}
