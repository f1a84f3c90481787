//! The simulated registry and repository: XDS metadata validation with the registry's error
//! codes (IHE ITI TF-3 4.2.4), the in-memory store, and the answers of each transaction.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use aws_lc_rs::digest;
use bytes::Bytes;
use dmp_protocol::cda;
use dmp_protocol::ebrim::{self, ExtrinsicObject, ObjectList, RegistryErrorEntry, RegistryObject};
use dmp_protocol::mtom::{Attachment, xop_content};
use dmp_protocol::transactions::{FIND_DOCUMENTS, GET_ASSOCIATIONS, GET_DOCUMENTS, action};
use dmp_protocol::xds::{Author, Dtm, Ins, UniqueId, association, is_oid, scheme, status};
use dmp_protocol::xml::{Element, esc, esc_attr, ns};
use ehealth_proto::dmp::v1::Authorization;

mod metadata_update;
mod queries;

use queries::author_matches;
mod replacement;
mod visibility;

use crate::habilitations::Grants;
use crate::{Answer, Call, Fault, SimConfig, query_values, sender};

/// XDS error codes the simulator answers.
pub(crate) mod codes {
    pub(crate) const METADATA: &str = "XDSRegistryMetadataError";
    pub(crate) const REPOSITORY_METADATA: &str = "XDSRepositoryMetadataError";
    pub(crate) const DUPLICATE_UNIQUE_ID: &str = "XDSDuplicateUniqueIdInRegistry";
    pub(crate) const PATIENT_MISMATCH: &str = "XDSPatientIdDoesNotMatch";
    pub(crate) const UNKNOWN_PATIENT: &str = "XDSUnknownPatientId";
    pub(crate) const MISSING_DOCUMENT: &str = "XDSMissingDocument";
    pub(crate) const MISSING_METADATA: &str = "XDSMissingDocumentMetadata";
    pub(crate) const UNKNOWN_STORED_QUERY: &str = "XDSUnknownStoredQuery";
    pub(crate) const PARAM_NUMBER: &str = "XDSStoredQueryParamNumber";
    pub(crate) const UNKNOWN_REPOSITORY: &str = "XDSUnknownRepositoryId";
    pub(crate) const DOCUMENT_UNIQUE_ID: &str = "XDSDocumentUniqueIdError";
    pub(crate) const METADATA_UPDATE: &str = "XDSMetadataUpdateError";
    pub(crate) const DEPRECATED_DOCUMENT: &str = "XDSRegistryDeprecatedDocumentError";
    pub(crate) const UNRESOLVED_REFERENCE: &str = "UnresolvedReferenceException";
    pub(crate) const REGISTRY_ERROR: &str = "XDSRegistryError";
}

fn err(code: &str, context: impl Into<String>, location: &str) -> RegistryErrorEntry {
    RegistryErrorEntry {
        code: code.into(),
        context: context.into(),
        severity: ebrim::SEVERITY_ERROR.into(),
        location: location.into(),
    }
}

/// A stored document entry.
#[derive(Debug, Clone)]
struct Stored {
    object: ExtrinsicObject,
    patient: Ins,
    unique_id: String,
    content: Bytes,
    /// The entryUUID this entry replaced (RPLC).
    replaces: Option<String>,
}

impl Stored {
    fn status(&self) -> &str {
        self.object.object.status.as_deref().unwrap_or_default()
    }
}

/// Registry and repository contents.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<Stored>,
    submission_sets: HashSet<String>,
}

pub(crate) fn payload<'a>(call: &'a Call<'_>, ns_: &str, name: &str) -> Result<&'a Element, Fault> {
    match &call.envelope.payload {
        Some(p) if p.is(ns_, name) => Ok(p),
        Some(p) => Err(sender(
            "InvalidRequest",
            format!("expected <{name}> in the SOAP Body, got <{}>", p.name),
        )),
        None => Err(sender("InvalidRequest", "the SOAP Body is empty")),
    }
}

fn registry_response(action: &'static str, errors: &[RegistryErrorEntry], partial: bool) -> Answer {
    let status = if errors.is_empty() {
        ebrim::STATUS_SUCCESS
    } else if partial {
        ebrim::STATUS_PARTIAL_SUCCESS
    } else {
        ebrim::STATUS_FAILURE
    };
    let mut body = format!(r#"<rs:RegistryResponse xmlns:rs="{}" status="{status}">"#, ns::RS);
    ebrim::write_errors(&mut body, errors);
    body.push_str("</rs:RegistryResponse>");
    Answer {
        action,
        body,
        attachments: Vec::new(),
    }
}

/// Checks a coded classification.
fn check_code(owner: &str, what: &str, c: &ebrim::Classification, errors: &mut Vec<RegistryErrorEntry>) {
    if c.node_representation.as_deref().is_none_or(str::is_empty) {
        errors.push(err(
            codes::METADATA,
            format!("{owner}: {what} has no code (nodeRepresentation)"),
            owner,
        ));
    }
    if c.slot_value("codingScheme").is_none_or(str::is_empty) {
        errors.push(err(
            codes::METADATA,
            format!("{owner}: {what} has no codingScheme slot"),
            owner,
        ));
    }
    if c.name.as_deref().is_none_or(str::is_empty) {
        errors.push(err(
            codes::METADATA,
            format!("{owner}: {what} has no display name"),
            owner,
        ));
    }
}

/// Exactly `min..=max` classifications of `scheme_id`, each a valid code.
fn check_codes(
    o: &RegistryObject,
    scheme_id: &str,
    what: &str,
    min: usize,
    max: usize,
    errors: &mut Vec<RegistryErrorEntry>,
) {
    let found: Vec<_> = o.classifications_by_scheme(scheme_id).collect();
    if found.len() < min || found.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("at least {min}")
        };
        errors.push(err(
            codes::METADATA,
            format!(
                "{}: {want} {what} classification expected, found {}",
                o.id,
                found.len()
            ),
            &o.id,
        ));
    }
    for c in found {
        check_code(&o.id, what, c, errors);
    }
}

