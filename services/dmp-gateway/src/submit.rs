//! TD2.1 SubmitDocuments: ITI-41 ProvideAndRegisterDocumentSet-b over MTOM (SPEC.md §2). The
//! metadata is completed from the CDA headers and checked, the submission is signed (XAdES
//! signature document with its `signs` association), and the documents travel as binary parts.
//!
//! A submission is never blindly resent: when the connection fails after the request may have
//! reached the DMP, the caller gets `UNAVAILABLE` with the document uniqueIds, so that
//! resubmitting is idempotent at the registry (`XDSDuplicateUniqueIdInRegistry`).

use std::fmt::Write as _;

use bytes::Bytes;
use dmp_protocol::cda;
use dmp_protocol::ebrim;
use dmp_protocol::mtom::Attachment;
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xades;
use dmp_protocol::xds::{self, DocumentEntry, Dtm, Ins, Oid, Submission, SubmissionSet, UniqueId};
use dmp_protocol::xml::{esc_attr, ns};
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::{DmpError, TransportError};
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};
use crate::reconcile::entry_from_request;

/// TD2.1.
#[derive(Debug, Clone, Copy)]
pub struct Submit;

/// A SubmitDocuments request that passed every check that does not need the card.
#[derive(Debug, Clone)]
pub struct ValidSubmission {
    patient: Ins,
    vihf: VihfContext,
    set: SubmissionSet,
    entries: Vec<DocumentEntry>,
    contents: Vec<Bytes>,
    replacements: Vec<(String, String)>,
}

impl ValidSubmission {
    /// The documents' entries, their metadata completed from the CDA headers.
    pub fn entries(&self) -> &[DocumentEntry] {
        &self.entries
    }

    /// The submission set's uniqueId (the caller's, or generated).
    pub fn submission_set_unique_id(&self) -> String {
        self.set.unique_id.to_string()
    }

    /// The uniqueIds of the submitted documents, in request order.
    pub fn document_unique_ids(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.unique_id.to_string()).collect()
    }
}

impl Transaction for Submit {
    type Request = pb::SubmitDocumentsRequest;
    type Valid = ValidSubmission;
    type Response = pb::SubmitDocumentsResponse;

