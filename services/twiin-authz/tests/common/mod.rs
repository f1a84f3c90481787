//! The in-process world of the twiin-authz tests: the three simulators, the external GtKs' JWKS
//! host, and the service, all on ephemeral loopback ports, torn down on drop.
//!
//! ZORG-AB and the Autorisatie Server ZA are served over mutual TLS (they require the GtK's
//! client certificate, as the real ones do). By default the service runs in development mode
//! (plaintext listeners, http Stelsel and jwks_uris), opted into explicitly; with
//! `Options::production` everything is TLS and production mode's rules apply.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use audit_log::{AuditLog, MemorySink};
use serde_json::{Value, json};
use service_kit::CancellationToken;
use sim_kit::jose::{RsaSigner, p521_test_key, sign_es512_with_header};
use sim_kit::pki::AortaPki;

pub(crate) const ISSUER: &str = "https://twiin.test";
pub(crate) const EXT_CLIENT: &str = "https://gtk-extern.test";
/// The authorization server registered for EXT_CLIENT (the audience of our TWIIN assertions).
pub(crate) const EXT_AS: &str = "https://gtk-extern.test";
/// An AORTA-conformant peer GtK: its client assertions carry `iss` = its AS URL, `sub` = its
/// client id, signed PS256 or ES256.
pub(crate) const PEER_CLIENT: &str = "gtk-peer-client";
pub(crate) const PEER_AS: &str = "https://as.gtk-peer.test";
pub(crate) const PEER_ES256_KID: &str = "peer-es256";
pub(crate) const PEER_PS256_KID: &str = "peer-ps256";
/// The AORTA peer's keys registered in twiin-authz's own `[[clients]]` (not in ZORG-AB).
pub(crate) const CONFIGURED_CLIENT: &str = "configured-gtk";
pub(crate) const CONFIGURED_AS: &str = "https://as.configured.test";
pub(crate) const EXT_KID: &str = "ext-1";
pub(crate) const AS_ZA_ISSUER: &str = "https://as-za.test";
pub(crate) const AORTA_KID: &str = "aorta-ts-1";
pub(crate) const OUR_KID: &str = "twiin-authz-1";
pub(crate) const URA_VENDOR: &str = "11111111";
pub(crate) const URA_CARE: &str = "22222222";
pub(crate) const URA_OURS: &str = "33333333";
pub(crate) const URA_UNQUALIFIED: &str = "44444444";
pub(crate) const URA_REFUSED_BY_AS_ZA: &str = "55555555";
pub(crate) const BSN: &str = "999993653";
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub(crate) fn aorta_pki() -> &'static AortaPki {
    static PKI: std::sync::OnceLock<AortaPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| AortaPki::generate().expect("AORTA test PKI"))
}

/// Options of a world.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) stelsel_backdate_secs: u64,
    pub(crate) stelsel_max_age: Duration,
    pub(crate) tweak: fn(&mut twiin_authz::Config),
    /// Production mode: TLS on both listeners (caller mTLS on gRPC, the Resource Broker's
    /// certificate as the one broker identity), https Stelsel.
    pub(crate) production: bool,
    /// Registers the AORTA peer's keys as client CONFIGURED_CLIENT in `[[clients]]`, its
    /// jwks_uri at this path of the JWKS host (`/peer-jwks`; `/redirect-jwks` answers a
    /// redirect to it, `/huge-jwks` a JWKS of more than 64 KiB).
    pub(crate) configured_peer: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stelsel_backdate_secs: 0,
            stelsel_max_age: Duration::from_secs(3600),
            tweak: |_| {},
            production: false,
            configured_peer: None,
        }
    }
}

/// The AORTA-style peer's keys (ES256 and PS256) and JWKS.
pub(crate) struct Peer {
    es256: aws_lc_rs::signature::EcdsaKeyPair,
    rsa: aws_lc_rs::rsa::KeyPair,
    pub(crate) jwks: Value,
}

