//! The DMP transactions of SPEC.md §2, without transport: each one turns a `dmp.v1` request
//! into the HTTP body to POST (SOAP 1.2, MTOM where the profile wants it) and reads the DMP's
//! answer back into the `dmp.v1` response.
//!
//! | RPC | transaction | DMP service ([`Service`]) |
//! |---|---|---|
//! | SubmitDocuments | TD2.1, ITI-41 ProvideAndRegisterDocumentSet-b, MTOM | repository |
//! | FindDocuments | TD3.1, ITI-18 RegistryStoredQuery FindDocuments | registry |
//! | RetrieveDocument | TD3.2, ITI-43 RetrieveDocumentSet, MTOM | repository |
//! | TestPatientDmp | TD0.2, HL7v3 PRPA_IN201307UV02 → PRPA_IN201308UV02 | patients |
//! | UpdateDocumentStatus | TD3.3c/d, ITI-57 UpdateDocumentSet | registry |
//!
//! The transport (mutual TLS with the card, connection pool) sends [`Outgoing`] to the URL of
//! its [`Service`] and hands the answer back as [`Incoming`].

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ehealth_proto::dmp::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::cda::{self, CdaHeader};
use crate::dsg::{self, DsgSigner};
use crate::error::DmpError;
use crate::mtom::{self, Attachment, HttpBody, Multipart};
use crate::rim::{self, RegistryErrorEntry};
use crate::soap::{self, Addressing, Envelope};
use crate::vihf::{self, LpsIdentity, ProfessionalIdentity, VihfContext, VihfInput};
use crate::xds::{
    self, Author, Code, DocumentEntry, Dtm, FieldError, Ins, Oid, Submission, SubmissionSet, UniqueId,
};
use crate::xml::{Element, esc, esc_attr, ns};

/// WS-Addressing actions.
pub mod action {
    pub const ITI41: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b";
    pub const ITI41_RESPONSE: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse";
    pub const ITI18: &str = "urn:ihe:iti:2007:RegistryStoredQuery";
    pub const ITI18_RESPONSE: &str = "urn:ihe:iti:2007:RegistryStoredQueryResponse";
    pub const ITI43: &str = "urn:ihe:iti:2007:RetrieveDocumentSet";
    pub const ITI43_RESPONSE: &str = "urn:ihe:iti:2007:RetrieveDocumentSetResponse";
    pub const ITI57: &str = "urn:ihe:iti:2010:UpdateDocumentSet";
    pub const ITI57_RESPONSE: &str = "urn:ihe:iti:2010:UpdateDocumentSet-Response";
    pub const TD02: &str = "urn:hl7-org:v3:PRPA_IN201307UV02";
    pub const TD02_RESPONSE: &str = "urn:hl7-org:v3:PRPA_IN201308UV02";
}

/// The FindDocuments stored query id.
pub const FIND_DOCUMENTS: &str = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d";

/// Which DMP endpoint a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Repository,
    Registry,
    Patients,
}

/// Settings of the transactions (configuration section `xds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdsSettings {
    /// XDSSubmissionSet.sourceId: the OID of the sending software installation.
    pub source_id: String,
    /// Largest accepted document, in bytes.
    pub max_document_bytes: u64,
    /// Most documents in one submission.
    pub max_documents: usize,
    /// VIHF purposeofuse when the call gives none.
    pub default_purpose_of_use: String,
    /// RepositoryUniqueId used by RetrieveDocument when the call gives none.
    pub repository_unique_id: String,
    /// OID of the sending device in HL7v3 messages (TD0.2).
    pub hl7_sender_oid: String,
    /// contentTypeCode of the submission set that carries a status update (ITI-57), which no
    /// call field provides: `code^display^scheme`.
    pub status_update_content_type: String,
    /// Paths of the DMP web services under `dmp.url`.
    pub repository_path: String,
    pub registry_path: String,
    pub patients_path: String,
}

/// Default paths of the DMP web services (the simulator serves them).
pub mod default_paths {
    /// ITI-41 and ITI-43.
    pub const REPOSITORY: &str = "/si-dmp-server/v2/services/repository";
    /// ITI-18 and ITI-57.
    pub const REGISTRY: &str = "/si-dmp-server/v2/services/registry";
    /// TD0.2.
    pub const PATIENTS: &str = "/si-dmp-server/v2/services/patients";
}

impl Default for XdsSettings {
    fn default() -> Self {
        XdsSettings {
            source_id: "1.2.250.1.999.1.1.7898".into(),
            max_document_bytes: 20 * 1024 * 1024,
            max_documents: 20,
            default_purpose_of_use: "normal".into(),
            repository_unique_id: "1.2.250.1.213.4.1.1.1.2".into(),
            hl7_sender_oid: "1.2.250.1.999.1.1.7898".into(),
            status_update_content_type: "04^Hospitalisation de jour^1.2.250.1.213.2.2".into(),
            repository_path: default_paths::REPOSITORY.into(),
            registry_path: default_paths::REGISTRY.into(),
            patients_path: default_paths::PATIENTS.into(),
        }
    }
}

