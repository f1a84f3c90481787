//! The gateway's own messages round-trip through the DMP simulator (submit, find, retrieve
//! byte-identical, archive, find again, delete): what one writes, the other reads. Neither
//! trusts only the other: the simulator's tests feed it the official example requests, and
//! `transactions.rs` checks what the gateway writes against the XSD annex.

use std::path::Path;
use std::sync::OnceLock;

use dev_support::devpki::{DevPki, files};
use dmp_gateway::{
    CallContext, DmpRequest, Find, GetAssociations, GetDocuments, Incoming, ListAuthorizations, ListPatients,
    Outgoing, Retrieve, SetAuthorization, Submit, TestPatient, Transaction, UpdateStatus, XdsSettings,
    prepare, samples,
};
use dmp_protocol::transactions::WebService;
use dmp_protocol::vihf::{LpsIdentity, ProfessionalIdentity};
use dmp_protocol::xades::SoftwareSigner;
use dmp_sim::{DmpSimulator, SimConfig, paths};
use ehealth_proto::dmp::v1 as pb;
use http::Request;

struct Fixture {
    cert: Vec<u8>,
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
        Fixture {
            professional: ProfessionalIdentity::from_certificate(&cert).expect("identity"),
            signer: SoftwareSigner::from_pem_files(
                &pki.path(files::CPS_SIGN_KEY),
                &pki.path(files::CPS_SIGN_CERT),
            )
            .expect("signer"),
            cert,
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
        endpoint: "https://localhost/si-dmp-server/v2/services",
        now: time::OffsetDateTime::now_utc(),
    }
}

fn send(sim: &DmpSimulator, out: &Outgoing) -> Incoming {
    let path = match out.web_service {
        WebService::Repository => paths::REPOSITORY,
        WebService::Registry => paths::REGISTRY,
        WebService::Patients => paths::PATIENTS,
        WebService::Habilitations => paths::HABILITATIONS,
    };
    let req = Request::post(path)
        .header("content-type", &out.body.content_type)
        .body(out.body.to_bytes())
        .expect("request");
    let resp = sim.handle(Some(&fixture().cert), req);
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

/// Validate, build, post to the simulator, parse.
/// One transaction as the gateway runs it: built, sent, parsed, and completed by its follow-up
/// query when it has one (FindDocuments asks GetAssociations).
fn exchange<X: Transaction>(sim: &DmpSimulator, req: X::Request) -> X::Response {
    let (auth_context, patient) = (req.auth_context().cloned(), req.patient().cloned());
    let p = prepare::<X>(req, &ctx(fixture())).expect("prepare");
    let mut response = p.parse(&send(sim, &p.outgoing)).expect("response");
    if let Some(entry_uuids) = X::follow_up(&response) {
        let found = exchange::<GetAssociations>(
            sim,
            pb::GetAssociationsRequest {
                auth_context,
                patient,
                entry_uuids,
            },
        );
        X::complete(&mut response, found);
    }
    response
}

fn find(sim: &DmpSimulator, statuses: &[pb::DocumentStatus]) -> pb::FindDocumentsResponse {
    let f = fixture();
    exchange::<Find>(
        sim,
        pb::FindDocumentsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            statuses: statuses.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        },
    )
}

fn retrieve(sim: &DmpSimulator, req: pb::RetrieveDocumentRequest) -> pb::RetrieveDocumentResponse {
    exchange::<Retrieve>(sim, req)
}

fn update(
    sim: &DmpSimulator,
    entry_uuid: &str,
    unique_id: &str,
    from: pb::DocumentStatus,
    to: pb::DocumentStatus,
) -> pb::UpdateDocumentStatusResponse {
    let f = fixture();
    exchange::<UpdateStatus>(
        sim,
        pb::UpdateDocumentStatusRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            entry_uuid: entry_uuid.into(),
            document_unique_id: unique_id.into(),
            current_status: from as i32,
            new_status: to as i32,
        },
    )
}