fn check_slot_dtm(o: &RegistryObject, name: &str, required: bool, errors: &mut Vec<RegistryErrorEntry>) {
    match o.slot_value(name) {
        Some(v) => {
            if let Err(e) = Dtm::parse(name, v) {
                errors.push(err(codes::METADATA, format!("{}: {}", o.id, e), &o.id));
            }
        }
        None if required => errors.push(err(
            codes::METADATA,
            format!("{}: missing slot {name}", o.id),
            &o.id,
        )),
        None => {}
    }
}

/// The patient of an object's patientId external identifier.
fn patient_of(
    o: &RegistryObject,
    id_scheme: &str,
    what: &str,
    errors: &mut Vec<RegistryErrorEntry>,
) -> Option<Ins> {
    let Some(x) = o.external_id(id_scheme) else {
        errors.push(err(
            codes::METADATA,
            format!("{}: missing {what}.patientId", o.id),
            &o.id,
        ));
        return None;
    };
    match Ins::parse_cx(&format!("{what}.patientId"), &x.value) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(err(codes::UNKNOWN_PATIENT, format!("{}: {}", o.id, e), &o.id));
            None
        }
    }
}

fn unique_id_of(
    o: &RegistryObject,
    id_scheme: &str,
    what: &str,
    errors: &mut Vec<RegistryErrorEntry>,
) -> Option<String> {
    let Some(x) = o.external_id(id_scheme) else {
        errors.push(err(
            codes::METADATA,
            format!("{}: missing {what}.uniqueId", o.id),
            &o.id,
        ));
        return None;
    };
    match UniqueId::parse(&format!("{what}.uniqueId"), &x.value) {
        Ok(u) => Some(u.to_string()),
        Err(e) => {
            errors.push(err(codes::METADATA, format!("{}: {}", o.id, e), &o.id));
            None
        }
    }
}

fn author_ids(o: &RegistryObject, author_scheme: &str) -> Vec<String> {
    o.classifications_by_scheme(author_scheme)
        .filter_map(|c| c.slot_value("authorPerson"))
        .filter_map(Author::parse_xcn)
        .map(|a| a.id)
        .collect()
}

/// The submission set among the packages (marked by its classification node).
fn submission_set(list: &ObjectList) -> Vec<&RegistryObject> {
    list.packages
        .iter()
        .filter(|p| {
            p.classifications
                .iter()
                .any(|c| c.node.as_deref() == Some(scheme::SUBMISSION_SET_NODE))
                || list.classifications.iter().any(|c| {
                    c.node.as_deref() == Some(scheme::SUBMISSION_SET_NODE) && c.classified_object == p.id
                })
        })
        .collect()
}

fn check_submission_set(ss: &RegistryObject, errors: &mut Vec<RegistryErrorEntry>) -> Option<Ins> {
    check_slot_dtm(ss, "submissionTime", true, errors);
    let authors = author_ids(ss, scheme::SS_AUTHOR);
    if authors.is_empty() {
        errors.push(err(
            codes::METADATA,
            format!("{}: the submission set has no author (authorPerson)", ss.id),
            &ss.id,
        ));
    }
    check_codes(ss, scheme::SS_CONTENT_TYPE, "contentTypeCode", 1, 1, errors);
    match ss.external_id(scheme::SS_SOURCE_ID) {
        Some(x) if is_oid(&x.value) => {}
        Some(x) => errors.push(err(
            codes::METADATA,
            format!("{}: sourceId `{}` is not an OID", ss.id, x.value),
            &ss.id,
        )),
        None => errors.push(err(
            codes::METADATA,
            format!("{}: missing XDSSubmissionSet.sourceId", ss.id),
            &ss.id,
        )),
    }
    unique_id_of(ss, scheme::SS_UNIQUE_ID, "XDSSubmissionSet", errors);
    patient_of(ss, scheme::SS_PATIENT_ID, "XDSSubmissionSet", errors)
}

