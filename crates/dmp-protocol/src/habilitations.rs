//! The DMP's `Habilitations` web service (WSDL `Habilitations.wsdl`, namespace
//! `urn:si-dmp-habilitations`, SOAP 1.2 document/literal): TD0.3 `setAuthorization` (the
//! professional declares or removes their authorization on the patient's DMP, and the
//! treating-doctor status) and TD1.6 `listAuthorizationByPatient` (the professionals authorized
//! on or blocked from the DMP). The patient is the VIHF's resource-id; the bodies name only
//! what the call changes or lists.

use crate::xml::{Element, esc};

/// The service's namespace.
pub const NS: &str = "urn:si-dmp-habilitations";

/// The `status` of a successful answer.
pub const DMP_OK: &str = "DMPOk";

/// Why an answer cannot be taken as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HabilitationsError {
    /// The answer lacks an element the WSDL's answer has.
    #[error("the answer has no <{0}>")]
    Missing(&'static str),
    /// A value the WSDL's enumeration does not define.
    #[error("unknown {what} `{value}`")]
    Unknown {
        /// Which enumeration.
        what: &'static str,
        /// The value read.
        value: String,
    },
}

/// `actionType` of `setAuthorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationAction {
    /// `AJOUT`: the professional declares their authorization.
    Ajout,
    /// `SUPPRESSION`: the professional removes it.
    Suppression,
}

impl AuthorizationAction {
    /// The WSDL's value.
    pub fn code(self) -> &'static str {
        match self {
            AuthorizationAction::Ajout => "AJOUT",
            AuthorizationAction::Suppression => "SUPPRESSION",
        }
    }

    /// Reads an `actionType` value.
    pub fn from_code(code: &str) -> Option<AuthorizationAction> {
        match code {
            "AJOUT" => Some(AuthorizationAction::Ajout),
            "SUPPRESSION" => Some(AuthorizationAction::Suppression),
            _ => None,
        }
    }
}

/// The `role` of `setAuthorization` that makes the professional the patient's treating doctor.
pub const ROLE_TREATING_DOCTOR: &str = "MEDECIN_TRAITANT";

/// The `setAuthorization` body. `treating_doctor` adds the `MEDECIN_TRAITANT` role.
pub fn set_authorization(action: AuthorizationAction, treating_doctor: bool) -> String {
    let role = if treating_doctor {
        format!("<role>{ROLE_TREATING_DOCTOR}</role>")
    } else {
        String::new()
    };
    format!(
        r#"<setAuthorization xmlns="{NS}"><action>{}</action>{role}</setAuthorization>"#,
        action.code()
    )
}

/// `modeType`: which authorizations TD1.6 lists, and the state of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// `ACTIVE`: authorized professionals.
    Active,
    /// `INTERDITE`: professionals the patient blocked.
    Interdite,
    /// `TOUTE`: both (request only).
    Toute,
}

impl ListMode {
    /// The WSDL's value.
    pub fn code(self) -> &'static str {
        match self {
            ListMode::Active => "ACTIVE",
            ListMode::Interdite => "INTERDITE",
            ListMode::Toute => "TOUTE",
        }
    }

    /// Reads a `modeType` value.
    pub fn from_code(code: &str) -> Option<ListMode> {
        match code {
            "ACTIVE" => Some(ListMode::Active),
            "INTERDITE" => Some(ListMode::Interdite),
            "TOUTE" => Some(ListMode::Toute),
            _ => None,
        }
    }
}

/// The `listAuthorizationByPatient` body.
pub fn list_authorization_by_patient(mode: ListMode) -> String {
    format!(
        r#"<listAuthorizationByPatient xmlns="{NS}"><mode>{}</mode></listAuthorizationByPatient>"#,
        mode.code()
    )
}

/// A `WebServiceResponse`: `status` (`DMPOk` or the DMP's error code) and its `context` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebServiceStatus {
    /// `DMPOk`, or the DMP's error code.
    pub status: String,
    /// The DMP's explanation (may be empty).
    pub context: String,
}

impl WebServiceStatus {
    /// The DMP did what was asked.
    pub fn is_ok(&self) -> bool {
        self.status == DMP_OK
    }
}

fn text(e: &Element, ns_: &str, name: &str) -> String {
    e.child(ns_, name)
        .map(|c| c.text_trimmed().to_string())
        .unwrap_or_default()
}

