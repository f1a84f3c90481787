//! Issue 13's configuration rules: callers present client certificates outside development
//! mode, every relay has a grant key, and bearer JWT keys never come over plain HTTP. Start-up
//! refuses otherwise, naming the key.

use std::path::Path;

use dev_support::devpki::{DevPki, files};
use dmp_gateway::{Config, JwtSettings};
use service_kit::config::{ServerTlsSettings, ServiceConfig};

/// A configuration whose files all exist (a fresh development PKI).
fn valid(pki: &DevPki) -> Config {
    let mut c = Config::default();
    c.dmp.ca_bundle = pki.path(files::IGC_CA_BUNDLE);
    c.relay_client.ca = pki.path(files::SUITE_CA);
    c.relay_client.cert = pki.path(files::GATEWAY_CLIENT_CERT);
    c.relay_client.key = pki.path(files::GATEWAY_CLIENT_KEY);
    c.server.tls = Some(ServerTlsSettings {
        cert: pki.path(files::SERVICE_SERVER_CERT),
        key: pki.path(files::SERVICE_SERVER_KEY),
        client_ca: Some(pki.path(files::SUITE_CA)),
    });
    for r in c.relays.values_mut() {
        r.grant_key = pki.path(files::RELAY_GRANT_PUBLIC_KEY);
    }
    own_identifiers(&mut c);
    c
}

/// Identifiers of an installation (made up, none of the examples').
fn own_identifiers(c: &mut Config) {
    c.lps.id = "12.34.56.78".into();
    c.lps.homologation_id = "DMP-HOMOLOG-4242".into();
    c.xds.source_id = "1.2.250.1.4242.1".into();
    c.xds.hl7_sender_oid = "1.2.250.1.4242.2".into();
}

#[test]
fn outside_development_the_examples_identifiers_are_refused() {
    let pki = pki();
    for (key, examples) in dmp_gateway::EXAMPLE_IDENTIFIERS {
        for example in examples {
            let mut c = valid(&pki);
            match key {
                "lps.id" => c.lps.id = (*example).into(),
                "lps.name" => c.lps.name = (*example).into(),
                "lps.homologation_id" => c.lps.homologation_id = (*example).into(),
                "xds.source_id" => c.xds.source_id = (*example).into(),
                "xds.hl7_sender_oid" => c.xds.hl7_sender_oid = (*example).into(),
                other => panic!("a key this test does not know: {other}"),
            }
            let err = refused_key(&c);
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("official DMP examples"),
                "{key} = {example}: {err}"
            );
            c.development = true;
            c.validate()
                .expect("the examples' values are fine in development");
        }
    }
    // The defaults are the examples': a production configuration must set its own.
    let mut c = valid(&pki);
    c.lps = Default::default();
    let err = refused_key(&c);
    assert!(err.contains("`lps.id`"), "{err}");
    let mut c = valid(&pki);
    c.xds = Default::default();
    let err = refused_key(&c);
    assert!(err.contains("`xds.source_id`"), "{err}");
}

fn pki() -> DevPki {
    DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-config-pki")).expect("pki")
}

fn refused_key(c: &Config) -> String {
    c.validate().expect_err("refused").to_string()
}

#[test]
fn callers_present_client_certificates_outside_development() {
    let pki = pki();
    valid(&pki).validate().expect("mutual TLS");

    let mut c = valid(&pki);
    if let Some(tls) = c.server.tls.as_mut() {
        tls.client_ca = None;
    }
    let err = refused_key(&c);
    assert!(
        err.contains("`server.tls.client_ca`") && err.contains("mutual TLS"),
        "{err}"
    );
    c.server.tls = None;
    let err = refused_key(&c);
    assert!(err.contains("`server.tls`"), "{err}");

    // A local trial: no client certificates on the listener (callers still authenticate).
    c.development = true;
    c.validate().expect("development mode");
}

#[test]
fn every_relay_has_a_grant_key_and_jwt_keys_come_over_https() {
    let pki = pki();
    let mut c = valid(&pki);
    if let Some(r) = c.relays.get_mut("local") {
        r.grant_key = "/nonexistent/grant.pub.pem".into();
    }
    let err = refused_key(&c);
    assert!(err.contains("relays.local.grant_key"), "{err}");

    let mut c = valid(&pki);
    c.auth.jwt = Some(JwtSettings {
        issuer: "https://idp.example.test".into(),
        jwks: "http://idp.example.test/jwks".into(),
        audience: "dmp-gateway".into(),
        jwks_ca: None,
        jwks_refresh: std::time::Duration::from_secs(600),
    });
    let err = refused_key(&c);
    assert!(err.contains("auth.jwt.jwks") && err.contains("https"), "{err}");
}

/// Issue 16: a CPS agent relay speaks https with mutual TLS outside development mode; a gRPC
/// relay's endpoint has no path.
#[test]
fn a_cps_agent_relay_is_https_outside_development() {
    let pki = pki();
    let mut c = valid(&pki);
    let relay = c.relays.get_mut("local").expect("the default relay");
    relay.api = dmp_gateway::RelayApi::CpsAgent;
    relay.endpoint = "https://127.0.0.1:8700/agent".into();
    c.validate().expect("an https agent with a base path");

    let set = |c: &mut Config, endpoint: &str| {
        c.relays.get_mut("local").expect("relay").endpoint = endpoint.into();
    };
    set(&mut c, "http://127.0.0.1:8700");
    let err = refused_key(&c);
    assert!(
        err.contains("`relays.local.endpoint`") && err.contains("http:// only with development = true"),
        "{err}"
    );
    c.development = true;
    c.validate().expect("a plain-http agent in development mode");

    // A gRPC relay never goes plain, development or not, and names no path.
    c.relays.get_mut("local").expect("relay").api = dmp_gateway::RelayApi::Grpc;
    let err = refused_key(&c);
    assert!(err.contains("the relay requires mutual TLS"), "{err}");
    set(&mut c, "https://127.0.0.1:50051/cps");
    let err = refused_key(&c);
    assert!(err.contains("has no path"), "{err}");
}
