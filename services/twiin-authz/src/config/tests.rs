//! Validation of the configuration, production mode's refusals above all.
use super::*;

fn valid() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("k.pem");
    std::fs::write(&key, "placeholder").expect("write");
    let mut c = Config::default();
    c.assertions.signing_keys[0].key = key;
    c.development = true;
    (dir, c)
}

/// A configuration production mode accepts: https everywhere, TLS on both listeners with
/// caller mTLS, a broker identity and a client certificate.
fn production() -> (tempfile::TempDir, Config) {
    let (dir, mut c) = valid();
    let file = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, "placeholder").expect("write");
        p
    };
    let tls = ServerTlsSettings {
        cert: file("tls.pem"),
        key: file("tls.key"),
        client_ca: Some(file("ca.pem")),
    };
    c.development = false;
    c.server.tls = Some(tls.clone());
    c.http.tls = Some(ServerTlsSettings {
        client_ca: None,
        ..tls
    });
    c.resource_broker.identities = vec!["resource-broker.example.nl".into()];
    c.outbound_tls.cert = Some(file("client.pem"));
    c.outbound_tls.key = Some(file("client.key"));
    c.stelsel.url = "https://stelsel.example.nl/stelseltoken".into();
    c.zorg_ab.url = "https://zorg-ab.example.nl".into();
    c.as_za.token_url = "https://as-za.example.nl/token".into();
    (dir, c)
}

fn key_of(c: &Config) -> String {
    c.validate().expect_err("invalid").to_string()
}

#[test]
fn defaults_validate_and_bad_values_name_their_key() {
    let (_d, c) = valid();
    c.validate().expect("defaults are valid in development");
    let (_d, mut c) = valid();
    c.issuer = "http://twiin.test".into();
    assert!(key_of(&c).contains("issuer"));
    let (_d, mut c) = valid();
    c.development = false;
    assert!(
        key_of(&c).contains("stelsel.url"),
        "http URLs refused outside development"
    );
    let (_d, mut c) = valid();
    c.assertions.signing_keys[0].key = "/nonexistent.pem".into();
    assert!(key_of(&c).contains("assertions.signing_keys[0].key"));
    let (_d, mut c) = valid();
    c.interactions[0].permission = 'x';
    assert!(key_of(&c).contains("interactions"));
    let (_d, mut c) = valid();
    c.client_auth.algorithms.clear();
    assert!(key_of(&c).contains("client_auth.algorithms"));
}

#[test]
fn production_is_the_default() {
    assert!(!Config::default().development);
}

#[test]
fn production_refuses_each_unsafe_setting_naming_its_key() {
    let (_d, c) = production();
    c.validate().expect("a production configuration is valid");
    type Tweak = fn(&mut Config);
    let cases: Vec<(&str, Tweak)> = vec![
        ("stelsel.url", |c| {
            c.stelsel.url = "http://stelsel.example.nl/st".into()
        }),
        ("zorg_ab.url", |c| {
            c.zorg_ab.url = "http://zorg-ab.example.nl".into()
        }),
        ("as_za.token_url", |c| {
            c.as_za.token_url = "http://as-za.example.nl/token".into()
        }),
        ("as_za.audience", |c| {
            c.as_za.audience = "http://as-za.example.nl".into()
        }),
        ("stelsel.access_token_issuer", |c| {
            c.stelsel.access_token_issuer = "http://as-za.example.nl".into()
        }),
        ("issuer", |c| c.issuer = "http://twiin.example.nl".into()),
        ("http.public_url", |c| {
            c.http.public_url = Some("http://twiin.example.nl".into())
        }),
        ("clients[0].jwks_uri", |c| {
            c.clients = vec![ClientRegistration {
                client_id: "gtk".into(),
                ura: "11111111".into(),
                jwks_uri: "http://gtk.example.nl/jwks".into(),
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
            c.outbound_tls.cert = None;
            c.outbound_tls.key = None;
        }),
        ("replicas", |c| {
            c.replicas = 2;
            c.audit.database_url = Some("sqlite:.local/audit.sqlite".into());
        }),
    ];
    for (key, tweak) in cases {
        let (_d, mut c) = production();
        tweak(&mut c);
        let msg = key_of(&c);
        assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
    }
    // Several replicas on PostgreSQL are fine.
    let (_d, mut c) = production();
    c.replicas = 3;
    // (A remote server needs verified TLS: crates/audit-log/AUDIT.md "TLS to the database".)
    c.audit.database_url = Some("postgres://audit@db.example.nl/audit?sslmode=verify-full".into());
    c.validate().expect("PostgreSQL is shared");
}

#[test]
fn broker_identities_are_fingerprints_or_dns_names() {
    assert!(valid_identity(&"ab".repeat(32)));
    assert!(valid_identity("resource-broker.example.nl"));
    assert!(!valid_identity("CN=broker, O=x"));
    assert!(!valid_identity(""));
}
