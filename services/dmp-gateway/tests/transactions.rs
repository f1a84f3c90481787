//! The DMP transactions without transport: generated SOAP bodies validate against the official
//! XSD annex (with `xmllint`, which we did not write), the XAdES signature document verifies with
//! `xmlsec1`, the official example responses parse into the right typed results, and bad
//! inputs are refused with a precise message before anything is built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use dev_support::devpki::{DevPki, files};
use dmp_gateway::{
    CallContext, DmpError, Find, GetAssociations, GetDocuments, Incoming, ListAuthorizations, ListPatients,
    Outgoing, Prepared, Retrieve, SetAuthorization, Submit, TestPatient, UpdateStatus, XdsSettings, prepare,
    samples,
};
use dmp_protocol::mtom::{self, Multipart};
use dmp_protocol::transactions::action;
use dmp_protocol::vihf::{self, LpsIdentity, ProfessionalIdentity};
use dmp_protocol::xades::SoftwareSigner;
use dmp_protocol::xds::status;
use dmp_protocol::{soap, xml};
use ehealth_proto::dmp::v1 as pb;

struct Fixture {
    pki: DevPki,
    professional: ProfessionalIdentity,
    signer: SoftwareSigner,
    lps: LpsIdentity,
    settings: XdsSettings,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki =
            DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-gateway-pki")).expect("dev PKI");
        let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert");
        let professional = ProfessionalIdentity::from_certificate(&cert[0]).expect("identity");
        let signer =
            SoftwareSigner::from_pem_files(&pki.path(files::CPS_SIGN_KEY), &pki.path(files::CPS_SIGN_CERT))
                .expect("signer");
        Fixture {
            pki,
            professional,
            signer,
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
        signature_document: None,
        signer: Some(&f.signer),
        endpoint: "https://dmp.test/si-dmp-server/v2/services",
        now: time::OffsetDateTime::now_utc(),
    }
}

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dmp-package/schemas/schema")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dmp-package/examples")
}

fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is required by this test: install the Debian package {package} (scripts/install-test-deps.sh)"
    );
}