/// The `output` of an answer in namespace `ns_` and its status.
pub(crate) fn output<'a>(
    answer: &'a Element,
    ns_: &str,
) -> Result<(&'a Element, WebServiceStatus), HabilitationsError> {
    let output = answer
        .child(ns_, "output")
        .ok_or(HabilitationsError::Missing("output"))?;
    let status = text(output, ns_, "status");
    if status.is_empty() {
        return Err(HabilitationsError::Missing("status"));
    }
    Ok((
        output,
        WebServiceStatus {
            status,
            context: text(output, ns_, "context"),
        },
    ))
}

/// Reads a `setAuthorizationResponse`.
pub fn read_set_authorization_response(answer: &Element) -> Result<WebServiceStatus, HabilitationsError> {
    output(answer, NS).map(|(_, s)| s)
}

/// One professional of a TD1.6 answer (`AuthorizationByPatient`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfessionalAuthorization {
    /// The professional's national identifier (e.g. `899900063480`).
    pub national_id: String,
    /// Its OID (`1.2.250.1.71.4.2.1`).
    pub national_id_type: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Specialty codes (`G15_10/SM26`).
    pub specialty_codes: Vec<String>,
    /// Their labels.
    pub specialty_labels: Vec<String>,
    /// When the authorization started (`YYYYMMDDhhmmss`).
    pub start: String,
    /// When it last changed.
    pub last_action: String,
    /// `ACTIVE` or `INTERDITE`.
    pub mode: ListMode,
    /// `MEDECIN_TRAITANT` when the professional is the treating doctor.
    pub treating_doctor: bool,
}

/// What a TD1.6 answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationList {
    /// The answer's status.
    pub status: WebServiceStatus,
    /// The professionals.
    pub professionals: Vec<ProfessionalAuthorization>,
}

/// Reads a `listAuthorizationByPatientResponse`.
pub fn read_authorization_list(answer: &Element) -> Result<AuthorizationList, HabilitationsError> {
    let (output, status) = output(answer, NS)?;
    let mut professionals = Vec::new();
    for p in output.children_named(NS, "listOfAuthorizationByPatient") {
        let all = |name: &str| {
            p.children_named(NS, name)
                .map(|c| c.text_trimmed().to_string())
                .collect::<Vec<_>>()
        };
        let mode = text(p, NS, "mode");
        professionals.push(ProfessionalAuthorization {
            national_id: text(p, NS, "nationalId"),
            national_id_type: text(p, NS, "nationalIdType"),
            first_name: text(p, NS, "firstName"),
            last_name: text(p, NS, "lastName"),
            specialty_codes: all("codeSpeciality"),
            specialty_labels: all("libSpeciality"),
            start: text(p, NS, "startOfAuthorization"),
            last_action: text(p, NS, "lastActionDate"),
            mode: ListMode::from_code(&mode).ok_or(HabilitationsError::Unknown {
                what: "mode",
                value: mode,
            })?,
            treating_doctor: all("specificRight").iter().any(|r| r == ROLE_TREATING_DOCTOR),
        });
    }
    Ok(AuthorizationList {
        status,
        professionals,
    })
}

/// The `setAuthorizationResponse` / `listAuthorizationByPatientResponse` bodies the DMP answers
/// (the simulator writes them).
pub mod answer {
    use super::*;

    fn status_xml(status: &str, context: &str) -> String {
        format!(
            "<ns1:status>{}</ns1:status><ns1:context>{}</ns1:context>",
            esc(status),
            esc(context)
        )
    }

    /// `setAuthorizationResponse`.
    pub fn set_authorization(status: &str, context: &str) -> String {
        format!(
            r#"<ns1:setAuthorizationResponse xmlns:ns1="{NS}"><ns1:output>{}</ns1:output></ns1:setAuthorizationResponse>"#,
            status_xml(status, context)
        )
    }

