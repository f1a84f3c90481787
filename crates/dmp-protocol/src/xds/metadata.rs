//! XDS document entries, submission sets and submissions: their consistency rules and their
//! ebRIM form (written for ITI-41 and ITI-57, read back from ITI-18 answers).

use crate::ebrim::{
    Association, Classification, ExternalIdentifier, ExtrinsicObject, ObjectList, RegistryObject, Slot,
};

use super::{
    Author, AvailabilityStatus, Code, Dtm, FResult, FieldError, Ins, Institution, Oid, STRUCTURE_OID,
    UniqueId, association, scheme,
};

/// A validated DocumentEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentEntry {
    /// The ExtrinsicObject id: a symbolic id or `urn:uuid:…`.
    pub entry_id: String,
    /// XDSDocumentEntry.uniqueId.
    pub unique_id: UniqueId,
    /// XDSDocumentEntry.patientId (also its sourcePatientId).
    pub patient: Ins,
    /// The title (`Name`).
    pub title: String,
    /// Comments (`Description`).
    pub comments: Option<String>,
    /// classCode.
    pub class_code: Code,
    /// typeCode (LOINC).
    pub type_code: Code,
    /// formatCode.
    pub format_code: Code,
    /// confidentialityCode (at least one).
    pub confidentiality_codes: Vec<Code>,
    /// healthcareFacilityTypeCode.
    pub healthcare_facility_type_code: Code,
    /// practiceSettingCode.
    pub practice_setting_code: Code,
    /// eventCodeList.
    pub event_codes: Vec<Code>,
    /// languageCode (`fr-FR`).
    pub language_code: String,
    /// mimeType.
    pub mime_type: String,
    /// creationTime.
    pub creation_time: Dtm,
    /// serviceStartTime.
    pub service_start_time: Option<Dtm>,
    /// serviceStopTime.
    pub service_stop_time: Option<Dtm>,
    /// author (at least one).
    pub authors: Vec<Author>,
    /// legalAuthenticator.
    pub legal_authenticator: Option<Author>,
}

/// A validated SubmissionSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionSet {
    /// The RegistryPackage id (`SubmissionSet01`).
    pub entry_id: String,
    /// XDSSubmissionSet.uniqueId.
    pub unique_id: UniqueId,
    /// XDSSubmissionSet.sourceId: the sending software installation.
    pub source_id: Oid,
    /// XDSSubmissionSet.patientId.
    pub patient: Ins,
    /// submissionTime.
    pub submission_time: Dtm,
    /// The title (`Name`).
    pub title: Option<String>,
    /// Comments (`Description`).
    pub comments: Option<String>,
    /// contentTypeCode.
    pub content_type_code: Code,
    /// author.
    pub author: Author,
}

fn slot(name: &str, value: impl Into<String>) -> Slot {
    Slot {
        name: name.into(),
        values: vec![value.into()],
    }
}

fn ext_id(id: String, scheme: &str, object: &str, value: String, name: &str) -> ExternalIdentifier {
    ExternalIdentifier {
        id,
        scheme: scheme.into(),
        registry_object: object.into(),
        value,
        name: Some(name.into()),
    }
}

