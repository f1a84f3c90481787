//! What the issue-13 tests share: a dev PKI and SoftHSM tokens provisioned once per test
//! process, relays started on them over real mutual TLS, a client per role (the holder's UI,
//! the gateway, an integrator), and TLS 1.2 transcripts taken from real rustls handshakes.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use audit_log::AuditLog;
use cps_relay::{BackendKind, Config, GatewayAccess};
use dev_support::devpki::{DevPki, Professional, files};
use dev_support::softhsm::SoftHsm;
use ehealth_proto::cps::v1::cps_relay_client::CpsRelayClient as Generated;
use relay_client::{CpsRelayClient, RelayTls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{SignatureAlgorithm, SignatureScheme};
use service_kit::CancellationToken;
use service_kit::telemetry::TraceContextInterceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The generated client, on a channel with the caller's client certificate.
pub(crate) type Client = Generated<InterceptedService<Channel, TraceContextInterceptor>>;

pub(crate) const PIN: &str = "123456";
pub(crate) const SO_PIN: &str = "so-secret";
pub(crate) const DOCTOR: &str = "810100000001";
pub(crate) const NURSE: &str = "810100000002";

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    /// Another PKI: its DMP certificate comes from a CA the relay does not trust.
    pub other_pki: DevPki,
    pub hsm: SoftHsm,
    /// The nurse's authentication certificate (leaf PEM), for card swaps.
    pub nurse_cert: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Provisions `tokens` (the doctor's card on each; those of `final_try` on their last PIN try)
/// before the process's first PKCS#11 call; later calls return the same fixture.
pub(crate) fn fixture(tokens: &[&str], final_try: &[&str]) -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(&dir.path().join("pki")).expect("pki");
        let other_pki = DevPki::ensure(&dir.path().join("other-pki")).expect("other pki");
        let hsm = SoftHsm::prepare().expect("SoftHSM2 is installed and SOFTHSM2_CONF is set");
        for token in tokens {
            hsm.init_token(token, SO_PIN, PIN).expect("token init");
            hsm.import_identity(
                token,
                PIN,
                &pki.path(files::CPS_AUTH_KEY),
                &pki.path(files::CPS_AUTH_CERT),
                "01",
                "Authentification CPS",
            )
            .expect("key and certificate import");
        }
        for token in final_try {
            hsm.mark_user_pin_final_try(token).expect("final try flag");
        }
        let nurse = Professional {
            id: NURSE.into(),
            surname: "INFIRMIERE".into(),
            given_name: "CLAIRE".into(),
            profession: "60".into(),
            specialty: None,
            organization: "CABINET INFIRMIER".into(),
        };
        pki.issue_professional("nurse", &nurse).expect("nurse");
        Fixture {
            nurse_cert: pki.path("nurse.pem"),
            dir,
            pki,
            other_pki,
            hsm,
        }
    })
}

pub(crate) fn f() -> &'static Fixture {
    FIXTURE.get().expect("fixture() first")
}

/// A relay on `token` in production mode: roles for the dev PKI's holder UI, gateway and
/// integrator, grants required, signatures only for `localhost` under the dev IGC-Santé CAs.
pub(crate) fn config(token: &str) -> Config {
    let f = f();
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.drain_grace = Duration::from_millis(50);
    c.server.drain_timeout = Duration::from_secs(2);
    c.metrics.listen = None;
    if let Some(tls) = c.server.tls.as_mut() {
        tls.cert = f.pki.path(files::RELAY_SERVER_CERT);
        tls.key = f.pki.path(files::RELAY_SERVER_KEY);
        tls.client_ca = Some(f.pki.path(files::SUITE_CA));
    }
    c.backend.kind = BackendKind::Pkcs11;
    c.backend.pkcs11.module = f.hsm.module();
    c.backend.pkcs11.token_label = Some(token.into());
    c.backend.pkcs11.key_id = Some("01".into());
    c.backend.pkcs11.chain = Some(f.pki.path(files::IGC_PERSONNES_CA));
    c.access.holders = vec!["holder-ui".into()];
    c.access.gateways = vec![GatewayAccess {
        identity: "dmp-gateway".into(),
        professionals: vec!["*".into()],
    }];
    c.access.grant_callers = vec!["integrator".into()];
    c.access.rate_per_second = 0;
    c.grants.signing_key = f.pki.path(files::RELAY_GRANT_KEY);
    c.signing.server_ca = f.pki.path(files::IGC_CA_BUNDLE);
    c.signing.allowed_hosts = vec!["localhost".into()];
    c.card.poll_interval = Duration::from_millis(200);
    c
}