    /// `listAuthorizationByPatientResponse`.
    pub fn authorization_list(professionals: &[ProfessionalAuthorization]) -> String {
        let mut body = format!(r#"<ns1:listAuthorizationByPatientResponse xmlns:ns1="{NS}"><ns1:output>"#);
        for p in professionals {
            body.push_str("<ns1:listOfAuthorizationByPatient>");
            for (name, value) in [
                ("nationalId", &p.national_id),
                ("nationalIdType", &p.national_id_type),
                ("firstName", &p.first_name),
                ("lastName", &p.last_name),
            ] {
                body.push_str(&format!("<ns1:{name}>{}</ns1:{name}>", esc(value)));
            }
            for c in &p.specialty_codes {
                body.push_str(&format!("<ns1:codeSpeciality>{}</ns1:codeSpeciality>", esc(c)));
            }
            for l in &p.specialty_labels {
                body.push_str(&format!("<ns1:libSpeciality>{}</ns1:libSpeciality>", esc(l)));
            }
            body.push_str(&format!(
                "<ns1:startOfAuthorization>{}</ns1:startOfAuthorization><ns1:lastActionDate>{}</ns1:lastActionDate><ns1:mode>{}</ns1:mode>",
                esc(&p.start),
                esc(&p.last_action),
                p.mode.code()
            ));
            if p.treating_doctor {
                body.push_str(&format!(
                    "<ns1:specificRight>{ROLE_TREATING_DOCTOR}</ns1:specificRight>"
                ));
            }
            body.push_str("</ns1:listOfAuthorizationByPatient>");
        }
        body.push_str(&status_xml(DMP_OK, ""));
        body.push_str("</ns1:output></ns1:listAuthorizationByPatientResponse>");
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap;

    fn example(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/dmp-package/examples/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("example")
    }

    #[test]
    fn the_official_td03_answer_reads_as_ok_with_its_context() {
        let env = soap::parse_envelope(&example("TD0.3_-_Mise_a_jour_de_l_autorisation_reponse.xml"))
            .expect("soap");
        let s = read_set_authorization_response(env.payload.as_ref().expect("payload")).expect("read");
        assert!(s.is_ok());
        assert_eq!(s.context, "Autorisation déjà présente aucune action effectuée");
    }

    #[test]
    fn the_official_td03_request_body_is_what_we_write() {
        let env = soap::parse_envelope(&example("TD0.3_-_Mise_a_jour_de_l_autorisation_requete.xml"))
            .expect("soap");
        let official = env.payload.expect("payload");
        let ours = crate::xml::parse_str(&set_authorization(AuthorizationAction::Ajout, false)).expect("xml");
        assert!(official.is(NS, "setAuthorization") && ours.is(NS, "setAuthorization"));
        let children = |e: &Element| {
            e.children
                .iter()
                .map(|c| (c.ns.clone(), c.name.clone(), c.text_trimmed().to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(children(&ours), children(&official));
        let with_role =
            crate::xml::parse_str(&set_authorization(AuthorizationAction::Suppression, true)).expect("xml");
        assert_eq!(
            with_role.child(NS, "role").map(Element::text_trimmed),
            Some(ROLE_TREATING_DOCTOR)
        );
    }

    #[test]
    fn the_official_td16_answer_lists_its_professional() {
        let env = soap::parse_envelope(&example("TD1.6_-_Liste_des_PS_autorises_ou_bloques_reponse.xml"))
            .expect("soap");
        let list = read_authorization_list(env.payload.as_ref().expect("payload")).expect("read");
        assert!(list.status.is_ok());
        assert_eq!(
            list.professionals,
            vec![ProfessionalAuthorization {
                national_id: "899900063480".into(),
                national_id_type: "1.2.250.1.71.4.2.1".into(),
                first_name: "MAX".into(),
                last_name: "LIBRE".into(),
                specialty_codes: vec!["G15_10/SM26".into()],
                specialty_labels: vec!["Médecin - Qualifié en Médecine générale (SM)".into()],
                start: "20210601135804".into(),
                last_action: "20210601140606".into(),
                mode: ListMode::Active,
                treating_doctor: false,
            }]
        );
        // What the simulator answers reads back the same.
        let ours = crate::xml::parse_str(&answer::authorization_list(&list.professionals)).expect("xml");
        assert_eq!(read_authorization_list(&ours).expect("read"), list);
    }

    #[test]
    fn the_official_td16_request_body_is_what_we_write() {
        let env = soap::parse_envelope(&example("TD1.6_-_Liste_des_PS_autorises_ou_bloques_requete.xml"))
            .expect("soap");
        let official = env.payload.expect("payload");
        let ours = crate::xml::parse_str(&list_authorization_by_patient(ListMode::Toute)).expect("xml");
        assert!(ours.is(NS, "listAuthorizationByPatient"));
        assert_eq!(
            ours.child(NS, "mode").map(Element::text_trimmed),
            official.child(NS, "mode").map(Element::text_trimmed)
        );
    }
}