/// Validates `xml` against `schema` (relative to the annex's `schema/` folder) with xmllint.
fn xmllint(schema: &str, xml: &str) {
    require_tool("xmllint", "libxml2-utils");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body.xml");
    std::fs::write(&file, xml).expect("write");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schemas().join(schema))
        .arg(&file)
        .output()
        .expect("xmllint runs");
    assert!(
        out.status.success(),
        "{schema} rejects the body:\n{}\n---\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SOAP Body's payload of an envelope the gateway wrote.
fn body_payload(envelope: &str) -> &str {
    let start = envelope.find("<soap:Body>").expect("Body") + "<soap:Body>".len();
    let end = envelope.rfind("</soap:Body>").expect("/Body");
    &envelope[start..end]
}

/// Replaces each `<xop:Include href="cid:…"/>` by the base64 of its part.
fn inline_xop(xml: &str, mp: &Multipart) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<xop:Include ") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("/>").expect("Include end") + i + 2;
        let tag = &rest[i..end];
        let href = tag
            .split("href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("href");
        let part = mp.resolve(href).expect("part");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(&part.body));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn envelope_of(o: &Outgoing) -> (String, Option<Multipart>) {
    let bytes = o.body.to_bytes();
    if o.body.content_type.starts_with("multipart/related") {
        let mp = mtom::parse(&o.body.content_type, &bytes).expect("MTOM");
        (String::from_utf8(mp.root.body.to_vec()).expect("utf8"), Some(mp))
    } else {
        (String::from_utf8(bytes.to_vec()).expect("utf8"), None)
    }
}

fn prepared() -> Prepared<Submit> {
    let f = fixture();
    prepare::<Submit>(
        samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.9.1", 0),
        &ctx(f),
    )
    .expect("prepare")
}

#[test]
fn iti41_body_validates_against_the_official_xsd() {
    let p = prepared();
    let (env, mp) = envelope_of(&p.outgoing);
    let mp = mp.expect("ITI-41 is MTOM");
    assert_eq!(
        mp.parts.len(),
        2,
        "the CDA and the signature document travel as binary parts"
    );
    xmllint(
        "IHE/XDS.b_DocumentRepository.xsd",
        &inline_xop(body_payload(&env), &mp),
    );

    // Metadata the caller omitted comes from the CDA header.
    let entry = &p.valid.entries()[0];
    assert_eq!(entry.unique_id.as_str(), "1.2.250.1.999.1.1.7898.9.1");
    assert_eq!(entry.creation_time.as_str(), "20240115093000");
    assert_eq!(entry.type_code.code, "11488-4");
    assert_eq!(entry.authors[0].id, "810100000001");
    assert_eq!(
        p.valid.document_unique_ids(),
        vec!["1.2.250.1.999.1.1.7898.9.1".to_string()]
    );

    // The envelope: WS-Addressing and a direct-mode VIHF naming the card's professional.
    let parsed = soap::parse_envelope(env.as_bytes()).expect("envelope");
    assert_eq!(parsed.action(), Some(action::ITI41));
    assert_eq!(
        parsed.message_id(),
        Some(p.outgoing.addressing.message_id.as_str())
    );
    assert_eq!(parsed.reply_to_address(), Some(soap::ANONYMOUS));
    assert!(parsed.to().is_some_and(|t| t.starts_with("https://")));
    let v = vihf::parse(parsed.security_assertion().expect("VIHF")).expect("vihf");
    assert_eq!(v.name_id, "810100000001");
    // The official examples' form (RFC 4514, SN and GN as the hex of their DER), the whole
    // subject of the card certificate.
    assert_eq!(
        v.issuer,
        "CN=810100000001+2.5.4.4=#0c074d45444543494e+2.5.4.42=#0c044a45414e,\
         2.5.4.12=#0c084dc3a9646563696e,OU=10,O=CABINET DR MEDECIN JEAN,C=FR"
    );
    for a in vihf::attr::REQUIRED {
        assert!(v.first(a).is_some_and(|x| !x.is_empty()), "attribute {a}");
    }
    assert_eq!(
        v.first(vihf::attr::RESOURCE_ID),
        Some("207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH")
    );

    // The signature document and its `signs` association.
    assert!(env.contains(r#"associationType="urn:ihe:iti:2007:AssociationType:signs" sourceObject="Signature01" targetObject="SubmissionSet01""#));
}

#[test]
fn the_xades_signature_document_verifies_with_xmlsec1() {
    require_tool("xmlsec1", "xmlsec1");
    let p = prepared();
    let (_, mp) = envelope_of(&p.outgoing);
    let mp = mp.expect("MTOM");
    let sig = &mp.parts[1].body;
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("signature.xml");
    std::fs::write(&file, sig).expect("write");
    let out = Command::new("xmlsec1")
        .arg("--verify")
        // The manifest's references are urn:oid URIs of the submitted documents, which xmlsec1
        // cannot dereference; their digests are checked below.
        .arg("--ignore-manifests")
        .arg("--id-attr:Id")
        .arg("Manifest")
        .arg("--id-attr:Id")
        .arg("http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
        .arg("--trusted-pem")
        .arg(f.pki.path(files::IGC_ROOT_CA))
        .arg("--untrusted-pem")
        .arg(f.pki.path(files::IGC_PERSONNES_CA))
        .arg(&file)
        .output()
        .expect("xmlsec1 runs");
    assert!(
        out.status.success(),
        "xmlsec1 rejects the signature:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(sig)
    );
    // A tampered signature document does not verify.
    let tampered = String::from_utf8_lossy(sig).replace("<xades:SigningTime>2", "<xades:SigningTime>1");
    std::fs::write(&file, tampered).expect("write");
    let out = Command::new("xmlsec1")
        .args([
            "--verify",
            "--ignore-manifests",
            "--id-attr:Id",
            "Manifest",
            "--id-attr:Id",
        ])
        .arg("http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
        .arg("--trusted-pem")
        .arg(f.pki.path(files::IGC_ROOT_CA))
        .arg("--untrusted-pem")
        .arg(f.pki.path(files::IGC_PERSONNES_CA))
        .arg(&file)
        .output()
        .expect("xmlsec1 runs");
    assert!(!out.status.success(), "a tampered signing time must not verify");
    // The manifest's digest is the document's.
    let doc = &mp.parts[0].body;
    let digest = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, doc));
    let text = String::from_utf8_lossy(sig);
    assert!(text.contains(&format!(
        r#"<Reference URI="urn:oid:1.2.250.1.999.1.1.7898.9.1"><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></DigestMethod><DigestValue>{digest}</DigestValue>"#
    )));
}

#[test]
fn iti18_iti43_iti57_td02_bodies_validate_against_the_official_xsd() {
    let f = fixture();
    let c = ctx(f);
    let find = prepare::<Find>(
        pb::FindDocumentsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            statuses: vec![
                pb::DocumentStatus::Approved as i32,
                pb::DocumentStatus::Archived as i32,
            ],
            creation_time: Some(pb::TimeRange {
                from: Some(prost_types::Timestamp {
                    seconds: 1_600_000_000,
                    nanos: 0,
                }),
                to: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
            }),
            class_codes: vec![pb::Code {
                code: "11".into(),
                code_system: "1.2.250.1.213.1.1.4.1".into(),
                display_name: String::new(),
            }],
            type_codes: vec![pb::Code {
                code: "11488-4".into(),
                code_system: "2.16.840.1.113883.6.1".into(),
                display_name: String::new(),
            }],
            ..Default::default()
        },
        &c,
    )
    .expect("find")
    .outgoing;
    let (env, _) = envelope_of(&find);
    let body = body_payload(&env);
    assert!(body.contains(
        "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved','urn:asip:ci-sis:2010:StatusType:Archived')"
    ));
    assert!(body.contains("$XDSDocumentEntryCreationTimeFrom"));
    assert!(body.contains("('11488-4^^2.16.840.1.113883.6.1')"));
    xmllint("ebRS/query.xsd", body);

    let retrieve = prepare::<Retrieve>(
        pb::RetrieveDocumentRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            repository_unique_id: String::new(),
            document_unique_id: "1.2.250.1.999.1.1.7898.1.995657292".into(),
        },
        &c,
    )
    .expect("retrieve")
    .outgoing;
    assert!(
        retrieve.body.content_type.starts_with("multipart/related"),
        "ITI-43 goes as MTOM"
    );
    let (env, _) = envelope_of(&retrieve);
    xmllint("IHE/XDS.b_DocumentRepository.xsd", body_payload(&env));

    for (current, new) in [
        (pb::DocumentStatus::Approved, pb::DocumentStatus::Archived),
        (pb::DocumentStatus::Archived, pb::DocumentStatus::Approved),
        (pb::DocumentStatus::Archived, pb::DocumentStatus::Deleted),
    ] {
        let update = prepare::<UpdateStatus>(
            pb::UpdateDocumentStatusRequest {
                auth_context: Some(samples::auth_context(&f.professional.id)),
                patient: Some(samples::patient()),
                entry_uuid: "urn:uuid:fe5287a2-ae6a-11eb-8f5d-0050569e422e".into(),
                document_unique_id: "1.2.250.1.999.1.1.7898.1.995657292".into(),
                current_status: current as i32,
                new_status: new as i32,
            },
            &c,
        )
        .expect("update")
        .outgoing;
        let (env, _) = envelope_of(&update);
        let body = body_payload(&env);
        let urn = match new {
            pb::DocumentStatus::Approved => status::APPROVED,
            pb::DocumentStatus::Archived => status::ARCHIVED,
            _ => status::DELETED,
        };
        assert!(body.contains(urn));
        xmllint("ebRS/lcm.xsd", body);
    }

    let td02 = prepare::<TestPatient>(
        pb::TestPatientDmpRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
        },
        &c,
    )
    .expect("td0.2")
    .outgoing;
    let (env, _) = envelope_of(&td02);
    let payload = soap::parse_envelope(env.as_bytes())
        .expect("env")
        .payload
        .expect("payload");
    assert!(payload.is(xml::ns::HL7, "PRPA_IN201307UV02"));
    // The HL7v3 body validates against the annex's NE2009 schema (as the official request does).
    xmllint(
        "HL7V3/NE2009/multicacheschemas/PRPA_IN201307UV02.xsd",
        body_payload(&env),
    );
}