fn check_entry(e: &ExtrinsicObject, errors: &mut Vec<RegistryErrorEntry>) -> (Option<Ins>, Option<String>) {
    let o = &e.object;
    if o.object_type.as_deref() != Some(scheme::DOCUMENT_ENTRY_OBJECT_TYPE) {
        errors.push(err(
            codes::METADATA,
            format!(
                "{}: objectType is not the stable DocumentEntry type {}",
                o.id,
                scheme::DOCUMENT_ENTRY_OBJECT_TYPE
            ),
            &o.id,
        ));
    }
    if e.mime_type.as_deref().is_none_or(str::is_empty) {
        errors.push(err(codes::METADATA, format!("{}: missing mimeType", o.id), &o.id));
    }
    check_slot_dtm(o, "creationTime", true, errors);
    check_slot_dtm(o, "serviceStartTime", false, errors);
    check_slot_dtm(o, "serviceStopTime", false, errors);
    for required in ["languageCode", "sourcePatientId"] {
        if o.slot_value(required).is_none_or(str::is_empty) {
            errors.push(err(
                codes::METADATA,
                format!("{}: missing slot {required}", o.id),
                &o.id,
            ));
        }
    }
    if author_ids(o, scheme::DOC_AUTHOR).is_empty() {
        errors.push(err(
            codes::METADATA,
            format!("{}: the document has no author (authorPerson)", o.id),
            &o.id,
        ));
    }
    check_codes(o, scheme::DOC_CLASS, "classCode", 1, 1, errors);
    check_codes(o, scheme::DOC_TYPE, "typeCode", 1, 1, errors);
    check_codes(o, scheme::DOC_FORMAT, "formatCode", 1, 1, errors);
    check_codes(
        o,
        scheme::DOC_FACILITY_TYPE,
        "healthcareFacilityTypeCode",
        1,
        1,
        errors,
    );
    check_codes(
        o,
        scheme::DOC_PRACTICE_SETTING,
        "practiceSettingCode",
        1,
        1,
        errors,
    );
    check_codes(
        o,
        scheme::DOC_CONFIDENTIALITY,
        "confidentialityCode",
        1,
        usize::MAX,
        errors,
    );
    let patient = patient_of(o, scheme::DOC_PATIENT_ID, "XDSDocumentEntry", errors);
    let uid = unique_id_of(o, scheme::DOC_UNIQUE_ID, "XDSDocumentEntry", errors);
    (patient, uid)
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Pads a DTM to 14 digits for comparisons.
fn full(d: &str) -> String {
    format!("{d:0<14}")
}

impl Registry {
    /// How many registry entries (documents and submission sets) are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// ITI-41.
    pub(crate) fn provide_and_register(
        &mut self,
        config: &SimConfig,
        call: &Call<'_>,
    ) -> Result<Answer, Fault> {
        let respond =
            |errors: &[RegistryErrorEntry]| registry_response(action::ITI41_RESPONSE, errors, false);
        let req = payload(call, ns::XDSB, "ProvideAndRegisterDocumentSetRequest")?;
        let list_el = req
            .path(ns::LCM, &["SubmitObjectsRequest"])
            .and_then(|s| s.child(ns::RIM, "RegistryObjectList"))
            .ok_or_else(|| {
                sender(
                    "InvalidRequest",
                    "ProvideAndRegisterDocumentSetRequest has no SubmitObjectsRequest/RegistryObjectList",
                )
            })?;
        let list = ebrim::read_object_list(list_el);
        let mut documents: Vec<(String, Bytes)> = Vec::new();
        for d in req.children_named(ns::XDSB, "Document") {
            let id = d.attr("id").unwrap_or_default().to_string();
            let content = xop_content(d, call.multipart)
                .map_err(|e| sender("InvalidMtom", format!("Document {id}: {e}")))?;
            documents.push((id, content));
        }

        let mut errors = Vec::new();
        let sets = submission_set(&list);
        let [ss] = sets.as_slice() else {
            errors.push(err(
                codes::METADATA,
                format!(
                    "exactly one submission set (RegistryPackage classified {}) expected, found {}",
                    scheme::SUBMISSION_SET_NODE,
                    sets.len()
                ),
                "",
            ));
            return Ok(respond(&errors));
        };
        let ss_patient = check_submission_set(ss, &mut errors);
        if let Some(p) = &ss_patient
            && p != call.vihf_patient
        {
            return Err(sender(
                "DMPVIHFInvalide",
                format!(
                    "the VIHF resource-id {} is not the submission's patient {p}",
                    call.vihf_patient
                ),
            ));
        }
        if list.extrinsic_objects.is_empty() {
            errors.push(err(
                codes::METADATA,
                "the submission has no DocumentEntry",
                &ss.id,
            ));
        }

        let mut checked = Vec::new();
        let mut seen_uids: HashSet<String> = HashSet::new();
        for e in &list.extrinsic_objects {
            let (patient, uid) = check_entry(e, &mut errors);
            visibility::check_submitted(e, &mut errors);
            let id = &e.object.id;
            if let (Some(p), Some(s)) = (&patient, &ss_patient)
                && p != s
            {
                errors.push(err(
                    codes::PATIENT_MISMATCH,
                    format!("{id}: patientId {p} differs from the submission set's {s}"),
                    id,
                ));
            }
            // Direct mode: the professional must be an author or the legal authenticator.
            let mut named = author_ids(&e.object, scheme::DOC_AUTHOR);
            if let Some(l) = e
                .object
                .slot_value("legalAuthenticator")
                .and_then(Author::parse_xcn)
            {
                named.push(l.id);
            }
            if !named.contains(&call.vihf.name_id) {
                return Err(sender(
                    "DMPAccessDenied",
                    format!(
                        "{id}: the professional {} (VIHF NameID) is neither an author nor the legal authenticator",
                        call.vihf.name_id
                    ),
                ));
            }
            if let Some(u) = &uid
                && (self.entries.iter().any(|s| &s.unique_id == u) || !seen_uids.insert(u.clone()))
            {
                errors.push(err(
                    codes::DUPLICATE_UNIQUE_ID,
                    format!("{id}: uniqueId {u} is already registered"),
                    id,
                ));
            }
            // The document for this entry: same id, or the same id but for letter case (the
            // official TD2.1 example pairs ExtrinsicObject DocumentME2 with Document documentME2,
            // and the DMP accepts it).
            let content = documents
                .iter()
                .find(|(d, _)| d == id)
                .or_else(|| {
                    let ci: Vec<_> = documents
                        .iter()
                        .filter(|(d, _)| d.eq_ignore_ascii_case(id))
                        .collect();
                    if ci.len() == 1 { Some(ci[0]) } else { None }
                })
                .map(|(_, c)| c.clone());
            match content {
                Some(c) if c.is_empty() => errors.push(err(
                    codes::MISSING_DOCUMENT,
                    format!("{id}: the document is empty"),
                    id,
                )),
                Some(c) => {
                    if let Some(size) = e.object.slot_value("size")
                        && size != c.len().to_string()
                    {
                        errors.push(err(
                            codes::REPOSITORY_METADATA,
                            format!("{id}: size {size} differs from the document's {}", c.len()),
                            id,
                        ));
                    }
                    // A clinical document's CDA header follows the CI-SIS rules the DMP enforces
                    // (the signature document is XML-DSig, not CDA).
                    if !visibility::is_signature_document(&e.object)
                        && let Err(rule) = cda::read_conforming_header(&c)
                    {
                        errors.push(err(
                            codes::REPOSITORY_METADATA,
                            format!("{id}: the CDA header breaks the CI-SIS rules: {rule}"),
                            id,
                        ));
                    }
                    checked.push((e, patient, uid, c));
                }
                None => errors.push(err(
                    codes::MISSING_DOCUMENT,
                    format!("{id}: no Document carries this entry's content"),
                    id,
                )),
            }
        }
        for (d, _) in &documents {
            let known = list
                .extrinsic_objects
                .iter()
                .any(|e| e.object.id == *d || e.object.id.eq_ignore_ascii_case(d));
            if !known {
                errors.push(err(
                    codes::MISSING_METADATA,
                    format!("Document {d} has no DocumentEntry"),
                    d,
                ));
            }
        }
        let ids: HashSet<&str> = list
            .extrinsic_objects
            .iter()
            .map(|e| e.object.id.as_str())
            .chain(std::iter::once(ss.id.as_str()))
            .collect();
        let submitted: HashSet<&str> = list
            .extrinsic_objects
            .iter()
            .map(|e| e.object.id.as_str())
            .collect();
        let mut replaced = HashSet::new();
        for a in &list.associations {
            match a.association_type.as_str() {
                association::RPLC => {
                    if let Some(e) = self.check_replacement(a, &submitted, &mut replaced, call) {
                        errors.push(e);
                    }
                }
                association::HAS_MEMBER => {
                    if a.source != ss.id || !ids.contains(a.target.as_str()) {
                        errors.push(err(
                            codes::METADATA,
                            format!(
                                "{}: HasMember must link the submission set to one of its entries",
                                a.id
                            ),
                            &a.id,
                        ));
                    }
                    if a.slot_value("SubmissionSetStatus").is_none() {
                        errors.push(err(
                            codes::METADATA,
                            format!("{}: HasMember without SubmissionSetStatus", a.id),
                            &a.id,
                        ));
                    }
                }
                association::SIGNS => {
                    if !ids.contains(a.source.as_str()) || !ids.contains(a.target.as_str()) {
                        errors.push(err(
                            codes::METADATA,
                            format!("{}: signs links unknown objects", a.id),
                            &a.id,
                        ));
                    }
                }
                other => errors.push(err(
                    codes::METADATA,
                    format!(
                        "{}: association type {other} is not accepted in a submission",
                        a.id
                    ),
                    &a.id,
                )),
            }
        }
        for e in &list.extrinsic_objects {
            let member = list
                .associations
                .iter()
                .any(|a| a.association_type == association::HAS_MEMBER && a.target == e.object.id);
            if !member {
                errors.push(err(
                    codes::METADATA,
                    format!(
                        "{}: no HasMember association from the submission set",
                        e.object.id
                    ),
                    &e.object.id,
                ));
            }
        }
        if let Some(u) = ss.external_id(scheme::SS_UNIQUE_ID)
            && self.submission_sets.contains(&u.value)
        {
            errors.push(err(
                codes::DUPLICATE_UNIQUE_ID,
                format!("submission set uniqueId {} is already registered", u.value),
                &ss.id,
            ));
        }
        if !errors.is_empty() {
            return Ok(respond(&errors));
        }

        // Store.
        let mut new_ids = HashMap::new();
        for (e, patient, uid, content) in checked {
            let (Some(patient), Some(unique_id)) = (patient, uid) else {
                continue;
            };
            let mut object = e.clone();
            let old = object.object.id.clone();
            let new = if old.starts_with("urn:uuid:") {
                old.clone()
            } else {
                format!("urn:uuid:{}", uuid::Uuid::new_v4())
            };
            new_ids.insert(old.clone(), new.clone());
            object.object.id = new.clone();
            object.object.lid = Some(new.clone());
            object.object.status = Some(status::APPROVED.into());
            for c in &mut object.object.classifications {
                c.classified_object = new.clone();
            }
            for x in &mut object.object.external_identifiers {
                x.registry_object = new.clone();
            }
            object
                .object
                .slots
                .retain(|s| !matches!(s.name.as_str(), "size" | "hash" | "repositoryUniqueId"));
            let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &content);
            for (n, v) in [
                ("hash", hex(sha1.as_ref())),
                ("size", content.len().to_string()),
                ("repositoryUniqueId", config.repository_unique_id.clone()),
            ] {
                object.object.slots.push(ebrim::Slot {
                    name: n.into(),
                    values: vec![v],
                });
            }
            self.entries.push(Stored {
                object,
                patient,
                unique_id,
                content,
                replaces: None,
            });
        }
        self.apply_replacements(&list.associations, &new_ids);
        if let Some(u) = ss.external_id(scheme::SS_UNIQUE_ID) {
            self.submission_sets.insert(u.value.clone());
        }
        Ok(respond(&[]))
    }

    /// ITI-18 (FindDocuments only).
    pub(crate) fn stored_query(&mut self, call: &Call<'_>) -> Result<Answer, Fault> {
        let req = payload(call, ns::QUERY, "AdhocQueryRequest")?;
        let q = req
            .child(ns::RIM, "AdhocQuery")
            .ok_or_else(|| sender("InvalidRequest", "AdhocQueryRequest has no AdhocQuery"))?;
        let return_type = req
            .child(ns::QUERY, "ResponseOption")
            .and_then(|o| o.attr("returnType"))
            .unwrap_or("LeafClass");
        let respond = |errors: &[RegistryErrorEntry], objects: &str| {
            let status = if errors.is_empty() {
                ebrim::STATUS_SUCCESS
            } else {
                ebrim::STATUS_FAILURE
            };
            let mut body = format!(
                r#"<query:AdhocQueryResponse xmlns:query="{}" xmlns:rs="{}" {} status="{status}">"#,
                ns::QUERY,
                ns::RS,
                ebrim::RIM_XMLNS
            );
            ebrim::write_errors(&mut body, errors);
            body.push_str(objects);
            body.push_str("</query:AdhocQueryResponse>");
            Answer {
                action: action::ITI18_RESPONSE,
                body,
                attachments: Vec::new(),
            }
        };
        let id = q.attr("id").unwrap_or_default();
        if id == GET_DOCUMENTS || id == GET_ASSOCIATIONS {
            let slots: crate::SlotMap = ebrim::read_slots(q)
                .into_iter()
                .map(|s| (s.name, s.values))
                .collect();
            let (errors, objects) = if id == GET_DOCUMENTS {
                self.get_documents(&slots, call)
            } else {
                self.get_associations(&slots, call)
            };
            return Ok(respond(&errors, &objects));
        }
        if id != FIND_DOCUMENTS {
            return Ok(respond(
                &[err(
                    codes::UNKNOWN_STORED_QUERY,
                    format!(
                        "stored query {id} is not supported (FindDocuments {FIND_DOCUMENTS}, GetDocuments {GET_DOCUMENTS}, GetAssociations {GET_ASSOCIATIONS})"
                    ),
                    id,
                )],
                "",
            ));
        }
        let slots: crate::SlotMap = ebrim::read_slots(q)
            .into_iter()
            .map(|s| (s.name, s.values))
            .collect();
        let values = |n: &str| slots.get(n).map(|v| query_values(v)).unwrap_or_default();
        let pids = values("$XDSDocumentEntryPatientId");
        let [pid] = pids.as_slice() else {
            return Ok(respond(
                &[err(
                    codes::PARAM_NUMBER,
                    "$XDSDocumentEntryPatientId: exactly one value required",
                    "",
                )],
                "",
            ));
        };
        let patient = match Ins::parse_cx("$XDSDocumentEntryPatientId", pid) {
            Ok(p) => p,
            Err(e) => return Ok(respond(&[err(codes::UNKNOWN_PATIENT, e.to_string(), "")], "")),
        };
        if &patient != call.vihf_patient {
            return Err(sender(
                "DMPVIHFInvalide",
                format!(
                    "the VIHF resource-id {} is not the queried patient {patient}",
                    call.vihf_patient
                ),
            ));
        }
        let statuses = values("$XDSDocumentEntryStatus");
        if statuses.is_empty() {
            return Ok(respond(
                &[err(
                    codes::PARAM_NUMBER,
                    "$XDSDocumentEntryStatus is required",
                    "",
                )],
                "",
            ));
        }
        let mut ranges = Vec::new();
        for (slot, name) in [
            ("CreationTime", "creationTime"),
            ("ServiceStartTime", "serviceStartTime"),
            ("ServiceStopTime", "serviceStopTime"),
        ] {
            let from = values(&format!("$XDSDocumentEntry{slot}From")).into_iter().next();
            let to = values(&format!("$XDSDocumentEntry{slot}To")).into_iter().next();
            for v in from.iter().chain(to.iter()) {
                if Dtm::parse(slot, v).is_err() {
                    return Ok(respond(
                        &[err(
                            codes::METADATA,
                            format!("$XDSDocumentEntry{slot}: `{v}` is not a DTM"),
                            "",
                        )],
                        "",
                    ));
                }
            }
            ranges.push((name, from, to));
        }
        let code_filters: Vec<(&str, Vec<String>)> = [
            ("ClassCode", scheme::DOC_CLASS),
            ("TypeCode", scheme::DOC_TYPE),
            ("PracticeSettingCode", scheme::DOC_PRACTICE_SETTING),
            ("HealthcareFacilityTypeCode", scheme::DOC_FACILITY_TYPE),
            ("FormatCode", scheme::DOC_FORMAT),
            ("ConfidentialityCode", scheme::DOC_CONFIDENTIALITY),
            ("EventCodeList", scheme::DOC_EVENT),
        ]
        .into_iter()
        .map(|(slot, sch)| (sch, values(&format!("$XDSDocumentEntry{slot}"))))
        .filter(|(_, v)| !v.is_empty())
        .collect();

        let authors = values("$XDSDocumentEntryAuthorPerson");
        let mut objects = String::from("<rim:RegistryObjectList>");
        for s in self.visible(call) {
            if s.patient != patient || !statuses.iter().any(|st| st == s.status()) {
                continue;
            }
            let o = &s.object.object;
            if visibility::is_signature_document(o) {
                continue;
            }
            let in_range = ranges.iter().all(|(name, from, to)| {
                let v = o.slot_value(name).map(full);
                match (from, to) {
                    (None, None) => true,
                    _ => v.is_some_and(|v| {
                        from.as_ref().is_none_or(|f| v >= full(f)) && to.as_ref().is_none_or(|t| v < full(t))
                    }),
                }
            });
            let codes_match = code_filters.iter().all(|(sch, wanted)| {
                o.classifications_by_scheme(sch).any(|c| {
                    let have = format!(
                        "{}^^{}",
                        c.node_representation.as_deref().unwrap_or_default(),
                        c.slot_value("codingScheme").unwrap_or_default()
                    );
                    wanted.contains(&have)
                })
            });
            if !(in_range && codes_match && author_matches(o, &authors)) {
                continue;
            }
            if return_type == "ObjectRef" {
                let _ = write!(objects, r#"<rim:ObjectRef id="{}"/>"#, esc_attr(&o.id));
            } else {
                ebrim::write_extrinsic_object(&mut objects, &s.object);
            }
        }
        objects.push_str("</rim:RegistryObjectList>");
        Ok(respond(&[], &objects))
    }

    /// ITI-43.
    pub(crate) fn retrieve(&mut self, config: &SimConfig, call: &Call<'_>) -> Result<Answer, Fault> {
        let req = payload(call, ns::XDSB, "RetrieveDocumentSetRequest")?;
        let mut errors = Vec::new();
        let mut found = String::new();
        let mut attachments = Vec::new();
        let requests: Vec<_> = req.children_named(ns::XDSB, "DocumentRequest").collect();
        if requests.is_empty() {
            return Err(sender(
                "InvalidRequest",
                "RetrieveDocumentSetRequest has no DocumentRequest",
            ));
        }
        for d in &requests {
            let text = |n: &str| {
                d.child(ns::XDSB, n)
                    .map(|e| e.text.trim().to_string())
                    .unwrap_or_default()
            };
            let repo = text("RepositoryUniqueId");
            let uid = text("DocumentUniqueId");
            if repo != config.repository_unique_id {
                errors.push(err(
                    codes::UNKNOWN_REPOSITORY,
                    format!("repository {repo} is not {}", config.repository_unique_id),
                    &uid,
                ));
                continue;
            }
            let stored = self
                .visible(call)
                .find(|s| s.unique_id == uid && s.status() != status::DELETED);
            let Some(s) = stored else {
                errors.push(err(
                    codes::DOCUMENT_UNIQUE_ID,
                    format!("no document {uid} in this DMP"),
                    &uid,
                ));
                continue;
            };
            let cid = format!("doc{}@dmp-sim", attachments.len() + 1);
            let mime = s.object.mime_type.clone().unwrap_or_else(|| "text/xml".into());
            let _ = write!(
                found,
                r#"<xdsb:DocumentResponse><xdsb:RepositoryUniqueId>{}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>{}</xdsb:DocumentUniqueId><xdsb:mimeType>{}</xdsb:mimeType><xdsb:Document><xop:Include xmlns:xop="{}" href="cid:{}"/></xdsb:Document></xdsb:DocumentResponse>"#,
                esc(&repo),
                esc(&uid),
                esc(&mime),
                ns::XOP,
                esc_attr(&cid)
            );
            attachments.push(Attachment {
                content_id: cid,
                content_type: mime,
                data: s.content.clone(),
            });
        }
        let status = if errors.is_empty() {
            ebrim::STATUS_SUCCESS
        } else if attachments.is_empty() {
            ebrim::STATUS_FAILURE
        } else {
            ebrim::STATUS_PARTIAL_SUCCESS
        };
        let mut body = format!(
            r#"<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="{}" xmlns:rs="{}"><rs:RegistryResponse status="{status}">"#,
            ns::XDSB,
            ns::RS
        );
        ebrim::write_errors(&mut body, &errors);
        body.push_str("</rs:RegistryResponse>");
        body.push_str(&found);
        body.push_str("</xdsb:RetrieveDocumentSetResponse>");
        Ok(Answer {
            action: action::ITI43_RESPONSE,
            body,
            attachments,
        })
    }

    /// ITI-57 (availability status changes: archive, unarchive, delete).
    pub(crate) fn update_status(&mut self, call: &Call<'_>) -> Result<Answer, Fault> {
        let respond =
            |errors: &[RegistryErrorEntry]| registry_response(action::ITI57_RESPONSE, errors, false);
        let req = payload(call, ns::LCM, "SubmitObjectsRequest")?;
        let list_el = req
            .child(ns::RIM, "RegistryObjectList")
            .ok_or_else(|| sender("InvalidRequest", "SubmitObjectsRequest has no RegistryObjectList"))?;
        let list = ebrim::read_object_list(list_el);
        let mut errors = Vec::new();
        // Tolerant like the DMP: the official TD3.3 requests omit classifiedObject on the
        // submission set's author classification.
        let Some(ss) = list.packages.first() else {
            return Ok(respond(&[err(
                codes::METADATA,
                "the update has no submission set",
                "",
            )]));
        };
        let Some(ss_patient) = check_submission_set(ss, &mut errors) else {
            return Ok(respond(&errors));
        };
        if ss_patient != *call.vihf_patient {
            return Err(sender(
                "DMPVIHFInvalide",
                format!(
                    "the VIHF resource-id {} is not the update's patient {ss_patient}",
                    call.vihf_patient
                ),
            ));
        }
        if !list.extrinsic_objects.is_empty() {
            return Ok(respond(&self.update_metadata(&list, ss, call)));
        }
        let updates: Vec<_> = list
            .associations
            .iter()
            .filter(|a| a.association_type == association::UPDATE_AVAILABILITY_STATUS)
            .collect();
        if updates.is_empty() {
            errors.push(err(
                codes::METADATA,
                "no UpdateAvailabilityStatus association",
                &ss.id,
            ));
        }
        let mut changes = Vec::new();
        for a in updates {
            let Some(i) = self.entries.iter().position(|s| s.object.object.id == a.target) else {
                errors.push(err(
                    codes::METADATA_UPDATE,
                    format!("{}: no document entry {}", a.id, a.target),
                    &a.id,
                ));
                continue;
            };
            let s = &self.entries[i];
            if s.patient != ss_patient {
                errors.push(err(
                    codes::PATIENT_MISMATCH,
                    format!("{}: the document belongs to another patient", a.id),
                    &a.id,
                ));
                continue;
            }
            let original = a.slot_value("OriginalStatus").unwrap_or_default();
            let new = a.slot_value("NewStatus").unwrap_or_default();
            if original != s.status() {
                errors.push(err(
                    codes::METADATA_UPDATE,
                    format!(
                        "{}: OriginalStatus {original} is not the document's status {}",
                        a.id,
                        s.status()
                    ),
                    &a.id,
                ));
                continue;
            }
            let allowed = matches!(
                (original, new),
                (status::APPROVED, status::ARCHIVED)
                    | (status::ARCHIVED, status::APPROVED)
                    | (status::APPROVED | status::ARCHIVED, status::DELETED)
            );
            if !allowed {
                errors.push(err(
                    codes::METADATA_UPDATE,
                    format!("{}: {original} → {new} is not allowed", a.id),
                    &a.id,
                ));
                continue;
            }
            changes.push((i, new.to_string()));
        }
        if errors.is_empty() {
            for (i, new) in changes {
                self.entries[i].object.object.status = Some(new);
            }
        }
        Ok(respond(&errors))
    }
}

/// TD0.2.
pub(crate) fn test_patient(config: &SimConfig, grants: &Grants, call: &Call<'_>) -> Result<Answer, Fault> {
    let req = payload(call, ns::HL7, "PRPA_IN201307UV02")?;
    let value = req
        .path(
            ns::HL7,
            &[
                "controlActProcess",
                "queryByParameter",
                "parameterList",
                "patientIdentifier",
                "value",
            ],
        )
        .ok_or_else(|| {
            sender(
                "InvalidRequest",
                "PRPA_IN201307UV02 has no parameterList/patientIdentifier/value",
            )
        })?;
    let ins = Ins::new(
        "patientIdentifier",
        value.attr("extension").unwrap_or_default(),
        value.attr("root").unwrap_or_default(),
    )
    .map_err(|e| sender("InvalidRequest", e.to_string()))?;
    if ins != *call.vihf_patient {
        return Err(sender(
            "DMPVIHFInvalide",
            format!(
                "the VIHF resource-id {} is not the tested patient {ins}",
                call.vihf_patient
            ),
        ));
    }
    let message_id = req.child(ns::HL7, "id");
    let query_id = req.path(ns::HL7, &["controlActProcess", "queryByParameter", "queryId"]);
    let id_xml = |e: Option<&Element>| {
        e.map(|e| {
            format!(
                r#"<id root="{}" extension="{}"/>"#,
                esc_attr(e.attr("root").unwrap_or_default()),
                esc_attr(e.attr("extension").unwrap_or_default())
            )
        })
        .unwrap_or_default()
    };
    let record = config.patients.iter().find(|p| p.ins == ins);
    let (authorization, treating_doctor) = record
        .map(|r| grants.of(r, &call.card.id))
        .unwrap_or((Authorization::NonExiste, false));
    let auth_code = match authorization {
        Authorization::Valide => "VALIDE",
        Authorization::Expire => "EXPIRE",
        Authorization::Interdit => "INTERDIT",
        _ => "NON_EXISTE",
    };
    let subject = match record {
        Some(r) => format!(
            concat!(
                r#"<subject typeCode="SUBJ" contextConductionInd="false"><registrationEvent classCode="REG" moodCode="EVN"><statusCode code="completed"/>"#,
                r#"<subject1 typeCode="SBJ"><patient classCode="PAT"><id root="{}" extension="{}"/><statusCode code="{}"/>"#,
                r#"<patientPerson classCode="PSN" determinerCode="INSTANCE"><name><given>{}</given><family>{}</family></name>"#,
                r#"<administrativeGenderCode code="{}"/><birthTime value="{}"/></patientPerson></patient></subject1>"#,
                r#"<custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.213.4.1.1.1"/></assignedEntity></custodian>"#,
                "</registrationEvent></subject>"
            ),
            r.ins.authority().oid(),
            r.ins.value(),
            if r.closed { "nullified" } else { "active" },
            esc(&r.given),
            esc(&r.family),
            esc_attr(&r.gender),
            esc_attr(&r.birth_date),
        ),
        None => String::new(),
    };
    let query_ack = query_id
        .map(|q| id_xml(Some(q)).replacen("<id ", "<queryId ", 1))
        .unwrap_or_default();
    let body = format!(
        concat!(
            r#"<PRPA_IN201308UV02 xmlns="{hl7}" xmlns:xsi="{xsi}" ITSVersion="XML_1.0"><id root="{uuid}"/>"#,
            r#"<interactionId root="2.16.840.1.113883.1.6" extension="PRPA_IN201308UV02"/><processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="NE"/>"#,
            r#"<attentionLine><keyWordText code="AUTORISATION" codeSystem="1.2.250.1.213.4.1.2.6.1"/><value xsi:type="CV" code="{auth}" codeSystem="1.2.250.1.213.4.1.2.6.2"/></attentionLine>"#,
            r#"<attentionLine><keyWordText code="STATUT_MT" codeSystem="1.2.250.1.213.4.1.2.6.3"/><value xsi:type="BL" value="{mt}"/></attentionLine>"#,
            r#"<acknowledgement typeCode="AA"><targetMessage>{msg}</targetMessage></acknowledgement>"#,
            r#"<controlActProcess classCode="CACT" moodCode="EVN"><reasonCode code="TEST_EXST" codeSystem="1.2.250.1.213.1.1.4.11"/>{subject}"#,
            r#"<queryAck>{qack}<queryResponseCode code="{qrc}"/></queryAck></controlActProcess></PRPA_IN201308UV02>"#
        ),
        hl7 = ns::HL7,
        xsi = ns::XSI,
        uuid = uuid::Uuid::new_v4(),
        auth = auth_code,
        mt = treating_doctor,
        msg = id_xml(message_id),
        subject = subject,
        qack = query_ack,
        qrc = if record.is_some() { "OK" } else { "NF" },
    );
    Ok(Answer {
        action: action::TD02_RESPONSE,
        body,
        attachments: Vec::new(),
    })
}
