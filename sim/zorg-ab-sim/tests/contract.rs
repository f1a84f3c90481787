//! The ZORG-AB simulator enforces its contract: bad input is refused, not answered.

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
            capabilities: vec![Capability {
                interaction: "create:Task:1.0:notification".into(),
                on_behalf_of: vec!["11111111".into()],
            }],
            receives_via_twiin: vec![],
        }],
    }
}

#[tokio::test]
async fn answers_known_entries_and_refuses_bad_input() {
    let stop = sim_kit::CancellationToken::new();
    let r = zorg_ab_sim::start(data(), "127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("starts");
    let c = reqwest::Client::new();
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
    let post = c
        .post(format!("{}/organizations/11111111", r.url()))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    stop.cancel();
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