// ------------------------------------------------------------------------------------------
// Official example responses.

fn incoming_file(name: &str) -> (Incoming, String) {
    let body = std::fs::read(examples().join(name)).expect("example");
    let env = soap::parse_envelope(&body).expect("envelope");
    let relates = env.relates_to().expect("RelatesTo").to_string();
    (
        Incoming {
            status: 200,
            content_type: "application/soap+xml; charset=UTF-8".into(),
            body: Bytes::from(body),
        },
        relates,
    )
}

/// The request as if it had carried the MessageID the official answer relates to.
fn with_message_id<X: dmp_gateway::Transaction>(mut p: Prepared<X>, id: &str) -> Prepared<X> {
    p.outgoing.addressing.message_id = id.to_string();
    p
}

#[test]
fn official_responses_parse_into_typed_results() {
    let f = fixture();
    let c = ctx(f);

    // TD2.1
    let (inc, id) = incoming_file("TD2.1_-_Alimentation_reponse.xml");
    let mut p = prepared();
    p.outgoing.addressing.message_id = id;
    let r = p.parse(&inc).expect("TD2.1");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert!(r.errors.is_empty());
    assert_eq!(r.document_unique_ids, p.valid.document_unique_ids());

    // TD3.1: 21 typed entries.
    let (inc, id) = incoming_file("TD3.1_-_Recherche_de_document_reponse.xml");
    let req = pb::FindDocumentsRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        ..Default::default()
    };
    let out = with_message_id(prepare::<Find>(req, &c).expect("find"), &id);
    let r = out.parse(&inc).expect("TD3.1");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(r.documents.len(), 21);
    let d = &r.documents[0];
    assert_eq!(d.unique_id, "1.2.250.1.999.1.1.7898.1.995657292");
    assert_eq!(d.entry_uuid, "urn:uuid:7953af1a-ba1c-11eb-816f-0050569e422e");
    assert_eq!(d.status(), pb::DocumentStatus::Approved);
    assert_eq!(d.repository_unique_id, "1.2.250.1.213.4.1.1.1.2");
    assert_eq!(d.size, 2768);
    assert_eq!(d.hash, "af326fb44feb720121d2c277ce10f87407818089");
    assert_eq!(d.class_code.as_ref().map(|c| c.code.as_str()), Some("10"));
    assert_eq!(d.type_code.as_ref().map(|c| c.code.as_str()), Some("27899-4"));
    assert_eq!(d.confidentiality_codes.len(), 2);
    assert_eq!(d.authors[0].id, "899900063480");
    assert_eq!(d.authors[0].institution_id, "10B0127189");
    assert_eq!(d.creation_time.as_ref().map(|t| t.seconds), Some(1_269_023_564));
    assert_eq!(d.title, "Titre du document de TEST KIT EDITEUR CSharp");

    // TD3.2: the official answer's envelope, in an MTOM message with its document part.
    let env_bytes =
        std::fs::read(examples().join("TD3.2_-_Consultation_d_un_document_reponse.xml")).expect("TD3.2");
    let env = soap::parse_envelope(&env_bytes).expect("envelope");
    let relates = env.relates_to().expect("RelatesTo").to_string();
    let document = samples::cda(
        "1.2.250.1.999.1.1.7898.1.995657292",
        samples::TEST_INS,
        "899900063480",
        0,
    );
    let body = mtom::write(
        String::from_utf8(env_bytes).expect("utf8"),
        action::ITI43_RESPONSE,
        vec![mtom::Attachment {
            content_id: "b857abb7-a2c3-4db8-bd69-d5ff76826e72-2@urn:ihe:iti:xds-b:2007".into(),
            content_type: "text/xml".into(),
            data: document.clone(),
        }],
    );
    let inc = Incoming {
        status: 200,
        content_type: body.content_type.clone(),
        body: body.to_bytes(),
    };
    let req = pb::RetrieveDocumentRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
        repository_unique_id: "1.2.250.1.213.4.1.1.1.2".into(),
        document_unique_id: "1.2.250.1.999.1.1.7898.1.995657292".into(),
    };
    let out = with_message_id(prepare::<Retrieve>(req, &c).expect("retrieve"), &relates);
    let r = out.parse(&inc).expect("TD3.2");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(r.content, document, "byte-identical");
    assert_eq!(r.mime_type, "text/xml");

    // TD0.2
    let (inc, id) = incoming_file("TD0.2_-_Test_d_existence_reponse.xml");
    let req = pb::TestPatientDmpRequest {
        auth_context: Some(samples::auth_context(&f.professional.id)),
        patient: Some(samples::patient()),
    };
    let out = with_message_id(prepare::<TestPatient>(req, &c).expect("td0.2"), &id);
    let r = out.parse(&inc).expect("TD0.2");
    assert!(r.dmp_exists);
    assert!(!r.dmp_closed);
    assert_eq!(r.authorization(), pb::Authorization::Valide);
    assert!(r.treating_doctor, "STATUT_MT true");
    assert_eq!(
        r.patient_traits,
        Some(pb::PatientTraits {
            identifiers: vec![
                pb::PatientId {
                    ins: "1197854176879056415520".into(),
                    assigning_authority: "1.2.250.1.213.1.4.2".into(),
                },
                pb::PatientId {
                    ins: "207058575627097".into(),
                    assigning_authority: "1.2.250.1.213.1.4.10".into(),
                },
            ],
            prefix: "M".into(),
            given_names: vec!["LAURENCE".into()],
            family_name: "patb-quatre".into(),
            family_name_qualifier: "SP".into(),
            gender: "M".into(),
            birth_date: "19070525".into(),
            telecoms: vec!["mailto:alain@gmail.com".into(), "tel:0102030405".into()],
            internet_account_open: true,
        })
    );

    // TD0.3
    let (inc, id) = incoming_file("TD0.3_-_Mise_a_jour_de_l_autorisation_reponse.xml");
    let out = with_message_id(
        prepare::<SetAuthorization>(set_authorization_request(), &c).expect("td0.3"),
        &id,
    );
    let r = out.parse(&inc).expect("TD0.3");
    assert_eq!(r.status, "DMPOk");
    assert_eq!(r.context, "Autorisation déjà présente aucune action effectuée");

    // TD1.6
    let (inc, id) = incoming_file("TD1.6_-_Liste_des_PS_autorises_ou_bloques_reponse.xml");
    let out = with_message_id(
        prepare::<ListAuthorizations>(list_authorizations_request(), &c).expect("td1.6"),
        &id,
    );
    let r = out.parse(&inc).expect("TD1.6");
    assert_eq!(
        r.professionals,
        vec![pb::ProfessionalAuthorization {
            professional_id: "899900063480".into(),
            professional_id_type: "1.2.250.1.71.4.2.1".into(),
            given_name: "MAX".into(),
            family_name: "LIBRE".into(),
            specialties: vec![pb::Code {
                code: "G15_10/SM26".into(),
                code_system: String::new(),
                display_name: "Médecin - Qualifié en Médecine générale (SM)".into(),
            }],
            // 2021-06-01 13:58:04 and 14:06:06 UTC.
            authorized_since: Some(prost_types::Timestamp {
                seconds: 1_622_555_884,
                nanos: 0
            }),
            last_action: Some(prost_types::Timestamp {
                seconds: 1_622_556_366,
                nanos: 0
            }),
            mode: pb::AuthorizationListMode::Active as i32,
            treating_doctor: false,
        }]
    );

    // TD3.3c / TD3.3d
    for name in [
        "TD3.3c_-_Supprimer_un_document_reponse.xml",
        "TD3.3d_-_Archiver_un_document_reponse.xml",
    ] {
        let (inc, id) = incoming_file(name);
        let req = pb::UpdateDocumentStatusRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            entry_uuid: "urn:uuid:fe5287a2-ae6a-11eb-8f5d-0050569e422e".into(),
            document_unique_id: "1.2.250.1.999.1.1.7898.1.995657292".into(),
            current_status: pb::DocumentStatus::Approved as i32,
            new_status: pb::DocumentStatus::Archived as i32,
        };
        let out = with_message_id(prepare::<UpdateStatus>(req, &c).expect("update"), &id);
        let r = out.parse(&inc).expect(name);
        assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    }
}

