//! The DMP simulator: the gateway's own messages round-trip through it (submit, find,
//! retrieve byte-identical, archive, find again), the official example requests (adapted to the
//! dev PKI's professional) pass, and broken requests are refused with the registry's codes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use dev_support::devpki::{DevPki, Professional, files};
use dmp_gateway::dsg::SoftwareSigner;
use dmp_gateway::transactions::{self as tx, CallContext, Incoming, Outgoing, Service, XdsSettings};
use dmp_gateway::vihf::{LpsIdentity, ProfessionalIdentity};
use dmp_gateway::{samples, soap};
use dmp_sim::{DmpSimulator, SimConfig, paths};
use ehealth_proto::dmp::v1 as pb;
use http::{Request, Response};

struct Fixture {
    cert: Vec<u8>,
    other_cert: Vec<u8>,
    professional: ProfessionalIdentity,
    signer: SoftwareSigner,
    lps: LpsIdentity,
    settings: XdsSettings,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki =
            DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-sim-pki")).expect("dev PKI");
        let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert")[0].to_vec();
        let other = Professional {
            id: "810100000002".into(),
            surname: "INFIRMIER".into(),
            given_name: "PAUL".into(),
            profession: "60".into(),
            organization: "CABINET".into(),
        };
        let (other_chain, _) = pki
            .issue_professional("other", &other)
            .expect("other professional");
        let other_cert = service_kit::tls::load_certs(&other_chain).expect("other")[0].to_vec();
        Fixture {
            professional: ProfessionalIdentity::from_certificate(&cert).expect("identity"),
            signer: SoftwareSigner::from_pem_files(
                &pki.path(files::CPS_AUTH_KEY),
                &pki.path(files::CPS_AUTH_CERT),
            )
            .expect("signer"),
            cert,
            other_cert,
            lps: LpsIdentity::default(),
            settings: XdsSettings::default(),
        }
    })
}

fn ctx(f: &Fixture) -> CallContext<'_> {
    CallContext {
        professional: &f.professional,
        lps: &f.lps,
        settings: &f.settings,
        endpoint: "https://localhost/si-dmp-server/v2/services",
        now: time::OffsetDateTime::now_utc(),
    }
}

fn post(sim: &DmpSimulator, cert: &[u8], path: &str, content_type: &str, body: Bytes) -> Response<Bytes> {
    let req = Request::post(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    sim.handle(Some(cert), req)
}

fn send(sim: &DmpSimulator, out: &Outgoing) -> Incoming {
    let path = match out.service {
        Service::Repository => paths::REPOSITORY,
        Service::Registry => paths::REGISTRY,
        Service::Patients => paths::PATIENTS,
    };
    let resp = post(
        sim,
        &fixture().cert,
        path,
        &out.body.content_type,
        out.body.to_bytes(),
    );
    Incoming {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: resp.into_body(),
    }
}

fn find(sim: &DmpSimulator, statuses: &[pb::DocumentStatus]) -> pb::FindDocumentsResponse {
    let f = fixture();
    let req = pb::FindDocumentsRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        statuses: statuses.iter().map(|s| *s as i32).collect(),
        ..Default::default()
    };
    let out = tx::prepare_find(&req, &ctx(f)).expect("find");
    tx::parse_find_response(&send(sim, &out), &out).expect("find response")
}

fn update(
    sim: &DmpSimulator,
    entry_uuid: &str,
    from: pb::DocumentStatus,
    to: pb::DocumentStatus,
) -> pb::UpdateDocumentStatusResponse {
    let f = fixture();
    let req = pb::UpdateDocumentStatusRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        entry_uuid: entry_uuid.into(),
        document_unique_id: String::new(),
        current_status: from as i32,
        new_status: to as i32,
    };
    let out = tx::prepare_update_status(&req, &ctx(f)).expect("update");
    tx::parse_update_status_response(&send(sim, &out), &out).expect("update response")
}

