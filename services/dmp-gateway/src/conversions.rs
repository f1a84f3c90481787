//! The one place where `dmp.v1` protobuf messages meet the DMP model of `dmp-protocol`: request
//! fields are checked into model values (errors name the request field), and what the DMP
//! answers is turned into response messages.

use dmp_protocol::ebrim::{RegistryErrorEntry, ResponseStatus};
use dmp_protocol::vihf::{PROFESSION_SYSTEM, PURPOSES_OF_USE, SPECIALTY_SYSTEM, VihfContext};
use dmp_protocol::xds::visibility::{self, Restriction};
use dmp_protocol::xds::{
    self, Author, AvailabilityStatus, Code, Dtm, FieldError, Ins, Institution, RegistryEntry,
    check_professional_id, check_text,
};
use dmp_protocol::{habilitations, hl7v3, xades};
use ehealth_proto::dmp::v1 as pb;

// ---------------------------------------------------------------------------------------------
// Requests into the model.

/// The patient's INS.
pub(crate) fn ins(field: &str, p: Option<&pb::PatientId>) -> Result<Ins, FieldError> {
    match p {
        Some(p) => Ins::new(field, &p.ins, &p.assigning_authority),
        None => Err(FieldError::new(
            format!("{field}.ins"),
            "the patient's INS is required",
        )),
    }
}

/// A required code: code, coding scheme and display name present.
pub(crate) fn code(field: &str, c: Option<&pb::Code>) -> Result<Code, FieldError> {
    let Some(c) = c.filter(|c| !c.code.is_empty() || !c.code_system.is_empty()) else {
        return Err(FieldError::new(field, "required"));
    };
    Code::from_parts(field, &c.code, &c.code_system, &c.display_name)
}

/// A code that may be absent (all three parts empty).
pub(crate) fn optional_code(field: &str, c: Option<&pb::Code>) -> Result<Option<Code>, FieldError> {
    match c {
        Some(c) if !(c.code.is_empty() && c.code_system.is_empty() && c.display_name.is_empty()) => {
            code(field, Some(c)).map(Some)
        }
        _ => Ok(None),
    }
}

/// An author or legal authenticator given by the caller.
pub(crate) fn author(field: &str, a: &pb::Author) -> Result<Author, FieldError> {
    check_professional_id(&format!("{field}.id"), &a.id)?;
    check_text(&format!("{field}.family_name"), &a.family_name, "a name")?;
    check_text(&format!("{field}.given_name"), &a.given_name, "a name")?;
    let institution = if a.institution_name.is_empty() && a.institution_id.is_empty() {
        None
    } else {
        if a.institution_name.is_empty() {
            return Err(FieldError::new(
                format!("{field}.institution_name"),
                "required with institution_id",
            ));
        }
        check_text(
            &format!("{field}.institution_name"),
            &a.institution_name,
            "a name",
        )?;
        if a.institution_id.is_empty() || !a.institution_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError::new(
                format!("{field}.institution_id"),
                "the structure identifier (letters and digits) is required with institution_name",
            ));
        }
        Some(Institution {
            name: a.institution_name.clone(),
            id: a.institution_id.clone(),
        })
    };
    Ok(Author {
        id: a.id.clone(),
        family: a.family_name.clone(),
        given: a.given_name.clone(),
        role: optional_code(&format!("{field}.role"), a.role.as_ref())?,
        specialty: optional_code(&format!("{field}.specialty"), a.specialty.as_ref())?,
        institution,
    })
}

/// A protobuf timestamp as a DTM.
pub(crate) fn dtm(field: &str, ts: &prost_types::Timestamp) -> Result<Dtm, FieldError> {
    Dtm::from_unix(field, ts.seconds, ts.nanos)
}