impl DocumentEntry {
    /// Consistency rules that hold whatever the source of the values.
    pub fn check(&self, field: &str) -> FResult<()> {
        if self.confidentiality_codes.is_empty() {
            return Err(FieldError::new(
                format!("{field}.confidentiality_codes"),
                "at least one confidentialityCode is required",
            ));
        }
        if self.authors.is_empty() {
            return Err(FieldError::new(
                format!("{field}.authors"),
                "at least one author is required",
            ));
        }
        if let (Some(a), Some(b)) = (&self.service_start_time, &self.service_stop_time)
            && a > b
        {
            return Err(FieldError::new(
                format!("{field}.service_stop_time"),
                format!("{} is before service_start_time {}", b.as_str(), a.as_str()),
            ));
        }
        if self.title.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}.title"),
                "required (or a <title> in the CDA header)",
            ));
        }
        Ok(())
    }

    /// The entry as an ebRIM ExtrinsicObject (ids of classifications and identifiers derived
    /// from `entry_id`).
    pub fn to_rim(&self) -> ExtrinsicObject {
        let id = &self.entry_id;
        let mut slots = vec![
            slot("creationTime", self.creation_time.as_str()),
            slot("languageCode", &self.language_code),
        ];
        if let Some(l) = &self.legal_authenticator {
            slots.push(slot("legalAuthenticator", l.to_xcn()));
        }
        if let Some(t) = &self.service_start_time {
            slots.push(slot("serviceStartTime", t.as_str()));
        }
        if let Some(t) = &self.service_stop_time {
            slots.push(slot("serviceStopTime", t.as_str()));
        }
        // **Decision** — sourcePatientId (required by XDS) is the INS itself: the gateway knows
        // no local patient id.
        slots.push(slot("sourcePatientId", self.patient.to_cx()));
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("{id}-cl{n}")
        };
        let mut classifications = Vec::new();
        for a in &self.authors {
            classifications.push(a.classification(next(), scheme::DOC_AUTHOR, id));
        }
        classifications.push(self.class_code.classification(next(), scheme::DOC_CLASS, id));
        classifications.push(self.type_code.classification(next(), scheme::DOC_TYPE, id));
        for c in &self.confidentiality_codes {
            classifications.push(c.classification(next(), scheme::DOC_CONFIDENTIALITY, id));
        }
        classifications.push(self.format_code.classification(next(), scheme::DOC_FORMAT, id));
        classifications.push(self.healthcare_facility_type_code.classification(
            next(),
            scheme::DOC_FACILITY_TYPE,
            id,
        ));
        classifications.push(self.practice_setting_code.classification(
            next(),
            scheme::DOC_PRACTICE_SETTING,
            id,
        ));
        for c in &self.event_codes {
            classifications.push(c.classification(next(), scheme::DOC_EVENT, id));
        }
        ExtrinsicObject {
            object: RegistryObject {
                id: id.clone(),
                lid: None,
                object_type: Some(scheme::DOCUMENT_ENTRY_OBJECT_TYPE.into()),
                status: None,
                slots,
                name: Some(self.title.clone()),
                description: self.comments.clone(),
                classifications,
                external_identifiers: vec![
                    ext_id(
                        format!("{id}-ei1"),
                        scheme::DOC_PATIENT_ID,
                        id,
                        self.patient.to_cx(),
                        "XDSDocumentEntry.patientId",
                    ),
                    ext_id(
                        format!("{id}-ei2"),
                        scheme::DOC_UNIQUE_ID,
                        id,
                        self.unique_id.to_string(),
                        "XDSDocumentEntry.uniqueId",
                    ),
                ],
            },
            mime_type: Some(self.mime_type.clone()),
        }
    }
}

impl SubmissionSet {
    /// The set as an ebRIM RegistryPackage, with its submission-set classification.
    pub fn to_rim(&self) -> RegistryObject {
        let id = &self.entry_id;
        RegistryObject {
            id: id.clone(),
            lid: None,
            object_type: None,
            status: None,
            slots: vec![slot("submissionTime", self.submission_time.as_str())],
            name: self.title.clone(),
            description: self.comments.clone(),
            classifications: vec![
                self.author
                    .classification(format!("{id}-cl1"), scheme::SS_AUTHOR, id),
                self.content_type_code
                    .classification(format!("{id}-cl2"), scheme::SS_CONTENT_TYPE, id),
                Classification {
                    id: format!("{id}-cl3"),
                    scheme: None,
                    node: Some(scheme::SUBMISSION_SET_NODE.into()),
                    classified_object: id.clone(),
                    node_representation: None,
                    slots: vec![],
                    name: None,
                },
            ],
            external_identifiers: vec![
                ext_id(
                    format!("{id}-ei1"),
                    scheme::SS_PATIENT_ID,
                    id,
                    self.patient.to_cx(),
                    "XDSSubmissionSet.patientId",
                ),
                ext_id(
                    format!("{id}-ei2"),
                    scheme::SS_SOURCE_ID,
                    id,
                    self.source_id.to_string(),
                    "XDSSubmissionSet.sourceId",
                ),
                ext_id(
                    format!("{id}-ei3"),
                    scheme::SS_UNIQUE_ID,
                    id,
                    self.unique_id.to_string(),
                    "XDSSubmissionSet.uniqueId",
                ),
            ],
        }
    }
}

/// A submission: the set, its document entries, and the signature document's entry (which
/// `signs` the submission set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The submission set.
    pub set: SubmissionSet,
    /// The documents' entries.
    pub entries: Vec<DocumentEntry>,
    /// The signature document's entry.
    pub signature: Option<DocumentEntry>,
    /// `RPLC` associations: (the submitted entry's id, the entryUUID of the document it
    /// replaces).
    pub replacements: Vec<(String, String)>,
}