#[test]
fn the_gateway_round_trips_through_the_simulator() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());

    // TD0.2
    let out = tx::prepare_test_patient(
        &pb::TestPatientDmpRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
        },
        &ctx(f),
    )
    .expect("td0.2");
    let r = tx::parse_test_patient_response(&send(&sim, &out), &out).expect("td0.2 response");
    assert!(r.dmp_exists && !r.dmp_closed);
    assert_eq!(r.authorization(), pb::Authorization::Valide);

    // TD2.1
    let uid = "1.2.250.1.999.1.1.7898.9.10";
    let p = tx::prepare_submit(
        samples::submit_request(&f.professional.id, uid, 64 * 1024),
        &ctx(f),
        &f.signer,
    )
    .expect("prepare");
    let sent = p.outgoing.body.chunks.clone();
    let r = tx::parse_submit_response(&send(&sim, &p.outgoing), &p).expect("submit response");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert_eq!(sim.document_count(), 2, "the CDA and its signature document");

    // The same submission again: the registry refuses the duplicate uniqueId.
    let again = tx::parse_submit_response(&send(&sim, &p.outgoing), &p).expect("duplicate response");
    assert_eq!(again.status(), pb::RegistryResponseStatus::Failure);
    assert!(
        again
            .errors
            .iter()
            .any(|e| e.error_code == "XDSDuplicateUniqueIdInRegistry"),
        "{:?}",
        again.errors
    );

    // TD3.1
    let found = find(&sim, &[pb::DocumentStatus::Approved]);
    assert_eq!(found.status(), pb::RegistryResponseStatus::Success);
    let entry = found
        .documents
        .iter()
        .find(|d| d.unique_id == uid)
        .expect("the submitted document is found");
    assert_eq!(entry.status(), pb::DocumentStatus::Approved);
    assert_eq!(entry.repository_unique_id, "1.2.250.1.213.4.1.1.1.2");
    assert!(entry.entry_uuid.starts_with("urn:uuid:"));
    assert_eq!(entry.authors[0].id, f.professional.id);

    // TD3.2: byte-identical.
    let req = pb::RetrieveDocumentRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        repository_unique_id: entry.repository_unique_id.clone(),
        document_unique_id: uid.into(),
    };
    let out = tx::prepare_retrieve(&req, &ctx(f)).expect("retrieve");
    let r = tx::parse_retrieve_response(&send(&sim, &out), &out, uid).expect("retrieve response");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    let original = &sent[3];
    assert_eq!(
        &r.content, original,
        "the retrieved document is byte-identical to the submitted one"
    );
    assert_eq!(entry.size as usize, original.len());

    // An unknown document: Failure with XDSDocumentUniqueIdError.
    let req = pb::RetrieveDocumentRequest {
        document_unique_id: "1.2.3.4.5".into(),
        ..req
    };
    let out = tx::prepare_retrieve(&req, &ctx(f)).expect("retrieve");
    let r = tx::parse_retrieve_response(&send(&sim, &out), &out, "1.2.3.4.5").expect("retrieve response");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSDocumentUniqueIdError");

    // TD3.3d archive, then the document is no longer among approved ones.
    let r = update(
        &sim,
        &entry.entry_uuid,
        pb::DocumentStatus::Approved,
        pb::DocumentStatus::Archived,
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert!(
        !find(&sim, &[pb::DocumentStatus::Approved])
            .documents
            .iter()
            .any(|d| d.unique_id == uid)
    );
    let archived = find(&sim, &[pb::DocumentStatus::Archived]);
    assert_eq!(
        archived
            .documents
            .iter()
            .find(|d| d.unique_id == uid)
            .map(|d| d.status()),
        Some(pb::DocumentStatus::Archived)
    );

    // A stale OriginalStatus is refused.
    let r = update(
        &sim,
        &entry.entry_uuid,
        pb::DocumentStatus::Approved,
        pb::DocumentStatus::Deleted,
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSMetadataUpdateError");

    // TD3.3c delete; a deleted document cannot be retrieved.
    let r = update(
        &sim,
        &entry.entry_uuid,
        pb::DocumentStatus::Archived,
        pb::DocumentStatus::Deleted,
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    let req = pb::RetrieveDocumentRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        repository_unique_id: String::new(),
        document_unique_id: uid.into(),
    };
    let out = tx::prepare_retrieve(&req, &ctx(f)).expect("retrieve");
    let r = tx::parse_retrieve_response(&send(&sim, &out), &out, uid).expect("retrieve response");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
}

// ------------------------------------------------------------------------------------------
// The official example requests, adapted to the dev PKI's professional.

fn example(name: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/dmp-package/examples")
        .join(name);
    let text = String::from_utf8(std::fs::read(&p).expect("example")).expect("utf8");
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
        let mp = dmp_gateway::mtom::parse(&ct, body).expect("mtom");
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
    let errors = dmp_gateway::rim::read_errors(&rr)
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

    // TD3.1 finds both.
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
    assert!(text.contains("1.2.250.1.999.1.1.7898.4.1622814651504"));
    let env = soap::parse_envelope(resp.body()).expect("env");
    let list = env
        .payload
        .as_ref()
        .and_then(|p| p.child(dmp_gateway::xml::ns::RIM, "RegistryObjectList"))
        .expect("list");
    let entries = dmp_gateway::rim::read_object_list(list).extrinsic_objects;
    let me2 = entries
        .iter()
        .find(|e| {
            e.object
                .external_id(dmp_gateway::xds::scheme::DOC_UNIQUE_ID)
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
    let mp = dmp_gateway::mtom::parse(&ct, resp.body()).expect("mtom");
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