/// A document status the caller names, `None` for UNSPECIFIED or an unknown number.
pub(crate) fn availability(status: i32) -> Option<AvailabilityStatus> {
    Some(match pb::DocumentStatus::try_from(status).ok()? {
        pb::DocumentStatus::Approved => AvailabilityStatus::Approved,
        pb::DocumentStatus::Deprecated => AvailabilityStatus::Deprecated,
        pb::DocumentStatus::Archived => AvailabilityStatus::Archived,
        pb::DocumentStatus::Deleted => AvailabilityStatus::Deleted,
        pb::DocumentStatus::Unspecified => return None,
    })
}

/// The call's authentication context, checked, as the VIHF describes it.
pub(crate) fn vihf_context(
    a: Option<&pb::AuthenticationContext>,
    default_purpose: &str,
) -> Result<VihfContext, FieldError> {
    let Some(a) = a else {
        return Err(FieldError::new("auth_context", "required"));
    };
    check_professional_id("auth_context.professional_id", &a.professional_id)?;
    if a.structure_id.is_empty() || !a.structure_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FieldError::new(
            "auth_context.structure_id",
            "the structure identifier (Identifiant_Structure, letters and digits) is required",
        ));
    }
    let sector_ok = a
        .activity_sector
        .split_once('^')
        .is_some_and(|(code, oid)| !code.is_empty() && xds::is_oid(oid));
    if !sector_ok {
        return Err(FieldError::new(
            "auth_context.activity_sector",
            format!(
                "`{}` is not a Secteur_Activite like SA07^1.2.250.1.71.4.2.4",
                a.activity_sector
            ),
        ));
    }
    // The card's codes are the only ones the VIHF carries: a bare code gets its system, and its
    // code as display name.
    let with_system = |c: Option<&pb::Code>, system: &str| {
        c.cloned().map(|mut c| {
            if c.code_system.is_empty() {
                c.code_system = system.to_string();
            }
            if c.display_name.is_empty() {
                c.display_name = c.code.clone();
            }
            c
        })
    };
    // Profession and specialty come from the card (issue 16): what the caller states is
    // checked against the certificate when the VIHF is built.
    let profession = optional_code(
        "auth_context.profession",
        with_system(a.profession.as_ref(), PROFESSION_SYSTEM).as_ref(),
    )?;
    let specialty = optional_code(
        "auth_context.specialty",
        with_system(a.specialty.as_ref(), SPECIALTY_SYSTEM).as_ref(),
    )?;
    let purpose = if a.purpose_of_use.is_empty() {
        default_purpose.to_string()
    } else {
        a.purpose_of_use.clone()
    };
    if !PURPOSES_OF_USE.iter().any(|(code, _)| *code == purpose) {
        return Err(FieldError::new(
            "auth_context.purpose_of_use",
            format!("`{purpose}` is not an access mode (normal, urgence, bris_de_glace, centre15)"),
        ));
    }
    Ok(VihfContext {
        professional_id: a.professional_id.clone(),
        structure_id: a.structure_id.clone(),
        activity_sector: a.activity_sector.clone(),
        profession,
        specialty,
        purpose_of_use: purpose,
    })
}

// ---------------------------------------------------------------------------------------------
// The DMP's answers into responses.

fn code_to_pb(c: &Code) -> pb::Code {
    pb::Code {
        code: c.code.clone(),
        code_system: c.scheme.clone(),
        display_name: c.display.clone(),
    }
}

fn author_to_pb(a: &Author) -> pb::Author {
    pb::Author {
        id: a.id.clone(),
        family_name: a.family.clone(),
        given_name: a.given.clone(),
        role: a.role.as_ref().map(code_to_pb),
        specialty: a.specialty.as_ref().map(code_to_pb),
        institution_name: a.institution.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        institution_id: a.institution.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
    }
}

fn timestamp(d: &Dtm) -> Option<prost_types::Timestamp> {
    d.to_unix()
        .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 })
}