impl Peer {
    fn new() -> Peer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("P-256");
        let es256 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("P-256");
        let p = es256.public_key().as_ref().to_vec();
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA");
        let b = |x: &[u8]| sim_kit::jose::b64(x);
        let pk = rsa.public_key();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": PEER_ES256_KID, "use": "sig", "alg": "ES256",
             "x": b(&p[1..33]), "y": b(&p[33..65])},
            {"kty": "RSA", "kid": PEER_PS256_KID, "use": "sig", "alg": "PS256",
             "n": b(pk.modulus().big_endian_without_leading_zero()),
             "e": b(pk.exponent().big_endian_without_leading_zero())},
        ]});
        Peer { es256, rsa, jwks }
    }

    /// Signs `claims` with `alg` (`ES256` or `PS256`) under the matching kid.
    pub(crate) fn sign(&self, alg: &str, claims: &Value) -> String {
        let kid = if alg == "ES256" {
            PEER_ES256_KID
        } else {
            PEER_PS256_KID
        };
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            sim_kit::jose::b64(header.to_string().as_bytes()),
            sim_kit::jose::b64(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = if alg == "ES256" {
            self.es256
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec()
        } else {
            let mut out = vec![0u8; self.rsa.public_modulus_len()];
            self.rsa
                .sign(
                    &aws_lc_rs::signature::RSA_PSS_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut out,
                )
                .expect("sign");
            out
        };
        format!("{input}.{}", sim_kit::jose::b64(&sig))
    }
}

pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) shutdown: CancellationToken,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    /// TLS on both listeners (production mode).
    pub(crate) production: bool,
    pub(crate) zorg_hits: sim_kit::serve::Hits,
    pub(crate) as_za_hits: sim_kit::serve::Hits,
    pub(crate) peer: Arc<Peer>,
    pub(crate) audit: AuditLog,
    pub(crate) sink: Arc<MemorySink>,
    pub(crate) ext_key: Vec<u8>,
    pub(crate) ext_jwk: Value,
    pub(crate) jwks_hits: Arc<AtomicUsize>,
    pub(crate) aorta_signer: RsaSigner,
    pub(crate) config: twiin_authz::Config,
    pub(crate) client: reqwest::Client,
    pub(crate) metrics: twiin_authz::TwiinMetrics,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn write_p521(path: &PathBuf) -> Vec<u8> {
    let (der, _) = p521_test_key("x").expect("key");
    std::fs::write(path, pem::encode(&pem::Pem::new("PRIVATE KEY", der.clone()))).expect("write key");
    der
}

/// Serves the external GtK's JWKS (counting fetches) and the AORTA peer's.
async fn jwks_host(
    jwks: Value,
    peer_jwks: Value,
    hits: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) -> SocketAddr {
    let router = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(jwks)
                }
            }),
        )
        .route(
            "/redirect-jwks",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/peer-jwks") }),
        )
        .route(
            "/huge-jwks",
            axum::routing::get({
                let mut huge = peer_jwks.clone();
                huge["padding"] = json!("x".repeat(70 * 1024));
                move || {
                    let huge = huge.clone();
                    async move { axum::Json(huge) }
                }
            }),
        )
        .route(
            "/peer-jwks",
            axum::routing::get(move || {
                let jwks = peer_jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
    sim_kit::serve::serve("127.0.0.1:0".parse().expect("addr"), router, shutdown)
        .await
        .expect("JWKS host")
        .addr
}

/// A listener that accepts connections and never answers: a dependency that is "slow".
pub(crate) async fn blackhole(shutdown: CancellationToken) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                a = l.accept() => if let Ok((s, _)) = a { held.push(s) },
            }
        }
    });
    addr
}