impl Submission {
    /// Consistency between the set and its entries.
    pub fn check(&self) -> FResult<()> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.patient != self.set.patient {
                return Err(FieldError::new(
                    format!("documents[{i}].patient"),
                    format!(
                        "{} differs from the submission set's patient {}",
                        e.patient, self.set.patient
                    ),
                ));
            }
            e.check(&format!("documents[{i}].metadata"))?;
            for (j, other) in self.entries.iter().enumerate().take(i) {
                if other.unique_id == e.unique_id {
                    return Err(FieldError::new(
                        format!("documents[{i}].metadata.unique_id"),
                        format!("`{}` is also the unique id of documents[{j}]", e.unique_id),
                    ));
                }
            }
            if e.unique_id == self.set.unique_id {
                return Err(FieldError::new(
                    format!("documents[{i}].metadata.unique_id"),
                    "equals the submission set's unique id",
                ));
            }
        }
        if self.entries.is_empty() {
            return Err(FieldError::new("documents", "at least one document is required"));
        }
        for (i, (entry, target)) in self.replacements.iter().enumerate() {
            if !self.entries.iter().any(|e| &e.entry_id == entry) {
                return Err(FieldError::new(
                    format!("replacements[{i}]"),
                    format!("`{entry}` is not an entry of the submission"),
                ));
            }
            if self.replacements[..i].iter().any(|(_, t)| t == target) {
                return Err(FieldError::new(
                    format!("replacements[{i}]"),
                    format!("`{target}` is replaced twice in the submission"),
                ));
            }
        }
        Ok(())
    }

    /// The ebRIM objects of the submission: set, entries, HasMember associations, and the
    /// signature's `signs` association.
    pub fn to_rim(&self) -> ObjectList {
        let set = self.set.to_rim();
        let mut list = ObjectList::default();
        let mut assoc = 0;
        let mut member = |target: &str, list: &mut ObjectList| {
            assoc += 1;
            list.associations.push(Association {
                id: format!("Association{assoc:02}"),
                association_type: association::HAS_MEMBER.into(),
                source: set.id.clone(),
                target: target.to_string(),
                status: None,
                slots: vec![slot("SubmissionSetStatus", "Original")],
            });
        };
        for e in &self.entries {
            member(&e.entry_id, &mut list);
            list.extrinsic_objects.push(e.to_rim());
        }
        if let Some(s) = &self.signature {
            member(&s.entry_id, &mut list);
            list.extrinsic_objects.push(s.to_rim());
            list.associations.push(Association {
                id: "AssociationSigns".into(),
                association_type: association::SIGNS.into(),
                source: s.entry_id.clone(),
                target: set.id.clone(),
                status: None,
                slots: vec![slot("SubmissionSetStatus", "Original")],
            });
        }
        for (n, (entry, target)) in self.replacements.iter().enumerate() {
            list.associations.push(Association {
                id: format!("AssociationReplace{:02}", n + 1),
                association_type: association::RPLC.into(),
                source: entry.clone(),
                target: target.clone(),
                status: None,
                slots: Vec::new(),
            });
        }
        list.packages.push(set);
        list
    }
}

impl Code {
    fn classification(&self, id: String, scheme: &str, object: &str) -> Classification {
        Classification {
            id,
            scheme: Some(scheme.to_string()),
            node: None,
            classified_object: object.to_string(),
            node_representation: Some(self.code.clone()),
            slots: vec![Slot {
                name: "codingScheme".into(),
                values: vec![self.scheme.clone()],
            }],
            name: Some(self.display.clone()),
        }
    }
}

impl Author {
    fn classification(&self, id: String, scheme: &str, object: &str) -> Classification {
        let mut slots = vec![Slot {
            name: "authorPerson".into(),
            values: vec![self.to_xcn()],
        }];
        if let Some(i) = &self.institution {
            slots.push(Slot {
                name: "authorInstitution".into(),
                values: vec![format!("{}^^^^^&{STRUCTURE_OID}&ISO^IDNST^^^{}", i.name, i.id)],
            });
        }
        if let Some(r) = &self.role {
            slots.push(Slot {
                name: "authorRole".into(),
                values: vec![r.to_ce()],
            });
        }
        if let Some(s) = &self.specialty {
            slots.push(Slot {
                name: "authorSpecialty".into(),
                values: vec![s.to_ce()],
            });
        }
        Classification {
            id,
            scheme: Some(scheme.to_string()),
            node: None,
            classified_object: object.to_string(),
            node_representation: Some(String::new()),
            slots,
            name: None,
        }
    }
}