#[test]
fn registry_errors_and_soap_faults_reach_the_caller() {
    let p = prepared();
    let id = p.outgoing.addressing.message_id.clone();
    let failure = soap::response_envelope(
        action::ITI41_RESPONSE,
        Some(&id),
        r#"<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"><rs:RegistryErrorList highestSeverity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"><rs:RegistryError errorCode="XDSDuplicateUniqueIdInRegistry" codeContext="uniqueId 1.2.3 already exists" severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error" location="Document01"/><rs:RegistryError errorCode="XDSRegistryMetadataError" codeContext="warning text" severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"/></rs:RegistryErrorList></rs:RegistryResponse>"#,
    );
    let inc = Incoming {
        status: 200,
        content_type: "application/soap+xml".into(),
        body: Bytes::from(failure),
    };
    let r = p.parse(&inc).expect("failure is an answer");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors.len(), 2);
    assert_eq!(r.errors[0].error_code, "XDSDuplicateUniqueIdInRegistry");
    assert_eq!(r.errors[0].code_context, "uniqueId 1.2.3 already exists");
    assert_eq!(r.errors[0].location, "Document01");
    assert_eq!(r.errors[0].severity(), pb::Severity::Error);
    assert_eq!(r.errors[1].severity(), pb::Severity::Warning);

    let fault = soap::fault_envelope(
        "Sender",
        Some("DMPAccessDenied"),
        "Le professionnel n'est pas autorisé",
        Some(&id),
    );
    let inc = Incoming {
        status: 500,
        content_type: "application/soap+xml".into(),
        body: Bytes::from(fault),
    };
    let e = p.parse(&inc).expect_err("fault");
    assert!(matches!(e, DmpError::SoapFault { .. }));
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("n'est pas autorisé"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("DMPAccessDenied"));

    let wrong = soap::response_envelope(action::ITI41_RESPONSE, Some("urn:uuid:other"), "<x/>");
    let inc = Incoming {
        status: 200,
        content_type: "application/soap+xml".into(),
        body: Bytes::from(wrong),
    };
    let e = p.parse(&inc).expect_err("RelatesTo mismatch");
    assert!(e.to_string().contains("relates to"), "{e}");

    let html = Incoming {
        status: 502,
        content_type: "text/html".into(),
        body: Bytes::from_static(b"<html>Bad gateway</html>"),
    };
    let status = tonic::Status::from(p.parse(&html).expect_err("502"));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("HTTP 502"));
}