#[test]
fn the_gateway_round_trips_through_the_simulator() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());

    // TD0.2
    let p = prepare::<TestPatient>(
        pb::TestPatientDmpRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
        },
        &ctx(f),
    )
    .expect("td0.2");
    let r = p.parse(&send(&sim, &p.outgoing)).expect("td0.2 response");
    assert!(r.dmp_exists && !r.dmp_closed);
    assert_eq!(r.authorization(), pb::Authorization::Valide);

    // TD2.1
    let uid = "1.2.250.1.999.1.1.7898.9.10";
    let p = prepare::<Submit>(
        samples::submit_request(&f.professional.id, uid, 64 * 1024),
        &ctx(f),
    )
    .expect("prepare");
    let sent = p.outgoing.body.chunks.clone();
    let r = p.parse(&send(&sim, &p.outgoing)).expect("submit response");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert_eq!(sim.document_count(), 2, "the CDA and its signature document");

    // The same submission again: the registry refuses the duplicate uniqueId.
    let again = p.parse(&send(&sim, &p.outgoing)).expect("duplicate response");
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
    let r = retrieve(&sim, req.clone());
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
    let r = retrieve(&sim, req);
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSDocumentUniqueIdError");

    // TD3.3d archive, then the document is no longer among approved ones.
    let r = update(
        &sim,
        &entry.entry_uuid,
        uid,
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
        uid,
        pb::DocumentStatus::Approved,
        pb::DocumentStatus::Deleted,
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSMetadataUpdateError");

    // TD3.3c delete; a deleted document cannot be retrieved.
    let r = update(
        &sim,
        &entry.entry_uuid,
        uid,
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
    let r = retrieve(&sim, req);
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
}

fn test_patient(sim: &DmpSimulator) -> pb::TestPatientDmpResponse {
    exchange::<TestPatient>(
        sim,
        pb::TestPatientDmpRequest {
            auth_context: Some(samples::auth_context(&fixture().professional.id)),
            patient: Some(samples::patient()),
        },
    )
}

fn set_authorization(
    sim: &DmpSimulator,
    action: pb::AuthorizationAction,
    treating_doctor: bool,
) -> Result<pb::SetAuthorizationResponse, tonic::Status> {
    let p = prepare::<SetAuthorization>(
        pb::SetAuthorizationRequest {
            auth_context: Some(samples::auth_context(&fixture().professional.id)),
            patient: Some(samples::patient()),
            action: action as i32,
            treating_doctor,
        },
        &ctx(fixture()),
    )
    .expect("prepare");
    p.parse(&send(sim, &p.outgoing)).map_err(tonic::Status::from)
}

fn sim_with(authorization: pb::Authorization, closed: bool) -> DmpSimulator {
    let mut config = SimConfig::default();
    for p in &mut config.patients {
        p.authorization = authorization;
        p.closed = closed;
    }
    DmpSimulator::new(config)
}

#[test]
fn td03_authorizes_the_professional_and_changes_what_td21_allows() {
    let f = fixture();
    let sim = sim_with(pb::Authorization::NonExiste, false);

    // TD0.2: the DMP exists, the professional has no authorization; the traits are typed.
    let r = test_patient(&sim);
    assert!(r.dmp_exists && !r.dmp_closed);
    assert_eq!(r.authorization(), pb::Authorization::NonExiste);
    assert!(!r.treating_doctor);
    let traits = r.patient_traits.expect("traits");
    assert_eq!(traits.family_name, "patb-quatre");
    assert_eq!(traits.given_names, vec!["LAURENCE".to_string()]);
    assert_eq!(traits.birth_date, "19070525");
    assert_eq!(traits.identifiers[0].ins, samples::TEST_INS);

    // TD2.1 refused, nothing stored.
    let submit = |uid: &str| {
        let p =
            prepare::<Submit>(samples::submit_request(&f.professional.id, uid, 0), &ctx(f)).expect("prepare");
        p.parse(&send(&sim, &p.outgoing)).map_err(tonic::Status::from)
    };
    let e = submit("1.2.250.1.999.1.1.7898.61.1").expect_err("not authorized");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("DMPAccessDenied") && e.message().contains("TD0.3"),
        "{}",
        e.message()
    );
    assert_eq!(sim.document_count(), 0);

    // TD0.3 as treating doctor, then TD0.2 says so, TD2.1 passes.
    let r = set_authorization(&sim, pb::AuthorizationAction::Grant, true).expect("TD0.3");
    assert_eq!(r.status, "DMPOk");
    let r = test_patient(&sim);
    assert_eq!(r.authorization(), pb::Authorization::Valide);
    assert!(r.treating_doctor);
    let r = submit("1.2.250.1.999.1.1.7898.61.2").expect("TD2.1");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    // Declaring again changes nothing, as the official answer says.
    let r = set_authorization(&sim, pb::AuthorizationAction::Grant, false).expect("TD0.3 again");
    assert_eq!(r.context, "Autorisation déjà présente aucune action effectuée");

    // TD1.6 lists the professional, active and treating doctor.
    let list = exchange::<ListAuthorizations>(
        &sim,
        pb::ListAuthorizationsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            mode: pb::AuthorizationListMode::All as i32,
        },
    );
    assert_eq!(list.professionals.len(), 1);
    let p = &list.professionals[0];
    assert_eq!(p.professional_id, f.professional.id);
    assert_eq!(p.mode(), pb::AuthorizationListMode::Active);
    assert!(p.treating_doctor && p.authorized_since.is_some());

    // TD0.4 lists the DMP: a document was added and the professional was authorized since 2020.
    for date_type in [
        pb::PatientListDateType::LastDocument,
        pb::PatientListDateType::LastAuthorization,
    ] {
        let list = exchange::<ListPatients>(
            &sim,
            pb::ListPatientsRequest {
                auth_context: Some(samples::auth_context(&f.professional.id)),
                patient: Some(samples::patient()),
                since: Some(prost_types::Timestamp {
                    seconds: 1_577_836_800,
                    nanos: 0,
                }),
                date_type: date_type as i32,
            },
        );
        assert_eq!(list.patients.len(), 1, "{date_type:?}");
        assert_eq!(list.patients[0].identifiers[0].ins, samples::TEST_INS);
        assert!(list.patients[0].treating_doctor);
    }

    // Removing the authorization closes the door again.
    set_authorization(&sim, pb::AuthorizationAction::Remove, false).expect("TD0.3 remove");
    assert_eq!(test_patient(&sim).authorization(), pb::Authorization::NonExiste);
    let list = exchange::<ListPatients>(
        &sim,
        pb::ListPatientsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            since: Some(prost_types::Timestamp {
                seconds: 1_577_836_800,
                nanos: 0,
            }),
            date_type: pb::PatientListDateType::LastDocument as i32,
        },
    );
    assert!(list.patients.is_empty(), "no longer authorized");
    let e = submit("1.2.250.1.999.1.1.7898.61.3").expect_err("removed");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    // The one accepted submission: its CDA and its signature document.
    assert_eq!(sim.document_count(), 2);
}