impl XdsSettings {
    /// Validation naming the configuration key (`prefix` is the section name).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if !xds::is_oid(&self.source_id) {
            return Err(format!("{prefix}.source_id: `{}` is not an OID", self.source_id));
        }
        if !xds::is_oid(&self.repository_unique_id) {
            return Err(format!(
                "{prefix}.repository_unique_id: `{}` is not an OID",
                self.repository_unique_id
            ));
        }
        if !xds::is_oid(&self.hl7_sender_oid) {
            return Err(format!(
                "{prefix}.hl7_sender_oid: `{}` is not an OID",
                self.hl7_sender_oid
            ));
        }
        if self.max_document_bytes == 0 {
            return Err(format!("{prefix}.max_document_bytes: must be positive"));
        }
        if self.max_documents == 0 {
            return Err(format!("{prefix}.max_documents: must be positive"));
        }
        for (key, path) in [
            ("repository_path", &self.repository_path),
            ("registry_path", &self.registry_path),
            ("patients_path", &self.patients_path),
        ] {
            if !path.starts_with('/') {
                return Err(format!("{prefix}.{key}: `{path}` must start with /"));
            }
        }
        self.status_update_code()
            .map_err(|e| format!("{prefix}.status_update_content_type: {}", e.reason))?;
        Ok(())
    }

    fn status_update_code(&self) -> Result<Code, FieldError> {
        let p: Vec<&str> = self.status_update_content_type.split('^').collect();
        if p.len() != 3 {
            return Err(FieldError::new(
                "status_update_content_type",
                "expected code^display^scheme",
            ));
        }
        Code::from_parts("status_update_content_type", p[0], p[2], p[1])
    }
}

/// What every call needs besides its request.
pub struct CallContext<'a> {
    /// The professional on the card (from the certificate the TLS handshake used).
    pub professional: &'a ProfessionalIdentity,
    pub lps: &'a LpsIdentity,
    pub settings: &'a XdsSettings,
    /// The URL the message is posted to (WS-Addressing `To`).
    pub endpoint: &'a str,
    pub now: time::OffsetDateTime,
}

/// A message to post.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub service: Service,
    pub addressing: Addressing,
    pub body: HttpBody,
}

/// The DMP's answer.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

fn vihf_for(
    auth: Option<&pb::AuthenticationContext>,
    patient: &Ins,
    ctx: &CallContext<'_>,
) -> Result<(VihfContext, String), DmpError> {
    let vctx = VihfContext::from_proto(auth, &ctx.settings.default_purpose_of_use)?;
    let assertion = vihf::build(&VihfInput {
        professional: ctx.professional,
        context: &vctx,
        patient,
        lps: ctx.lps,
        issue_instant: ctx.now,
    })?;
    Ok((vctx, assertion))
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

/// Opens the DMP's answer: MTOM or plain SOAP, SOAP faults turned into errors, WS-Addressing
/// `RelatesTo` checked against the request.
pub fn open_response(
    incoming: &Incoming,
    request: &Addressing,
) -> Result<(Envelope, Option<Multipart>), DmpError> {
    let (mime, _) = mtom::parse_content_type(&incoming.content_type);
    let (xml, multipart) = if mime == "multipart/related" {
        let mp = mtom::parse(&incoming.content_type, &incoming.body).map_err(DmpError::MalformedResponse)?;
        (mp.root.body.clone(), Some(mp))
    } else {
        (incoming.body.clone(), None)
    };
    let envelope = match soap::parse_envelope(&xml) {
        Ok(e) => e,
        Err(e) if !(200..300).contains(&incoming.status) => {
            let excerpt: String =
                String::from_utf8_lossy(&incoming.body[..incoming.body.len().min(300)]).into();
            let _ = e;
            return Err(DmpError::HttpStatus {
                status: incoming.status,
                excerpt,
            });
        }
        Err(e) => return Err(DmpError::MalformedResponse(e)),
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
    Ok((envelope, multipart))
}

fn payload<'a>(env: &'a Envelope, ns_: &str, name: &str) -> Result<&'a Element, DmpError> {
    match &env.payload {
        Some(p) if p.is(ns_, name) => Ok(p),
        Some(p) => Err(DmpError::MalformedResponse(format!(
            "expected <{name}>, got <{}>",
            p.name
        ))),
        None => Err(DmpError::MalformedResponse("the SOAP Body is empty".into())),
    }
}

fn status_of(urn: &str) -> pb::RegistryResponseStatus {
    match urn {
        rim::STATUS_SUCCESS => pb::RegistryResponseStatus::Success,
        rim::STATUS_PARTIAL_SUCCESS | "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:PartialSuccess" => {
            pb::RegistryResponseStatus::PartialSuccess
        }
        rim::STATUS_FAILURE => pb::RegistryResponseStatus::Failure,
        _ => pb::RegistryResponseStatus::Unspecified,
    }
}