pub(crate) fn status_to_pb(s: Option<AvailabilityStatus>) -> pb::DocumentStatus {
    match s {
        Some(AvailabilityStatus::Approved) => pb::DocumentStatus::Approved,
        Some(AvailabilityStatus::Deprecated) => pb::DocumentStatus::Deprecated,
        Some(AvailabilityStatus::Archived) => pb::DocumentStatus::Archived,
        Some(AvailabilityStatus::Deleted) => pb::DocumentStatus::Deleted,
        None => pb::DocumentStatus::Unspecified,
    }
}

/// An entry the registry returned.
pub(crate) fn document_entry(e: &RegistryEntry) -> pb::DocumentEntry {
    pb::DocumentEntry {
        unique_id: e.unique_id.clone(),
        entry_uuid: e.entry_uuid.clone(),
        title: e.title.clone(),
        class_code: e.class_code.as_ref().map(code_to_pb),
        type_code: e.type_code.as_ref().map(code_to_pb),
        format_code: e.format_code.as_ref().map(code_to_pb),
        confidentiality_codes: e.confidentiality_codes.iter().map(code_to_pb).collect(),
        healthcare_facility_type_code: e.healthcare_facility_type_code.as_ref().map(code_to_pb),
        practice_setting_code: e.practice_setting_code.as_ref().map(code_to_pb),
        event_codes: e.event_codes.iter().map(code_to_pb).collect(),
        language_code: e.language_code.clone(),
        mime_type: e.mime_type.clone(),
        creation_time: e.creation_time.as_ref().and_then(timestamp),
        service_start_time: e.service_start_time.as_ref().and_then(timestamp),
        service_stop_time: e.service_stop_time.as_ref().and_then(timestamp),
        authors: e.authors.iter().map(author_to_pb).collect(),
        legal_authenticator: e.legal_authenticator.as_ref().map(author_to_pb),
        comments: e.comments.clone(),
        status: status_to_pb(e.status) as i32,
        repository_unique_id: e.repository_unique_id.clone(),
        size: e.size.unwrap_or_default(),
        hash: e.hash.clone(),
        visibility: visibility::of_codes(
            e.confidentiality_codes
                .iter()
                .map(|c| (c.code.as_str(), c.scheme.as_str())),
        )
        .into_iter()
        .map(|r| visibility_to_pb(r) as i32)
        .collect(),
        // Filled by FindDocuments from the RPLC associations (find.rs).
        replaces_entry_uuid: String::new(),
        replaced_by_entry_uuid: String::new(),
    }
}

/// A registry response's status.
pub(crate) fn response_status(s: ResponseStatus) -> pb::RegistryResponseStatus {
    match s {
        ResponseStatus::Success => pb::RegistryResponseStatus::Success,
        ResponseStatus::PartialSuccess => pb::RegistryResponseStatus::PartialSuccess,
        ResponseStatus::Failure => pb::RegistryResponseStatus::Failure,
    }
}

