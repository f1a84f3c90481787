//! The gateway's RPC layer (`dmp_gateway::service`) over an in-process transport to the
//! simulator: the card's certificate names the VIHF's professional, and the retry rules of
//! SPEC.md §2 hold (idempotent calls retried once on a lost connection, a submission never
//! blindly).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dev_support::devpki::{DevPki, files};
use dmp_gateway::dsg::SoftwareSigner;
use dmp_gateway::error::{DmpError, TransportError};
use dmp_gateway::mtom::HttpBody;
use dmp_gateway::samples;
use dmp_gateway::service::{DmpTransport, ServicePaths, Transactions};
use dmp_gateway::transactions::{Incoming, XdsSettings, default_paths};
use dmp_sim::{DmpSimulator, SimConfig};
use ehealth_proto::dmp::v1 as pb;

/// Forwards to the simulator; the next `fail` posts fail with the given error first.
struct SimTransport {
    sim: DmpSimulator,
    cert: Vec<u8>,
    failures: Mutex<Vec<TransportError>>,
    forward_before_failing: bool,
    posts: AtomicUsize,
}

#[tonic::async_trait]
impl DmpTransport for SimTransport {
    async fn card_certificate(&self, _auth: &pb::AuthenticationContext) -> Result<Vec<u8>, DmpError> {
        Ok(self.cert.clone())
    }

    async fn post(
        &self,
        _auth: &pb::AuthenticationContext,
        path: &str,
        body: &HttpBody,
    ) -> Result<Incoming, DmpError> {
        self.posts.fetch_add(1, Ordering::SeqCst);
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

fn service(failures: Vec<TransportError>, forward_before_failing: bool) -> Transactions<SimTransport> {
    let pki = DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-service-pki")).expect("pki");
    let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert")[0].to_vec();
    let signer =
        SoftwareSigner::from_pem_files(&pki.path(files::CPS_AUTH_KEY), &pki.path(files::CPS_AUTH_CERT))
            .expect("signer");
    Transactions {
        audit: audit_log::AuditLog::disabled(),
        transport: Arc::new(SimTransport {
            sim: DmpSimulator::new(SimConfig::default()),
            cert,
            failures: Mutex::new(failures),
            forward_before_failing,
            posts: AtomicUsize::new(0),
        }),
        lps: Default::default(),
        settings: XdsSettings::default(),
        signer: Arc::new(signer),
        paths: ServicePaths {
            base_url: "https://localhost:8443".into(),
            repository: default_paths::REPOSITORY.into(),
            registry: default_paths::REGISTRY.into(),
            patients: default_paths::PATIENTS.into(),
        },
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
    let svc = service(vec![TransportError::ConnectionLost("reset".into())], false);
    let r = svc
        .find_documents(find())
        .await
        .expect("find after one lost connection");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(
        svc.transport.posts.load(Ordering::SeqCst),
        2,
        "lost find, retried find"
    );

    // Twice lost: the error reaches the caller.
    let svc = service(
        vec![
            TransportError::ConnectionLost("reset".into()),
            TransportError::ConnectionLost("reset".into()),
        ],
        false,
    );
    let e = svc.find_documents(find()).await.expect_err("lost twice");
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn a_submission_is_never_blindly_retried() {
    // The DMP got the submission, the answer was lost: UNAVAILABLE with the uniqueIds.
    let svc = service(vec![TransportError::ConnectionLost("reset by peer".into())], true);
    let e = svc
        .submit_documents(submit("1.2.250.1.999.1.1.7898.5.2"))
        .await
        .expect_err("lost");
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("1.2.250.1.999.1.1.7898.5.2"),
        "{}",
        status.message()
    );
    assert_eq!(svc.transport.posts.load(Ordering::SeqCst), 1, "not resent");
    // Resubmitting is idempotent at the registry: the duplicate is refused.
    let r = svc
        .submit_documents(submit("1.2.250.1.999.1.1.7898.5.2"))
        .await
        .expect("answer");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSDuplicateUniqueIdInRegistry");

    // Surely never sent (the DMP unreachable): resent once, and it succeeds.
    let svc = service(
        vec![TransportError::DmpUnreachable {
            address: "localhost:8443".into(),
            reason: "connection refused".into(),
        }],
        false,
    );
    let r = svc
        .submit_documents(submit("1.2.250.1.999.1.1.7898.5.3"))
        .await
        .expect("resent");
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success);
    assert_eq!(svc.transport.posts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_requests_never_reach_the_transport() {
    let svc = service(vec![], false);
    let mut req = submit("1.2.250.1.999.1.1.7898.5.4");
    req.documents[0].content = Bytes::new();
    let e = svc.submit_documents(req).await.expect_err("empty document");
    assert!(
        e.to_string()
            .starts_with("documents[0].content: the document is empty"),
        "{e}"
    );
    let mut req = find();
    req.patient = None;
    let e = svc.find_documents(req).await.expect_err("no patient");
    assert!(
        e.to_string()
            .starts_with("patient.ins: the patient's INS is required"),
        "{e}"
    );
    assert_eq!(svc.transport.posts.load(Ordering::SeqCst), 0);
}
