//! The HL7 version 3 messages of TD0.2, the test of a patient's DMP and of the professional's
//! authorization on it: the query `PRPA_IN201307UV02` and the answer `PRPA_IN201308UV02` with
//! its `AUTORISATION` attention line (VALIDE, EXPIRE, INTERDIT, NON_EXISTE).

use crate::xds::{Dtm, Ins};
use crate::xml::{Element, esc, esc_attr, ns};

/// The query's interaction id (and root element).
pub const QUERY: &str = "PRPA_IN201307UV02";
/// The answer's interaction id (and root element).
pub const ANSWER: &str = "PRPA_IN201308UV02";

/// Why an answer cannot be taken as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7v3Error {
    /// An `AUTORISATION` value the DMP does not define.
    #[error("unknown AUTORISATION value `{0}`")]
    UnknownAuthorization(String),
    /// The acknowledgement is not `AA`: the DMP refused the query.
    #[error("HL7 acknowledgement {ack}: {detail}")]
    Refused {
        /// The acknowledgement's typeCode (`AE`, `AR`, or empty).
        ack: String,
        /// The acknowledgement detail's text, empty when the DMP gave none.
        detail: String,
    },
}

/// What a TD0.2 query is made of.
#[derive(Debug, Clone)]
pub struct ExistenceQuery<'a> {
    /// OID of the sending device (the software installation).
    pub sender_oid: &'a str,
    /// The sending software's name.
    pub software_name: &'a str,
    /// The patient whose DMP is tested.
    pub patient: &'a Ins,
    /// `creationTime`.
    pub now: time::OffsetDateTime,
}

/// The `PRPA_IN201307UV02` query (message and query ids are fresh UUIDs under the sender's
/// OID).
pub fn existence_query(q: &ExistenceQuery<'_>) -> String {
    let sender = esc_attr(q.sender_oid);
    format!(
        concat!(
            r#"<{query} xmlns="{hl7}" ITSVersion="XML_1.0">"#,
            r#"<id root="{sender}.1" extension="{id}"/><creationTime value="{creation}"/>"#,
            r#"<interactionId root="2.16.840.1.113883.1.6" extension="{query}"/>"#,
            r#"<processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="AL"/>"#,
            r#"<receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.213.4.1.1.1"/><softwareName>DMP</softwareName></device></receiver>"#,
            r#"<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="{sender}"/><softwareName>{lps}</softwareName></device></sender>"#,
            r#"<controlActProcess classCode="CACT" moodCode="EVN">"#,
            r#"<reasonCode code="TEST_EXST" codeSystem="1.2.250.1.213.1.1.4.11" displayName="Test d'existence de dossier"/>"#,
            r#"<queryByParameter><queryId root="{sender}.2" extension="{qid}"/><statusCode code="new"/>"#,
            r#"<parameterList><patientIdentifier><value root="{oid}" extension="{ins}"/><semanticsText>Patient.id</semanticsText></patientIdentifier></parameterList>"#,
            r#"</queryByParameter></controlActProcess></{query}>"#
        ),
        query = QUERY,
        hl7 = ns::HL7,
        sender = sender,
        id = uuid::Uuid::new_v4(),
        // An HL7 TS to the second in UTC is written like an XDS DTM.
        creation = Dtm::from_offset_datetime(q.now).as_str(),
        lps = esc(q.software_name),
        qid = uuid::Uuid::new_v4(),
        oid = q.patient.authority().oid(),
        ins = q.patient.value(),
    )
}

/// The professional's authorization on the patient's DMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// `VALIDE`: the professional may read and write.
    Valide,
    /// `EXPIRE`: it existed and expired.
    Expire,
    /// `INTERDIT`: the patient blocked the professional.
    Interdit,
    /// `NON_EXISTE`: none was ever given.
    NonExiste,
}

impl Authorization {
    /// The `AUTORISATION` code.
    pub fn code(self) -> &'static str {
        match self {
            Authorization::Valide => "VALIDE",
            Authorization::Expire => "EXPIRE",
            Authorization::Interdit => "INTERDIT",
            Authorization::NonExiste => "NON_EXISTE",
        }
    }

    /// Reads an `AUTORISATION` code.
    pub fn from_code(code: &str) -> Option<Authorization> {
        Some(match code {
            "VALIDE" => Authorization::Valide,
            "EXPIRE" => Authorization::Expire,
            "INTERDIT" => Authorization::Interdit,
            "NON_EXISTE" => Authorization::NonExiste,
            _ => return None,
        })
    }
}

/// What a TD0.2 answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistenceAnswer {
    /// The `AUTORISATION` attention line, when the answer has one.
    pub authorization: Option<Authorization>,
    /// The `STATUT_MT` attention line: the professional is the patient's treating doctor.
    pub treating_doctor: Option<bool>,
    /// The query found the patient's DMP.
    pub dmp_exists: bool,
    /// The DMP exists and is not active.
    pub dmp_closed: bool,
    /// The identity traits the DMP holds, when it found the DMP.
    pub patient: Option<PatientTraits>,
}

