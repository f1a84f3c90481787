//! Issue 16, XAdES by the right signer, through the real stack: an integrator's backend submits
//! a TD2.1 to the gateway; the gateway has the professional's card (SoftHSM2 token with its
//! authentication key 01 and signature key 02, behind cps-relay over mutual TLS) sign the
//! submission's XAdES with the *signature* key; the DMP simulator receives it over TLS 1.2.
//! The signature document the DMP received verifies with `xmlsec1 --verify` against the test
//! IGC-Santé hierarchy, names the signature certificate the test PKI issued (KeyInfo and
//! SigningCertificate, its issuer as a full RFC 4514 name), and its manifest digests are the
//! documents'.

use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use dev_support::devpki::files;
use dmp_gateway::samples;
use dmp_protocol::{mtom, xml};
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;

const DOCTOR: &str = "810100000001";

/// The text of the first element named `name` (any namespace), depth first.
fn text_of(e: &xml::Element, name: &str) -> Option<String> {
    if e.name == name {
        return Some(e.text_trimmed().to_owned());
    }
    e.children.iter().find_map(|c| text_of(c, name))
}

fn pem_leaf(name: &str) -> Vec<u8> {
    service_kit::tls::load_certs(&pki().path(name)).expect("certificate")[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_carries_a_xades_by_the_cards_signature_key_that_xmlsec1_verifies() {
    let out = Command::new("xmlsec1").arg("--version").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "xmlsec1 is missing: run scripts/install-test-deps.sh"
    );
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    // What the DMP receives, as it receives it.
    let received: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let seen = received.clone();
    let app = dmp_sim::router(sim.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let content_type = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
                    .await
                    .expect("request body");
                seen.lock().expect("lock").push((content_type, bytes.clone()));
                next.run(axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes),
                ))
                .await
            }
        },
    ));
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), app).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)])).await;
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&grant)).await;

    let uid = "1.2.250.1.999.1.1.7898.16.1";
    let mut req = samples::submit_request(DOCTOR, uid, 2048);
    req.auth_context = Some(pb::AuthenticationContext {
        relay_id: "ws-1".into(),
        ..samples::auth_context(DOCTOR)
    });
    let document = req.documents[0].content.clone();
    let r = client
        .submit_documents(req)
        .await
        .expect("SubmitDocuments")
        .into_inner();
    assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);

    // The ITI-41 message the DMP received, and its signature document.
    let (content_type, body) = received
        .lock()
        .expect("lock")
        .iter()
        .find(|(ct, _)| ct.starts_with("multipart/related"))
        .cloned()
        .expect("the DMP received an MTOM submission");
    let mp = mtom::parse(&content_type, &body).expect("MTOM");
    let signature = mp
        .parts
        .iter()
        .map(|p| p.body.clone())
        .find(|b| b.starts_with(b"<Signature "))
        .expect("a signature document among the parts");

    // Signed by the card's signature certificate, as the test PKI issued it.
    let sign_cert = pem_leaf(files::CPS_SIGN_CERT);
    let root = xml::parse(&signature).expect("the signature document parses");
    let key_info = text_of(&root, "X509Certificate").expect("KeyInfo certificate");
    let key_info = base64::engine::general_purpose::STANDARD
        .decode(key_info.split_whitespace().collect::<String>())
        .expect("base64");
    assert_eq!(key_info, sign_cert, "KeyInfo carries the signature certificate");
    assert_ne!(key_info, pem_leaf(files::CPS_AUTH_CERT));
    let issuer_name = text_of(&root, "X509IssuerName").expect("X509IssuerName");
    assert_eq!(
        issuer_name, "CN=TEST AC IGC-SANTE FORTE PERSONNES,OU=IGC-SANTE TEST,O=ASIP-SANTE,C=FR",
        "every RDN of the issuer"
    );
    // The manifest's digest is the document's.
    let digest = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &document));
    assert!(
        String::from_utf8_lossy(&signature).contains(&format!("<DigestValue>{digest}</DigestValue>")),
        "the manifest lists the document's SHA-256"
    );

    // xmlsec1 verifies it, trusting only the test IGC-Santé root, with the key of the
    // certificate the test PKI issued.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("signature.xml");
    std::fs::write(&file, &signature).expect("write");
    let verify = |file: &std::path::Path| {
        Command::new("xmlsec1")
            .arg("--verify")
            // The manifest's urn:oid references cannot be dereferenced; checked above.
            .arg("--ignore-manifests")
            .args(["--id-attr:Id", "Manifest"])
            .args([
                "--id-attr:Id",
                "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
            ])
            .arg("--trusted-pem")
            .arg(pki().path(files::IGC_ROOT_CA))
            .arg("--untrusted-pem")
            .arg(pki().path(files::IGC_PERSONNES_CA))
            .arg(file)
            .output()
            .expect("xmlsec1 runs")
    };
    let out = verify(&file);
    assert!(
        out.status.success(),
        "xmlsec1 rejects the signature:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&signature)
    );
    // The same document with the authentication certificate in KeyInfo does not verify: the
    // signature is the signature key's.
    let swapped = String::from_utf8_lossy(&signature).replace(
        &base64::engine::general_purpose::STANDARD.encode(&sign_cert),
        &base64::engine::general_purpose::STANDARD.encode(pem_leaf(files::CPS_AUTH_CERT)),
    );
    std::fs::write(&file, swapped).expect("write");
    assert!(
        !verify(&file).status.success(),
        "the authentication certificate's key did not sign it"
    );
}
