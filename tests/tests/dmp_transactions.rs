//! Issue 5 end to end, through relay and TLS: an integrator's backend calls the gateway over
//! gRPC; the gateway signs its TLS handshake with the card on a SoftHSM2 token (cps-relay) and
//! talks SOAP to the DMP simulator on its TLS 1.2 listener: submit a CDA, find it, retrieve it
//! byte-identical, archive it, and it is no longer among approved documents.

use std::sync::Arc;

use dev_support::devpki::files;
use dmp_gateway::samples;
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;

const DOCTOR: &str = "810100000001";

fn auth() -> pb::AuthenticationContext {
    pb::AuthenticationContext {
        relay_id: "ws-1".into(),
        ..samples::auth_context(DOCTOR)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_find_retrieve_archive_through_relay_and_tls() {
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)])).await;
    // The professional grants the integrator's backend a session; the backend presents it.
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&grant)).await;

    // TD0.2
    let r = client
        .test_patient_dmp(pb::TestPatientDmpRequest {
            auth_context: Some(auth()),
            patient: Some(samples::patient()),
        })
        .await
        .expect("TestPatientDmp")
        .into_inner();
    assert!(r.dmp_exists);
    assert_eq!(r.authorization(), pb::Authorization::Valide);

    // TD2.1
    let uid = "1.2.250.1.999.1.1.7898.77.1";
    let mut req = samples::submit_request(DOCTOR, uid, 10 * 1024);
    req.auth_context = Some(auth());
    let document = req.documents[0].content.clone();
    let r = client
        .submit_documents(req)
        .await
        .expect("SubmitDocuments")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    assert_eq!(r.document_unique_ids, vec![uid.to_string()]);

    // TD3.1
    let find = |statuses: Vec<pb::DocumentStatus>| pb::FindDocumentsRequest {
        auth_context: Some(auth()),
        patient: Some(samples::patient()),
        statuses: statuses.into_iter().map(|s| s as i32).collect(),
        ..Default::default()
    };
    let found = client
        .find_documents(find(vec![pb::DocumentStatus::Approved]))
        .await
        .expect("FindDocuments")
        .into_inner();
    let entry = found
        .documents
        .iter()
        .find(|d| d.unique_id == uid)
        .expect("found")
        .clone();

    // TD3.2: byte-identical.
    let r = client
        .retrieve_document(pb::RetrieveDocumentRequest {
            auth_context: Some(auth()),
            patient: Some(samples::patient()),
            repository_unique_id: entry.repository_unique_id.clone(),
            document_unique_id: uid.into(),
        })
        .await
        .expect("RetrieveDocument")
        .into_inner();
    assert_eq!(r.content, document);

    // TD3.3d archive; no longer among approved documents.
    let r = client
        .update_document_status(pb::UpdateDocumentStatusRequest {
            auth_context: Some(auth()),
            patient: Some(samples::patient()),
            entry_uuid: entry.entry_uuid.clone(),
            document_unique_id: uid.into(),
            current_status: pb::DocumentStatus::Approved as i32,
            new_status: pb::DocumentStatus::Archived as i32,
        })
        .await
        .expect("UpdateDocumentStatus")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let found = client
        .find_documents(find(vec![pb::DocumentStatus::Approved]))
        .await
        .expect("FindDocuments")
        .into_inner();
    assert!(!found.documents.iter().any(|d| d.unique_id == uid));

    // A bad input is refused before anything is sent: the DMP still holds 2 documents.
    let mut bad = samples::submit_request(DOCTOR, "1.2.250.1.999.1.1.7898.77.2", 0);
    bad.auth_context = Some(auth());
    bad.patient = Some(pb::PatientId {
        ins: "207058575627098".into(),
        assigning_authority: samples::TEST_INS_OID.into(),
    });
    let e = client.submit_documents(bad).await.expect_err("bad INS key");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("patient.ins: the INS key 98"),
        "{}",
        e.message()
    );
    assert_eq!(sim.document_count(), 2);

    // Issue 16: a CDA header that breaks a CI-SIS rule the DMP enforces is refused over gRPC,
    // naming the element, and nothing reaches the DMP.
    let requests = sim.requests();
    let mut bad = samples::submit_request(DOCTOR, "1.2.250.1.999.1.1.7898.77.3", 0);
    bad.auth_context = Some(auth());
    let cda = String::from_utf8(bad.documents[0].content.to_vec()).expect("utf8");
    let without = cda.replace(r#"<templateId root="1.2.250.1.213.1.1.1.1"/>"#, "");
    assert_ne!(without, cda, "the sample declares the CI-SIS template");
    bad.documents[0].content = without.into();
    let e = client
        .submit_documents(bad)
        .await
        .expect_err("no CI-SIS template");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with(
            "documents[0].content: malformed CDA: ClinicalDocument/templateId: 1.2.250.1.213.1.1.1.1"
        ),
        "{}",
        e.message()
    );
    assert_eq!(sim.requests(), requests, "nothing was sent");
    assert_eq!(sim.document_count(), 2);
}