/// A DocumentEntry as a registry returns it (TD3.1), read leniently: the registry is the
/// authority on what it stores, so what cannot be read is left empty rather than failing the
/// whole search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryEntry {
    /// The entryUUID.
    pub entry_uuid: String,
    /// XDSDocumentEntry.uniqueId.
    pub unique_id: String,
    /// The title.
    pub title: String,
    /// Comments.
    pub comments: String,
    /// classCode.
    pub class_code: Option<Code>,
    /// typeCode.
    pub type_code: Option<Code>,
    /// formatCode.
    pub format_code: Option<Code>,
    /// confidentialityCode.
    pub confidentiality_codes: Vec<Code>,
    /// healthcareFacilityTypeCode.
    pub healthcare_facility_type_code: Option<Code>,
    /// practiceSettingCode.
    pub practice_setting_code: Option<Code>,
    /// eventCodeList.
    pub event_codes: Vec<Code>,
    /// languageCode.
    pub language_code: String,
    /// mimeType.
    pub mime_type: String,
    /// creationTime, when it is a valid DTM.
    pub creation_time: Option<Dtm>,
    /// serviceStartTime, when it is a valid DTM.
    pub service_start_time: Option<Dtm>,
    /// serviceStopTime, when it is a valid DTM.
    pub service_stop_time: Option<Dtm>,
    /// Authors whose authorPerson has an id.
    pub authors: Vec<Author>,
    /// legalAuthenticator.
    pub legal_authenticator: Option<Author>,
    /// The availability status, when it is one of the DMP's.
    pub status: Option<AvailabilityStatus>,
    /// repositoryUniqueId.
    pub repository_unique_id: String,
    /// size in bytes.
    pub size: Option<u64>,
    /// SHA-1 of the document (hex).
    pub hash: String,
}

fn code_of(c: &Classification) -> Code {
    Code {
        code: c.node_representation.clone().unwrap_or_default(),
        scheme: c.slot_value("codingScheme").unwrap_or_default().to_string(),
        display: c.name.clone().unwrap_or_default(),
    }
}

/// `code^display^scheme`, missing components empty.
fn code_of_ce(ce: &str) -> Code {
    let p: Vec<&str> = ce.split('^').collect();
    Code {
        code: p.first().unwrap_or(&"").to_string(),
        display: p.get(1).unwrap_or(&"").to_string(),
        scheme: p.get(2).unwrap_or(&"").to_string(),
    }
}

fn dtm_slot(o: &RegistryObject, name: &str) -> Option<Dtm> {
    o.slot_value(name).and_then(|v| Dtm::parse(name, v).ok())
}

fn author_of(c: &Classification) -> Option<Author> {
    let mut a = Author::parse_xcn(c.slot_value("authorPerson")?)?;
    a.specialty = c.slot_value("authorSpecialty").map(code_of_ce);
    a.role = c.slot_value("authorRole").map(code_of_ce);
    if let Some(inst) = c.slot_value("authorInstitution") {
        let p: Vec<&str> = inst.split('^').collect();
        a.institution = Some(Institution {
            name: p.first().unwrap_or(&"").to_string(),
            id: p.get(9).unwrap_or(&"").to_string(),
        });
    }
    Some(a)
}

impl RegistryEntry {
    /// Reads a registry's ExtrinsicObject.
    pub fn from_rim(e: &ExtrinsicObject) -> RegistryEntry {
        let o = &e.object;
        let code = |scheme: &str| o.classifications_by_scheme(scheme).next().map(code_of);
        let codes = |scheme: &str| {
            o.classifications_by_scheme(scheme)
                .map(code_of)
                .collect::<Vec<_>>()
        };
        RegistryEntry {
            entry_uuid: o.id.clone(),
            unique_id: o
                .external_id(scheme::DOC_UNIQUE_ID)
                .map(|x| x.value.clone())
                .unwrap_or_default(),
            title: o.name.clone().unwrap_or_default(),
            comments: o.description.clone().unwrap_or_default(),
            class_code: code(scheme::DOC_CLASS),
            type_code: code(scheme::DOC_TYPE),
            format_code: code(scheme::DOC_FORMAT),
            confidentiality_codes: codes(scheme::DOC_CONFIDENTIALITY),
            healthcare_facility_type_code: code(scheme::DOC_FACILITY_TYPE),
            practice_setting_code: code(scheme::DOC_PRACTICE_SETTING),
            event_codes: codes(scheme::DOC_EVENT),
            language_code: o.slot_value("languageCode").unwrap_or_default().to_string(),
            mime_type: e.mime_type.clone().unwrap_or_default(),
            creation_time: dtm_slot(o, "creationTime"),
            service_start_time: dtm_slot(o, "serviceStartTime"),
            service_stop_time: dtm_slot(o, "serviceStopTime"),
            authors: o
                .classifications_by_scheme(scheme::DOC_AUTHOR)
                .filter_map(author_of)
                .collect(),
            legal_authenticator: o.slot_value("legalAuthenticator").and_then(Author::parse_xcn),
            status: o.status.as_deref().and_then(AvailabilityStatus::from_urn),
            repository_unique_id: o.slot_value("repositoryUniqueId").unwrap_or_default().to_string(),
            size: o.slot_value("size").and_then(|s| s.parse().ok()),
            hash: o.slot_value("hash").unwrap_or_default().to_string(),
        }
    }
}
