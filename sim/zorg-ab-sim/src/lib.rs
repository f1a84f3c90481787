//! ZORG-AB simulator: the read-only AORTA/Twiin address book (SPEC.md §3.2 steps 3, 6 and 7).
//!
//! Contract (what the real directory enforces and this simulator enforces too):
//! - `GET /organizations/{ura}`: a URA is 8 digits (400 otherwise); unknown → 404.
//! - `GET /applications?client_id=ID`: one application by its OAuth client id (its Twiin
//!   identity): organization URA, `jwks_uri`, the HTTPS URL of the authorization server that
//!   signs its assertions (`authorization_server`), the interactions it may *initiate* and on
//!   behalf of which URAs (`capabilities`), and the interactions it wants to *receive* via
//!   Twiin. Missing/empty `client_id` → 400; unknown → 404.
//! - `GET /applications?authorization_server=URL`: the application whose authorization server
//!   is `URL` (how a GtK checks that an audience is a registered Twiin authorization server);
//!   unknown → 404. Exactly one of the two parameters → 400 otherwise.
//! - Only `GET`; other methods → 405. Every answer is JSON.
//! - Only over mutual TLS: a caller without a client certificate of the configured CA never
//!   gets an answer (the real directory admits GtKs by their UZI server certificate).
//!
//! The data is a TOML file (see `sim/README.md` and `sim/data/zorg-ab.toml`), checked when
//! loaded: URAs are 8 digits, every application belongs to a listed organization, every
//! `on_behalf_of` URA is listed, client ids are unique.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sim_kit::CancellationToken;
use sim_kit::serve::{Running, Tls};

/// The simulator's data file: the registry's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Healthcare providers, by URA.
    #[serde(default)]
    pub organizations: Vec<Organization>,
    /// Applications, by OAuth client id.
    #[serde(default)]
    pub applications: Vec<Application>,
}

/// A healthcare provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Its URA number (8 digits).
    pub ura: String,
    /// Its name.
    pub name: String,
}

/// An application registered in ZORG-AB.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The OAuth client id the application (a GtK or GBZ application) is known by.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// URA of the organization that runs it.
    pub ura: String,
    /// Where its JWKS (client_assertion and grant assertion keys) is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The HTTPS URL of the authorization server that issues its assertions (their `iss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<String>,
    /// Interactions it is qualified to initiate, each for a set of URAs.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// AORTA interactions (e.g. `create:Task:1.0:notification`) it wants to receive via Twiin.
    #[serde(default)]
    pub receives_via_twiin: Vec<String>,
}

/// An interaction an application may initiate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    /// The AORTA interaction id.
    pub interaction: String,
    /// The URAs it may initiate it for.
    pub on_behalf_of: Vec<String>,
}

/// Whether `ura` has the form of a URA number (8 digits).
pub fn valid_ura(ura: &str) -> bool {
    ura.len() == 8 && ura.bytes().all(|b| b.is_ascii_digit())
}

impl Data {
    /// Refuses inconsistent data with a message naming the entry.
    pub fn check(&self) -> Result<(), String> {
        for o in &self.organizations {
            if !valid_ura(&o.ura) {
                return Err(format!("organizations: URA {:?} is not 8 digits", o.ura));
            }
        }
        let known = |u: &str| self.organizations.iter().any(|o| o.ura == u);
        let mut seen = std::collections::HashSet::new();
        let mut servers = std::collections::HashSet::new();
        for a in &self.applications {
            if !seen.insert(&a.client_id) {
                return Err(format!("applications: client_id {:?} listed twice", a.client_id));
            }
            if let Some(s) = &a.authorization_server
                && !servers.insert(s)
            {
                return Err(format!(
                    "applications.{}: authorization_server {s} belongs to another application too",
                    a.client_id
                ));
            }
            if !known(&a.ura) {
                return Err(format!(
                    "applications.{}: ura {} is not a listed organization",
                    a.client_id, a.ura
                ));
            }
            for c in &a.capabilities {
                if let Some(u) = c.on_behalf_of.iter().find(|u| !known(u)) {
                    return Err(format!(
                        "applications.{}: capability {} on behalf of unknown URA {u}",
                        a.client_id, c.interaction
                    ));
                }
            }
        }
        Ok(())
    }
}

struct Directory {
    organizations: HashMap<String, Organization>,
    applications: HashMap<String, Application>,
    /// client id by authorization server URL.
    servers: HashMap<String, String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({"error": message}))).into_response()
}

async fn organization(State(d): State<Arc<Directory>>, Path(ura): Path<String>) -> Response {
    if !valid_ura(&ura) {
        return error(StatusCode::BAD_REQUEST, "URA must be 8 digits");
    }
    match d.organizations.get(&ura) {
        Some(o) => Json(o).into_response(),
        None => error(StatusCode::NOT_FOUND, "no organization with this URA"),
    }
}

#[derive(Deserialize)]
struct AppQuery {
    client_id: Option<String>,
    authorization_server: Option<String>,
}

async fn application(State(d): State<Arc<Directory>>, Query(q): Query<AppQuery>) -> Response {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let id = match (nonempty(q.client_id), nonempty(q.authorization_server)) {
        (Some(id), None) => id,
        (None, Some(server)) => match d.servers.get(server.trim_end_matches('/')) {
            Some(id) => id.clone(),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "no application with this authorization_server",
                );
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "exactly one of the query parameters client_id and authorization_server is required",
            );
        }
    };
    match d.applications.get(&id) {
        Some(a) => Json(a).into_response(),
        None => error(StatusCode::NOT_FOUND, "no application with this client_id"),
    }
}

/// The registry's HTTP API over `data` (refused when inconsistent).
pub fn router(data: Data) -> Result<axum::Router, String> {
    data.check()?;
    let servers = data
        .applications
        .iter()
        .filter_map(|a| {
            a.authorization_server
                .as_ref()
                .map(|s| (s.trim_end_matches('/').to_owned(), a.client_id.clone()))
        })
        .collect();
    let dir = Directory {
        servers,
        organizations: data
            .organizations
            .into_iter()
            .map(|o| (o.ura.clone(), o))
            .collect(),
        applications: data
            .applications
            .into_iter()
            .map(|a| (a.client_id.clone(), a))
            .collect(),
    };
    Ok(axum::Router::new()
        .route("/organizations/{ura}", get(organization))
        .route("/applications", get(application))
        .with_state(Arc::new(dir)))
}

/// Serves the directory over mutual TLS: `tls.client_ca` is required.
pub async fn start(
    data: Data,
    listen: SocketAddr,
    tls: Tls,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    if tls.client_ca.is_none() {
        return Err("ZORG-AB answers only callers with a client certificate: --client-ca is required".into());
    }
    let router = router(data)?;
    sim_kit::serve::serve_tls(listen, router, &tls, shutdown).await
}
