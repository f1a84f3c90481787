//! The gateway's own messages round-trip through the DMP simulator (submit, find, retrieve
//! byte-identical, archive, find again, delete): what one writes, the other reads. Neither
//! trusts only the other: the simulator's tests feed it the official example requests, and
//! `transactions.rs` checks what the gateway writes against the XSD annex.

use std::path::Path;
use std::sync::OnceLock;

use dev_support::devpki::{DevPki, files};
use dmp_gateway::{
    CallContext, Find, Incoming, Outgoing, Retrieve, Submit, TestPatient, Transaction, UpdateStatus,
    XdsSettings, prepare, samples,
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
                &pki.path(files::CPS_AUTH_KEY),
                &pki.path(files::CPS_AUTH_CERT),
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
        signer: &f.signer,
        endpoint: "https://localhost/si-dmp-server/v2/services",
        now: time::OffsetDateTime::now_utc(),
    }
}

fn send(sim: &DmpSimulator, out: &Outgoing) -> Incoming {
    let path = match out.web_service {
        WebService::Repository => paths::REPOSITORY,
        WebService::Registry => paths::REGISTRY,
        WebService::Patients => paths::PATIENTS,
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
fn exchange<X: Transaction>(sim: &DmpSimulator, req: X::Request) -> X::Response {
    let p = prepare::<X>(req, &ctx(fixture())).expect("prepare");
    p.parse(&send(sim, &p.outgoing)).expect("response")
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
            document_unique_id: String::new(),
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
    let r = retrieve(&sim, req);
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
}
