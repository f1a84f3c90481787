//! Issue 15 end to end, through relays, SoftHSM cards, mutual TLS and the DMP simulator: the
//! daily flow of an integrator. TD0.2 says the doctor has no authorization, TD2.1 is refused,
//! TD0.3 authorizes, TD2.1 passes, a replacement deprecates the original, a masked document
//! stays invisible to a second professional (the nurse's card), TD1.6 lists both
//! professionals, TD0.4 lists the doctor's DMP, and GetAssociations follows the replacement.

use std::sync::Arc;

use dev_support::devpki::files;
use dmp_gateway::samples;
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;

const DOCTOR: &str = "810100000001";
const NURSE: &str = "810100000002";

fn auth(relay: &str, professional: &str) -> Option<pb::AuthenticationContext> {
    Some(pb::AuthenticationContext {
        relay_id: relay.into(),
        ..samples::auth_context(professional)
    })
}

fn doctor() -> Option<pb::AuthenticationContext> {
    auth("doctor-ws", DOCTOR)
}

fn nurse() -> Option<pb::AuthenticationContext> {
    auth("nurse-ws", NURSE)
}

fn find(who: Option<pb::AuthenticationContext>, status: pb::DocumentStatus) -> pb::FindDocumentsRequest {
    pb::FindDocumentsRequest {
        auth_context: who,
        patient: Some(samples::patient()),
        statuses: vec![status as i32],
        ..Default::default()
    }
}

fn grant(who: Option<pb::AuthenticationContext>) -> pb::SetAuthorizationRequest {
    pb::SetAuthorizationRequest {
        auth_context: who,
        patient: Some(samples::patient()),
        action: pb::AuthorizationAction::Grant as i32,
        treating_doctor: false,
    }
}

