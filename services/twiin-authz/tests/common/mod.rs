//! The in-process world of the twiin-authz tests: the three simulators, the external GtK's JWKS
//! host, and the service, all on ephemeral loopback ports, torn down on drop.
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

pub const ISSUER: &str = "https://twiin.test";
pub const EXT_CLIENT: &str = "https://gtk-extern.test";
pub const EXT_KID: &str = "ext-1";
pub const AS_ZA_ISSUER: &str = "https://as-za.test";
pub const AORTA_KID: &str = "aorta-ts-1";
pub const OUR_KID: &str = "twiin-authz-1";
pub const URA_VENDOR: &str = "11111111";
pub const URA_CARE: &str = "22222222";
pub const URA_OURS: &str = "33333333";
pub const URA_UNQUALIFIED: &str = "44444444";
pub const URA_REFUSED_BY_AS_ZA: &str = "55555555";
pub const BSN: &str = "999993653";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn aorta_pki() -> &'static AortaPki {
    static PKI: std::sync::OnceLock<AortaPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| AortaPki::generate().expect("AORTA test PKI"))
}

/// Options of a world.
#[derive(Clone)]
pub struct Options {
    pub stelsel_backdate_secs: u64,
    pub stelsel_max_age: Duration,
    pub tweak: fn(&mut twiin_authz::Config),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stelsel_backdate_secs: 0,
            stelsel_max_age: Duration::from_secs(3600),
            tweak: |_| {},
        }
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub audit: AuditLog,
    pub sink: Arc<MemorySink>,
    pub ext_key: Vec<u8>,
    pub ext_jwk: Value,
    pub jwks_hits: Arc<AtomicUsize>,
    pub aorta_signer: RsaSigner,
    pub config: twiin_authz::Config,
    pub client: reqwest::Client,
    pub metrics: twiin_authz::TwiinMetrics,
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

/// Serves the external GtK's JWKS, counting fetches.
async fn jwks_host(jwks: Value, hits: Arc<AtomicUsize>, shutdown: CancellationToken) -> SocketAddr {
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(jwks)
            }
        }),
    );
    sim_kit::serve::serve("127.0.0.1:0".parse().expect("addr"), router, shutdown)
        .await
        .expect("JWKS host")
        .addr
}