/// A registry response's errors, every one of them.
pub(crate) fn registry_errors(errors: Vec<RegistryErrorEntry>) -> Vec<pb::RegistryError> {
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

/// The TD0.2 authorization; UNSPECIFIED when the answer had none.
pub(crate) fn authorization(a: Option<hl7v3::Authorization>) -> pb::Authorization {
    match a {
        Some(hl7v3::Authorization::Valide) => pb::Authorization::Valide,
        Some(hl7v3::Authorization::Expire) => pb::Authorization::Expire,
        Some(hl7v3::Authorization::Interdit) => pb::Authorization::Interdit,
        Some(hl7v3::Authorization::NonExiste) => pb::Authorization::NonExiste,
        None => pb::Authorization::Unspecified,
    }
}

/// The identity traits of a TD0.2 answer.
pub(crate) fn patient_traits(t: &hl7v3::PatientTraits) -> pb::PatientTraits {
    pb::PatientTraits {
        identifiers: t
            .ids
            .iter()
            .map(|(root, extension)| pb::PatientId {
                ins: extension.clone(),
                assigning_authority: root.clone(),
            })
            .collect(),
        prefix: t.prefix.clone(),
        given_names: t.given.clone(),
        family_name: t.family.clone(),
        family_name_qualifier: t.family_qualifier.clone(),
        gender: t.gender.clone(),
        birth_date: t.birth_date.clone(),
        telecoms: t.telecoms.clone(),
        internet_account_open: t.internet_account_open.unwrap_or(false),
    }
}

/// The TD0.3 action the caller names, `None` for UNSPECIFIED or an unknown number.
pub(crate) fn authorization_action(a: i32) -> Option<habilitations::AuthorizationAction> {
    match pb::AuthorizationAction::try_from(a).ok()? {
        pb::AuthorizationAction::Grant => Some(habilitations::AuthorizationAction::Ajout),
        pb::AuthorizationAction::Remove => Some(habilitations::AuthorizationAction::Suppression),
        pb::AuthorizationAction::Unspecified => None,
    }
}

/// The TD1.6 mode the caller names (UNSPECIFIED is ALL), `None` for an unknown number.
pub(crate) fn list_mode(m: i32) -> Option<habilitations::ListMode> {
    match pb::AuthorizationListMode::try_from(m).ok()? {
        pb::AuthorizationListMode::Active => Some(habilitations::ListMode::Active),
        pb::AuthorizationListMode::Blocked => Some(habilitations::ListMode::Interdite),
        pb::AuthorizationListMode::All | pb::AuthorizationListMode::Unspecified => {
            Some(habilitations::ListMode::Toute)
        }
    }
}

/// One professional of a TD1.6 answer. Dates the DMP writes that are not DTMs are left out.
pub(crate) fn professional_authorization(
    p: &habilitations::ProfessionalAuthorization,
) -> pb::ProfessionalAuthorization {
    let time = |s: &str| Dtm::parse("", s).ok().as_ref().and_then(timestamp);
    pb::ProfessionalAuthorization {
        professional_id: p.national_id.clone(),
        professional_id_type: p.national_id_type.clone(),
        given_name: p.first_name.clone(),
        family_name: p.last_name.clone(),
        specialties: p
            .specialty_codes
            .iter()
            .enumerate()
            .map(|(i, code)| pb::Code {
                code: code.clone(),
                code_system: String::new(),
                display_name: p.specialty_labels.get(i).cloned().unwrap_or_default(),
            })
            .collect(),
        authorized_since: time(&p.start),
        last_action: time(&p.last_action),
        mode: match p.mode {
            habilitations::ListMode::Active => pb::AuthorizationListMode::Active,
            habilitations::ListMode::Interdite => pb::AuthorizationListMode::Blocked,
            habilitations::ListMode::Toute => pb::AuthorizationListMode::All,
        } as i32,
        treating_doctor: p.treating_doctor,
    }
}

/// The XAdES signature document a submission carries (`Signature01`): typeCode E1762 and the
/// XML-DSig formatCode. FindDocuments returns clinical documents only.
pub(crate) fn is_signature_document(e: &RegistryEntry) -> bool {
    e.type_code.as_ref().is_some_and(|c| c.code == xades::TYPE_CODE.0)
        && e.format_code
            .as_ref()
            .is_some_and(|c| c.code == xades::FORMAT_CODE.0)
}

fn visibility_to_pb(r: Restriction) -> pb::Visibility {
    match r {
        Restriction::MaskedToProfessionals => pb::Visibility::MaskedToProfessionals,
        Restriction::HiddenFromPatient => pb::Visibility::HiddenFromPatient,
        Restriction::HiddenFromLegalRepresentatives => pb::Visibility::HiddenFromLegalRepresentatives,
    }
}

/// The restrictions a request names; errors name `field[i]`.
pub(crate) fn visibility(field: &str, values: &[i32]) -> Result<Vec<Restriction>, FieldError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match pb::Visibility::try_from(*v) {
            Ok(pb::Visibility::MaskedToProfessionals) => Ok(Restriction::MaskedToProfessionals),
            Ok(pb::Visibility::HiddenFromPatient) => Ok(Restriction::HiddenFromPatient),
            Ok(pb::Visibility::HiddenFromLegalRepresentatives) => {
                Ok(Restriction::HiddenFromLegalRepresentatives)
            }
            _ => Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{v} is not a visibility restriction"),
            )),
        })
        .collect()
}