// ------------------------------------------------------------------------------------------
// Bad inputs: refused with a precise message, and nothing is built.

#[test]
fn bad_inputs_are_refused_naming_the_field() {
    let f = fixture();
    let id = f.professional.id.clone();
    let good = || samples::submit_request(&id, "1.2.250.1.999.1.1.7898.9.2", 0);
    let mut small_limit = f.settings.clone();
    small_limit.max_document_bytes = 1024 * 1024;
    type Mutate = Box<dyn Fn(&mut pb::SubmitDocumentsRequest)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "missing INS",
            Box::new(|r| {
                r.patient = Some(pb::PatientId {
                    ins: String::new(),
                    assigning_authority: samples::TEST_INS_OID.into(),
                })
            }),
            "patient.ins: the patient's INS is required",
        ),
        (
            "wrong OID",
            Box::new(|r| {
                if let Some(p) = r.patient.as_mut() {
                    p.assigning_authority = "1.2.250.1.213.1.4.2".into();
                }
            }),
            "patient.assigning_authority: `1.2.250.1.213.1.4.2` is not an INS authority",
        ),
        (
            "bad INS key",
            Box::new(|r| {
                if let Some(p) = r.patient.as_mut() {
                    p.ins = "207058575627098".into();
                }
            }),
            "patient.ins: the INS key 98 does not match the NIR (expected 97)",
        ),
        (
            "bad date",
            Box::new(|r| {
                r.documents[0].metadata.as_mut().expect("m").service_start_time =
                    Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: -5,
                    })
            }),
            "documents[0].metadata.service_start_time: nanos -5 out of range",
        ),
        (
            "bad CDA date",
            Box::new(|r| {
                let cda = String::from_utf8(r.documents[0].content.to_vec()).expect("utf8");
                r.documents[0].content =
                    Bytes::from(cda.replace("20240115103000+0100\"/>\n  <conf", "2024-01-15\"/>\n  <conf"));
            }),
            "documents[0].content: malformed CDA: ClinicalDocument/effectiveTime: `2024-01-15` is not an HL7 TS date",
        ),
        (
            "CDA header without the CI-SIS template",
            Box::new(|r| {
                let cda = String::from_utf8(r.documents[0].content.to_vec()).expect("utf8");
                r.documents[0].content =
                    Bytes::from(cda.replace("<templateId root=\"1.2.250.1.213.1.1.1.1\"/>", ""));
            }),
            "documents[0].content: malformed CDA: ClinicalDocument/templateId: 1.2.250.1.213.1.1.1.1 (the CI-SIS header",
        ),
        (
            "CDA creation time without seconds",
            Box::new(|r| {
                let cda = String::from_utf8(r.documents[0].content.to_vec()).expect("utf8");
                r.documents[0].content = Bytes::from(cda.replace(
                    "20240115103000+0100\"/>\n  <conf",
                    "202401151030+0100\"/>\n  <conf",
                ));
            }),
            "documents[0].content: malformed CDA: ClinicalDocument/effectiveTime: `202401151030+0100` must be YYYYMMDDHHMMSS±HHMM",
        ),
        (
            "CDA custodian not a structure",
            Box::new(|r| {
                let cda = String::from_utf8(r.documents[0].content.to_vec()).expect("utf8");
                r.documents[0].content = Bytes::from(cda.replace(
                    "<id root=\"1.2.250.1.71.4.2.2\" extension=\"10B0152872\"/>",
                    "<id root=\"1.2.250.1.71.4.2.1\" extension=\"10B0152872\"/>",
                ));
            }),
            "documents[0].content: malformed CDA: custodian/assignedCustodian/representedCustodianOrganization/id: the custodian is identified under 1.2.250.1.71.4.2.2",
        ),
        (
            "empty document",
            Box::new(|r| r.documents[0].content = Bytes::new()),
            "documents[0].content: the document is empty",
        ),
        (
            "document over the limit",
            Box::new(|r| r.documents[0].content = Bytes::from(vec![b' '; 50 * 1024 * 1024])),
            "documents[0].content: the document has 52428800 bytes, more than the configured limit of 1048576 bytes",
        ),
        (
            "malformed CDA",
            Box::new(|r| {
                r.documents[0].content =
                    Bytes::from_static(b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><id root=\"1.2\">")
            }),
            "documents[0].content: malformed CDA: unexpected end of document: <id> is not closed",
        ),
        (
            "not a CDA",
            Box::new(|r| r.documents[0].content = Bytes::from_static(b"%PDF-1.7")),
            "documents[0].content: malformed CDA: the document is not XML",
        ),
        (
            "patient contradicts the CDA",
            Box::new(|r| {
                if let Some(p) = r.patient.as_mut() {
                    p.ins = "185057512345673".into();
                }
            }),
            "documents[0].metadata.patient: `185057512345673^^^&1.2.250.1.213.1.4.10&ISO^NH` contradicts the CDA header, which says `207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH (recordTarget/patientRole/id)`",
        ),
        (
            "unique id contradicts the CDA",
            Box::new(|r| r.documents[0].metadata.as_mut().expect("m").unique_id = "1.2.3.4".into()),
            "documents[0].metadata.unique_id: `1.2.3.4` contradicts the CDA header, which says `1.2.250.1.999.1.1.7898.9.2`",
        ),
        (
            "missing class code",
            Box::new(|r| r.documents[0].metadata.as_mut().expect("m").class_code = None),
            "documents[0].metadata.class_code: required",
        ),
        (
            "type code not LOINC",
            Box::new(|r| {
                r.documents[0].metadata.as_mut().expect("m").type_code = Some(pb::Code {
                    code: "11488-4".into(),
                    code_system: "1.2.3".into(),
                    display_name: "x".into(),
                })
            }),
            "documents[0].metadata.type_code: `11488-4^x^1.2.3` contradicts the CDA header",
        ),
        (
            "missing content type",
            Box::new(|r| r.submission_set.as_mut().expect("ss").content_type_code = None),
            "submission_set.content_type_code: required",
        ),
        (
            "author id not RPPS",
            Box::new(|r| {
                r.documents[0].metadata.as_mut().expect("m").authors = vec![pb::Author {
                    id: "81234".into(),
                    ..Default::default()
                }]
            }),
            "documents[0].metadata.authors[0].id: `81234` is not an RPPS-based identifier",
        ),
        (
            "professional is not an author",
            Box::new(|r| {
                let other = samples::cda("1.2.250.1.999.1.1.7898.9.2", samples::TEST_INS, "899900063480", 0);
                r.documents[0].content = other;
            }),
            "documents[0].metadata.authors: the professional 810100000001 (VIHF NameID) is neither an author nor the legal authenticator",
        ),
        (
            "professional differs from the card",
            Box::new(|r| r.auth_context.as_mut().expect("a").professional_id = "899900063480".into()),
            "auth_context.professional_id: `899900063480` is not the professional of the card",
        ),
        (
            "bad activity sector",
            Box::new(|r| r.auth_context.as_mut().expect("a").activity_sector = "SA07".into()),
            "auth_context.activity_sector: `SA07` is not a Secteur_Activite",
        ),
        (
            "no document",
            Box::new(|r| r.documents.clear()),
            "documents: at least one document is required",
        ),
    ];
    for (what, mutate, want) in cases {
        let mut r = good();
        mutate(&mut r);
        let c = CallContext {
            settings: &small_limit,
            ..ctx(f)
        };
        let e = prepare::<Submit>(r, &c).expect_err(what);
        let status = tonic::Status::from(e);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {}",
            status.message()
        );
        assert!(
            status.message().starts_with(want),
            "{what}: got `{}`, want `{want}…`",
            status.message()
        );
    }
    // And the good request passes.
    prepare::<Submit>(good(), &ctx(f)).expect("the unmodified request is valid");
}

