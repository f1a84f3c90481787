//! Valid sample inputs (a CDA R2 document modelled on the official `TD2.1-DocumentME2.xml`, and
//! a complete SubmitDocuments request) for tests, benchmarks and the local demo. The test
//! patient's INS is the official examples' one, under the test INS-NIR authority.

use bytes::Bytes;
use ehealth_proto::dmp::v1 as pb;

/// The official examples' test patient.
pub const TEST_INS: &str = "207058575627097";
/// Its authority: test INS-NIR.
pub const TEST_INS_OID: &str = "1.2.250.1.213.1.4.10";

/// The test patient.
pub fn patient() -> pb::PatientId {
    pb::PatientId {
        ins: TEST_INS.into(),
        assigning_authority: TEST_INS_OID.into(),
    }
}

/// A CDA R2 document (unstructured body) with the given id, patient and author. `padding`
/// bytes of base64-looking text make it as large as a test needs.
pub fn cda(unique_id: &str, ins: &str, author_id: &str, padding: usize) -> Bytes {
    let mut body = String::with_capacity(padding + 4096);
    body.push_str(&format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="{unique_id}"/>
  <code code="11488-4" displayName="Note de consultation" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20240115103000+0100"/>
  <confidentialityCode code="N" displayName="Normal" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole>
    <id root="{TEST_INS_OID}" extension="{ins}"/>
    <patient><name><given>LAURENCE</given><family qualifier="SP">PATB-QUATRE</family></name>
      <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19790328"/></patient>
  </patientRole></recordTarget>
  <author><time value="20240115103000+0100"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="{author_id}"/>
    <assignedPerson><name><given>JEAN</given><family>MEDECIN</family></name></assignedPerson>
  </assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="10B0152872"/><name>CABINET DR MEDECIN JEAN</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <legalAuthenticator><time value="20240115103000+0100"/><signatureCode code="S"/><assignedEntity>
    <id root="1.2.250.1.71.4.2.1" extension="{author_id}"/>
    <assignedPerson><name><given>JEAN</given><family>MEDECIN</family></name></assignedPerson>
  </assignedEntity></legalAuthenticator>
  <documentationOf><serviceEvent><effectiveTime><low value="20240115100000+0100"/><high value="20240115103000+0100"/></effectiveTime></serviceEvent></documentationOf>
  <component><nonXMLBody><text mediaType="text/plain" representation="B64">"#
    ));
    const LINE: &str = "Q29tcHRlIHJlbmR1IGRlIGNvbnN1bHRhdGlvbiBkZSB0ZXN0Lg==\n";
    while body.len() < padding {
        body.push_str(LINE);
    }
    body.push_str("Q29tcHRlIHJlbmR1Lg==</text></nonXMLBody></component>\n</ClinicalDocument>\n");
    Bytes::from(body)
}

fn code(code: &str, system: &str, display: &str) -> Option<pb::Code> {
    Some(pb::Code {
        code: code.into(),
        code_system: system.into(),
        display_name: display.into(),
    })
}

/// The authentication context of the dev PKI's professional (CN=810100000001).
pub fn auth_context(professional_id: &str) -> pb::AuthenticationContext {
    pb::AuthenticationContext {
        relay_id: "local".into(),
        professional_id: professional_id.into(),
        structure_id: "10B0152872".into(),
        activity_sector: "SA07^1.2.250.1.71.4.2.4".into(),
        // Profession and specialty come from the card's certificate (issue 16).
        profession: None,
        specialty: None,
        purpose_of_use: String::new(),
    }
}

/// Metadata the CDA header cannot give.
pub fn metadata() -> pb::DocumentEntry {
    pb::DocumentEntry {
        class_code: code("11", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        format_code: code(
            "urn:ihe:iti:xds-sd:text:2008",
            "1.3.6.1.4.1.19376.1.2.3",
            "Document à corps non structuré en texte brut",
        ),
        healthcare_facility_type_code: code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        practice_setting_code: code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        ..Default::default()
    }
}

/// A complete SubmitDocuments request for one document authored by `professional_id`.
pub fn submit_request(
    professional_id: &str,
    document_unique_id: &str,
    padding: usize,
) -> pb::SubmitDocumentsRequest {
    pb::SubmitDocumentsRequest {
        auth_context: Some(auth_context(professional_id)),
        patient: Some(patient()),
        submission_set: Some(pb::SubmissionSet {
            content_type_code: code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour"),
            title: "Lot de test".into(),
            ..Default::default()
        }),
        documents: vec![pb::Document {
            metadata: Some(metadata()),
            content: cda(document_unique_id, TEST_INS, professional_id, padding),
            replaces_entry_uuid: String::new(),
        }],
    }
}