    const USE_CASE: &'static str = "td2.1_submit_documents";
    const WEB_SERVICE: WebService = WebService::Repository;
    const ACTION: &'static str = action::ITI41;
    const RETRY: Retry = Retry::OnlyIfNeverSent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({
            "transaction": "TD2.1",
            "document_unique_ids": req
                .documents
                .iter()
                .filter_map(|d| d.metadata.as_ref().map(|m| m.unique_id.clone()))
                .collect::<Vec<_>>(),
        })
    }

    /// Limits, CDA headers, metadata completion and contradictions, XDS rules, the VIHF context.
    fn validate(
        req: pb::SubmitDocumentsRequest,
        settings: &XdsSettings,
        now: time::OffsetDateTime,
    ) -> Result<ValidSubmission, DmpError> {
        check_documents(&req.documents, settings)?;
        let headers = req
            .documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                // Readable, and following the CI-SIS header rules the DMP enforces.
                cda::read_conforming_header(&d.content)
                    .map_err(|reason| DmpError::MalformedCda { index: i, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let patient = match &req.patient {
            Some(p) if !(p.ins.is_empty() && p.assigning_authority.is_empty()) => {
                conversions::ins("patient", Some(p))?
            }
            _ => match headers[0].patient_ins.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(DmpError::field(
                        "patient.ins",
                        "required (the CDA header names no INS either)",
                    ));
                }
                _ => {
                    return Err(DmpError::field(
                        "patient.ins",
                        "required: the CDA header names several INS",
                    ));
                }
            },
        };
        let vctx = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;

        let mut entries = Vec::with_capacity(req.documents.len());
        for (i, (doc, header)) in req.documents.iter().zip(&headers).enumerate() {
            let entry = entry_from_request(i, doc, header, &patient)?;
            // In direct mode the VIHF's NameID must be an author or the legal authenticator.
            let named = entry.authors.iter().any(|a| a.id == vctx.professional_id)
                || entry
                    .legal_authenticator
                    .as_ref()
                    .is_some_and(|a| a.id == vctx.professional_id);
            if !named {
                return Err(DmpError::field(
                    format!("documents[{i}].metadata.authors"),
                    format!(
                        "the professional {} (VIHF NameID) is neither an author nor the legal authenticator of the document",
                        vctx.professional_id
                    ),
                ));
            }
            entries.push(entry);
        }

        let ss = req.submission_set.unwrap_or_default();
        let author = match &ss.author {
            Some(a) => conversions::author("submission_set.author", a)?,
            None => entries[0].authors[0].clone(),
        };
        let set = SubmissionSet {
            entry_id: "SubmissionSet01".into(),
            unique_id: if ss.unique_id.is_empty() {
                UniqueId::generate()
            } else {
                UniqueId::parse("submission_set.unique_id", &ss.unique_id)?
            },
            source_id: Oid::parse("xds.source_id", &settings.source_id)?,
            patient: patient.clone(),
            submission_time: Dtm::from_offset_datetime(now),
            title: (!ss.title.is_empty()).then(|| ss.title.clone()),
            comments: (!ss.comments.is_empty()).then(|| ss.comments.clone()),
            content_type_code: conversions::code(
                "submission_set.content_type_code",
                ss.content_type_code.as_ref(),
            )?,
            author,
        };

        let mut replacements = Vec::new();
        for (i, (d, e)) in req.documents.iter().zip(&entries).enumerate() {
            if !d.replaces_entry_uuid.is_empty() {
                xds::check_entry_id(
                    &format!("documents[{i}].replaces_entry_uuid"),
                    &d.replaces_entry_uuid,
                )?;
                replacements.push((e.entry_id.clone(), d.replaces_entry_uuid.clone()));
            }
        }
        let contents: Vec<Bytes> = req.documents.into_iter().map(|d| d.content).collect();
        // The set and entries are consistent before anything is signed.
        Submission {
            set: set.clone(),
            entries: entries.clone(),
            signature: None,
            replacements: replacements.clone(),
        }
        .check()?;
        Ok(ValidSubmission {
            patient,
            vihf: vctx,
            set,
            entries,
            contents,
            replacements,
        })
    }

    /// The VIHF, the signature document over every document, and the ITI-41 MTOM message.
    fn build(v: &ValidSubmission, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&v.vihf, &v.patient)?;
        let signature_xml = match (ctx.signature_document, ctx.signer) {
            (Some(made), _) => made.to_owned(),
            (None, Some(signer)) => xades::signature_xml(&Self::signed(v), signer, ctx.now)?,
            (None, None) => {
                return Err(DmpError::Signature(xades::XadesError::Sign(
                    "no signer: the submission reached the message builder unsigned".into(),
                )));
            }
        };
        let submission = Submission {
            set: v.set.clone(),
            entries: v.entries.clone(),
            signature: Some(xades::signature_entry(&v.entries[0], ctx.now)),
            replacements: v.replacements.clone(),
        };
        submission.check()?;

        let mut body = String::with_capacity(16 * 1024);
        let _ = write!(
            body,
            r#"<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{}" xmlns:lcm="{}" {} xmlns:xop="{}"><lcm:SubmitObjectsRequest>"#,
            ns::XDSB,
            ns::LCM,
            ebrim::RIM_XMLNS,
            ns::XOP
        );
        ebrim::write_object_list(&mut body, &submission.to_rim());
        body.push_str("</lcm:SubmitObjectsRequest>");
        let mut attachments = Vec::with_capacity(v.contents.len() + 1);
        let signature = Bytes::from(signature_xml);
        let all = submission
            .entries
            .iter()
            .zip(v.contents.iter().cloned())
            .chain(submission.signature.iter().map(|s| (s, signature.clone())));
        for (n, (entry, content)) in all.enumerate() {
            let cid = format!("document{}@dmp-gateway", n + 1);
            let _ = write!(
                body,
                r#"<xdsb:Document id="{}"><xop:Include href="cid:{}"/></xdsb:Document>"#,
                esc_attr(&entry.entry_id),
                esc_attr(&cid)
            );
            attachments.push(Attachment {
                content_id: cid,
                content_type: entry.mime_type.clone(),
                data: content,
            });
        }
        body.push_str("</xdsb:ProvideAndRegisterDocumentSetRequest>");
        Ok(Message::mtom(assertion, body, attachments))
    }

    fn signed_documents(v: &ValidSubmission) -> Option<Vec<(&UniqueId, &Bytes)>> {
        Some(Self::signed(v))
    }

    fn audit_response(r: &pb::SubmitDocumentsResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({
                "document_unique_ids": r.document_unique_ids,
                "submission_set_unique_id": r.submission_set_unique_id,
            }),
        )
    }

    fn parse(v: &ValidSubmission, reply: &Reply) -> Result<pb::SubmitDocumentsResponse, DmpError> {
        let (status, errors) = registry_status(reply.payload(ns::RS, "RegistryResponse")?)?;
        Ok(pb::SubmitDocumentsResponse {
            status: status as i32,
            errors,
            submission_set_unique_id: v.submission_set_unique_id(),
            document_unique_ids: v.document_unique_ids(),
        })
    }

    fn interrupted(v: &ValidSubmission, error: TransportError) -> DmpError {
        DmpError::SubmissionInterrupted {
            reason: error.to_string(),
            document_unique_ids: v.document_unique_ids().join(", "),
        }
    }
}

impl Submit {
    /// Every document of the submission, by unique id: what the XAdES Manifest lists.
    fn signed(v: &ValidSubmission) -> Vec<(&UniqueId, &Bytes)> {
        v.entries.iter().map(|e| &e.unique_id).zip(&v.contents).collect()
    }
}

/// How many documents, and how large: checked before any document is read.
fn check_documents(documents: &[pb::Document], settings: &XdsSettings) -> Result<(), DmpError> {
    if documents.is_empty() {
        return Err(DmpError::field("documents", "at least one document is required"));
    }
    if documents.len() > settings.max_documents {
        return Err(DmpError::field(
            "documents",
            format!(
                "{} documents, more than the {} a submission may carry",
                documents.len(),
                settings.max_documents
            ),
        ));
    }
    for (i, d) in documents.iter().enumerate() {
        if d.content.is_empty() {
            return Err(DmpError::field(
                format!("documents[{i}].content"),
                "the document is empty",
            ));
        }
        if d.content.len() as u64 > settings.max_document_bytes {
            return Err(DmpError::field(
                format!("documents[{i}].content"),
                format!(
                    "the document has {} bytes, more than the configured limit of {} bytes (xds.max_document_bytes)",
                    d.content.len(),
                    settings.max_document_bytes
                ),
            ));
        }
    }
    Ok(())
}