/// The identity traits of `patient/patientPerson` in a TD0.2 answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientTraits {
    /// The patient's identifiers: (root OID, extension), INS-C and INS alike.
    pub ids: Vec<(String, String)>,
    /// `name/prefix` (civility).
    pub prefix: String,
    /// `name/given`, in order.
    pub given: Vec<String>,
    /// `name/family`.
    pub family: String,
    /// The family name's `qualifier` (`SP`, `BR`, …), empty without one.
    pub family_qualifier: String,
    /// `administrativeGenderCode` (`M`, `F`, `U`).
    pub gender: String,
    /// `birthTime` (`YYYYMMDD`).
    pub birth_date: String,
    /// `telecom` values (`mailto:…`, `tel:…`).
    pub telecoms: Vec<String>,
    /// The `COMPTE_INTERNET_OUVERT` observation: the patient opened their online account.
    pub internet_account_open: Option<bool>,
}

fn read_traits(patient: &Element) -> PatientTraits {
    let attr = |e: Option<&Element>, a: &str| e.and_then(|e| e.attr(a)).unwrap_or_default().to_string();
    let person = patient.child(ns::HL7, "patientPerson");
    let name = person.and_then(|p| p.child(ns::HL7, "name"));
    let family = name.and_then(|n| n.child(ns::HL7, "family"));
    let text = |e: Option<&Element>| e.map(|e| e.text_trimmed().to_string()).unwrap_or_default();
    let internet_account_open = patient
        .children_named(ns::HL7, "subjectOf")
        .filter_map(|s| s.child(ns::HL7, "administrativeObservation"))
        .find(|o| o.child(ns::HL7, "code").and_then(|c| c.attr("code")) == Some("COMPTE_INTERNET_OUVERT"))
        .and_then(|o| o.child(ns::HL7, "value").and_then(|v| v.attr("value")))
        .map(|v| v == "true");
    PatientTraits {
        ids: patient
            .children_named(ns::HL7, "id")
            .map(|i| (attr(Some(i), "root"), attr(Some(i), "extension")))
            .collect(),
        prefix: text(name.and_then(|n| n.child(ns::HL7, "prefix"))),
        given: name
            .map(|n| {
                n.children_named(ns::HL7, "given")
                    .map(|g| g.text_trimmed().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        family: text(family),
        family_qualifier: attr(family, "qualifier"),
        gender: attr(
            person.and_then(|p| p.child(ns::HL7, "administrativeGenderCode")),
            "code",
        ),
        birth_date: attr(person.and_then(|p| p.child(ns::HL7, "birthTime")), "value"),
        telecoms: person
            .map(|p| {
                p.children_named(ns::HL7, "telecom")
                    .filter_map(|t| t.attr("value").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        internet_account_open,
    }
}

/// Reads a `PRPA_IN201308UV02` element.
pub fn read_existence_answer(r: &Element) -> Result<ExistenceAnswer, Hl7v3Error> {
    let mut authorization = None;
    let mut treating_doctor = None;
    for line in r.children_named(ns::HL7, "attentionLine") {
        let key = line.child(ns::HL7, "keyWordText").and_then(|k| k.attr("code"));
        if key == Some("AUTORISATION") {
            let v = line
                .child(ns::HL7, "value")
                .and_then(|v| v.attr("code"))
                .unwrap_or_default();
            authorization = Some(
                Authorization::from_code(v).ok_or_else(|| Hl7v3Error::UnknownAuthorization(v.to_string()))?,
            );
        } else if key == Some("STATUT_MT") {
            treating_doctor = line
                .child(ns::HL7, "value")
                .and_then(|v| v.attr("value"))
                .map(|v| v == "true");
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
        return Err(Hl7v3Error::Refused {
            ack: ack.to_string(),
            detail,
        });
    }
    let cap = r.child(ns::HL7, "controlActProcess");
    let query_code = cap
        .and_then(|c| c.path(ns::HL7, &["queryAck", "queryResponseCode"]))
        .and_then(|q| q.attr("code"))
        .unwrap_or_default();
    let patient = cap.and_then(|c| c.path(ns::HL7, &["subject", "registrationEvent", "subject1", "patient"]));
    Ok(ExistenceAnswer {
        authorization,
        treating_doctor,
        patient: patient.filter(|_| query_code == "OK").map(read_traits),
        dmp_exists: query_code == "OK" && patient.is_some(),
        dmp_closed: patient
            .and_then(|p| p.child(ns::HL7, "statusCode"))
            .and_then(|s| s.attr("code"))
            .is_some_and(|c| c != "active"),
    })
}