#[test]
fn blocked_professionals_and_closed_dmps_are_refused() {
    let f = fixture();
    let blocked = sim_with(pb::Authorization::Interdit, false);
    let e = set_authorization(&blocked, pb::AuthorizationAction::Grant, false).expect_err("blocked");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("blocked"), "{}", e.message());
    assert_eq!(
        test_patient(&blocked).authorization(),
        pb::Authorization::Interdit
    );

    let closed = sim_with(pb::Authorization::Valide, true);
    assert!(test_patient(&closed).dmp_closed);
    let e = set_authorization(&closed, pb::AuthorizationAction::Grant, false).expect_err("closed");
    assert!(e.message().contains("DMPClosed"), "{}", e.message());
    let p = prepare::<Submit>(
        samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.62.1", 0),
        &ctx(f),
    )
    .expect("prepare");
    let e = p
        .parse(&send(&closed, &p.outgoing))
        .map_err(tonic::Status::from)
        .expect_err("closed DMP");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("DMPClosed"), "{}", e.message());
    assert_eq!(closed.document_count(), 0);
}

#[test]
fn a_replacement_deprecates_the_original_once() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let submit = |uid: &str, replaces: &str| {
        let mut req = samples::submit_request(&f.professional.id, uid, 0);
        req.documents[0].replaces_entry_uuid = replaces.into();
        exchange::<Submit>(&sim, req)
    };
    let r = submit("1.2.250.1.999.1.1.7898.63.1", "");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let original = find(&sim, &[pb::DocumentStatus::Approved])
        .documents
        .into_iter()
        .find(|d| d.unique_id == "1.2.250.1.999.1.1.7898.63.1")
        .expect("original");

    let r = submit("1.2.250.1.999.1.1.7898.63.2", &original.entry_uuid);
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let approved: Vec<String> = find(&sim, &[pb::DocumentStatus::Approved])
        .documents
        .into_iter()
        .map(|d| d.unique_id)
        .collect();
    assert!(approved.contains(&"1.2.250.1.999.1.1.7898.63.2".to_string()));
    assert!(!approved.contains(&original.unique_id));
    let deprecated = find(&sim, &[pb::DocumentStatus::Deprecated]).documents;
    assert_eq!(deprecated.len(), 1);
    assert_eq!(deprecated[0].entry_uuid, original.entry_uuid);
    assert_eq!(deprecated[0].status(), pb::DocumentStatus::Deprecated);
    // The results name the replacement on both sides (RPLC, followed with GetAssociations).
    let replacing = find(&sim, &[pb::DocumentStatus::Approved])
        .documents
        .into_iter()
        .find(|d| d.unique_id == "1.2.250.1.999.1.1.7898.63.2")
        .expect("replacement");
    assert_eq!(replacing.replaces_entry_uuid, original.entry_uuid);
    assert_eq!(replacing.replaced_by_entry_uuid, "");
    assert_eq!(deprecated[0].replaced_by_entry_uuid, replacing.entry_uuid);
    assert_eq!(deprecated[0].replaces_entry_uuid, "");

    // The signature documents are not clinical documents: FindDocuments leaves them out.
    assert!(
        find(&sim, &[pb::DocumentStatus::Approved])
            .documents
            .iter()
            .all(|d| d.title != "Source")
    );

    // GetDocuments by entryUUID and by uniqueId; GetAssociations follows the replacement.
    let get = |entry_uuids: Vec<String>, unique_ids: Vec<String>| {
        exchange::<GetDocuments>(
            &sim,
            pb::GetDocumentsRequest {
                auth_context: Some(samples::auth_context(&f.professional.id)),
                patient: Some(samples::patient()),
                entry_uuids,
                unique_ids,
            },
        )
    };
    let by_uuid = get(vec![original.entry_uuid.clone()], vec![]);
    assert_eq!(by_uuid.documents.len(), 1);
    assert_eq!(by_uuid.documents[0].status(), pb::DocumentStatus::Deprecated);
    let by_uid = get(vec![], vec!["1.2.250.1.999.1.1.7898.63.2".into()]);
    assert_eq!(by_uid.documents.len(), 1);
    let replacement = by_uid.documents[0].entry_uuid.clone();
    let assoc = exchange::<GetAssociations>(
        &sim,
        pb::GetAssociationsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            entry_uuids: vec![original.entry_uuid.clone()],
        },
    );
    assert_eq!(assoc.associations.len(), 1, "{:?}", assoc.associations);
    assert_eq!(
        assoc.associations[0].association_type,
        "urn:ihe:iti:2007:AssociationType:RPLC"
    );
    assert_eq!(assoc.associations[0].source, replacement);
    assert_eq!(assoc.associations[0].target, original.entry_uuid);

    // A second replacement of the deprecated original, and one of an unknown entry, are
    // refused with the registry's codes; nothing is stored.
    let stored = sim.document_count();
    let r = submit("1.2.250.1.999.1.1.7898.63.3", &original.entry_uuid);
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(
        r.errors[0].error_code, "XDSRegistryDeprecatedDocumentError",
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[0].code_context.contains("already replaced"),
        "{:?}",
        r.errors
    );
    let r = submit(
        "1.2.250.1.999.1.1.7898.63.4",
        "urn:uuid:00000000-0000-4000-8000-000000000000",
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(
        r.errors[0].error_code, "UnresolvedReferenceException",
        "{:?}",
        r.errors
    );
    assert_eq!(sim.document_count(), stored);

    // An entry id that is not an entryUUID never leaves the gateway.
    let mut req = samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.63.5", 0);
    req.documents[0].replaces_entry_uuid = "1.2.3".into();
    let e = prepare::<Submit>(req, &ctx(f)).expect_err("not an entryUUID");
    assert!(
        tonic::Status::from(e)
            .message()
            .starts_with("documents[0].replaces_entry_uuid:")
    );
}