fn errors_to_proto(errors: Vec<RegistryErrorEntry>) -> Vec<pb::RegistryError> {
    errors
        .into_iter()
        .map(|e| pb::RegistryError {
            severity: if e.severity.ends_with("Warning") {
                pb::Severity::Warning
            } else {
                pb::Severity::Error
            } as i32,
            error_code: e.code,
            code_context: e.context,
            location: e.location,
        })
        .collect()
}

/// The status and errors of a `rs:RegistryResponse` (or of a response extending it).
pub fn registry_status(
    e: &Element,
) -> Result<(pb::RegistryResponseStatus, Vec<pb::RegistryError>), DmpError> {
    let urn = e
        .attr("status")
        .ok_or_else(|| DmpError::MalformedResponse(format!("<{}> has no status", e.name)))?;
    let status = status_of(urn);
    if status == pb::RegistryResponseStatus::Unspecified {
        return Err(DmpError::MalformedResponse(format!(
            "unknown registry status `{urn}`"
        )));
    }
    Ok((status, errors_to_proto(rim::read_errors(e))))
}

// ---------------------------------------------------------------------------------------------
// TD2.1 — ITI-41.

/// A submission ready to send, with what the caller gets back when it succeeds.
#[derive(Debug, Clone)]
pub struct PreparedSubmission {
    pub submission: Submission,
    pub outgoing: Outgoing,
}

impl PreparedSubmission {
    pub fn document_unique_ids(&self) -> Vec<String> {
        self.submission
            .entries
            .iter()
            .map(|e| e.unique_id.to_string())
            .collect()
    }
}

fn contradiction(
    index: usize,
    field: &'static str,
    given: impl Into<String>,
    cda: impl Into<String>,
) -> DmpError {
    DmpError::CdaContradiction {
        index,
        field,
        given: given.into(),
        cda: cda.into(),
    }
}

