//! The DMP's `PatientsSpecific` web service (WSDL `PatientsSpecific.wsdl`, namespace
//! `urn:si-dmp-patients`, SOAP 1.2 document/literal): TD0.4 `patientList`, the DMPs the
//! professional is authorized on, changed since a date (last document added, or last
//! authorization).

use crate::habilitations::{HabilitationsError, WebServiceStatus, output};
use crate::xml::{Element, esc};

/// The service's namespace.
pub const NS: &str = "urn:si-dmp-patients";

/// `dateTypeEnum`: which date `startDate` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateType {
    /// `LASTDOC`: DMPs with a document added since the date.
    LastDocument,
    /// `LASTAUTORIZATION`: DMPs the professional was authorized on since the date.
    LastAuthorization,
}

impl DateType {
    /// The WSDL's value.
    pub fn code(self) -> &'static str {
        match self {
            DateType::LastDocument => "LASTDOC",
            DateType::LastAuthorization => "LASTAUTORIZATION",
        }
    }

    /// Reads a `dateTypeEnum` value.
    pub fn from_code(code: &str) -> Option<DateType> {
        match code {
            "LASTDOC" => Some(DateType::LastDocument),
            "LASTAUTORIZATION" => Some(DateType::LastAuthorization),
            _ => None,
        }
    }
}

/// The `patientList` body; `start_date` is `YYYYMMDDhhmmss`.
pub fn patient_list(start_date: &str, date_type: DateType) -> String {
    format!(
        r#"<patientList xmlns="{NS}"><startDate>{}</startDate><dateType>{}</dateType></patientList>"#,
        esc(start_date),
        date_type.code()
    )
}

/// One DMP of a TD0.4 answer (`PatientListData`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedPatient {
    /// (identifier, OID): INS-C and INS alike.
    pub ids: Vec<(String, String)>,
    /// Family name.
    pub last_name: String,
    /// Given name.
    pub first_name: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// `MT`: the professional is the patient's treating doctor.
    pub treating_doctor: bool,
    /// `message`: the patient left a message for the professional.
    pub message: bool,
    /// `lastAccessDate` (`YYYYMMDDhhmmss`, empty when absent).
    pub last_access: String,
    /// `lastUpdateDate`.
    pub last_update: String,
    /// `lastAddDate`.
    pub last_add: String,
}

/// What a TD0.4 answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientList {
    /// The answer's status.
    pub status: WebServiceStatus,
    /// The DMPs.
    pub patients: Vec<ListedPatient>,
}

fn text(e: &Element, name: &str) -> String {
    e.child(NS, name)
        .map(|c| c.text_trimmed().to_string())
        .unwrap_or_default()
}

/// Reads a `patientListResponse`.
pub fn read_patient_list(answer: &Element) -> Result<PatientList, HabilitationsError> {
    let (out, status) = output(answer, NS)?;
    let patients = out
        .children_named(NS, "patientlistData")
        .map(|p| ListedPatient {
            ids: p
                .children_named(NS, "patientIdentifier")
                .map(|i| (text(i, "nationalId"), text(i, "nationalIdType")))
                .collect(),
            last_name: text(p, "lastName"),
            first_name: text(p, "firstName"),
            birth_date: text(p, "dateOfBirth"),
            treating_doctor: text(p, "MT") == "true",
            message: text(p, "message") == "true",
            last_access: text(p, "lastAccessDate"),
            last_update: text(p, "lastUpdateDate"),
            last_add: text(p, "lastAddDate"),
        })
        .collect();
    Ok(PatientList { status, patients })
}

/// The `patientListResponse` the DMP answers (the simulator writes it).
pub fn answer(patients: &[ListedPatient]) -> String {
    let mut body = format!(r#"<ns1:patientListResponse xmlns:ns1="{NS}"><ns1:output>"#);
    for p in patients {
        body.push_str("<ns1:patientlistData>");
        for (id, oid) in &p.ids {
            body.push_str(&format!(
                "<ns1:patientIdentifier><ns1:nationalId>{}</ns1:nationalId><ns1:nationalIdType>{}</ns1:nationalIdType></ns1:patientIdentifier>",
                esc(id),
                esc(oid)
            ));
        }
        body.push_str(&format!(
            "<ns1:lastName>{}</ns1:lastName><ns1:firstName>{}</ns1:firstName><ns1:dateOfBirth>{}</ns1:dateOfBirth><ns1:MT>{}</ns1:MT><ns1:message>{}</ns1:message>",
            esc(&p.last_name),
            esc(&p.first_name),
            esc(&p.birth_date),
            p.treating_doctor,
            p.message
        ));
        for (name, value) in [
            ("lastAccessDate", &p.last_access),
            ("lastUpdateDate", &p.last_update),
            ("lastAddDate", &p.last_add),
        ] {
            if !value.is_empty() {
                body.push_str(&format!("<ns1:{name}>{}</ns1:{name}>", esc(value)));
            }
        }
        body.push_str("</ns1:patientlistData>");
    }
    body.push_str("<ns1:status>DMPOk</ns1:status></ns1:output></ns1:patientListResponse>");
    body
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
    fn the_official_td04_answer_lists_two_dmps() {
        let env =
            soap::parse_envelope(&example("TD0.4_-_Liste_des_DMP_autorises_reponse.xml")).expect("soap");
        let list = read_patient_list(env.payload.as_ref().expect("payload")).expect("read");
        assert!(list.status.is_ok());
        assert_eq!(list.patients.len(), 2);
        assert_eq!(
            list.patients[1],
            ListedPatient {
                ids: vec![
                    ("1197854176879056415520".into(), "1.2.250.1.213.1.4.2".into()),
                    ("207058575627097".into(), "1.2.250.1.213.1.4.10".into()),
                ],
                last_name: "patb-quatre".into(),
                first_name: "LAURENCE".into(),
                birth_date: "19070525".into(),
                treating_doctor: true,
                message: false,
                last_access: "20210521101631".into(),
                last_update: "20210506124503".into(),
                last_add: "20210521101631".into(),
            }
        );
        // What the simulator answers reads back the same.
        let ours = crate::xml::parse_str(&answer(&list.patients)).expect("xml");
        assert_eq!(read_patient_list(&ours).expect("read"), list);
    }

    #[test]
    fn the_official_td04_request_body_is_what_we_write() {
        let env =
            soap::parse_envelope(&example("TD0.4_-_Liste_des_DMP_autorises_requete.xml")).expect("soap");
        let official = env.payload.expect("payload");
        let ours =
            crate::xml::parse_str(&patient_list("20101010202010", DateType::LastDocument)).expect("xml");
        let children = |e: &Element| {
            e.children
                .iter()
                .map(|c| (c.ns.clone(), c.name.clone(), c.text_trimmed().to_string()))
                .collect::<Vec<_>>()
        };
        assert!(ours.is(NS, "patientList"));
        assert_eq!(children(&ours), children(&official));
    }
}