/// A second professional's card (a nurse), issued by the same dev PKI.
fn nurse() -> &'static (Vec<u8>, ProfessionalIdentity) {
    static N: OnceLock<(Vec<u8>, ProfessionalIdentity)> = OnceLock::new();
    N.get_or_init(|| {
        let pki =
            DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-sim-pki")).expect("dev PKI");
        let (chain, _) = pki
            .issue_professional(
                "nurse",
                &dev_support::devpki::Professional {
                    id: "810100000002".into(),
                    surname: "INFIRMIERE".into(),
                    given_name: "CLAIRE".into(),
                    profession: "60".into(),
                    specialty: None,
                    organization: "CABINET INFIRMIER".into(),
                },
            )
            .expect("nurse");
        let cert = service_kit::tls::load_certs(&chain).expect("cert")[0].to_vec();
        let id = ProfessionalIdentity::from_certificate(&cert).expect("identity");
        (cert, id)
    })
}

/// FindDocuments with the nurse's card.
fn find_as_nurse(sim: &DmpSimulator) -> pb::FindDocumentsResponse {
    let f = fixture();
    let (cert, professional) = nurse();
    let ctx = CallContext {
        professional,
        ..ctx(f)
    };
    let p = prepare::<Find>(
        pb::FindDocumentsRequest {
            auth_context: Some(samples::auth_context(&professional.id)),
            patient: Some(samples::patient()),
            ..Default::default()
        },
        &ctx,
    )
    .expect("prepare");
    let req = Request::post(paths::REGISTRY)
        .header("content-type", &p.outgoing.body.content_type)
        .body(p.outgoing.body.to_bytes())
        .expect("request");
    let resp = sim.handle(Some(cert), req);
    let incoming = Incoming {
        status: resp.status().as_u16(),
        content_type: resp.headers()["content-type"].to_str().expect("ct").to_string(),
        body: resp.into_body(),
    };
    p.parse(&incoming).expect("find")
}