#[test]
fn find_and_update_refuse_bad_requests() {
    let f = fixture();
    let c = ctx(f);
    let e = prepare::<Find>(
        pb::FindDocumentsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            creation_time: Some(pb::TimeRange {
                from: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
                to: Some(prost_types::Timestamp {
                    seconds: 1_600_000_000,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        },
        &c,
    )
    .expect_err("inverted range");
    assert!(e.to_string().starts_with("creation_time.to: "), "{e}");
    let e = prepare::<UpdateStatus>(
        pb::UpdateDocumentStatusRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            entry_uuid: "urn:uuid:fe5287a2-ae6a-11eb-8f5d-0050569e422e".into(),
            document_unique_id: "1.2.250.1.999.1.1.7898.1.995657292".into(),
            current_status: pb::DocumentStatus::Deleted as i32,
            new_status: pb::DocumentStatus::Approved as i32,
        },
        &c,
    )
    .expect_err("undelete");
    assert!(
        e.to_string()
            .starts_with("new_status: DOCUMENT_STATUS_DELETED → DOCUMENT_STATUS_APPROVED"),
        "{e}"
    );
}

fn set_authorization_request() -> pb::SetAuthorizationRequest {
    pb::SetAuthorizationRequest {
        auth_context: Some(samples::auth_context(&fixture().professional.id)),
        patient: Some(samples::patient()),
        action: pb::AuthorizationAction::Grant as i32,
        treating_doctor: false,
    }
}

fn list_authorizations_request() -> pb::ListAuthorizationsRequest {
    pb::ListAuthorizationsRequest {
        auth_context: Some(samples::auth_context(&fixture().professional.id)),
        patient: Some(samples::patient()),
        mode: pb::AuthorizationListMode::All as i32,
    }
}

/// The XML schema inlined in a WSDL of the annex, as a file xmllint can use.
fn wsdl_schema(wsdl: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(schemas().join("../wsdl").join(wsdl)).expect("wsdl");
    let start = text.find("<xs:schema").expect("xs:schema");
    let end = text.find("</xs:schema>").expect("/xs:schema") + "</xs:schema>".len();
    let file = dir.join(wsdl.replace(".wsdl", ".xsd"));
    std::fs::write(&file, &text[start..end]).expect("write schema");
    file
}

/// The request's envelope: Action and body element as the official example's.
fn same_action_and_body(o: &Outgoing, example: &str) -> String {
    let official =
        soap::parse_envelope(&std::fs::read(examples().join(example)).expect("example")).expect("official");
    let (env, _) = envelope_of(o);
    let ours = soap::parse_envelope(env.as_bytes()).expect("ours");
    assert_eq!(ours.action(), official.action(), "{example}");
    let (a, b) = (ours.payload.expect("payload"), official.payload.expect("payload"));
    assert_eq!((&a.ns, &a.name), (&b.ns, &b.name), "{example}");
    env
}

#[test]
fn td03_td16_bodies_validate_against_the_habilitations_wsdl_and_match_the_examples() {
    let f = fixture();
    let c = ctx(f);
    let dir = tempfile::tempdir().expect("tempdir");
    let xsd = wsdl_schema("Habilitations.wsdl", dir.path());
    let xsd = xsd.to_str().expect("utf8 path");

    for (req, example) in [
        (
            set_authorization_request(),
            "TD0.3_-_Mise_a_jour_de_l_autorisation_requete.xml",
        ),
        (
            pb::SetAuthorizationRequest {
                action: pb::AuthorizationAction::Remove as i32,
                treating_doctor: true,
                ..set_authorization_request()
            },
            "TD0.3_-_Mise_a_jour_de_l_autorisation_requete.xml",
        ),
    ] {
        let out = prepare::<SetAuthorization>(req, &c).expect("td0.3").outgoing;
        let env = same_action_and_body(&out, example);
        xmllint(xsd, body_payload(&env));
    }
    let out = prepare::<ListAuthorizations>(list_authorizations_request(), &c)
        .expect("td1.6")
        .outgoing;
    let env = same_action_and_body(&out, "TD1.6_-_Liste_des_PS_autorises_ou_bloques_requete.xml");
    xmllint(xsd, body_payload(&env));

    // The official requests themselves pass the same schema (the check is not vacuous).
    for example in [
        "TD0.3_-_Mise_a_jour_de_l_autorisation_requete.xml",
        "TD1.6_-_Liste_des_PS_autorises_ou_bloques_requete.xml",
    ] {
        let text = std::fs::read_to_string(examples().join(example)).expect("example");
        xmllint(xsd, body_payload(&text.replace("<soap:Body>\n", "<soap:Body>")));
    }
    let bad =
        "<setAuthorization xmlns=\"urn:si-dmp-habilitations\"><action>AJOUTER</action></setAuthorization>";
    let dir2 = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir2.path().join("bad.xml"), bad).expect("write");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", xsd])
        .arg(dir2.path().join("bad.xml"))
        .output()
        .expect("xmllint");
    assert!(
        !out.status.success(),
        "an action outside the WSDL's enumeration is refused"
    );
}

#[test]
fn td03_and_td16_refuse_bad_requests_before_sending() {
    let f = fixture();
    let c = ctx(f);
    let e = prepare::<SetAuthorization>(
        pb::SetAuthorizationRequest {
            action: pb::AuthorizationAction::Unspecified as i32,
            ..set_authorization_request()
        },
        &c,
    )
    .expect_err("no action");
    let s = tonic::Status::from(e);
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().starts_with("action:"), "{}", s.message());
    let e = prepare::<ListAuthorizations>(
        pb::ListAuthorizationsRequest {
            mode: 42,
            ..list_authorizations_request()
        },
        &c,
    )
    .expect_err("bad mode");
    assert!(tonic::Status::from(e).message().starts_with("mode:"));
}