/// A listener that accepts connections and never answers: a dependency that is "slow".
pub async fn blackhole(shutdown: CancellationToken) -> SocketAddr {
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
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn zorg_ab_data(jwks_uri: &str) -> zorg_ab_sim::Data {
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
                jwks_uri: Some(jwks_uri.into()),
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
                client_id: "urn:gbz:local-ehr".into(),
                name: "EPD zorgaanbieder B".into(),
                ura: URA_OURS.into(),
                jwks_uri: None,
                capabilities: vec![],
                receives_via_twiin: all.iter().map(|i| (*i).into()).collect(),
            },
            Application {
                client_id: "urn:gbz:no-twiin".into(),
                name: "EPD zonder Twiin".into(),
                ura: URA_OURS.into(),
                jwks_uri: None,
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
    pub async fn start() -> World {
        World::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> World {
        let (audit, sink) = AuditLog::memory();
        World::start_sharing(opts, audit, sink).await
    }

    pub async fn start_sharing(opts: Options, audit: AuditLog, sink: Arc<MemorySink>) -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = aorta_pki();
        pki.write(dir.path()).expect("write AORTA PKI");
        let our_key = dir.path().join("twiin.key.pem");
        write_p521(&our_key);
        let shutdown = CancellationToken::new();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");

        let (ext_key, ext_jwk) = p521_test_key(EXT_KID).expect("GtK key");
        let hits = Arc::new(AtomicUsize::new(0));
        let jwks_addr = jwks_host(json!({"keys": [ext_jwk.clone()]}), hits.clone(), shutdown.clone()).await;

        let zorg = zorg_ab_sim::start(
            zorg_ab_data(&format!("http://{jwks_addr}/jwks")),
            any,
            shutdown.clone(),
        )
        .await
        .expect("ZORG-AB sim");
        let stelsel = aorta_stelsel_sim::start(
            aorta_stelsel_sim::Data {
                issuer: "https://stelsel.test".into(),
                signer_key: dir.path().join(sim_kit::pki::files::STELSEL_SIGNER_KEY),
                signer_chain: dir.path().join(sim_kit::pki::files::STELSEL_SIGNER_CHAIN),
                validity_secs: 24 * 3600,
                backdate_secs: opts.stelsel_backdate_secs,
                token_signing_keys: vec![aorta_stelsel_sim::TokenSigningKey {
                    kid: AORTA_KID.into(),
                    key: dir.path().join(sim_kit::pki::files::AORTA_TOKEN_SIGNING_KEY),
                }],
            },
            any,
            shutdown.clone(),
        )
        .await
        .expect("Stelsel sim");
        let as_za = as_za_sim::start(as_za_data(dir.path(), our_key.clone()), any, shutdown.clone())
            .await
            .expect("AS ZA sim");

        let mut c = twiin_authz::Config::default();
        c.server.listen = any;
        c.server.drain_grace = Duration::from_millis(50);
        c.metrics.listen = None;
        c.http.listen = any;
        c.issuer = ISSUER.into();
        c.assertions.signing_keys[0].key = our_key;
        c.assertions.signing_keys[0].kid = OUR_KID.into();
        c.stelsel.url = format!("{}/stelseltoken", stelsel.url());
        c.stelsel.trust_anchor = dir.path().join(sim_kit::pki::files::STELSEL_CA);
        c.stelsel.max_age = opts.stelsel_max_age;
        c.stelsel.access_token_issuer = AS_ZA_ISSUER.into();
        c.stelsel.access_token_audience = "aorta".into();
        c.zorg_ab.url = zorg.url();
        c.zorg_ab.timeout = Duration::from_millis(500);
        c.as_za.token_url = format!("{}/token", as_za.url());
        c.as_za.audience = AS_ZA_ISSUER.into();
        c.as_za.timeout = Duration::from_millis(800);
        (opts.tweak)(&mut c);
        let r = twiin_authz::start_with(
            c.clone(),
            twiin_authz::Deps { audit: audit.clone() },
            shutdown.clone(),
        )
        .await
        .expect("twiin-authz starts");
        let aorta_signer =
            RsaSigner::from_pkcs8_pem(AORTA_KID, &pki.token_signing_key_pem).expect("AORTA signer");
        World {
            dir,
            shutdown,
            http: r.service.http_addr,
            grpc: r.grpc_addr,
            audit,
            sink,
            ext_key,
            ext_jwk,
            jwks_hits: hits,
            aorta_signer,
            config: c,
            client: reqwest::Client::new(),
            metrics: r.service.authz.metrics.clone(),
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.http)
    }

    /// A valid client assertion's claims.
    pub fn client_claims(&self) -> Value {
        let n = now();
        json!({"iss": EXT_CLIENT, "sub": EXT_CLIENT, "aud": format!("{ISSUER}/oauth2/token"),
            "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120})
    }

    /// A valid grant assertion's claims (push notification, no BSN).
    pub fn grant_claims(&self) -> Value {
        let n = now();
        json!({"iss": EXT_CLIENT, "sub": URA_CARE, "aud": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120,
            "user_id": "UZI-900001", "user_role": "01.015"})
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_header(&json!({"alg": "ES512", "typ": "JWT", "kid": EXT_KID}), claims)
    }

    pub fn sign_header(&self, header: &Value, claims: &Value) -> String {
        sign_es512_with_header(&self.ext_key, header, claims).expect("sign")
    }

    /// A complete valid form, with `scope`.
    pub fn form(&self, scope: &str) -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), JWT_BEARER.into()),
            ("assertion".into(), self.sign(&self.grant_claims())),
            ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
            ("client_assertion".into(), self.sign(&self.client_claims())),
            ("scope".into(), scope.into()),
        ]
    }

    pub async fn post(&self, form: &[(String, String)]) -> (u16, Value, reqwest::header::HeaderMap) {
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

    pub async fn grpc_client(
        &self,
    ) -> ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient<tonic::transport::Channel> {
        ehealth_proto::twiin::v1::twiin_authz_client::TwiinAuthzClient::connect(format!(
            "http://{}",
            self.grpc
        ))
        .await
        .expect("gRPC connect")
    }

    /// An AORTA access token as the AS ZA would issue it.
    pub fn source_token(&self, claims: &Value) -> String {
        let mut h = serde_json::Map::new();
        h.insert("typ".into(), json!("JWT"));
        self.aorta_signer.sign(h, claims).expect("sign")
    }

    pub fn source_claims(&self, scope: &str) -> Value {
        let n = now();
        json!({"iss": AS_ZA_ISSUER, "aud": "aorta", "sub": URA_CARE, "iat": n, "exp": n + 900,
            "jti": uuid::Uuid::new_v4().to_string(), "scope": scope,
            "_vrb": {"_vrb_ura": URA_CARE, "_vrb_user_id": "UZI-900001", "_vrb_user_role": "01.015", "_vrb_bsn": BSN}})
    }
}

/// Replaces fields of a JSON object.
pub fn with(mut v: Value, patch: Value) -> Value {
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
pub fn consent_token() -> String {
    use base64::Engine;
    let saml = r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_c1"><saml2:AttributeStatement><saml2:Attribute Name="contextcode"><saml2:AttributeValue>aorta.contextcode.BGZOPV</saml2:AttributeValue></saml2:Attribute></saml2:AttributeStatement></saml2:Assertion>"#;
    base64::engine::general_purpose::STANDARD.encode(saml)
}

pub fn set(form: &mut Vec<(String, String)>, key: &str, value: Option<String>) {
    form.retain(|(k, _)| k != key);
    if let Some(v) = value {
        form.push((key.into(), v));
    }
}
