use super::*;
use crate::card::CardStatus;
use crate::certificate::CardCertificate;
use crate::config::{AccessSettings, GatewayAccess, SigningSettings};
use crate::handshake;

/// A card that takes 300 ms per signature, like a slow physical card.
struct SlowCard {
    leaf: Vec<u8>,
}

impl Card for SlowCard {
    fn certificate(&self) -> Result<CardCertificate, RelayError> {
        Ok(CardCertificate {
            leaf: self.leaf.clone(),
            chain: vec![],
        })
    }
    fn schemes(&self) -> Result<Vec<Scheme>, RelayError> {
        Ok(vec![Scheme::RsaPkcs1Sha256])
    }
    fn status(&self) -> Result<CardStatus, RelayError> {
        Ok(CardStatus {
            token_present: true,
            logged_in: true,
            ..CardStatus::default()
        })
    }
    fn login(&self, _pin: &Pin, _confirm: bool) -> Result<(), RelayError> {
        Ok(())
    }
    fn logout(&self) -> Result<(), RelayError> {
        Ok(())
    }
    fn sign(&self, _scheme: Scheme, _data: &[u8]) -> Result<Vec<u8>, RelayError> {
        std::thread::sleep(Duration::from_millis(300));
        Ok(vec![1; 256])
    }
}

/// A server CA and its server's chain for `dmp.test`, and a grant key, in `dir`.
fn pki(dir: &std::path::Path) -> (SigningSettings, Vec<Vec<u8>>, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let server = rcgen::CertificateParams::new(vec!["dmp.test".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    let grant_key = dir.join("grant.key.pem");
    std::fs::write(&grant_key, key.serialize_pem()).expect("write");
    let settings = SigningSettings {
        server_ca: dir.join("ca.pem"),
        allowed_hosts: vec!["dmp.test".into()],
        allow_tls13: false,
    };
    (settings, vec![server.der().to_vec()], grant_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_card_answers_deadline_exceeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (signing, server_chain, grant_key) = pki(dir.path());
    let card_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut card_params = rcgen::CertificateParams::default();
    card_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "810100000009");
    let leaf = card_params.self_signed(&card_key).expect("card").der().to_vec();
    let access = AccessSettings {
        gateways: vec![GatewayAccess {
            identity: "test".into(),
            professionals: vec!["*".into()],
        }],
        ..AccessSettings::default()
    };
    let policy = Policy {
        access: Access::new(&[], 0, 1),
        roles: Roles::new(&access),
        servers: ServerPolicy::load(&signing).expect("policy"),
        grants: GrantSigner::load(&grant_key, "local", Duration::from_secs(60)).expect("grant key"),
        grants_required: false,
        poll_interval: Duration::from_secs(1),
        shutdown: CancellationToken::new(),
    };
    let svc = RelayService::new(
        Arc::new(SlowCard { leaf }),
        policy,
        AuditLog::disabled(),
        1,
        Duration::from_millis(50),
        RelayMetrics::register(&service_kit::metrics::Metrics::new()),
    )
    .expect("card thread");
    let caller = Caller {
        fingerprint: "00".into(),
        subject: "CN=test".into(),
        identity: "test".into(),
    };
    let scheme = Scheme::RsaPkcs1Sha256.to_proto() as i32;
    let data = || handshake::sample_tls12_transcript(Some("dmp.test"), &server_chain);
    let sign = || svc.sign_for_authentication(&caller, Face::Grpc, None, scheme, data());
    let (first, second) = tokio::join!(sign(), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        sign().await
    });
    assert!(first.is_ok(), "{first:?}");
    let err = second.expect_err("the card is busy with the first signature");
    assert!(matches!(err, RelayError::CardBusy(_)), "{err:?}");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::DeadlineExceeded);
    assert_eq!(svc.metrics.signatures_made(), 1);
}
