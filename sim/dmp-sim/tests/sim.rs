//! The DMP simulator reads what it is sent with its own eyes, not the gateway's: the official
//! example requests (byte for byte, adapted only where identities must match the dev PKI's
//! professional or a stored document) pass, and broken variants are refused with the
//! registry's codes. (The gateway's own messages round-trip through the simulator in
//! `services/dmp-gateway/tests/simulator.rs`.)

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use dev_support::devpki::{DevPki, Professional, files};
use dmp_protocol::{ebrim, mtom, soap, xds, xml};
use dmp_sim::{DmpSimulator, SimConfig, paths};
use ehealth_proto::dmp::v1 as pb;
use http::{Request, Response};

struct Fixture {
    cert: Vec<u8>,
    other_cert: Vec<u8>,
    /// A card of the examples' own professional (899900063480), so that the official
    /// requests pass without a byte changed.
    examples_cert: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki =
            DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-sim-pki")).expect("dev PKI");
        let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert")[0].to_vec();
        // Another general practitioner: the examples' VIHF roles (10, SM26) are theirs too.
        let other = Professional {
            id: "810100000002".into(),
            surname: "GENERALISTE".into(),
            given_name: "PAUL".into(),
            profession: "10".into(),
            specialty: Some("SM26".into()),
            organization: "CABINET".into(),
        };
        let (other_chain, _) = pki
            .issue_professional("other", &other)
            .expect("other professional");
        let other_cert = service_kit::tls::load_certs(&other_chain).expect("other")[0].to_vec();
        let examples = Professional {
            id: "899900063480".into(),
            surname: "DOCTEUR".into(),
            given_name: "KIT".into(),
            profession: "10".into(),
            // As the official TD2.1 example's certificate and VIHF.
            specialty: Some("SM26".into()),
            organization: "TEST".into(),
        };
        let (examples_chain, _) = pki
            .issue_professional("examples", &examples)
            .expect("the examples' professional");
        let examples_cert = service_kit::tls::load_certs(&examples_chain).expect("examples")[0].to_vec();
        Fixture {
            cert,
            other_cert,
            examples_cert,
        }
    })
}