#[test]
fn a_replacement_submission_carries_its_rplc_association_and_validates() {
    let f = fixture();
    let mut req = samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.9.2", 0);
    req.documents[0].replaces_entry_uuid = "urn:uuid:7953af1a-ba1c-11eb-816f-0050569e422e".into();
    let p = prepare::<Submit>(req, &ctx(f)).expect("prepare");
    let (env, mp) = envelope_of(&p.outgoing);
    let mp = mp.expect("MTOM");
    xmllint(
        "IHE/XDS.b_DocumentRepository.xsd",
        &inline_xop(body_payload(&env), &mp),
    );
    // ITI-42: the new entry is the source, the replaced entryUUID the target; HasMember stays.
    let payload = soap::parse_envelope(env.as_bytes())
        .expect("env")
        .payload
        .expect("payload");
    let list = payload
        .path(xml::ns::LCM, &["SubmitObjectsRequest"])
        .and_then(|r| r.child(xml::ns::RIM, "RegistryObjectList"))
        .expect("RegistryObjectList");
    let list = dmp_protocol::ebrim::read_object_list(list);
    let rplc: Vec<_> = list
        .associations
        .iter()
        .filter(|a| a.association_type == "urn:ihe:iti:2007:AssociationType:RPLC")
        .collect();
    assert_eq!(rplc.len(), 1);
    assert_eq!(rplc[0].source, p.valid.entries()[0].entry_id);
    assert_eq!(rplc[0].target, "urn:uuid:7953af1a-ba1c-11eb-816f-0050569e422e");
    assert!(
        list.associations
            .iter()
            .any(|a| a.association_type.ends_with("HasMember") && a.target == rplc[0].source)
    );
}