pub(crate) struct Relay {
    pub addr: std::net::SocketAddr,
    /// The CPS agent HTTP API, when `agent_http.listen` was set.
    pub agent_http: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn start(config: Config, audit: AuditLog) -> Relay {
    use service_kit::config::ServiceConfig;
    config.validate().expect("the test configuration is valid");
    let shutdown = CancellationToken::new();
    let running = cps_relay::start_with(config, audit, shutdown.clone())
        .await
        .expect("relay starts");
    Relay {
        addr: running.grpc_addr,
        agent_http: running.service.agent_http_addr,
        shutdown,
    }
}

/// A client presenting one of the dev PKI's client certificates.
pub(crate) fn client_as(relay: &Relay, cert: &str, key: &str) -> CpsRelayClient {
    let pki = &f().pki;
    let tls = RelayTls::from_files(
        &pki.path(files::SUITE_CA),
        &pki.path(cert),
        &pki.path(key),
        "localhost",
    )
    .expect("tls files");
    CpsRelayClient::connect_lazy(&format!("https://{}", relay.addr), &tls, Duration::from_secs(10))
        .expect("client")
}

/// A CPS agent HTTP client of the relay's agent face presenting one of the dev PKI's client
/// certificates.
pub(crate) fn agent_as(relay: &Relay, cert: &str, key: &str) -> relay_client::CpsAgentClient {
    let pki = &f().pki;
    let tls = RelayTls::from_files(
        &pki.path(files::SUITE_CA),
        &pki.path(cert),
        &pki.path(key),
        "localhost",
    )
    .expect("tls files");
    let addr = relay.agent_http.expect("the relay serves the CPS agent API");
    relay_client::CpsAgentClient::new(&format!("https://{addr}"), Some(&tls), Duration::from_secs(10))
        .expect("agent client")
}

pub(crate) fn gateway(relay: &Relay) -> Client {
    client_as(relay, files::GATEWAY_CLIENT_CERT, files::GATEWAY_CLIENT_KEY).generated()
}

pub(crate) fn holder(relay: &Relay) -> Client {
    client_as(relay, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY).generated()
}

pub(crate) fn integrator(relay: &Relay) -> Client {
    client_as(relay, files::INTEGRATOR_CLIENT_CERT, files::INTEGRATOR_CLIENT_KEY).generated()
}

pub(crate) fn login_request(pin: &str) -> ehealth_proto::cps::v1::LoginRequest {
    ehealth_proto::cps::v1::LoginRequest {
        pin: pin.into(),
        ..Default::default()
    }
}

/// A SignForAuthentication request under `grant_id` (no metadata when `None`).
pub(crate) fn sign_request(
    data: Vec<u8>,
    grant_id: Option<&str>,
) -> tonic::Request<ehealth_proto::cps::v1::SignForAuthenticationRequest> {
    let mut req = tonic::Request::new(ehealth_proto::cps::v1::SignForAuthenticationRequest {
        scheme: relay_client::Scheme::RsaPkcs1Sha256.to_proto() as i32,
        data,
    });
    if let Some(id) = grant_id {
        req.metadata_mut()
            .insert("cps-session-grant-id", id.parse().expect("ascii grant id"));
    }
    req
}

pub(crate) fn dmp_chain(pki: &DevPki) -> Vec<Vec<u8>> {
    service_kit::tls::load_certs(&pki.path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

/// The TLS 1.3 client CertificateVerify content of a made-up handshake.
pub(crate) fn tls13_content() -> Vec<u8> {
    [
        vec![0x20; 64],
        b"TLS 1.3, client CertificateVerify".to_vec(),
        vec![0],
        vec![0x5a; 32],
    ]
    .concat()
}

// ---- real TLS 1.2 handshakes, stopped at the client's CertificateVerify ----

/// Keeps what rustls asks the card to sign, and signs nothing.
#[derive(Debug, Default)]
struct Capture(Mutex<Option<Vec<u8>>>);

#[derive(Debug)]
struct CapturingKey(Arc<Capture>);

#[derive(Debug)]
struct CapturingSigner(Arc<Capture>);

impl rustls::sign::SigningKey for CapturingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::RSA_PKCS1_SHA256)
            .then(|| Box::new(CapturingSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RSA
    }
}

impl rustls::sign::Signer for CapturingSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        *self.0.0.lock().expect("capture") = Some(message.to_vec());
        Err(rustls::Error::General("captured for the test".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::RSA_PKCS1_SHA256
    }
}

/// The TLS 1.2 signing input (ClientHello to ClientKeyExchange) of a real rustls handshake
/// between a client presenting the card's certificate and `server` (chain and key PEM files,
/// client certificates checked against the IGC bundle), the client naming `host` (SNI, or none
/// for an IP address) and trusting `server_roots`.
pub(crate) fn real_tls12_transcript(
    server_chain: &Path,
    server_key: &Path,
    server_roots: &Path,
    host: &str,
) -> Vec<u8> {
    service_kit::tls::install_crypto_provider();
    let pki = &f().pki;
    let chain = service_kit::tls::load_certs(server_chain).expect("server chain");
    let key: PrivateKeyDer<'static> = service_kit::tls::load_private_key(server_key).expect("server key");
    let client_roots = service_kit::tls::load_roots(&pki.path(files::IGC_CA_BUNDLE)).expect("client roots");
    let server_config =
        service_kit::tls::server_config(chain, key, Some(client_roots), &[&rustls::version::TLS12])
            .expect("server config");

    let capture = Arc::new(Capture::default());
    let card_chain: Vec<CertificateDer<'static>> =
        service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CHAIN)).expect("card chain");
    let certified = Arc::new(rustls::sign::CertifiedKey::new(
        card_chain,
        Arc::new(CapturingKey(capture.clone())),
    ));
    let roots = service_kit::tls::load_roots(server_roots).expect("server roots");
    let client_config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    let name = ServerName::try_from(host.to_owned()).expect("server name");
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
    for _ in 0..20 {
        if let Some(captured) = capture.0.lock().expect("capture").clone() {
            return captured;
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).expect("server reads");
            server
                .process_new_packets()
                .expect("server accepts the client's flight");
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).expect("client reads");
            // Fails once the capturing signer refuses to sign: the transcript is taken by then.
            let _ = client.process_new_packets();
        }
    }
    panic!("the handshake never reached the client's CertificateVerify");
}

/// The handshake messages of a TLS 1.2 transcript without the server's Certificate message.
pub(crate) fn without_server_certificate(transcript: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut dropped = false;
    while pos + 4 <= transcript.len() {
        let len = (usize::from(transcript[pos + 1]) << 16)
            | (usize::from(transcript[pos + 2]) << 8)
            | usize::from(transcript[pos + 3]);
        let end = pos + 4 + len;
        if transcript[pos] == 11 && !dropped {
            dropped = true;
        } else {
            out.extend_from_slice(&transcript[pos..end]);
        }
        pos = end;
    }
    assert!(dropped, "the transcript had a server Certificate message");
    out
}