#[test]
fn a_masked_document_is_typed_in_results_and_hidden_from_other_professionals() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let submit = |uid: &str, visibility: Vec<pb::Visibility>| {
        let mut req = samples::submit_request(&f.professional.id, uid, 0);
        if let Some(m) = req.documents[0].metadata.as_mut() {
            m.visibility = visibility.into_iter().map(|v| v as i32).collect();
        }
        req
    };
    let r = exchange::<Submit>(
        &sim,
        submit(
            "1.2.250.1.999.1.1.7898.65.1",
            vec![pb::Visibility::MaskedToProfessionals],
        ),
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let r = exchange::<Submit>(&sim, submit("1.2.250.1.999.1.1.7898.65.2", vec![]));
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);

    // The author sees both, the masked one typed as such.
    let mine = find(&sim, &[pb::DocumentStatus::Approved]).documents;
    let masked = mine
        .iter()
        .find(|d| d.unique_id == "1.2.250.1.999.1.1.7898.65.1")
        .expect("masked");
    assert_eq!(
        masked.visibility().collect::<Vec<_>>(),
        vec![pb::Visibility::MaskedToProfessionals]
    );
    // Another professional sees only the unmasked one.
    let theirs: Vec<String> = find_as_nurse(&sim)
        .documents
        .into_iter()
        .map(|d| d.unique_id)
        .collect();
    assert_eq!(theirs, vec!["1.2.250.1.999.1.1.7898.65.2".to_string()]);

    // Combinations the DMP refuses never leave the gateway, the rule named.
    for (visibility, rule) in [
        (
            vec![
                pb::Visibility::MaskedToProfessionals,
                pb::Visibility::HiddenFromPatient,
            ],
            "rule NoOneButTheAuthor",
        ),
        (
            vec![
                pb::Visibility::HiddenFromLegalRepresentatives,
                pb::Visibility::HiddenFromLegalRepresentatives,
            ],
            "rule Repeated",
        ),
    ] {
        let e =
            prepare::<Submit>(submit("1.2.250.1.999.1.1.7898.65.3", visibility), &ctx(f)).expect_err(rule);
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message()
                .starts_with(&format!("documents[0].metadata.visibility: {rule}")),
            "{}",
            s.message()
        );
    }
    let mut free_form = submit("1.2.250.1.999.1.1.7898.65.4", vec![]);
    if let Some(m) = free_form.documents[0].metadata.as_mut() {
        m.confidentiality_codes.push(pb::Code {
            code: "MASQUE_PS".into(),
            code_system: "1.2.250.1.213.1.1.4.13".into(),
            display_name: "Masqué".into(),
        });
    }
    let e = prepare::<Submit>(free_form, &ctx(f)).expect_err("free-form visibility code");
    assert!(
        tonic::Status::from(e)
            .message()
            .contains("name it in metadata.visibility")
    );
}