/// A port where nothing listens: a dependency that is "down".
pub(crate) fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn zorg_ab_data(jwks_base: &str) -> zorg_ab_sim::Data {
    use zorg_ab_sim::{Application, Capability, Data, Organization};
    let org = |ura: &str, name: &str| Organization {
        ura: ura.into(),
        name: name.into(),
    };
    let all = [
        "create:Task:1.0:notification",
        "update:Task:1.0:notification",
        "read:Task:1.0:workflow",
        "search:Task:1.0:workflow",
        "read:Patient:1.0:request",
        "search:Patient:1.0:request",
    ];
    Data {
        organizations: vec![
            org(URA_VENDOR, "GtK leverancier"),
            org(URA_CARE, "Zorgaanbieder A"),
            org(URA_OURS, "Zorgaanbieder B"),
            org(URA_UNQUALIFIED, "Zorgaanbieder C"),
            org(URA_REFUSED_BY_AS_ZA, "Zorgaanbieder D"),
        ],
        applications: vec![
            Application {
                client_id: EXT_CLIENT.into(),
                name: "Extern GtK".into(),
                ura: URA_VENDOR.into(),
                jwks_uri: Some(format!("{jwks_base}/jwks")),
                authorization_server: Some(EXT_AS.into()),
                capabilities: all
                    .iter()
                    .map(|i| Capability {
                        interaction: (*i).into(),
                        on_behalf_of: vec![URA_CARE.into(), URA_REFUSED_BY_AS_ZA.into()],
                    })
                    .collect(),
                receives_via_twiin: vec![],
            },
            Application {
                client_id: PEER_CLIENT.into(),
                name: "AORTA-GtK".into(),
                ura: URA_VENDOR.into(),
                jwks_uri: Some(format!("{jwks_base}/peer-jwks")),
                authorization_server: Some(PEER_AS.into()),
                capabilities: all
                    .iter()
                    .map(|i| Capability {
                        interaction: (*i).into(),
                        on_behalf_of: vec![URA_CARE.into()],
                    })
                    .collect(),
                receives_via_twiin: vec![],
            },
            Application {
                client_id: "urn:gbz:local-ehr".into(),
                name: "EPD zorgaanbieder B".into(),
                ura: URA_OURS.into(),
                jwks_uri: None,
                authorization_server: None,
                capabilities: vec![],
                receives_via_twiin: all.iter().map(|i| (*i).into()).collect(),
            },
            Application {
                client_id: "urn:gbz:no-twiin".into(),
                name: "EPD zonder Twiin".into(),
                ura: URA_OURS.into(),
                jwks_uri: None,
                authorization_server: None,
                capabilities: vec![],
                receives_via_twiin: vec![],
            },
        ],
    }
}

fn as_za_data(dir: &std::path::Path, our_key: PathBuf) -> as_za_sim::Data {
    use as_za_sim::{ContextCode, Data, Interaction, Refusal, TrustedIssuer, TrustedKeyFile};
    let i = |id: &str, pull| Interaction { id: id.into(), pull };
    Data {
        issuer: AS_ZA_ISSUER.into(),
        audience: "aorta".into(),
        access_token_ttl_secs: 900,
        signing_kid: AORTA_KID.into(),
        signing_key: dir.join(sim_kit::pki::files::AORTA_TOKEN_SIGNING_KEY),
        trusted_issuers: vec![TrustedIssuer {
            issuer: ISSUER.into(),
            key_files: vec![TrustedKeyFile {
                kid: OUR_KID.into(),
                path: our_key,
            }],
            jwks: vec![],
        }],
        interactions: vec![
            i("create:Task:1.0:notification", false),
            i("update:Task:1.0:notification", false),
            i("read:Task:1.0:workflow", true),
            i("search:Task:1.0:workflow", true),
            i("read:Patient:1.0:request", true),
            i("search:Patient:1.0:request", true),
        ],
        contextcodes: vec![ContextCode {
            code: "BGZOPV".into(),
            interactions: vec![
                "search:Patient:1.0:request".into(),
                "read:Task:1.0:workflow".into(),
            ],
        }],
        situations: vec!["normaal".into()],
        refusals: vec![Refusal {
            ura: URA_REFUSED_BY_AS_ZA.into(),
            status: 403,
            error: "access_denied".into(),
            description: "Zorgaanbieder heeft geen toegang tot deze interactie".into(),
        }],
    }
}