fn entry_from_request(
    index: usize,
    doc: &pb::Document,
    header: &CdaHeader,
    patient: &Ins,
) -> Result<DocumentEntry, DmpError> {
    let f = |name: &str| format!("documents[{index}].metadata.{name}");
    let empty = pb::DocumentEntry::default();
    let m = doc.metadata.as_ref().unwrap_or(&empty);

    // Patient: the CDA must name the same INS.
    if header.patient_ins.is_empty() {
        return Err(DmpError::MalformedCda {
            index,
            reason: "recordTarget/patientRole has no INS id (root 1.2.250.1.213.1.4.8, .10 or .11)".into(),
        });
    }
    if !header.patient_ins.contains(patient) {
        return Err(DmpError::CdaContradiction {
            index,
            field: "patient",
            given: patient.to_cx(),
            cda: header.patient_ins[0].to_cx(),
        });
    }

    let unique_id = match (m.unique_id.is_empty(), &header.unique_id) {
        (false, Some(c)) if &m.unique_id != c => {
            return Err(contradiction(index, "unique_id", &m.unique_id, c));
        }
        (false, _) => UniqueId::parse(&f("unique_id"), &m.unique_id)?,
        (true, Some(c)) => UniqueId::parse(&format!("documents[{index}].content (ClinicalDocument/id)"), c)?,
        (true, None) => {
            return Err(DmpError::field(
                f("unique_id"),
                "required (the CDA header has no id)",
            ));
        }
    };

    let creation_time = match (&m.creation_time, &header.creation_time) {
        (Some(t), cda_time) => {
            let given = Dtm::from_timestamp(&f("creation_time"), t)?;
            if let Some(c) = cda_time
                && !given.agrees_with(c)
            {
                return Err(contradiction(index, "creation_time", given.as_str(), c.as_str()));
            }
            given
        }
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(DmpError::field(
                f("creation_time"),
                "required (the CDA header has no effectiveTime)",
            ));
        }
    };

    let type_code = match (
        Code::optional(&f("type_code"), m.type_code.as_ref())?,
        &header.type_code,
    ) {
        (Some(g), Some(c)) if g.code != c.code || g.scheme != c.scheme => {
            return Err(contradiction(index, "type_code", g.to_ce(), c.to_ce()));
        }
        (Some(g), _) => g,
        (None, Some(c)) => c.clone(),
        (None, None) => return Err(DmpError::field(f("type_code"), "required (LOINC document type)")),
    };
    if type_code.scheme != "2.16.840.1.113883.6.1" {
        return Err(DmpError::field(
            f("type_code.code_system"),
            format!("`{}` is not LOINC (2.16.840.1.113883.6.1)", type_code.scheme),
        ));
    }

    let mut confidentiality_codes = Vec::new();
    for (i, c) in m.confidentiality_codes.iter().enumerate() {
        confidentiality_codes.push(Code::from_proto(
            &f(&format!("confidentiality_codes[{i}]")),
            Some(c),
        )?);
    }
    if confidentiality_codes.is_empty()
        && let Some(c) = &header.confidentiality_code
    {
        confidentiality_codes.push(c.clone());
    }

    let mut authors = Vec::new();
    for (i, a) in m.authors.iter().enumerate() {
        let author = Author::from_proto(&f(&format!("authors[{i}]")), a)?;
        if !header.authors.is_empty() && !header.authors.iter().any(|h| h.id == author.id) {
            let ids: Vec<&str> = header.authors.iter().map(|a| a.id.as_str()).collect();
            return Err(DmpError::CdaContradiction {
                index,
                field: "authors",
                given: author.id,
                cda: ids.join(", "),
            });
        }
        authors.push(author);
    }
    if authors.is_empty() {
        authors = header.authors.clone();
    }

    let legal_authenticator = match (&m.legal_authenticator, &header.legal_authenticator) {
        (Some(g), c) => {
            let g = Author::from_proto(&f("legal_authenticator"), g)?;
            if let Some(c) = c
                && c.id != g.id
            {
                return Err(contradiction(index, "legal_authenticator", g.id, c.id.clone()));
            }
            Some(g)
        }
        (None, c) => c.clone(),
    };

    let title = if m.title.is_empty() {
        header.title.clone().unwrap_or_default()
    } else {
        m.title.clone()
    };
    let language_code = if !m.language_code.is_empty() {
        m.language_code.clone()
    } else {
        header.language_code.clone().unwrap_or_else(|| "fr-FR".into())
    };
    xds::check_language(&f("language_code"), &language_code)?;
    let mime_type = if m.mime_type.is_empty() {
        "text/xml".to_string()
    } else {
        m.mime_type.clone()
    };
    if mime_type != "text/xml" {
        return Err(DmpError::field(
            f("mime_type"),
            format!("`{mime_type}`: the gateway submits CDA documents (text/xml)"),
        ));
    }
    let entry_id = if m.entry_uuid.is_empty() {
        format!("Document{:02}", index + 1)
    } else {
        xds::check_entry_id(&f("entry_uuid"), &m.entry_uuid)?;
        m.entry_uuid.clone()
    };
    let opt_time = |name: &str,
                    given: &Option<prost_types::Timestamp>,
                    cda: &Option<Dtm>|
     -> Result<Option<Dtm>, DmpError> {
        Ok(match given {
            Some(t) => Some(Dtm::from_timestamp(&f(name), t)?),
            None => cda.clone(),
        })
    };
    let mut event_codes = Vec::new();
    for (i, c) in m.event_codes.iter().enumerate() {
        event_codes.push(Code::from_proto(&f(&format!("event_codes[{i}]")), Some(c))?);
    }
    let entry = DocumentEntry {
        entry_id,
        unique_id,
        patient: patient.clone(),
        title,
        comments: (!m.comments.is_empty()).then(|| m.comments.clone()),
        class_code: Code::from_proto(&f("class_code"), m.class_code.as_ref())?,
        type_code,
        format_code: Code::from_proto(&f("format_code"), m.format_code.as_ref())?,
        confidentiality_codes,
        healthcare_facility_type_code: Code::from_proto(
            &f("healthcare_facility_type_code"),
            m.healthcare_facility_type_code.as_ref(),
        )?,
        practice_setting_code: Code::from_proto(
            &f("practice_setting_code"),
            m.practice_setting_code.as_ref(),
        )?,
        event_codes,
        language_code,
        mime_type,
        creation_time,
        service_start_time: opt_time(
            "service_start_time",
            &m.service_start_time,
            &header.service_start_time,
        )?,
        service_stop_time: opt_time(
            "service_stop_time",
            &m.service_stop_time,
            &header.service_stop_time,
        )?,
        authors,
        legal_authenticator,
    };
    entry.check(&format!("documents[{index}].metadata"))?;
    Ok(entry)
}

/// A SubmitDocuments request that passed every check that does not need the card.
#[derive(Debug, Clone)]
pub struct ValidatedSubmission {
    pub patient: Ins,
    pub vihf: VihfContext,
    pub set: SubmissionSet,
    pub entries: Vec<DocumentEntry>,
    pub contents: Vec<Bytes>,
}

/// Validates a SubmitDocuments request, completes its metadata from the CDA headers, signs the
/// submission and builds the ITI-41 MTOM message. Nothing is sent when this fails.
pub fn prepare_submit(
    req: pb::SubmitDocumentsRequest,
    ctx: &CallContext<'_>,
    signer: &dyn DsgSigner,
) -> Result<PreparedSubmission, DmpError> {
    if let Some(a) = &req.auth_context
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
    build_submit(validate_submit(req, ctx.settings, ctx.now)?, ctx, signer)
}