#[test]
fn find_documents_filters_on_confidentiality_event_and_author() {
    let f = fixture();
    let sim = DmpSimulator::new(SimConfig::default());
    let mut req = samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.67.1", 0);
    if let Some(m) = req.documents[0].metadata.as_mut() {
        m.visibility = vec![pb::Visibility::MaskedToProfessionals as i32];
    }
    assert_eq!(
        exchange::<Submit>(&sim, req).status(),
        pb::RegistryResponseStatus::Success
    );
    let r = exchange::<Submit>(
        &sim,
        samples::submit_request(&f.professional.id, "1.2.250.1.999.1.1.7898.67.2", 0),
    );
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    let code = |code: &str, system: &str| pb::Code {
        code: code.into(),
        code_system: system.into(),
        display_name: String::new(),
    };
    let search = |q: pb::FindDocumentsRequest| -> Vec<String> {
        let mut ids: Vec<String> = exchange::<Find>(
            &sim,
            pb::FindDocumentsRequest {
                auth_context: Some(samples::auth_context(&f.professional.id)),
                patient: Some(samples::patient()),
                ..q
            },
        )
        .documents
        .into_iter()
        .map(|d| d.unique_id)
        .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        search(pb::FindDocumentsRequest {
            confidentiality_codes: vec![code("MASQUE_PS", "1.2.250.1.213.1.1.4.13")],
            ..Default::default()
        }),
        vec!["1.2.250.1.999.1.1.7898.67.1".to_string()]
    );
    assert_eq!(
        search(pb::FindDocumentsRequest {
            author_ids: vec![f.professional.id.clone()],
            ..Default::default()
        })
        .len(),
        2
    );
    assert!(
        search(pb::FindDocumentsRequest {
            author_ids: vec!["810100000002".into()],
            ..Default::default()
        })
        .is_empty()
    );
    assert!(
        search(pb::FindDocumentsRequest {
            event_codes: vec![code("NOPE", "1.2.3")],
            ..Default::default()
        })
        .is_empty()
    );
    let e = prepare::<Find>(
        pb::FindDocumentsRequest {
            auth_context: Some(samples::auth_context(&f.professional.id)),
            patient: Some(samples::patient()),
            author_ids: vec!["x^y".into()],
            ..Default::default()
        },
        &ctx(f),
    )
    .expect_err("bad author id");
    assert!(tonic::Status::from(e).message().starts_with("author_ids[0]:"));
}
