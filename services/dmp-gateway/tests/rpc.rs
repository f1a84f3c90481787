//! The gateway's RPC layer ([`Gateway`]) over an in-process transport to the DMP simulator:
//! the card's certificate names the VIHF's professional, and the retry rules of SPEC.md §2 hold
//! (idempotent calls retried once on a lost connection, a submission never blindly).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dev_support::devpki::{DevPki, files};
use dmp_gateway::{
    CallAccess, Caller, DmpError, DmpTransport, Find, Gateway, Incoming, Opened, ServicePaths, SetVisibility,
    Submit, TransportError, UpdateStatus, XdsSettings, samples,
};
use dmp_protocol::mtom::HttpBody;
use dmp_protocol::soap;
use dmp_protocol::transactions::default_paths;
use dmp_protocol::xades::SoftwareSigner;
use dmp_sim::{DmpSimulator, SimConfig};
use ehealth_proto::dmp::v1 as pb;

/// Forwards to the simulator; the next `fail` posts fail with the given error first.
struct SimTransport {
    sim: DmpSimulator,
    cert: Vec<u8>,
    /// The card's signature key, as the relay would use it.
    signer: SoftwareSigner,
    failures: Mutex<Vec<TransportError>>,
    forward_before_failing: bool,
    posts: AtomicUsize,
    /// Every body posted, in order.
    sent: Mutex<Vec<Bytes>>,
}

#[tonic::async_trait]
impl DmpTransport for SimTransport {
    type Session = ();

    // The consent checks are the real transport's (tests/tests/dmp_access.rs); here every caller
    // may act.
    async fn open(&self, _access: &CallAccess<'_>) -> Result<Opened<()>, DmpError> {
        Ok(Opened {
            certificate_der: self.cert.clone(),
            grant_id: None,
            session: (),
        })
    }

    async fn signature_certificate(&self, _opened: &Opened<()>) -> Result<Vec<u8>, DmpError> {
        Ok(dmp_protocol::xades::Signer::certificate(&self.signer).to_vec())
    }

    async fn sign_xades(
        &self,
        _opened: &Opened<()>,
        signed_info: Vec<u8>,
        certificate_der: &[u8],
    ) -> Result<Vec<u8>, DmpError> {
        assert_eq!(
            certificate_der,
            dmp_protocol::xades::Signer::certificate(&self.signer)
        );
        Ok(dmp_protocol::xades::Signer::sign(&self.signer, &signed_info)?)
    }

    async fn post(&self, _session: &(), path: &str, body: &HttpBody) -> Result<Incoming, DmpError> {
        self.posts.fetch_add(1, Ordering::SeqCst);
        self.sent.lock().expect("lock").push(body.to_bytes());
        let req = http::Request::post(path)
            .header("content-type", &body.content_type)
            .body(body.to_bytes())
            .expect("request");
        let failure = self.failures.lock().expect("lock").pop();
        if let Some(f) = failure {
            if self.forward_before_failing {
                // The DMP got it, the answer was lost.
                let _ = self.sim.handle(Some(&self.cert), req);
            }
            return Err(DmpError::Transport(f));
        }
        let resp = self.sim.handle(Some(&self.cert), req);
        Ok(Incoming {
            status: resp.status().as_u16(),
            content_type: resp.headers()["content-type"].to_str().expect("ct").to_string(),
            body: resp.into_body(),
        })
    }
}

/// The service, and its transport to count posts.
fn service(
    failures: Vec<TransportError>,
    forward_before_failing: bool,
) -> (Gateway<SimTransport>, Arc<SimTransport>) {
    let pki = DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-service-pki")).expect("pki");
    let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert")[0].to_vec();
    let signer =
        SoftwareSigner::from_pem_files(&pki.path(files::CPS_SIGN_KEY), &pki.path(files::CPS_SIGN_CERT))
            .expect("signer");
    let transport = Arc::new(SimTransport {
        sim: DmpSimulator::new(SimConfig::default()),
        cert,
        signer,
        failures: Mutex::new(failures),
        forward_before_failing,
        posts: AtomicUsize::new(0),
        sent: Mutex::new(Vec::new()),
    });
    let gateway = Gateway::new(
        transport.clone(),
        audit_log::AuditLog::disabled(),
        Default::default(),
        XdsSettings::default(),
        ServicePaths {
            base_url: "https://localhost:8443".into(),
            repository: default_paths::REPOSITORY.into(),
            registry: default_paths::REGISTRY.into(),
            patients: default_paths::PATIENTS.into(),
            habilitations: default_paths::HABILITATIONS.into(),
        },
    );
    (gateway, transport)
}

