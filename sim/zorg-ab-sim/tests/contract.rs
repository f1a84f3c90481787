//! The ZORG-AB simulator enforces its contract: bad input is refused, not answered.

use sim_kit::pki::files;
use sim_kit::serve::Tls;
use zorg_ab_sim::{Application, Capability, Data, Organization};

fn data() -> Data {
    Data {
        organizations: vec![Organization {
            ura: "11111111".into(),
            name: "A".into(),
        }],
        applications: vec![Application {
            client_id: "https://gtk.test".into(),
            name: "GtK".into(),
            ura: "11111111".into(),
            jwks_uri: Some("https://gtk.test/jwks".into()),
            authorization_server: Some("https://as.gtk.test".into()),
            capabilities: vec![Capability {
                interaction: "create:Task:1.0:notification".into(),
                on_behalf_of: vec!["11111111".into()],
            }],
            receives_via_twiin: vec![],
        }],
    }
}

/// The test PKI in a temporary folder, and the simulator's mutual TLS from it.
fn pki() -> (tempfile::TempDir, Tls) {
    let dir = tempfile::tempdir().expect("tmp");
    sim_kit::pki::AortaPki::generate()
        .expect("pki")
        .write(dir.path())
        .expect("write");
    let tls = Tls {
        cert: dir.path().join(files::SIM_SERVER_CERT),
        key: dir.path().join(files::SIM_SERVER_KEY),
        client_ca: Some(dir.path().join(files::TLS_CA)),
    };
    (dir, tls)
}

/// A client trusting the test CA, with the GtK's client certificate when `with_cert`.
fn client(dir: &std::path::Path, with_cert: bool) -> reqwest::Client {
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pki file");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&read(files::TLS_CA)).expect("ca")]);
    if with_cert {
        let mut pem = read(files::GTK_CLIENT_CERT);
        pem.extend(read(files::GTK_CLIENT_KEY));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test]
async fn answers_known_entries_and_refuses_bad_input() {
    let stop = sim_kit::CancellationToken::new();
    let (dir, tls) = pki();
    let r = zorg_ab_sim::start(data(), "127.0.0.1:0".parse().expect("addr"), tls, stop.clone())
        .await
        .expect("starts");
    assert!(r.url().starts_with("https://"));
    let c = client(dir.path(), true);
    let get = |p: &str| c.get(format!("{}{p}", r.url())).send();
    assert_eq!(get("/organizations/11111111").await.expect("GET").status(), 200);
    assert_eq!(get("/organizations/1111").await.expect("GET").status(), 400);
    assert_eq!(get("/organizations/99999999").await.expect("GET").status(), 404);
    let app = get("/applications?client_id=https%3A%2F%2Fgtk.test")
        .await
        .expect("GET");
    assert_eq!(app.status(), 200);
    let app: serde_json::Value = app.json().await.expect("json");
    assert_eq!(app["jwks_uri"], "https://gtk.test/jwks");
    assert_eq!(get("/applications").await.expect("GET").status(), 400);
    assert_eq!(get("/applications?client_id=").await.expect("GET").status(), 400);
    assert_eq!(
        get("/applications?client_id=nobody").await.expect("GET").status(),
        404
    );
    let by_server = get("/applications?authorization_server=https%3A%2F%2Fas.gtk.test")
        .await
        .expect("GET");
    assert_eq!(by_server.status(), 200);
    let by_server: serde_json::Value = by_server.json().await.expect("json");
    assert_eq!(by_server["client_id"], "https://gtk.test");
    assert_eq!(
        get("/applications?authorization_server=https%3A%2F%2Fother.test")
            .await
            .expect("GET")
            .status(),
        404
    );
    assert_eq!(
        get("/applications?client_id=x&authorization_server=y")
            .await
            .expect("GET")
            .status(),
        400
    );
    assert_eq!(
        r.hits.get("/applications?client_id=nobody"),
        1,
        "the simulator counts what it answered"
    );
    let post = c
        .post(format!("{}/organizations/11111111", r.url()))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    // No client certificate, no answer.
    assert!(
        client(dir.path(), false)
            .get(format!("{}/organizations/11111111", r.url()))
            .send()
            .await
            .is_err(),
        "a caller without a client certificate is refused"
    );
    stop.cancel();
}

#[tokio::test]
async fn plain_http_or_no_client_ca_is_refused_at_start() {
    let (_dir, mut tls) = pki();
    tls.client_ca = None;
    let err = zorg_ab_sim::start(
        data(),
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        sim_kit::CancellationToken::new(),
    )
    .await
    .expect_err("client certificates are required");
    assert!(err.contains("client-ca"), "{err}");
}

#[test]
fn inconsistent_data_is_refused_at_load() {
    let mut d = data();
    d.organizations[0].ura = "123".into();
    assert!(zorg_ab_sim::router(d).is_err());
    let mut d = data();
    d.applications[0].ura = "22222222".into();
    assert!(
        zorg_ab_sim::router(d)
            .unwrap_err()
            .contains("not a listed organization")
    );
    let mut d = data();
    d.applications[0].capabilities[0].on_behalf_of = vec!["33333333".into()];
    assert!(zorg_ab_sim::router(d).is_err());
    let mut d = data();
    d.applications.push(d.applications[0].clone());
    assert!(zorg_ab_sim::router(d).unwrap_err().contains("twice"));
    let mut d = data();
    let mut other = d.applications[0].clone();
    other.client_id = "https://other.test".into();
    d.applications.push(other);
    assert!(
        zorg_ab_sim::router(d)
            .unwrap_err()
            .contains("authorization_server")
    );
}

#[test]
fn the_shipped_data_file_loads() {
    let d: Data = sim_kit::data::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/zorg-ab.toml"
    )))
    .expect("sim/data/zorg-ab.toml parses");
    let _router = zorg_ab_sim::router(d).expect("and is consistent");
}
