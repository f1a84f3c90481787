//! The `google.rpc` details of error statuses (issue 17, docs/api.md "Errors"), decoded by the
//! caller from real calls over the wire with `tonic-types` (not the services' own code): an
//! `ErrorInfo` with the outcome's stable reason and the answering service's domain on every
//! error, and a `BadRequest` naming the invalid field on `INVALID_ARGUMENT`.

use std::sync::Arc;

use dev_support::devpki::files;
use e2e_tests::*;
use ehealth_proto::cps::v1 as cps;
use ehealth_proto::dmp::v1 as pb;
use ehealth_proto::twiin::v1 as twiin;
use ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient;
use tonic_types::StatusExt;

/// The status's code, ErrorInfo (reason, domain, metadata) and BadRequest field violations.
struct Decoded {
    code: tonic::Code,
    reason: String,
    domain: String,
    metadata: std::collections::HashMap<String, String>,
    violations: Vec<(String, String)>,
}

fn decode(status: &tonic::Status) -> Decoded {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    Decoded {
        code: status.code(),
        reason: info.reason.clone(),
        domain: info.domain.clone(),
        metadata: info.metadata.clone(),
        violations: details
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmp_gateway_errors_carry_their_reason_and_fields() {
    let (relay, _) =
        start_card_relay_as("local", DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("local", relay.grpc_addr)])).await;
    let (grant, _) = issue_grant(relay.grpc_addr).await;

    // An invalid field: INVALID_ARGUMENT, the field in BadRequest, as the message names it.
    let mut request = dmp_gateway::samples::submit_request("810100000001", "1.2.250.1.999.1.1.7898.170.1", 0);
    if let Some(m) = request.documents[0].metadata.as_mut() {
        m.class_code = None;
    }
    let mut client = gateway_client(&gateway, Some(&grant)).await;
    let status = client.submit_documents(request).await.expect_err("no classCode");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        (d.reason.as_str(), d.domain.as_str()),
        ("INVALID_FIELD", "dmp-gateway")
    );
    assert_eq!(d.violations.len(), 1, "{:?}", d.violations);
    assert_eq!(d.violations[0].0, "documents[0].metadata.class_code");
    assert!(
        status.message().starts_with("documents[0].metadata.class_code"),
        "{status:?}"
    );
    assert_eq!(sim.document_count(), 0);

    // Without the professional's session grant: PERMISSION_DENIED with its own reason.
    let test_patient = pb::TestPatientDmpRequest {
        auth_context: Some(dmp_gateway::samples::auth_context("810100000001")),
        patient: Some(dmp_gateway::samples::patient()),
    };
    let status = gateway_client(&gateway, None)
        .await
        .test_patient_dmp(test_patient.clone())
        .await
        .expect_err("no grant");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        (d.reason.as_str(), d.domain.as_str()),
        ("NO_SESSION_GRANT", "dmp-gateway")
    );
    assert!(d.violations.is_empty());

    // The same call with the grant succeeds: the details above came from the refusals alone.
    client
        .test_patient_dmp(test_patient)
        .await
        .expect("with the grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cps_relay_errors_carry_their_reason_and_fields() {
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[1], "127.0.0.1:0".parse().expect("addr")).await;
    let mut holder = holder_client(relay.grpc_addr).generated();

    let status = holder
        .login(cps::LoginRequest {
            pin: "12".into(),
            ..Default::default()
        })
        .await
        .expect_err("a PIN of two digits");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        (d.reason.as_str(), d.domain.as_str()),
        ("PIN_FORMAT", "cps-relay")
    );
    assert_eq!(d.violations.len(), 1);
    assert_eq!(d.violations[0].0, "pin");
    assert!(
        !d.violations[0].1.contains("12"),
        "never the PIN: {:?}",
        d.violations
    );

    let status = holder
        .issue_session_grant(cps::IssueSessionGrantRequest {
            grantee: "somebody-else".into(),
            lifetime_seconds: 0,
        })
        .await
        .expect_err("not a grant caller");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(d.reason, "UNKNOWN_GRANTEE");
    assert_eq!(
        d.metadata.get("grantee").map(String::as_str),
        Some("somebody-else")
    );
}

#[tokio::test]
async fn twiin_authz_errors_carry_their_reason_and_fields() {
    let twiin = start_twiin_authz(twiin_authz_config()).await;
    let mut client = TwiinAuthzClient::connect(twiin.endpoint())
        .await
        .expect("connects");

    // 3.2 step 2: the OAuth error in ErrorInfo, the missing parameter in BadRequest.
    let status = client
        .issue_aorta_access_token(twiin::TokenRequest {
            assertion: "x.y.z".into(),
            ..Default::default()
        })
        .await
        .expect_err("no grant_type");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        (d.reason.as_str(), d.domain.as_str()),
        ("INVALID_REQUEST_FIELD", "twiin-authz")
    );
    assert_eq!(
        d.metadata.get("oauthError").map(String::as_str),
        Some("invalid_request")
    );
    assert_eq!(
        d.violations,
        [(
            "grant_type".to_owned(),
            "Ongeldig verzoek: grant_type ontbreekt".to_owned()
        )]
    );

    // 3.1 step 2.
    let status = client
        .issue_twiin_assertions(twiin::IssueTwiinAssertionsRequest {
            source_token: "x.y.z".into(),
            audience: "ftp://gtk.example".into(),
            authz_base: String::new(),
        })
        .await
        .expect_err("not an https audience");
    let d = decode(&status);
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(d.reason, "INVALID_REQUEST_FIELD");
    assert_eq!(d.violations.len(), 1);
    assert_eq!(d.violations[0].0, "audience");
}

/// The reasons each service's code can answer (the string literals of its `reason` methods)
/// are exactly those docs/api.md lists in the service's "Errors" table.
#[test]
fn every_reason_is_documented_and_every_documented_reason_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let api = read("docs/api.md");
    for (service, sources) in [
        ("cps.v1.CpsRelay", &["services/cps-relay/src/error.rs"][..]),
        (
            "dmp.v1.DmpGateway",
            &[
                "services/dmp-gateway/src/error.rs",
                "services/dmp-gateway/src/grant.rs",
            ][..],
        ),
        ("twiin.v1.TwiinAuthz", &["services/twiin-authz/src/error.rs"][..]),
    ] {
        let mut in_code = std::collections::BTreeSet::new();
        for source in sources {
            let text = read(source);
            let mut found = false;
            for (at, _) in text.match_indices("fn reason(&self)") {
                found = true;
                let body = &text[at..];
                let body = &body[..body[1..].find("\n    fn ").map_or(body.len(), |i| i + 1)];
                for literal in body.split('"').skip(1).step_by(2) {
                    if !literal.is_empty()
                        && literal
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    {
                        in_code.insert(literal.to_owned());
                    }
                }
            }
            assert!(found, "{source}: no reason()");
        }
        let section = &api[api.find(&format!("## `{service}`")).expect("service section")..];
        let table = &section[section.find("#### Errors").expect("Errors table")..];
        let table = &table[..table.find("\n### ").expect("the table ends")];
        let documented: std::collections::BTreeSet<String> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        assert!(
            in_code.len() >= 10,
            "{service}: reasons not found in {sources:?}: {in_code:?}"
        );
        assert_eq!(in_code, documented, "{service}: reasons in code vs docs/api.md");
    }
}
