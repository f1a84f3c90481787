//! How a SubmitDocuments request's metadata meets the CDA header of its document (SPEC.md §2):
//! what the caller omits is taken from the header, what the caller gives must agree with it
//! (`INVALID_ARGUMENT` naming the field and both values otherwise), and the XDS rules of the
//! DMP hold for the result.

use dmp_protocol::cda::{CdaError, CdaHeader};
use dmp_protocol::xds::visibility::{self, Restriction};
use dmp_protocol::xds::{self, DocumentEntry, Dtm, Ins, UniqueId};
use ehealth_proto::dmp::v1 as pb;

use crate::conversions;
use crate::error::DmpError;

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

/// The DocumentEntry of `documents[index]`: the caller's metadata, completed from the CDA
/// header, and refused where the two disagree.
pub(crate) fn entry_from_request(
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
            reason: CdaError::Missing(
                "recordTarget/patientRole has no INS id (root 1.2.250.1.213.1.4.8, .10 or .11)",
            ),
        });
    }
    if !header.patient_ins.contains(patient) {
        return Err(DmpError::CdaContradiction {
            index,
            field: "patient",
            given: patient.to_cx(),
            cda: format!("{} (recordTarget/patientRole/id)", header.patient_ins[0].to_cx()),
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
            let given = conversions::dtm(&f("creation_time"), t)?;
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
        conversions::optional_code(&f("type_code"), m.type_code.as_ref())?,
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
        confidentiality_codes.push(conversions::code(
            &f(&format!("confidentiality_codes[{i}]")),
            Some(c),
        )?);
    }
    if confidentiality_codes.is_empty()
        && let Some(c) = &header.confidentiality_code
    {
        confidentiality_codes.push(c.clone());
    }
    // Visibility is named by its typed field, never smuggled in as free-form codes.
    if let Some((i, c)) = m
        .confidentiality_codes
        .iter()
        .enumerate()
        .find(|(_, c)| Restriction::from_code(&c.code, &c.code_system).is_some())
    {
        return Err(DmpError::field(
            f(&format!("confidentiality_codes[{i}]")),
            format!(
                "`{}` is a visibility restriction: name it in metadata.visibility",
                c.code
            ),
        ));
    }
    let restrictions = conversions::visibility(&f("visibility"), &m.visibility)?;
    visibility::check(&restrictions).map_err(|rule| DmpError::field(f("visibility"), rule.to_string()))?;
    confidentiality_codes.extend(restrictions.iter().map(|r| r.code()));

    let mut authors = Vec::new();
    for (i, a) in m.authors.iter().enumerate() {
        let author = conversions::author(&f(&format!("authors[{i}]")), a)?;
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
            let g = conversions::author(&f("legal_authenticator"), g)?;
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
            Some(t) => Some(conversions::dtm(&f(name), t)?),
            None => cda.clone(),
        })
    };
    let mut event_codes = Vec::new();
    for (i, c) in m.event_codes.iter().enumerate() {
        event_codes.push(conversions::code(&f(&format!("event_codes[{i}]")), Some(c))?);
    }
    let entry = DocumentEntry {
        entry_id,
        unique_id,
        patient: patient.clone(),
        title,
        comments: (!m.comments.is_empty()).then(|| m.comments.clone()),
        class_code: conversions::code(&f("class_code"), m.class_code.as_ref())?,
        type_code,
        format_code: conversions::code(&f("format_code"), m.format_code.as_ref())?,
        confidentiality_codes,
        healthcare_facility_type_code: conversions::code(
            &f("healthcare_facility_type_code"),
            m.healthcare_facility_type_code.as_ref(),
        )?,
        practice_setting_code: conversions::code(
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