fn submit(uid: &str, replaces: &str, visibility: &[pb::Visibility]) -> pb::SubmitDocumentsRequest {
    let mut req = samples::submit_request(DOCTOR, uid, 0);
    req.auth_context = doctor();
    req.documents[0].replaces_entry_uuid = replaces.into();
    if let Some(m) = req.documents[0].metadata.as_mut() {
        m.visibility = visibility.iter().map(|v| *v as i32).collect();
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_replacement_masking_and_lists_through_relay_and_tls() {
    // Each relay is known to the gateway by the id its grants carry (`iss`).
    let (doctor_relay, _) = start_card_relay_as(
        "doctor-ws",
        DOCTOR_TOKENS[0],
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    let (nurse_relay, _) =
        start_card_relay_as("nurse-ws", "nurse", "127.0.0.1:0".parse().expect("addr")).await;
    let mut config = dmp_sim::SimConfig::default();
    for p in &mut config.patients {
        p.authorization = pb::Authorization::NonExiste;
    }
    let sim = Arc::new(dmp_sim::DmpSimulator::new(config));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(
        dmp,
        &[
            ("doctor-ws", doctor_relay.grpc_addr),
            ("nurse-ws", nurse_relay.grpc_addr),
        ],
    ))
    .await;
    // The integrator calls over mutual TLS, for each professional under the session grant their
    // card holder's UI issued it.
    let (doctor_grant, _) = issue_grant(doctor_relay.grpc_addr).await;
    let (nurse_grant, _) = issue_grant(nurse_relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&doctor_grant)).await;
    let mut nurse_client = gateway_client(&gateway, Some(&nurse_grant)).await;

    // TD0.2: the DMP exists, the doctor is not authorized.
    let r = client
        .test_patient_dmp(pb::TestPatientDmpRequest {
            auth_context: doctor(),
            patient: Some(samples::patient()),
        })
        .await
        .expect("TD0.2")
        .into_inner();
    assert!(r.dmp_exists && !r.dmp_closed);
    assert_eq!(r.authorization(), pb::Authorization::NonExiste);
    assert_eq!(
        r.patient_traits.map(|t| t.family_name),
        Some("patb-quatre".to_string())
    );

    // TD2.1 refused with a message a person can act on; nothing stored.
    let e = client
        .submit_documents(submit("1.2.250.1.999.1.1.7898.66.1", "", &[]))
        .await
        .expect_err("not authorized");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("DMPAccessDenied") && e.message().contains("TD0.3"),
        "{}",
        e.message()
    );
    assert_eq!(sim.document_count(), 0);

    // TD0.3, then TD2.1 passes.
    let r = client
        .set_authorization(grant(doctor()))
        .await
        .expect("TD0.3")
        .into_inner();
    assert_eq!(r.status, "DMPOk");
    let r = client
        .submit_documents(submit("1.2.250.1.999.1.1.7898.66.1", "", &[]))
        .await
        .expect("TD2.1")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let original = client
        .find_documents(find(doctor(), pb::DocumentStatus::Approved))
        .await
        .expect("TD3.1")
        .into_inner()
        .documents
        .into_iter()
        .find(|d| d.unique_id == "1.2.250.1.999.1.1.7898.66.1")
        .expect("original found");

    // Replacement: the original is Deprecated in TD3.1.
    let r = client
        .submit_documents(submit("1.2.250.1.999.1.1.7898.66.2", &original.entry_uuid, &[]))
        .await
        .expect("replacement")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let deprecated = client
        .find_documents(find(doctor(), pb::DocumentStatus::Deprecated))
        .await
        .expect("TD3.1 deprecated")
        .into_inner()
        .documents;
    assert_eq!(deprecated.len(), 1);
    assert_eq!(deprecated[0].entry_uuid, original.entry_uuid);
    assert_eq!(deprecated[0].status(), pb::DocumentStatus::Deprecated);
    let r = client
        .get_associations(pb::GetAssociationsRequest {
            auth_context: doctor(),
            patient: Some(samples::patient()),
            entry_uuids: vec![original.entry_uuid.clone()],
        })
        .await
        .expect("GetAssociations")
        .into_inner();
    assert_eq!(r.associations.len(), 1);
    assert!(r.associations[0].association_type.ends_with(":RPLC"));
    assert_eq!(r.associations[0].target, original.entry_uuid);

    // A second replacement of the deprecated original: the registry's error, nothing stored.
    let stored = sim.document_count();
    let r = client
        .submit_documents(submit("1.2.250.1.999.1.1.7898.66.3", &original.entry_uuid, &[]))
        .await
        .expect("second replacement answered")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Failure);
    assert_eq!(r.errors[0].error_code, "XDSRegistryDeprecatedDocumentError");
    assert_eq!(sim.document_count(), stored);

    // A masked document: the doctor sees it, the nurse (authorized too) does not.
    let r = client
        .submit_documents(submit(
            "1.2.250.1.999.1.1.7898.66.4",
            "",
            &[pb::Visibility::MaskedToProfessionals],
        ))
        .await
        .expect("masked TD2.1")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
    let mine: Vec<String> = client
        .find_documents(find(doctor(), pb::DocumentStatus::Approved))
        .await
        .expect("doctor's TD3.1")
        .into_inner()
        .documents
        .into_iter()
        .map(|d| d.unique_id)
        .collect();
    assert!(
        mine.contains(&"1.2.250.1.999.1.1.7898.66.4".to_string()),
        "{mine:?}"
    );
    nurse_client
        .set_authorization(grant(nurse()))
        .await
        .expect("nurse TD0.3");
    let theirs: Vec<String> = nurse_client
        .find_documents(find(nurse(), pb::DocumentStatus::Approved))
        .await
        .expect("nurse's TD3.1")
        .into_inner()
        .documents
        .into_iter()
        .map(|d| d.unique_id)
        .collect();
    assert_eq!(theirs, vec!["1.2.250.1.999.1.1.7898.66.2".to_string()]);

    // TD0.4: the doctor's DMPs with a document added since 2020.
    let r = client
        .list_patients(pb::ListPatientsRequest {
            auth_context: doctor(),
            patient: Some(samples::patient()),
            since: Some(prost_types::Timestamp {
                seconds: 1_577_836_800,
                nanos: 0,
            }),
            date_type: pb::PatientListDateType::LastDocument as i32,
        })
        .await
        .expect("TD0.4")
        .into_inner();
    assert_eq!(r.patients.len(), 1);
    assert_eq!(r.patients[0].identifiers[0].ins, samples::TEST_INS);

    // TD1.6 lists both professionals.
    let r = client
        .list_authorizations(pb::ListAuthorizationsRequest {
            auth_context: doctor(),
            patient: Some(samples::patient()),
            mode: pb::AuthorizationListMode::All as i32,
        })
        .await
        .expect("TD1.6")
        .into_inner();
    let ids: Vec<&str> = r
        .professionals
        .iter()
        .map(|p| p.professional_id.as_str())
        .collect();
    assert_eq!(ids, vec![DOCTOR, NURSE]);
    assert!(
        r.professionals
            .iter()
            .all(|p| p.mode() == pb::AuthorizationListMode::Active)
    );
}