#[test]
fn get_documents_and_get_associations_bodies_validate_against_query_xsd() {
    let f = fixture();
    let c = ctx(f);
    let auth = Some(samples::auth_context(&f.professional.id));
    let uuid = "urn:uuid:7953af1a-ba1c-11eb-816f-0050569e422e".to_string();
    let outs = [
        prepare::<GetDocuments>(
            pb::GetDocumentsRequest {
                auth_context: auth.clone(),
                patient: Some(samples::patient()),
                entry_uuids: vec![uuid.clone()],
                unique_ids: vec![],
            },
            &c,
        )
        .expect("get documents")
        .outgoing,
        prepare::<GetAssociations>(
            pb::GetAssociationsRequest {
                auth_context: auth.clone(),
                patient: Some(samples::patient()),
                entry_uuids: vec![uuid.clone()],
            },
            &c,
        )
        .expect("get associations")
        .outgoing,
    ];
    for (out, query_id) in outs.iter().zip([
        "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4",
        "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155",
    ]) {
        let (env, _) = envelope_of(out);
        assert_eq!(
            soap::parse_envelope(env.as_bytes()).expect("env").action(),
            Some(action::ITI18)
        );
        assert!(
            env.contains(&format!(r#"<rim:AdhocQuery id="{query_id}">"#)),
            "{env}"
        );
        xmllint("ebRS/query.xsd", body_payload(&env));
    }
    let e = prepare::<GetDocuments>(
        pb::GetDocumentsRequest {
            auth_context: auth,
            patient: Some(samples::patient()),
            entry_uuids: vec![uuid],
            unique_ids: vec!["1.2.3".into()],
        },
        &c,
    )
    .expect_err("both lists");
    assert!(
        tonic::Status::from(e)
            .message()
            .starts_with("entry_uuids: give entry_uuids or unique_ids")
    );
}

fn list_patients_request() -> pb::ListPatientsRequest {
    pb::ListPatientsRequest {
        auth_context: Some(samples::auth_context(&fixture().professional.id)),
        patient: Some(samples::patient()),
        since: Some(prost_types::Timestamp {
            seconds: 1_286_742_010,
            nanos: 0,
        }),
        date_type: pb::PatientListDateType::LastDocument as i32,
    }
}

#[test]
fn td04_body_validates_against_the_patients_wsdl_and_the_official_answer_parses() {
    let f = fixture();
    let c = ctx(f);
    let dir = tempfile::tempdir().expect("tempdir");
    let xsd = wsdl_schema("PatientsSpecific.wsdl", dir.path());
    let out = prepare::<ListPatients>(list_patients_request(), &c)
        .expect("td0.4")
        .outgoing;
    let env = same_action_and_body(&out, "TD0.4_-_Liste_des_DMP_autorises_requete.xml");
    // 2010-10-10 20:20:10 UTC, as the official request's startDate.
    assert!(
        env.contains("<startDate>20101010202010</startDate><dateType>LASTDOC</dateType>"),
        "{env}"
    );
    xmllint(xsd.to_str().expect("utf8"), body_payload(&env));

    let (inc, id) = incoming_file("TD0.4_-_Liste_des_DMP_autorises_reponse.xml");
    let out = with_message_id(
        prepare::<ListPatients>(list_patients_request(), &c).expect("td0.4"),
        &id,
    );
    let r = out.parse(&inc).expect("TD0.4");
    assert_eq!(r.patients.len(), 2);
    let p = &r.patients[1];
    assert_eq!(p.family_name, "patb-quatre");
    assert_eq!(p.identifiers[1].ins, "207058575627097");
    assert!(p.treating_doctor && !p.message);
    assert!(p.last_document_added.is_some());

    let e = prepare::<ListPatients>(
        pb::ListPatientsRequest {
            since: None,
            ..list_patients_request()
        },
        &c,
    )
    .expect_err("no date");
    assert!(tonic::Status::from(e).message().starts_with("since:"));
}

/// The README's SubmitDocuments recipe sends `samples/consultation.xml`: it is the sample CDA.
#[test]
fn the_readme_sample_cda_is_the_samples_one() {
    let file = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/consultation.xml"))
        .expect("sample");
    assert_eq!(
        file,
        samples::cda(
            "1.2.250.1.999.1.1.7898.100.1",
            samples::TEST_INS,
            "810100000001",
            0
        )
        .to_vec()
    );
}