impl World {
    pub(crate) async fn start() -> World {
        World::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(opts: Options) -> World {
        let (audit, sink) = AuditLog::memory();
        World::start_sharing(opts, audit, sink).await
    }

    pub(crate) async fn start_sharing(opts: Options, audit: AuditLog, sink: Arc<MemorySink>) -> World {
        World::start_configured(opts, audit, sink)
            .await
            .expect("twiin-authz starts")
    }

    /// The world, or twiin-authz's refusal to start with it.
    pub(crate) async fn start_configured(
        opts: Options,
        audit: AuditLog,
        sink: Arc<MemorySink>,
    ) -> Result<World, service_kit::StartError> {
        use sim_kit::pki::files;
        let dir = tempfile::tempdir().expect("tmp");
        let pki = aorta_pki();
        pki.write(dir.path()).expect("write AORTA PKI");
        let our_key = dir.path().join("twiin.key.pem");
        write_p521(&our_key);
        let shutdown = CancellationToken::new();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let path = |f: &str| dir.path().join(f);
        let mutual = sim_kit::serve::Tls {
            cert: path(files::SIM_SERVER_CERT),
            key: path(files::SIM_SERVER_KEY),
            client_ca: Some(path(files::TLS_CA)),
        };

        let (ext_key, ext_jwk) = p521_test_key(EXT_KID).expect("GtK key");
        let peer = Arc::new(Peer::new());
        let hits = Arc::new(AtomicUsize::new(0));
        let jwks_addr = jwks_host(
            json!({"keys": [ext_jwk.clone()]}),
            peer.jwks.clone(),
            hits.clone(),
            shutdown.clone(),
        )
        .await;

        let zorg = zorg_ab_sim::start(
            zorg_ab_data(&format!("http://{jwks_addr}")),
            any,
            mutual.clone(),
            shutdown.clone(),
        )
        .await
        .expect("ZORG-AB sim");
        let stelsel_tls = opts.production.then(|| sim_kit::serve::Tls {
            client_ca: None,
            ..mutual.clone()
        });
        let stelsel = aorta_stelsel_sim::start(
            aorta_stelsel_sim::Data {
                issuer: "https://stelsel.test".into(),
                signer_key: path(files::STELSEL_SIGNER_KEY),
                signer_chain: path(files::STELSEL_SIGNER_CHAIN),
                validity_secs: 24 * 3600,
                backdate_secs: opts.stelsel_backdate_secs,
                token_signing_keys: vec![aorta_stelsel_sim::TokenSigningKey {
                    kid: AORTA_KID.into(),
                    key: path(files::AORTA_TOKEN_SIGNING_KEY),
                }],
            },
            any,
            stelsel_tls,
            shutdown.clone(),
        )
        .await
        .expect("Stelsel sim");
        let as_za = as_za_sim::start(
            as_za_data(dir.path(), our_key.clone()),
            any,
            mutual.clone(),
            shutdown.clone(),
        )
        .await
        .expect("AS ZA sim");

        let mut c = twiin_authz::Config {
            // The tests' explicit opt-in (production mode is the default).
            development: !opts.production,
            ..Default::default()
        };
        c.server.listen = any;
        c.server.drain_grace = Duration::from_millis(50);
        c.metrics.listen = None;
        c.http.listen = any;
        c.issuer = ISSUER.into();
        c.assertions.signing_keys[0].key = our_key;
        c.assertions.signing_keys[0].kid = OUR_KID.into();
        c.stelsel.url = format!("{}/stelseltoken", stelsel.url());
        c.stelsel.trust_anchor = path(files::STELSEL_CA);
        c.stelsel.max_age = opts.stelsel_max_age;
        c.stelsel.access_token_issuer = AS_ZA_ISSUER.into();
        c.stelsel.access_token_audience = "aorta".into();
        c.zorg_ab.url = zorg.url();
        c.zorg_ab.timeout = Duration::from_millis(500);
        c.as_za.token_url = format!("{}/token", as_za.url());
        c.as_za.audience = AS_ZA_ISSUER.into();
        c.as_za.timeout = Duration::from_millis(800);
        c.outbound_tls = twiin_authz::config::OutboundTlsSettings {
            cert: Some(path(files::GTK_CLIENT_CERT)),
            key: Some(path(files::GTK_CLIENT_KEY)),
            ca: Some(path(files::TLS_CA)),
        };
        if let Some(jwks_path) = opts.configured_peer {
            c.clients = vec![twiin_authz::config::ClientRegistration {
                client_id: CONFIGURED_CLIENT.into(),
                ura: URA_VENDOR.into(),
                jwks_uri: format!("http://{jwks_addr}{jwks_path}"),
                authorization_server: Some(CONFIGURED_AS.into()),
                capabilities: vec![twiin_authz::config::Capability {
                    interaction: "create:Task:1.0:notification".into(),
                    on_behalf_of: vec![URA_CARE.into()],
                }],
                receives_via_twiin: vec![],
            }];
        }
        if opts.production {
            let tls = service_kit::config::ServerTlsSettings {
                cert: path(files::SIM_SERVER_CERT),
                key: path(files::SIM_SERVER_KEY),
                client_ca: Some(path(files::TLS_CA)),
            };
            c.server.tls = Some(tls.clone());
            c.http.tls = Some(service_kit::config::ServerTlsSettings {
                client_ca: None,
                ..tls
            });
            c.resource_broker.identities = vec!["resource-broker.localhost".into()];
        }
        (opts.tweak)(&mut c);
        let r = twiin_authz::start_with(
            c.clone(),
            twiin_authz::Deps { audit: audit.clone() },
            shutdown.clone(),
        )
        .await?;
        let aorta_signer =
            RsaSigner::from_pkcs8_pem(AORTA_KID, &pki.token_signing_key_pem).expect("AORTA signer");
        let ca = reqwest::Certificate::from_pem(pki.tls_ca_pem.as_bytes()).expect("CA");
        let client = reqwest::Client::builder()
            .tls_certs_merge([ca])
            .build()
            .expect("client");
        Ok(World {
            dir,
            shutdown,
            http: r.service.http_addr,
            grpc: r.grpc_addr,
            production: opts.production,
            zorg_hits: zorg.hits.clone(),
            as_za_hits: as_za.hits.clone(),
            peer,
            audit,
            sink,
            ext_key,
            ext_jwk,
            jwks_hits: hits,
            aorta_signer,
            config: c,
            client,
            metrics: r.service.authz.metrics.clone(),
        })
    }

    /// `http://` (development) or `https://` (production) and the OAuth listener's address.
    pub(crate) fn base_url(&self) -> String {
        if self.production {
            format!("https://127.0.0.1:{}", self.http.port())
        } else {
            format!("http://{}", self.http)
        }
    }

    /// The audit events of use case `use_case` so far (the sink also holds the background
    /// Stelseltoken fetches).
    pub(crate) fn events_of(&self, use_case: &str) -> Vec<audit_log::AuditEvent> {
        self.sink
            .events()
            .into_iter()
            .filter(|e| e.use_case == use_case)
            .collect()
    }

    pub(crate) fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base_url())
    }

    /// A valid client assertion's claims.
    pub(crate) fn client_claims(&self) -> Value {
        let n = now();
        json!({"iss": EXT_CLIENT, "sub": EXT_CLIENT, "aud": format!("{ISSUER}/oauth2/token"),
            "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120})
    }

    /// A valid grant assertion's claims (push notification, no BSN).
    pub(crate) fn grant_claims(&self) -> Value {
        let n = now();
        json!({"iss": EXT_CLIENT, "sub": URA_CARE, "aud": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120,
            "user_id": "UZI-900001", "user_role": "01.015"})
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_header(&json!({"alg": "ES512", "typ": "JWT", "kid": EXT_KID}), claims)
    }

    pub(crate) fn sign_header(&self, header: &Value, claims: &Value) -> String {
        sign_es512_with_header(&self.ext_key, header, claims).expect("sign")
    }

    /// A complete valid form, with `scope`.
    pub(crate) fn form(&self, scope: &str) -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), JWT_BEARER.into()),
            ("assertion".into(), self.sign(&self.grant_claims())),
            ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
            ("client_assertion".into(), self.sign(&self.client_claims())),
            ("scope".into(), scope.into()),
        ]
    }

    pub(crate) async fn post(&self, form: &[(String, String)]) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body: Value = r.json().await.expect("JSON body");
        (status, body, headers)
    }

    /// A gRPC client; in production mode with the Resource Broker's client certificate.
    pub(crate) async fn grpc_client(
        &self,
    ) -> ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient<tonic::transport::Channel> {
        use sim_kit::pki::files;
        let identity = self
            .production
            .then_some((files::BROKER_CLIENT_CERT, files::BROKER_CLIENT_KEY));
        self.grpc_client_as(identity).await.expect("gRPC connect")
    }

    /// A gRPC client presenting the certificate and key files (of the test PKI) `identity`; over
    /// TLS in production mode.
    pub(crate) async fn grpc_client_as(
        &self,
        identity: Option<(&str, &str)>,
    ) -> Result<
        ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient<tonic::transport::Channel>,
        tonic::transport::Error,
    > {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let read = |f: &str| std::fs::read(self.dir.path().join(f)).expect("PKI file");
        let endpoint = if self.production {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(sim_kit::pki::files::TLS_CA)))
                .domain_name("localhost");
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(read(cert), read(key)));
            }
            Endpoint::from_shared(format!("https://127.0.0.1:{}", self.grpc.port()))?.tls_config(tls)?
        } else {
            Endpoint::from_shared(format!("http://{}", self.grpc))?
        };
        Ok(ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient::new(endpoint.connect().await?))
    }

    /// An AORTA access token as the AS ZA would issue it.
    pub(crate) fn source_token(&self, claims: &Value) -> String {
        let mut h = serde_json::Map::new();
        h.insert("typ".into(), json!("JWT"));
        self.aorta_signer.sign(h, claims).expect("sign")
    }

    pub(crate) fn source_claims(&self, scope: &str) -> Value {
        let n = now();
        json!({"iss": AS_ZA_ISSUER, "aud": "aorta", "sub": URA_CARE, "iat": n, "exp": n + 900,
            "jti": uuid::Uuid::new_v4().to_string(), "scope": scope,
            "_vrb": {"_vrb_ura": URA_CARE, "_vrb_user_id": "UZI-900001", "_vrb_user_role": "01.015", "_vrb_bsn": BSN}})
    }
}

/// Replaces fields of a JSON object.
pub(crate) fn with(mut v: Value, patch: Value) -> Value {
    if let (Some(o), Some(p)) = (v.as_object_mut(), patch.as_object()) {
        for (k, x) in p {
            if x.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), x.clone());
            }
        }
    }
    v
}

/// A SAML AORTA consent token (base64) for context code BGZOPV.
pub(crate) fn consent_token() -> String {
    use base64::Engine;
    let saml = r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_c1"><saml2:AttributeStatement><saml2:Attribute Name="contextcode"><saml2:AttributeValue>aorta.contextcode.BGZOPV</saml2:AttributeValue></saml2:Attribute></saml2:AttributeStatement></saml2:Assertion>"#;
    base64::engine::general_purpose::STANDARD.encode(saml)
}

pub(crate) fn set(form: &mut Vec<(String, String)>, key: &str, value: Option<String>) {
    form.retain(|(k, _)| k != key);
    if let Some(v) = value {
        form.push((key.into(), v));
    }
}