/// One DMP of a TD0.4 answer. Dates the DMP writes that are not DTMs are left out.
pub(crate) fn authorized_patient(p: &dmp_protocol::patients::ListedPatient) -> pb::AuthorizedPatient {
    let time = |s: &str| Dtm::parse("", s).ok().as_ref().and_then(timestamp);
    pb::AuthorizedPatient {
        identifiers: p
            .ids
            .iter()
            .map(|(id, oid)| pb::PatientId {
                ins: id.clone(),
                assigning_authority: oid.clone(),
            })
            .collect(),
        family_name: p.last_name.clone(),
        given_name: p.first_name.clone(),
        birth_date: p.birth_date.clone(),
        treating_doctor: p.treating_doctor,
        message: p.message,
        last_access: time(&p.last_access),
        last_update: time(&p.last_update),
        last_document_added: time(&p.last_add),
    }
}

/// A DocumentEntry as the DMP returned it, back into the model (an ITI-57 metadata update
/// writes it again in full); errors name `document.<field>`.
pub(crate) fn registered_entry(
    d: &pb::DocumentEntry,
    patient: &Ins,
    entry_id: &str,
) -> Result<xds::DocumentEntry, FieldError> {
    let f = |name: &str| format!("document.{name}");
    let codes = |name: &str, list: &[pb::Code]| {
        list.iter()
            .enumerate()
            .map(|(i, c)| code(&f(&format!("{name}[{i}]")), Some(c)))
            .collect::<Result<Vec<_>, _>>()
    };
    let time = |name: &str, t: Option<&prost_types::Timestamp>| t.map(|t| dtm(&f(name), t)).transpose();
    Ok(xds::DocumentEntry {
        entry_id: entry_id.to_string(),
        unique_id: xds::UniqueId::parse(&f("unique_id"), &d.unique_id)?,
        patient: patient.clone(),
        title: d.title.clone(),
        comments: (!d.comments.is_empty()).then(|| d.comments.clone()),
        class_code: code(&f("class_code"), d.class_code.as_ref())?,
        type_code: code(&f("type_code"), d.type_code.as_ref())?,
        format_code: code(&f("format_code"), d.format_code.as_ref())?,
        confidentiality_codes: codes("confidentiality_codes", &d.confidentiality_codes)?,
        healthcare_facility_type_code: code(
            &f("healthcare_facility_type_code"),
            d.healthcare_facility_type_code.as_ref(),
        )?,
        practice_setting_code: code(&f("practice_setting_code"), d.practice_setting_code.as_ref())?,
        event_codes: codes("event_codes", &d.event_codes)?,
        language_code: d.language_code.clone(),
        mime_type: d.mime_type.clone(),
        creation_time: time("creation_time", d.creation_time.as_ref())?
            .ok_or_else(|| FieldError::new(f("creation_time"), "the DMP returned none"))?,
        service_start_time: time("service_start_time", d.service_start_time.as_ref())?,
        service_stop_time: time("service_stop_time", d.service_stop_time.as_ref())?,
        authors: d
            .authors
            .iter()
            .enumerate()
            .map(|(i, a)| author(&f(&format!("authors[{i}]")), a))
            .collect::<Result<Vec<_>, _>>()?,
        legal_authenticator: d
            .legal_authenticator
            .as_ref()
            .map(|a| author(&f("legal_authenticator"), a))
            .transpose()?,
    })
}