/// Every check of a SubmitDocuments request that needs neither the card nor the DMP:
/// limits, CDA headers, metadata completion and contradictions, XDS rules, the VIHF context.
pub fn validate_submit(
    req: pb::SubmitDocumentsRequest,
    settings: &XdsSettings,
    now: time::OffsetDateTime,
) -> Result<ValidatedSubmission, DmpError> {
    if req.documents.is_empty() {
        return Err(DmpError::field("documents", "at least one document is required"));
    }
    if req.documents.len() > settings.max_documents {
        return Err(DmpError::field(
            "documents",
            format!(
                "{} documents, more than the {} a submission may carry",
                req.documents.len(),
                settings.max_documents
            ),
        ));
    }
    for (i, d) in req.documents.iter().enumerate() {
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
    let headers = req
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            cda::read_header(&d.content).map_err(|reason| DmpError::MalformedCda { index: i, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let patient = match &req.patient {
        Some(p) if !(p.ins.is_empty() && p.assigning_authority.is_empty()) => {
            Ins::from_proto("patient", Some(p))?
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
    let vctx = VihfContext::from_proto(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;

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
        Some(a) => Author::from_proto("submission_set.author", a)?,
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
        content_type_code: Code::from_proto(
            "submission_set.content_type_code",
            ss.content_type_code.as_ref(),
        )?,
        author,
    };

    let contents: Vec<Bytes> = req.documents.into_iter().map(|d| d.content).collect();
    // The set and entries are consistent before anything is signed.
    Submission {
        set: set.clone(),
        entries: entries.clone(),
        signature: None,
    }
    .check()?;
    Ok(ValidatedSubmission {
        patient,
        vihf: vctx,
        set,
        entries,
        contents,
    })
}

/// Builds the VIHF (the card's professional must be the one the call names), signs the
/// submission and writes the ITI-41 MTOM message.
pub fn build_submit(
    v: ValidatedSubmission,
    ctx: &CallContext<'_>,
    signer: &dyn DsgSigner,
) -> Result<PreparedSubmission, DmpError> {
    let ValidatedSubmission {
        patient,
        vihf: vctx,
        set,
        entries,
        contents,
    } = v;
    let assertion = vihf::build(&VihfInput {
        professional: ctx.professional,
        context: &vctx,
        patient: &patient,
        lps: ctx.lps,
        issue_instant: ctx.now,
    })?;
    let signed: Vec<(&UniqueId, &Bytes)> = entries
        .iter()
        .map(|e| &e.unique_id)
        .zip(contents.iter())
        .collect();
    let signature_xml = dsg::signature_xml(&signed, signer, ctx.now).map_err(DmpError::Signature)?;
    let signature = dsg::signature_entry(&entries[0], ctx.now);

    let submission = Submission {
        set,
        entries,
        signature: Some(signature),
    };
    submission.check()?;

    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        r#"<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{}" xmlns:lcm="{}" {} xmlns:xop="{}"><lcm:SubmitObjectsRequest>"#,
        ns::XDSB,
        ns::LCM,
        rim::RIM_XMLNS,
        ns::XOP
    );
    rim::write_object_list(&mut body, &submission.to_rim());
    body.push_str("</lcm:SubmitObjectsRequest>");
    let mut attachments = Vec::with_capacity(contents.len() + 1);
    let all = submission.entries.iter().zip(contents).chain(
        submission
            .signature
            .iter()
            .map(|s| (s, Bytes::from(signature_xml.clone()))),
    );
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

    let addressing = Addressing::new(ctx.endpoint, action::ITI41);
    let envelope = soap::request_envelope(&addressing, &assertion, &body);
    Ok(PreparedSubmission {
        submission,
        outgoing: Outgoing {
            service: Service::Repository,
            body: mtom::write(envelope, action::ITI41, attachments),
            addressing,
        },
    })
}

/// Reads the ITI-41 answer.
pub fn parse_submit_response(
    incoming: &Incoming,
    prepared: &PreparedSubmission,
) -> Result<pb::SubmitDocumentsResponse, DmpError> {
    let (env, _) = open_response(incoming, &prepared.outgoing.addressing)?;
    let rr = payload(&env, ns::RS, "RegistryResponse")?;
    let (status, errors) = registry_status(rr)?;
    Ok(pb::SubmitDocumentsResponse {
        status: status as i32,
        errors,
        submission_set_unique_id: prepared.submission.set.unique_id.to_string(),
        document_unique_ids: prepared.document_unique_ids(),
    })
}

// ---------------------------------------------------------------------------------------------
// TD3.1 — ITI-18 FindDocuments.

fn quoted_list(values: &[String]) -> String {
    let inner: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect();
    format!("({})", inner.join(","))
}

/// Builds the ITI-18 FindDocuments query.
pub fn prepare_find(req: &pb::FindDocumentsRequest, ctx: &CallContext<'_>) -> Result<Outgoing, DmpError> {
    let patient = Ins::from_proto("patient", req.patient.as_ref())?;
    let (_, assertion) = vihf_for(req.auth_context.as_ref(), &patient, ctx)?;
    let mut slots: Vec<(String, String)> = vec![(
        "$XDSDocumentEntryPatientId".into(),
        format!("'{}'", patient.to_cx()),
    )];
    let mut statuses = Vec::new();
    for (i, s) in req.statuses.iter().enumerate() {
        let st = pb::DocumentStatus::try_from(*s)
            .ok()
            .and_then(xds::status_to_urn)
            .ok_or_else(|| {
                DmpError::field(format!("statuses[{i}]"), format!("{s} is not a document status"))
            })?;
        statuses.push(st.to_string());
    }
    if statuses.is_empty() {
        statuses.push(xds::status::APPROVED.into());
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
            .map(|t| Dtm::from_timestamp(&format!("{name}.from"), t))
            .transpose()?;
        let to =
            r.to.as_ref()
                .map(|t| Dtm::from_timestamp(&format!("{name}.to"), t))
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
            values.push(Code::from_proto(&format!("{name}[{i}]"), Some(&c))?.to_query_value());
        }
        slots.push((format!("$XDSDocumentEntry{slot}"), quoted_list(&values)));
    }
    let mut body = format!(
        r#"<query:AdhocQueryRequest xmlns:query="{}" {}><query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/><rim:AdhocQuery id="{FIND_DOCUMENTS}">"#,
        ns::QUERY,
        rim::RIM_XMLNS
    );
    for (name, value) in &slots {
        let _ = write!(
            body,
            r#"<rim:Slot name="{}"><rim:ValueList><rim:Value>{}</rim:Value></rim:ValueList></rim:Slot>"#,
            esc_attr(name),
            esc(value)
        );
    }
    body.push_str("</rim:AdhocQuery></query:AdhocQueryRequest>");
    let addressing = Addressing::new(ctx.endpoint, action::ITI18);
    let envelope = soap::request_envelope(&addressing, &assertion, &body);
    Ok(Outgoing {
        service: Service::Registry,
        body: HttpBody::soap(envelope, action::ITI18),
        addressing,
    })
}

/// Reads an AdhocQueryResponse into typed entries.
pub fn parse_find_response(
    incoming: &Incoming,
    request: &Outgoing,
) -> Result<pb::FindDocumentsResponse, DmpError> {
    let (env, _) = open_response(incoming, &request.addressing)?;
    let r = payload(&env, ns::QUERY, "AdhocQueryResponse")?;
    let (status, errors) = registry_status(r)?;
    let documents = r
        .child(ns::RIM, "RegistryObjectList")
        .map(|l| {
            rim::read_object_list(l)
                .extrinsic_objects
                .iter()
                .map(xds::entry_from_rim)
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::FindDocumentsResponse {
        status: status as i32,
        errors,
        documents,
    })
}

// ---------------------------------------------------------------------------------------------
// TD3.2 — ITI-43.

pub fn prepare_retrieve(
    req: &pb::RetrieveDocumentRequest,
    ctx: &CallContext<'_>,
) -> Result<Outgoing, DmpError> {
    let patient = Ins::from_proto("patient", req.patient.as_ref())?;
    let (_, assertion) = vihf_for(req.auth_context.as_ref(), &patient, ctx)?;
    let repository = if req.repository_unique_id.is_empty() {
        ctx.settings.repository_unique_id.clone()
    } else {
        Oid::parse("repository_unique_id", &req.repository_unique_id)?.to_string()
    };
    if req.document_unique_id.is_empty() {
        return Err(DmpError::field("document_unique_id", "required"));
    }
    let document = UniqueId::parse("document_unique_id", &req.document_unique_id)?;
    let body = format!(
        r#"<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{}"><xdsb:DocumentRequest><xdsb:RepositoryUniqueId>{}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>{}</xdsb:DocumentUniqueId></xdsb:DocumentRequest></xdsb:RetrieveDocumentSetRequest>"#,
        ns::XDSB,
        esc(&repository),
        esc(document.as_str())
    );
    let addressing = Addressing::new(ctx.endpoint, action::ITI43);
    let envelope = soap::request_envelope(&addressing, &assertion, &body);
    Ok(Outgoing {
        service: Service::Repository,
        body: mtom::write(envelope, action::ITI43, Vec::new()),
        addressing,
    })
}

/// The content of an ITI-41/ITI-43 `Document` element: an `xop:Include` resolved in the
/// multipart message (zero-copy), or inline base64.
pub fn document_content(doc: &Element, multipart: Option<&Multipart>) -> Result<Bytes, String> {
    if let Some(inc) = doc.child(ns::XOP, "Include") {
        let href = inc.attr("href").ok_or("xop:Include has no href")?;
        let mp = multipart.ok_or_else(|| format!("xop:Include {href} in a message that is not MTOM"))?;
        return mp
            .resolve(href)
            .map(|p| p.body.clone())
            .ok_or_else(|| format!("xop:Include {href}: no such MIME part"));
    }
    let text: String = doc.text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(|e| format!("the inline document is not base64: {e}"))
}

pub fn parse_retrieve_response(
    incoming: &Incoming,
    request: &Outgoing,
    document_unique_id: &str,
) -> Result<pb::RetrieveDocumentResponse, DmpError> {
    let (env, mp) = open_response(incoming, &request.addressing)?;
    let r = payload(&env, ns::XDSB, "RetrieveDocumentSetResponse")?;
    let rr = r.child(ns::RS, "RegistryResponse").ok_or_else(|| {
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
    for d in r.children_named(ns::XDSB, "DocumentResponse") {
        if text(d, "DocumentUniqueId") != document_unique_id {
            continue;
        }
        let doc = d
            .child(ns::XDSB, "Document")
            .ok_or_else(|| DmpError::MalformedResponse("DocumentResponse has no Document".into()))?;
        out.content = document_content(doc, mp.as_ref()).map_err(DmpError::MalformedResponse)?;
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

// ---------------------------------------------------------------------------------------------
// TD0.2 — HL7v3 PRPA_IN201307UV02.

pub fn prepare_test_patient(
    req: &pb::TestPatientDmpRequest,
    ctx: &CallContext<'_>,
) -> Result<Outgoing, DmpError> {
    let patient = Ins::from_proto("patient", req.patient.as_ref())?;
    let (_, assertion) = vihf_for(req.auth_context.as_ref(), &patient, ctx)?;
    let t = ctx.now.to_offset(time::UtcOffset::UTC);
    let creation = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let sender = esc_attr(&ctx.settings.hl7_sender_oid);
    let body = format!(
        concat!(
            r#"<PRPA_IN201307UV02 xmlns="{hl7}" ITSVersion="XML_1.0">"#,
            r#"<id root="{sender}.1" extension="{id}"/><creationTime value="{creation}"/>"#,
            r#"<interactionId root="2.16.840.1.113883.1.6" extension="PRPA_IN201307UV02"/>"#,
            r#"<processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="AL"/>"#,
            r#"<receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.213.4.1.1.1"/><softwareName>DMP</softwareName></device></receiver>"#,
            r#"<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="{sender}"/><softwareName>{lps}</softwareName></device></sender>"#,
            r#"<controlActProcess classCode="CACT" moodCode="EVN">"#,
            r#"<reasonCode code="TEST_EXST" codeSystem="1.2.250.1.213.1.1.4.11" displayName="Test d'existence de dossier"/>"#,
            r#"<queryByParameter><queryId root="{sender}.2" extension="{qid}"/><statusCode code="new"/>"#,
            r#"<parameterList><patientIdentifier><value root="{oid}" extension="{ins}"/><semanticsText>Patient.id</semanticsText></patientIdentifier></parameterList>"#,
            r#"</queryByParameter></controlActProcess></PRPA_IN201307UV02>"#
        ),
        hl7 = ns::HL7,
        sender = sender,
        id = uuid::Uuid::new_v4(),
        creation = creation,
        lps = esc(&ctx.lps.name),
        qid = uuid::Uuid::new_v4(),
        oid = patient.authority().oid(),
        ins = patient.value(),
    );
    let addressing = Addressing::new(ctx.endpoint, action::TD02);
    let envelope = soap::request_envelope(&addressing, &assertion, &body);
    Ok(Outgoing {
        service: Service::Patients,
        body: HttpBody::soap(envelope, action::TD02),
        addressing,
    })
}

pub fn parse_test_patient_response(
    incoming: &Incoming,
    request: &Outgoing,
) -> Result<pb::TestPatientDmpResponse, DmpError> {
    let (env, _) = open_response(incoming, &request.addressing)?;
    let r = payload(&env, ns::HL7, "PRPA_IN201308UV02")?;
    let mut authorization = pb::Authorization::Unspecified;
    for line in r.children_named(ns::HL7, "attentionLine") {
        let key = line.child(ns::HL7, "keyWordText").and_then(|k| k.attr("code"));
        if key == Some("AUTORISATION") {
            let v = line
                .child(ns::HL7, "value")
                .and_then(|v| v.attr("code"))
                .unwrap_or_default();
            authorization = match v {
                "VALIDE" => pb::Authorization::Valide,
                "EXPIRE" => pb::Authorization::Expire,
                "INTERDIT" => pb::Authorization::Interdit,
                "NON_EXISTE" => pb::Authorization::NonExiste,
                other => {
                    return Err(DmpError::MalformedResponse(format!(
                        "unknown AUTORISATION value `{other}`"
                    )));
                }
            };
        }
    }
    let ack = r
        .path(ns::HL7, &["acknowledgement"])
        .and_then(|a| a.attr("typeCode"))
        .unwrap_or_default();
    if ack != "AA" {
        let detail = r
            .path(ns::HL7, &["acknowledgement", "acknowledgementDetail", "text"])
            .map(|t| t.text.trim().to_string())
            .unwrap_or_default();
        return Err(DmpError::SoapFault {
            code: "Sender".into(),
            subcode: Some(format!("HL7 acknowledgement {ack}")),
            reason: if detail.is_empty() {
                "the DMP refused the request".into()
            } else {
                detail
            },
        });
    }
    let cap = r.child(ns::HL7, "controlActProcess");
    let query_code = cap
        .and_then(|c| c.path(ns::HL7, &["queryAck", "queryResponseCode"]))
        .and_then(|q| q.attr("code"))
        .unwrap_or_default();
    let patient = cap.and_then(|c| c.path(ns::HL7, &["subject", "registrationEvent", "subject1", "patient"]));
    let dmp_exists = query_code == "OK" && patient.is_some();
    let dmp_closed = patient
        .and_then(|p| p.child(ns::HL7, "statusCode"))
        .and_then(|s| s.attr("code"))
        .is_some_and(|c| c != "active");
    Ok(pb::TestPatientDmpResponse {
        dmp_exists,
        dmp_closed,
        authorization: authorization as i32,
    })
}

// ---------------------------------------------------------------------------------------------
// TD3.3c/d — ITI-57.

pub fn prepare_update_status(
    req: &pb::UpdateDocumentStatusRequest,
    ctx: &CallContext<'_>,
) -> Result<Outgoing, DmpError> {
    use pb::DocumentStatus as S;
    let patient = Ins::from_proto("patient", req.patient.as_ref())?;
    let (vctx, assertion) = vihf_for(req.auth_context.as_ref(), &patient, ctx)?;
    if req.entry_uuid.is_empty() {
        return Err(DmpError::field(
            "entry_uuid",
            "required (the entryUUID FindDocuments returned)",
        ));
    }
    xds::check_entry_id("entry_uuid", &req.entry_uuid)?;
    let current = S::try_from(req.current_status).unwrap_or(S::Unspecified);
    let new = S::try_from(req.new_status).unwrap_or(S::Unspecified);
    let allowed = matches!(
        (current, new),
        (S::Approved, S::Archived) | (S::Archived, S::Approved) | (S::Approved | S::Archived, S::Deleted)
    );
    if !allowed {
        return Err(DmpError::field(
            "new_status",
            format!(
                "{} → {} is not a DMP status change (archive APPROVED→ARCHIVED, unarchive ARCHIVED→APPROVED, \
                 delete APPROVED or ARCHIVED→DELETED)",
                current.as_str_name(),
                new.as_str_name()
            ),
        ));
    }
    let author = Author {
        id: ctx.professional.id.clone(),
        family: ctx.professional.family.clone(),
        given: ctx.professional.given.clone(),
        role: None,
        specialty: vctx.specialty.clone(),
        institution: None,
    };
    let set = SubmissionSet {
        entry_id: "SubmissionSet01".into(),
        unique_id: UniqueId::generate(),
        source_id: Oid::parse("xds.source_id", &ctx.settings.source_id)?,
        patient,
        submission_time: Dtm::from_offset_datetime(ctx.now),
        title: None,
        comments: None,
        content_type_code: ctx.settings.status_update_code()?,
        author,
    };
    let list = rim::ObjectList {
        packages: vec![set.to_rim()],
        associations: vec![rim::Association {
            id: "Association01".into(),
            association_type: xds::association::UPDATE_AVAILABILITY_STATUS.into(),
            source: set.entry_id.clone(),
            target: req.entry_uuid.clone(),
            status: None,
            slots: vec![
                rim::Slot {
                    name: "OriginalStatus".into(),
                    values: vec![xds::status_to_urn(current).unwrap_or_default().into()],
                },
                rim::Slot {
                    name: "NewStatus".into(),
                    values: vec![xds::status_to_urn(new).unwrap_or_default().into()],
                },
            ],
        }],
        ..Default::default()
    };
    let mut body = format!(
        r#"<lcm:SubmitObjectsRequest xmlns:lcm="{}" {}>"#,
        ns::LCM,
        rim::RIM_XMLNS
    );
    rim::write_object_list(&mut body, &list);
    body.push_str("</lcm:SubmitObjectsRequest>");
    let addressing = Addressing::new(ctx.endpoint, action::ITI57);
    let envelope = soap::request_envelope(&addressing, &assertion, &body);
    Ok(Outgoing {
        service: Service::Registry,
        body: HttpBody::soap(envelope, action::ITI57),
        addressing,
    })
}

pub fn parse_update_status_response(
    incoming: &Incoming,
    request: &Outgoing,
) -> Result<pb::UpdateDocumentStatusResponse, DmpError> {
    let (env, _) = open_response(incoming, &request.addressing)?;
    let rr = payload(&env, ns::RS, "RegistryResponse")?;
    let (status, errors) = registry_status(rr)?;
    Ok(pb::UpdateDocumentStatusResponse {
        status: status as i32,
        errors,
    })
}