fn post(sim: &DmpSimulator, cert: &[u8], path: &str, content_type: &str, body: Bytes) -> Response<Bytes> {
    let req = Request::post(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    sim.handle(Some(cert), req)
}

// ------------------------------------------------------------------------------------------
// The official example requests.

fn example_bytes(name: &str) -> Bytes {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/dmp-package/examples")
        .join(name);
    Bytes::from(std::fs::read(&p).expect("example"))
}

/// An example adapted to the dev PKI's professional.
fn example(name: &str) -> String {
    let text = String::from_utf8(example_bytes(name).to_vec()).expect("utf8");
    // Test identities: the dev PKI's professional instead of the examples' one.
    text.replace("899900063480", "810100000001")
}

const TD21_CONTENT_TYPE: &str = r#"multipart/related; type="application/xop+xml"; start="<rootpart@soapui.org>"; start-info="application/soap+xml"; boundary="----=_Part_9_20030738.1554380517598""#;
const SOAP12: &str = "application/soap+xml; charset=UTF-8";

fn fault_of(resp: Response<Bytes>) -> (u16, String) {
    let status = resp.status().as_u16();
    let env = soap::parse_envelope(resp.body()).expect("fault envelope");
    let f = env.fault().expect("a SOAP fault");
    (status, format!("{} {}", f.subcode.unwrap_or_default(), f.reason))
}

fn registry_errors(resp: &Response<Bytes>) -> (String, Vec<String>) {
    let body = resp.body();
    let (xml, _) = if resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart"))
    {
        let ct = resp.headers()["content-type"].to_str().expect("ct").to_string();
        let mp = mtom::parse(&ct, body).expect("mtom");
        (mp.root.body.clone(), Some(mp))
    } else {
        (body.clone(), None)
    };
    let env = soap::parse_envelope(&xml).expect("envelope");
    assert!(env.fault().is_none(), "unexpected fault: {:?}", env.fault());
    let p = env.payload.expect("payload");
    let rr = if p.name == "RegistryResponse" {
        p.clone()
    } else {
        p.children
            .iter()
            .find(|c| c.name == "RegistryResponse")
            .cloned()
            .unwrap_or(p.clone())
    };
    let status = rr
        .attr("status")
        .unwrap_or_default()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let errors = ebrim::read_errors(&rr)
        .into_iter()
        .map(|e| format!("{} {}", e.code, e.context))
        .collect();
    (status, errors)
}

#[test]
fn the_official_example_requests_pass() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());

    // TD2.1: SOAP 1.1-namespaced envelope in an MTOM part, DocumentME2/documentME2 ids.
    let td21 = example("TD2.1_-_Alimentation_requete.xml");
    let resp = post(
        &sim,
        &f.cert,
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        Bytes::from(td21.clone()),
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Success", "{errors:?}");
    assert_eq!(sim.document_count(), 2);

    // TD3.1 finds the CDA; the signature document is stored (and retrievable) but is not a
    // clinical document: as in the official TD3.1 answer, FindDocuments leaves it out.
    let resp = post(
        &sim,
        &f.cert,
        paths::REGISTRY,
        SOAP12,
        Bytes::from(example("TD3.1_-_Recherche_de_document_requete.xml")),
    );
    let text = String::from_utf8_lossy(resp.body()).to_string();
    assert!(text.contains("ResponseStatusType:Success"), "{text}");
    assert!(text.contains("1.2.250.1.999.1.1.7898.3.1622814651504"));
    assert_eq!(text.matches("ExtrinsicObject ").count(), 1, "TD3.1: {text}");
    assert!(!text.contains("E1762"), "TD3.1: {text}");
    assert!(
        !text.contains("1.2.250.1.999.1.1.7898.4.1622814651504"),
        "TD3.1: {text}"
    );
    let env = soap::parse_envelope(resp.body()).expect("env");
    let list = env
        .payload
        .as_ref()
        .and_then(|p| p.child(xml::ns::RIM, "RegistryObjectList"))
        .expect("list");
    let entries = ebrim::read_object_list(list).extrinsic_objects;
    let me2 = entries
        .iter()
        .find(|e| {
            e.object
                .external_id(xds::scheme::DOC_UNIQUE_ID)
                .map(|x| x.value.as_str())
                == Some("1.2.250.1.999.1.1.7898.3.1622814651504")
        })
        .expect("ME2");
    let entry_uuid = me2.object.id.clone();

    // TD3.2 of the stored CDA.
    let td32 = example("TD3.2_-_Consultation_d_un_document_requete.xml").replace(
        "1.2.250.1.999.1.1.7898.1.995657292",
        "1.2.250.1.999.1.1.7898.3.1622814651504",
    );
    let resp = post(&sim, &f.cert, paths::REPOSITORY, SOAP12, Bytes::from(td32));
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Success", "{errors:?}");
    let ct = resp.headers()["content-type"].to_str().expect("ct").to_string();
    let mp = mtom::parse(&ct, resp.body()).expect("mtom");
    assert!(String::from_utf8_lossy(&mp.parts[0].body).contains("<ClinicalDocument"));

    // TD0.2
    let resp = post(
        &sim,
        &f.cert,
        paths::PATIENTS,
        SOAP12,
        Bytes::from(example("TD0.2_-_Test_d_existence_requete.xml")),
    );
    let text = String::from_utf8_lossy(resp.body()).to_string();
    assert!(text.contains(r#"code="VALIDE""#), "{text}");

    // TD3.3d archive then TD3.3c delete (which omits classifiedObject, as the DMP tolerates).
    for name in [
        "TD3.3d_-_Archiver_un_document_requete.xml",
        "TD3.3c_-_Supprimer_un_document_requete.xml",
    ] {
        let req = example(name).replace("urn:uuid:fe5287a2-ae6a-11eb-8f5d-0050569e422e", &entry_uuid);
        let resp = post(&sim, &f.cert, paths::REGISTRY, SOAP12, Bytes::from(req));
        let (status, errors) = registry_errors(&resp);
        assert_eq!(status, "Success", "{name}: {errors:?}");
    }

    // Submitted again: duplicate uniqueIds.
    let resp = post(
        &sim,
        &f.cert,
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        Bytes::from(td21),
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Failure");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("XDSDuplicateUniqueIdInRegistry")),
        "{errors:?}"
    );
}

#[test]
fn the_official_example_requests_pass_unmodified() {
    // The examples' own professional on the card: every request exactly as the package has it.
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let send = |path: &str, content_type: &str, name: &str| {
        post(&sim, &f.examples_cert, path, content_type, example_bytes(name))
    };

    let resp = send(
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        "TD2.1_-_Alimentation_requete.xml",
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Success", "TD2.1: {errors:?}");
    assert_eq!(sim.document_count(), 2, "the CDA and its signature document");

    let resp = send(
        paths::REGISTRY,
        SOAP12,
        "TD3.1_-_Recherche_de_document_requete.xml",
    );
    let text = String::from_utf8_lossy(resp.body()).to_string();
    assert!(text.contains("ResponseStatusType:Success"), "TD3.1: {text}");
    assert!(text.contains("1.2.250.1.999.1.1.7898.3.1622814651504"));
    assert_eq!(text.matches("ExtrinsicObject ").count(), 1, "TD3.1: {text}");

    let resp = send(paths::PATIENTS, SOAP12, "TD0.2_-_Test_d_existence_requete.xml");
    let text = String::from_utf8_lossy(resp.body()).to_string();
    assert!(text.contains(r#"code="VALIDE""#), "TD0.2: {text}");

    // The example asks for a document this DMP never stored.
    let resp = send(
        paths::REPOSITORY,
        SOAP12,
        "TD3.2_-_Consultation_d_un_document_requete.xml",
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Failure", "TD3.2");
    assert!(
        errors.iter().any(|e| e.starts_with("XDSDocumentUniqueIdError")),
        "TD3.2: {errors:?}"
    );

    // So do the status changes: read, and refused for an unknown entry.
    for name in [
        "TD3.3d_-_Archiver_un_document_requete.xml",
        "TD3.3c_-_Supprimer_un_document_requete.xml",
    ] {
        let resp = send(paths::REGISTRY, SOAP12, name);
        let (status, errors) = registry_errors(&resp);
        assert_eq!(status, "Failure", "{name}");
        assert!(
            errors.iter().any(|e| e.starts_with("XDSMetadataUpdateError")
                && e.contains("no document entry urn:uuid:fe5287a2-ae6a-11eb-8f5d-0050569e422e")),
            "{name}: {errors:?}"
        );
    }
}

#[test]
fn broken_requests_are_refused_with_the_registry_codes() {
    let f = fixture();
    let td21 = example("TD2.1_-_Alimentation_requete.xml");
    // Registry errors (HTTP 200, RegistryResponse Failure).
    let me2_patient = r#"registryObject="DocumentME2" value="207058575627097^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH^^20100907""#;
    let other_patient = {
        let n: u64 = 1_850_575_123_456;
        format!("1850575123456{:02}", 97 - n % 97)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing slot",
            td21.replacen(
                r#"<Slot name="creationTime">"#,
                r#"<Slot name="creationTimeX">"#,
                1,
            ),
            "XDSRegistryMetadataError DocumentME2: missing slot creationTime",
        ),
        (
            "bad patient id",
            td21.replace(me2_patient, &me2_patient.replace("^NH^^", "^PI^^")),
            "XDSUnknownPatientId DocumentME2: XDSDocumentEntry.patientId",
        ),
        (
            "patient mismatch",
            td21.replace(
                me2_patient,
                &me2_patient.replace("207058575627097", &other_patient),
            ),
            "XDSPatientIdDoesNotMatch DocumentME2: patientId",
        ),
        (
            "missing document",
            td21.replace(
                r#"<ns4:Document id="documentME2">"#,
                r#"<ns4:Document id="somethingElse">"#,
            ),
            "XDSMissingDocument DocumentME2",
        ),
        (
            "missing classCode",
            td21.replacen(
                "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
                "urn:uuid:00000000-8865-4c09-adf7-e362475b143a",
                1,
            ),
            "XDSRegistryMetadataError DocumentME2: 1 classCode classification expected, found 0",
        ),
        (
            "bad creation time",
            td21.replacen("<Value>20100319194535</Value>", "<Value>2010-03-19</Value>", 1),
            "XDSRegistryMetadataError DocumentME2: creationTime",
        ),
    ];
    for (what, body, want) in cases {
        let sim = DmpSimulator::new(SimConfig::default());
        let resp = post(
            &sim,
            &f.cert,
            paths::REPOSITORY,
            TD21_CONTENT_TYPE,
            Bytes::from(body),
        );
        let (status, errors) = registry_errors(&resp);
        assert_eq!(status, "Failure", "{what}");
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{what}: {errors:?} should contain `{want}`"
        );
        assert_eq!(sim.document_count(), 0, "{what}: nothing is stored");
    }

    let sim = DmpSimulator::new(SimConfig::default());
    // Unknown stored query.
    let q = example("TD3.1_-_Recherche_de_document_requete.xml").replace(
        "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
        "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3",
    );
    let resp = post(&sim, &f.cert, paths::REGISTRY, SOAP12, Bytes::from(q));
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Failure");
    assert!(errors[0].starts_with("XDSUnknownStoredQuery"), "{errors:?}");

    // SOAP faults: WS-Addressing, VIHF, certificate, patient.
    let td31 = example("TD3.1_-_Recherche_de_document_requete.xml");
    let faults: Vec<(&str, Vec<u8>, String, &str)> = vec![
        (
            "no Action",
            f.cert.clone(),
            td31.replace("<Action mustUnderstand=\"true\" xmlns=\"http://www.w3.org/2005/08/addressing\">urn:ihe:iti:2007:RegistryStoredQuery</Action>", ""),
            "wsa:MessageAddressingHeaderRequired the WS-Addressing Action header is missing",
        ),
        (
            "action at the wrong endpoint",
            f.cert.clone(),
            td31.replace("urn:ihe:iti:2007:RegistryStoredQuery<", "urn:ihe:iti:2007:RetrieveDocumentSet<"),
            "wsa:ActionNotSupported",
        ),
        (
            "no VIHF",
            f.cert.clone(),
            {
                let s = td31.find("<saml2:Assertion").expect("assertion");
                let e = td31.find("</saml2:Assertion>").expect("end") + "</saml2:Assertion>".len();
                format!("{}{}", &td31[..s], &td31[e..])
            },
            "DMPVIHFAbsent",
        ),
        (
            "VIHF attribute missing",
            f.cert.clone(),
            td31.replace("Name=\"LPS_ID_HOMOLOGATION_DMP\"", "Name=\"Other\""),
            "DMPVIHFInvalide the VIHF lacks the attribute LPS_ID_HOMOLOGATION_DMP",
        ),
        (
            "NameID is not the card's professional",
            f.other_cert.clone(),
            td31.clone(),
            "DMPVIHFInvalide the VIHF NameID `810100000001` is not the professional of the card (`810100000002`)",
        ),
        (
            "resource-id is not the queried patient",
            f.cert.clone(),
            td31.replace(
                "<Value>'207058575627097^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH'</Value>",
                &format!("<Value>'{other_patient}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH'</Value>"),
            ),
            "DMPVIHFInvalide the VIHF resource-id",
        ),
        (
            "a specialty that is not the card's",
            f.cert.clone(),
            td31.replace(r#"code="SM26""#, r#"code="SM04""#),
            "DMPVIHFInvalide the VIHF roles [\"10\", \"SM04\"] are not the card's",
        ),
        (
            "indirect mode",
            f.cert.clone(),
            td31.replace(">DIRECTE<", ">INDIRECTE<"),
            "DMPVIHFInvalide Authentification_mode `INDIRECTE`",
        ),
    ];
    for (what, cert, body, want) in faults {
        let resp = post(&sim, &cert, paths::REGISTRY, SOAP12, Bytes::from(body));
        let (status, reason) = fault_of(resp);
        assert_eq!(status, 400, "{what}");
        assert!(
            reason.starts_with(want),
            "{what}: `{reason}` should start with `{want}`"
        );
    }

    // The professional must author what is submitted (direct mode).
    let resp = post(
        &sim,
        &f.cert,
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        Bytes::from(td21.replace("<saml2:NameID>810100000001<", "<saml2:NameID>810100000002<")),
    );
    let (_, reason) = fault_of(resp);
    assert!(reason.contains("NameID"), "{reason}");

    // A patient without a DMP / a professional without authorization.
    let mut cfg = SimConfig::default();
    cfg.patients[0].authorization = pb::Authorization::Interdit;
    let blocked = DmpSimulator::new(cfg);
    let (_, reason) = fault_of(post(
        &blocked,
        &f.cert,
        paths::REGISTRY,
        SOAP12,
        Bytes::from(td31.clone()),
    ));
    assert!(reason.starts_with("DMPAccessDenied"), "{reason}");

    // Not HTTP POST, not SOAP, no certificate.
    let resp = sim.handle(
        Some(&f.cert),
        Request::get(paths::REGISTRY).body(Bytes::new()).expect("req"),
    );
    assert_eq!(resp.status(), 405);
    let resp = post(
        &sim,
        &f.cert,
        paths::REGISTRY,
        "application/json",
        Bytes::from_static(b"{}"),
    );
    assert_eq!(resp.status(), 415);
    let resp = sim.handle(
        None,
        Request::post(paths::REGISTRY)
            .header("content-type", SOAP12)
            .body(Bytes::from(td31))
            .expect("req"),
    );
    let (_, reason) = fault_of(resp);
    assert!(reason.starts_with("DMPAuthenticationFailed"), "{reason}");
    let resp = post(
        &sim,
        &f.cert,
        paths::REGISTRY,
        SOAP12,
        Bytes::from_static(b"<not-soap/>"),
    );
    let (_, reason) = fault_of(resp);
    assert!(reason.contains("not a SOAP Envelope"), "{reason}");
}

/// The payload of a successful SOAP answer.
fn answer_payload(resp: Response<Bytes>) -> xml::Element {
    assert_eq!(resp.status(), 200, "{}", String::from_utf8_lossy(resp.body()));
    soap::parse_envelope(resp.body())
        .expect("envelope")
        .payload
        .expect("payload")
}

#[test]
fn the_official_td03_and_td16_requests_change_and_list_authorizations() {
    let f = fixture();
    let mut config = SimConfig::default();
    config.patients[0].authorization = pb::Authorization::NonExiste;
    let sim = DmpSimulator::new(config);
    let soap_xml = "application/soap+xml; charset=UTF-8";
    let td03 = example_bytes("TD0.3_-_Mise_a_jour_de_l_autorisation_requete.xml");
    let td16 = example_bytes("TD1.6_-_Liste_des_PS_autorises_ou_bloques_requete.xml");

    // Without an authorization, TD1.6 is refused like any read of the DMP.
    let (status, fault) = fault_of(post(
        &sim,
        &f.examples_cert,
        paths::HABILITATIONS,
        soap_xml,
        td16.clone(),
    ));
    assert_eq!(status, 400, "{fault}");
    assert!(fault.contains("DMPAccessDenied"), "{fault}");

    // TD0.3 unmodified: authorized; the same request again is answered as the official answer.
    let first = answer_payload(post(
        &sim,
        &f.examples_cert,
        paths::HABILITATIONS,
        soap_xml,
        td03.clone(),
    ));
    let s = dmp_protocol::habilitations::read_set_authorization_response(&first).expect("read");
    assert!(s.is_ok());
    let again = answer_payload(post(&sim, &f.examples_cert, paths::HABILITATIONS, soap_xml, td03));
    let s = dmp_protocol::habilitations::read_set_authorization_response(&again).expect("read");
    assert_eq!(s.context, "Autorisation déjà présente aucune action effectuée");

    // TD1.6 unmodified lists the examples' professional, active.
    let list = answer_payload(post(&sim, &f.examples_cert, paths::HABILITATIONS, soap_xml, td16));
    let list = dmp_protocol::habilitations::read_authorization_list(&list).expect("read");
    assert_eq!(list.professionals.len(), 1);
    assert_eq!(list.professionals[0].national_id, "899900063480");
    assert_eq!(
        list.professionals[0].mode,
        dmp_protocol::habilitations::ListMode::Active
    );
    assert_eq!(
        list.professionals[0].specialty_codes,
        vec!["G15_10/SM26".to_string()]
    );

    // Another professional's card is still not authorized.
    let td02 = example("TD0.2_-_Test_d_existence_requete.xml").replace("810100000001", "810100000002");
    let answer = answer_payload(post(
        &sim,
        &f.other_cert,
        paths::PATIENTS,
        soap_xml,
        Bytes::from(td02),
    ));
    let answer = dmp_protocol::hl7v3::read_existence_answer(&answer).expect("TD0.2");
    assert_eq!(
        answer.authorization,
        Some(dmp_protocol::hl7v3::Authorization::NonExiste)
    );
}

#[test]
fn a_cda_breaking_the_ci_sis_header_rules_is_refused() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let td21 = example("TD2.1_-_Alimentation_requete.xml");
    // The CI-SIS header templateId replaced by another of the same length (the size slot holds).
    let template = r#"<templateId root="1.2.250.1.213.1.1.1.1" assigningAuthorityName="CI-SIS" />"#;
    assert!(td21.contains(template));
    let broken = td21.replace(
        template,
        r#"<templateId root="1.2.250.1.213.1.1.1.9" assigningAuthorityName="CI-SIS" />"#,
    );
    let resp = post(
        &sim,
        &f.cert,
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        Bytes::from(broken),
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Failure");
    assert!(
        errors.iter().any(|e| e.contains("XDSRepositoryMetadataError")
            && e.contains("CI-SIS rules")
            && e.contains("templateId")),
        "{errors:?}"
    );
    assert_eq!(sim.document_count(), 0);
}

#[test]
fn a_clinical_document_masked_and_hidden_from_the_patient_is_refused() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let td21 = example("TD2.1_-_Alimentation_requete.xml");
    // The signature document's MASQUE_PS and INVISIBLE_PATIENT classifications, given to the
    // clinical document too.
    let start = td21
        .find(r#"<Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f" classifiedObject="Signature01" id="cla15""#)
        .expect("cla15");
    let end = td21[start..]
        .find(r#"<Classification classificationScheme="urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d" classifiedObject="Signature01""#)
        .expect("cla17")
        + start;
    let codes = td21[start..end]
        .replace("Signature01", "DocumentME2")
        .replace(r#"id="cla15""#, r#"id="cla15b""#)
        .replace(r#"id="cla16""#, r#"id="cla16b""#);
    let at = td21
        .find(r#"<Classification classificationScheme="urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d" classifiedObject="DocumentME2""#)
        .expect("cla8");
    let broken = format!("{}{codes}{}", &td21[..at], &td21[at..]);
    let resp = post(
        &sim,
        &f.cert,
        paths::REPOSITORY,
        TD21_CONTENT_TYPE,
        Bytes::from(broken),
    );
    let (status, errors) = registry_errors(&resp);
    assert_eq!(status, "Failure");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("XDSRegistryMetadataError") && e.contains("rule NoOneButTheAuthor")),
        "{errors:?}"
    );
    assert_eq!(sim.document_count(), 0);
}
