//! Safe by default (issue 14): production mode is the default, and start-up refuses every
//! setting only fit for development, naming the key — through `start_with` as the binary uses
//! it, and through the binary itself.

mod common;

use std::process::Command;

use common::*;
use sim_kit::pki::files;
use twiin_authz::config::{ClientRegistration, OutboundTlsSettings};

/// A production configuration on real files (the test PKI), unreachable https upstreams.
fn production(dir: &std::path::Path) -> twiin_authz::Config {
    aorta_pki().write(dir).expect("PKI");
    let key = dir.join("twiin.key.pem");
    let (der, _) = sim_kit::jose::p521_test_key("k").expect("key");
    std::fs::write(&key, pem::encode(&pem::Pem::new("PRIVATE KEY", der))).expect("key file");
    let mut c = twiin_authz::Config::default();
    assert!(!c.development, "production mode is the default");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    c.server.listen = any;
    c.http.listen = any;
    c.metrics.listen = None;
    c.assertions.signing_keys[0].key = key;
    let tls = service_kit::config::ServerTlsSettings {
        cert: dir.join(files::SIM_SERVER_CERT),
        key: dir.join(files::SIM_SERVER_KEY),
        client_ca: Some(dir.join(files::TLS_CA)),
    };
    c.server.tls = Some(tls.clone());
    c.http.tls = Some(service_kit::config::ServerTlsSettings {
        client_ca: None,
        ..tls
    });
    c.resource_broker.identities = vec!["resource-broker.localhost".into()];
    c.outbound_tls = OutboundTlsSettings {
        cert: Some(dir.join(files::GTK_CLIENT_CERT)),
        key: Some(dir.join(files::GTK_CLIENT_KEY)),
        ca: Some(dir.join(files::TLS_CA)),
    };
    c.stelsel.url = "https://127.0.0.1:9/stelseltoken".into();
    c.stelsel.trust_anchor = dir.join(files::STELSEL_CA);
    c.zorg_ab.url = "https://127.0.0.1:9".into();
    c.as_za.token_url = "https://127.0.0.1:9/token".into();
    c.audit.database_url = Some(format!("sqlite:{}", dir.join("audit.sqlite").display()));
    c
}

async fn start(c: twiin_authz::Config) -> Result<service_kit::CancellationToken, String> {
    let (audit, _) = audit_log::AuditLog::memory();
    let shutdown = service_kit::CancellationToken::new();
    twiin_authz::start_with(c, twiin_authz::Deps { audit }, shutdown.clone())
        .await
        .map(|_| shutdown)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn production_start_up_refuses_each_unsafe_setting_naming_its_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = start(production(dir.path()))
        .await
        .expect("a production configuration starts");
    ok.cancel();
    type Tweak = fn(&mut twiin_authz::Config);
    let cases: Vec<(&str, Tweak)> = vec![
        ("stelsel.url", |c| {
            c.stelsel.url = "http://127.0.0.1:9/stelseltoken".into()
        }),
        ("zorg_ab.url", |c| c.zorg_ab.url = "http://127.0.0.1:9".into()),
        ("as_za.token_url", |c| {
            c.as_za.token_url = "http://127.0.0.1:9/token".into()
        }),
        ("as_za.audience", |c| {
            c.as_za.audience = "http://as-za.test".into()
        }),
        ("issuer", |c| c.issuer = "http://twiin.test".into()),
        ("clients[0].jwks_uri", |c| {
            c.clients = vec![ClientRegistration {
                client_id: "gtk".into(),
                ura: "11111111".into(),
                jwks_uri: "http://gtk.test/jwks".into(),
                authorization_server: None,
                capabilities: vec![],
                receives_via_twiin: vec![],
            }]
        }),
        ("server.tls", |c| c.server.tls = None),
        ("server.tls.client_ca", |c| {
            if let Some(t) = c.server.tls.as_mut() {
                t.client_ca = None;
            }
        }),
        ("resource_broker.identities", |c| {
            c.resource_broker.identities.clear()
        }),
        ("http.tls", |c| c.http.tls = None),
        ("outbound_tls.cert", |c| {
            c.outbound_tls = OutboundTlsSettings::default()
        }),
        ("replicas", |c| c.replicas = 2),
    ];
    for (key, tweak) in cases {
        let mut c = production(dir.path());
        tweak(&mut c);
        let err = start(c).await.expect_err(key);
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
}

#[test]
fn the_binary_refuses_its_defaults_outside_development() {
    let out = Command::new(env!("CARGO_BIN_EXE_twiin-authz"))
        .arg("--check-config")
        .env_remove("TWIIN_AUTHZ_DEVELOPMENT")
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`stelsel.url`") && err.contains("outside development"),
        "production mode refuses the local http URLs: {err}"
    );
}