/// The integrator's backend, as the caller authentication names it.
fn caller() -> Caller {
    Caller {
        identity: "integrator".into(),
        grant: None,
    }
}

fn submit(uid: &str) -> pb::SubmitDocumentsRequest {
    samples::submit_request("810100000001", uid, 0)
}

fn find() -> pb::FindDocumentsRequest {
    pb::FindDocumentsRequest {
        auth_context: Some(samples::auth_context("810100000001")),
        patient: Some(samples::patient()),
        ..Default::default()
    }
}

#[tokio::test]
async fn idempotent_calls_are_retried_once_on_a_lost_connection() {
    let (svc, transport) = service(vec![TransportError::ConnectionLost("reset".into())], false);
    let r = svc
        .exchange::<Find>(&caller(), find())
        .await
        .expect("find after one lost connection");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(
        transport.posts.load(Ordering::SeqCst),
        2,
        "lost find, retried find"
    );

    // Twice lost: the error reaches the caller.
    let (svc, _) = service(
        vec![
            TransportError::ConnectionLost("reset".into()),
            TransportError::ConnectionLost("reset".into()),
        ],
        false,
    );
    let e = svc
        .exchange::<Find>(&caller(), find())
        .await
        .expect_err("lost twice");
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn a_submission_is_never_blindly_retried() {
    // The DMP got the submission, the answer was lost: UNAVAILABLE with the uniqueIds.
    let (svc, transport) = service(vec![TransportError::ConnectionLost("reset by peer".into())], true);
    let e = svc
        .exchange::<Submit>(&caller(), submit("1.2.250.1.999.1.1.7898.5.2"))
        .await
        .expect_err("lost");
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("1.2.250.1.999.1.1.7898.5.2"),
        "{}",
        status.message()
    );
    assert_eq!(transport.posts.load(Ordering::SeqCst), 1, "not resent");
    // Resubmitting is idempotent at the registry: the duplicate is refused.
    let r = svc
        .exchange::<Submit>(&caller(), submit("1.2.250.1.999.1.1.7898.5.2"))
        .await
        .expect("answer");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSDuplicateUniqueIdInRegistry");

    // Surely never sent (the DMP unreachable): resent once, and it succeeds.
    let (svc, transport) = service(
        vec![TransportError::DmpUnreachable {
            address: "localhost:8443".into(),
            reason: "connection refused".into(),
        }],
        false,
    );
    let r = svc
        .exchange::<Submit>(&caller(), submit("1.2.250.1.999.1.1.7898.5.3"))
        .await
        .expect("resent");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(transport.posts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_requests_never_reach_the_transport() {
    let (svc, transport) = service(vec![], false);
    let mut req = submit("1.2.250.1.999.1.1.7898.5.4");
    req.documents[0].content = Bytes::new();
    let e = svc
        .exchange::<Submit>(&caller(), req)
        .await
        .expect_err("empty document");
    assert!(
        e.to_string()
            .starts_with("documents[0].content: the document is empty"),
        "{e}"
    );
    let mut req = find();
    req.patient = None;
    let e = svc
        .exchange::<Find>(&caller(), req)
        .await
        .expect_err("no patient");
    assert!(
        e.to_string()
            .starts_with("patient.ins: the patient's INS is required"),
        "{e}"
    );
    assert_eq!(transport.posts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_retry_sends_the_message_built_once() {
    // Idempotent: the same message in a new envelope, whose only change is the MessageID.
    let (svc, transport) = service(vec![TransportError::ConnectionLost("reset".into())], false);
    svc.exchange::<Find>(&caller(), find()).await.expect("find");
    let sent = transport.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 2);
    let ids: Vec<String> = sent
        .iter()
        .map(|b| {
            soap::parse_envelope(b)
                .expect("envelope")
                .message_id()
                .expect("MessageID")
                .to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "a retry has its own MessageID");
    assert_eq!(
        String::from_utf8_lossy(&sent[0]).replace(&ids[0], ""),
        String::from_utf8_lossy(&sent[1]).replace(&ids[1], ""),
        "and is otherwise the message already built"
    );

    // A submission that surely never left is sent again byte for byte.
    let (svc, transport) = service(
        vec![TransportError::DmpUnreachable {
            address: "localhost:8443".into(),
            reason: "connection refused".into(),
        }],
        false,
    );
    svc.exchange::<Submit>(&caller(), submit("1.2.250.1.999.1.1.7898.5.5"))
        .await
        .expect("resent");
    let sent = transport.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the same message, the same MessageID");
}

#[tokio::test]
async fn a_status_change_is_checked_against_the_dmp_before_it_is_sent() {
    let (svc, transport) = service(Vec::new(), false);
    let uid = "1.2.250.1.999.1.1.7898.64.1";
    svc.exchange::<Submit>(&caller(), submit(uid))
        .await
        .expect("submit");
    let entry = svc
        .exchange::<Find>(&caller(), find())
        .await
        .expect("find")
        .documents
        .into_iter()
        .find(|d| d.unique_id == uid)
        .expect("found");
    let change = |unique_id: &str, current: pb::DocumentStatus, new: pb::DocumentStatus| {
        pb::UpdateDocumentStatusRequest {
            auth_context: Some(samples::auth_context("810100000001")),
            patient: Some(samples::patient()),
            entry_uuid: entry.entry_uuid.clone(),
            document_unique_id: unique_id.into(),
            current_status: current as i32,
            new_status: new as i32,
        }
    };

    // Another document's uniqueId, or a status the document does not have: refused after the
    // lookup, the ITI-57 message is never sent.
    let posts = transport.posts.load(Ordering::SeqCst);
    let e = svc
        .exchange::<UpdateStatus>(
            &caller(),
            change(
                "1.2.250.1.999.1.1.7898.64.9",
                pb::DocumentStatus::Approved,
                pb::DocumentStatus::Archived,
            ),
        )
        .await
        .expect_err("wrong uniqueId");
    let s = tonic::Status::from(e);
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message()
            .starts_with("document_unique_id: `1.2.250.1.999.1.1.7898.64.9` is not the document"),
        "{}",
        s.message()
    );
    let e = svc
        .exchange::<UpdateStatus>(
            &caller(),
            change(uid, pb::DocumentStatus::Archived, pb::DocumentStatus::Deleted),
        )
        .await
        .expect_err("stale status");
    assert!(
        tonic::Status::from(e)
            .message()
            .starts_with("current_status: the document is DOCUMENT_STATUS_APPROVED at the DMP")
    );
    assert_eq!(
        transport.posts.load(Ordering::SeqCst),
        posts + 2,
        "two lookups, no update"
    );

    // The right one: the answer says the new status.
    let r = svc
        .exchange::<UpdateStatus>(
            &caller(),
            change(uid, pb::DocumentStatus::Approved, pb::DocumentStatus::Archived),
        )
        .await
        .expect("archive");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert_eq!(r.new_status(), pb::DocumentStatus::Archived);
    assert_eq!(r.document_unique_id, uid);
    assert_eq!(r.entry_uuid, entry.entry_uuid);
}

/// The SOAP Body's payload of a plain SOAP request, validated against an ebRS schema of the
/// annex with xmllint.
fn validate_body(sent: &Bytes, schema: &str) -> String {
    let env = String::from_utf8(sent.to_vec()).expect("utf8");
    let start = env.find("<soap:Body>").expect("Body") + "<soap:Body>".len();
    let end = env.rfind("</soap:Body>").expect("/Body");
    let body = env[start..end].to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("body.xml"), &body).expect("write");
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/dmp-package/schemas/schema")
        .join(schema);
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(dir.path().join("body.xml"))
        .output()
        .expect("xmllint (libxml2-utils) runs");
    assert!(
        out.status.success(),
        "{}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

#[tokio::test]
async fn visibility_changes_after_submission_keep_to_the_dmp_rules() {
    let (svc, transport) = service(Vec::new(), false);
    let uid = "1.2.250.1.999.1.1.7898.68.1";
    svc.exchange::<Submit>(&caller(), submit(uid))
        .await
        .expect("submit");
    let entry = svc
        .exchange::<Find>(&caller(), find())
        .await
        .expect("find")
        .documents
        .into_iter()
        .find(|d| d.unique_id == uid)
        .expect("found");
    assert!(entry.visibility.is_empty());
    let change = |visibility: &[pb::Visibility]| pb::SetDocumentVisibilityRequest {
        auth_context: Some(samples::auth_context("810100000001")),
        patient: Some(samples::patient()),
        entry_uuid: entry.entry_uuid.clone(),
        document_unique_id: uid.into(),
        visibility: visibility.iter().map(|v| *v as i32).collect(),
    };
    let visibility_of_entry = || async {
        svc.exchange::<Find>(&caller(), find())
            .await
            .expect("find")
            .documents
            .into_iter()
            .find(|d| d.unique_id == uid)
            .expect("found")
            .visibility()
            .collect::<Vec<_>>()
    };

    // TD3.3a: masked, then unmasked; the answer and FindDocuments say so.
    let r = svc
        .exchange::<SetVisibility>(&caller(), change(&[pb::Visibility::MaskedToProfessionals]))
        .await
        .expect("mask");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert_eq!(
        r.visibility().collect::<Vec<_>>(),
        vec![pb::Visibility::MaskedToProfessionals]
    );
    assert_eq!(
        visibility_of_entry().await,
        vec![pb::Visibility::MaskedToProfessionals]
    );
    // The ITI-57 message: valid against lcm.xsd, the entry's new version names its lid.
    let sent = transport.sent.lock().expect("lock").clone();
    let update = sent
        .iter()
        .rev()
        .find(|b| String::from_utf8_lossy(b).contains("urn:ihe:iti:2010:UpdateDocumentSet"))
        .expect("ITI-57 sent");
    let body = validate_body(update, "ebRS/lcm.xsd");
    assert!(body.contains(&format!(r#"lid="{}""#, entry.entry_uuid)), "{body}");
    assert!(body.contains("PreviousVersion"), "{body}");
    let r = svc
        .exchange::<SetVisibility>(&caller(), change(&[]))
        .await
        .expect("unmask");
    assert!(r.visibility.is_empty());
    assert!(visibility_of_entry().await.is_empty());

    // Refused before the update is sent, the rule named: hiding from the patient a document
    // they could see (after the lookup), and a combination the DMP refuses (before anything).
    let posts = transport.posts.load(Ordering::SeqCst);
    let e = svc
        .exchange::<SetVisibility>(&caller(), change(&[pb::Visibility::HiddenFromPatient]))
        .await
        .expect_err("no longer hideable");
    let s = tonic::Status::from(e);
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message()
            .starts_with("visibility: rule PatientVisibilityIsFinal"),
        "{}",
        s.message()
    );
    let e = svc
        .exchange::<SetVisibility>(
            &caller(),
            change(&[
                pb::Visibility::MaskedToProfessionals,
                pb::Visibility::HiddenFromPatient,
            ]),
        )
        .await
        .expect_err("combination");
    assert!(
        tonic::Status::from(e)
            .message()
            .starts_with("visibility: rule NoOneButTheAuthor")
    );
    assert_eq!(
        transport.posts.load(Ordering::SeqCst),
        posts + 1,
        "one lookup, no update"
    );
}

#[tokio::test]
async fn the_card_decides_profession_and_specialty() {
    let (svc, transport) = service(vec![], false);
    let code = |code: &str, system: &str| {
        Some(pb::Code {
            code: code.into(),
            code_system: system.into(),
            display_name: String::new(),
        })
    };
    // The card says profession 10, specialty SM26: a caller saying otherwise is refused,
    // before anything reaches the DMP.
    let mut req = find();
    if let Some(a) = req.auth_context.as_mut() {
        a.profession = code("60", "1.2.250.1.71.1.2.7");
    }
    let e = svc
        .exchange::<Find>(&caller(), req)
        .await
        .expect_err("another profession");
    assert!(
        e.to_string()
            .starts_with("auth_context.profession: `60^1.2.250.1.71.1.2.7` contradicts the card"),
        "{e}"
    );
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    let mut req = find();
    if let Some(a) = req.auth_context.as_mut() {
        a.specialty = code("SM04", "1.2.250.1.71.4.2.5");
    }
    let e = svc
        .exchange::<Find>(&caller(), req)
        .await
        .expect_err("another specialty");
    assert!(e.to_string().starts_with("auth_context.specialty:"), "{e}");
    assert_eq!(transport.posts.load(Ordering::SeqCst), 0);

    // Silent or repeating the card, the VIHF carries the card's codes.
    let mut req = find();
    if let Some(a) = req.auth_context.as_mut() {
        a.profession = code("10", "1.2.250.1.71.1.2.7");
    }
    svc.exchange::<Find>(&caller(), req)
        .await
        .expect("the card's profession");
    let sent = transport
        .sent
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a message");
    let envelope = soap::parse_envelope(&sent).expect("envelope");
    let v = dmp_protocol::vihf::parse(envelope.security_assertion().expect("VIHF")).expect("vihf");
    assert_eq!(v.attributes[dmp_protocol::vihf::attr::ROLE], ["10", "SM26"]);
}

#[tokio::test]
async fn the_structure_and_sector_come_from_the_callers_configuration() {
    let (svc, transport) = service(vec![], false);
    let structures = [(
        "integrator".to_owned(),
        dmp_gateway::CallerStructure {
            structure_id: "10B0999999".into(),
            activity_sector: "SA01^1.2.250.1.71.4.2.4".into(),
        },
    )];
    let svc = svc.with_caller_structures(dmp_gateway::CallerStructures::new(
        structures.into_iter().collect(),
        true,
    ));
    // The request's structure contradicts the caller's: refused, naming the field.
    let e = svc
        .exchange::<Find>(&caller(), find())
        .await
        .expect_err("another structure");
    assert!(
        e.to_string().starts_with(
            "auth_context.structure_id: `10B0152872` contradicts the structure configured for caller integrator"
        ),
        "{e}"
    );
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    // A caller without a configured structure is refused outside development.
    let stranger = Caller {
        identity: "stranger".into(),
        grant: None,
    };
    let e = svc
        .exchange::<Find>(&stranger, find())
        .await
        .expect_err("no structure");
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::PermissionDenied);
    assert_eq!(transport.posts.load(Ordering::SeqCst), 0);

    // Silent, the VIHF carries the configured structure and sector.
    let mut req = find();
    if let Some(a) = req.auth_context.as_mut() {
        a.structure_id.clear();
        a.activity_sector.clear();
    }
    svc.exchange::<Find>(&caller(), req)
        .await
        .expect("the caller's structure");
    let sent = transport
        .sent
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a message");
    let envelope = soap::parse_envelope(&sent).expect("envelope");
    let v = dmp_protocol::vihf::parse(envelope.security_assertion().expect("VIHF")).expect("vihf");
    assert_eq!(v.first(dmp_protocol::vihf::attr::STRUCTURE), Some("10B0999999"));
    assert_eq!(
        v.first(dmp_protocol::vihf::attr::SECTOR),
        Some("SA01^1.2.250.1.71.4.2.4")
    );
}
