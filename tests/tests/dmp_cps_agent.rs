//! Issue 16, the seed's CPS agent API end to end: in one run, the gateway completes DMP
//! handshakes (TD0.2 TestPatientDmp against the DMP simulator, over real TLS 1.2 with SoftHSM2
//! cards) through one cps-relay's gRPC face and through another's CPS agent HTTP face
//! (`relays.<id>.api = "cps_agent"`), each signature made by that relay's card under the
//! professional's session grant.

use std::sync::Arc;

use dev_support::devpki::files;
use dmp_gateway::samples;
use dmp_sim::{DmpSimulator, SimConfig};
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;
use tonic::Code;

const DOCTOR: &str = "810100000001";
const GRPC_RELAY: &str = "ws-grpc";
const AGENT_RELAY: &str = "ws-agent";

fn test_patient(relay_id: &str) -> pb::TestPatientDmpRequest {
    pb::TestPatientDmpRequest {
        auth_context: Some(pb::AuthenticationContext {
            relay_id: relay_id.into(),
            ..samples::auth_context(DOCTOR)
        }),
        patient: Some(samples::patient()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_through_the_grpc_face_and_the_cps_agent_face() {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (grpc_relay, grpc_started) =
        start_card_relay_started(GRPC_RELAY, DOCTOR_TOKENS[0], any, |_| {}).await;
    let (agent_relay, agent_started) = start_card_relay_started(AGENT_RELAY, DOCTOR_TOKENS[1], any, |c| {
        c.agent_http.listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let agent_addr = agent_started
        .agent_http_addr
        .expect("the relay serves the CPS agent API");

    let sim = Arc::new(DmpSimulator::new(SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let mut config = gateway_transport_config(
        dmp,
        &[(GRPC_RELAY, grpc_relay.grpc_addr), (AGENT_RELAY, agent_addr)],
    );
    let agent = config.relays.get_mut(AGENT_RELAY).expect("agent relay");
    agent.api = dmp_gateway::RelayApi::CpsAgent;
    let (gateway, transport) = start_dmp_gateway_with_transport(config).await;

    // Through the gRPC face.
    let (grpc_grant, _) = issue_grant(grpc_relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&grpc_grant)).await;
    let over_grpc = client
        .test_patient_dmp(test_patient(GRPC_RELAY))
        .await
        .expect("TestPatientDmp through the gRPC face")
        .into_inner();
    assert_eq!(grpc_started.metrics.signatures_made(), 1);

    // Through the CPS agent face of the other relay, under that relay's grant.
    let (agent_grant, _) = issue_grant(agent_relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&agent_grant)).await;
    let over_agent = client
        .test_patient_dmp(test_patient(AGENT_RELAY))
        .await
        .expect("TestPatientDmp through the CPS agent face")
        .into_inner();
    assert_eq!(
        agent_started.metrics.signatures_made(),
        1,
        "the agent face's relay signed the CertificateVerify"
    );
    assert_eq!(over_agent, over_grpc, "the same answer whichever face signed");
    assert_eq!(sim.requests(), 2);
    assert_eq!(transport.open_pools(AGENT_RELAY), 1);

    // The pool is kept: a second call costs no signature.
    client
        .test_patient_dmp(test_patient(AGENT_RELAY))
        .await
        .expect("second call");
    assert_eq!(agent_started.metrics.signatures_made(), 1);

    // The consent is still checked for an agent: the gRPC relay's grant does not open the
    // agent relay, and nothing is signed or sent.
    let mut wrong = gateway_client(&gateway, Some(&grpc_grant)).await;
    let err = wrong
        .test_patient_dmp(test_patient(AGENT_RELAY))
        .await
        .expect_err("another relay's grant");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("claim iss"), "{}", err.message());
    assert_eq!(sim.requests(), 3);
    assert_eq!(agent_started.metrics.signatures_made(), 1);
}
