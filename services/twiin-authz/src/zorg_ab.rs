//! The ZORG-AB client (SPEC.md §3.2 steps 3, 4, 6, 7): application records (jwks_uri,
//! capabilities, what a destination receives via Twiin) and each client's JWKS.
//!
//! Records and JWKS are cached for `zorg_ab.cache_ttl`. A JWKS is fetched again when a token
//! names a `kid` it lacks, at most once per `jwks_refresh_min_interval` per client, so a flood
//! of made-up kids cannot turn this service into a load generator. Outside development only
//! `https` jwks_uris are used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::aorta_id::AortaId;
use crate::config::ZorgAbSettings;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Capability {
    pub interaction: String,
    pub on_behalf_of: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Application {
    pub client_id: String,
    pub ura: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub receives_via_twiin: Vec<String>,
}

impl Application {
    /// Step 6: may this application initiate `interaction` on behalf of `ura`?
    pub fn may_initiate(&self, interaction: &str, ura: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.interaction == interaction && c.on_behalf_of.iter().any(|u| u == ura))
    }

    /// Step 7: does this (destination) application want `interaction` via Twiin?
    pub fn receives(&self, interaction: &str) -> bool {
        self.receives_via_twiin.iter().any(|i| i == interaction)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZorgAbError {
    #[error("ZORG-AB niet bereikbaar: {0}")]
    Unavailable(String),
    #[error("ZORG-AB antwoordt niet op tijd: {0}")]
    Timeout(String),
    #[error("onbekende applicatie {0} in ZORG-AB")]
    UnknownApplication(String),
    #[error("{0}")]
    Jwks(String),
    #[error("onbekende kid {0}")]
    UnknownKid(String),
}

/// What one outgoing call looked like, for the audit log.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub url: String,
    pub aorta_id: AortaId,
    pub status: Option<u16>,
    pub error: Option<String>,
}

struct JwksEntry {
    jwks: Value,
    fetched: Instant,
}

pub struct ZorgAb {
    http: reqwest::Client,
    settings: ZorgAbSettings,
    development: bool,
    apps: Mutex<HashMap<String, (Instant, Arc<Application>)>>,
    jwks: Mutex<HashMap<String, JwksEntry>>,
}

impl std::fmt::Debug for ZorgAb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZorgAb").field("url", &self.settings.url).finish()
    }
}

fn classify(url: &str, e: &reqwest::Error) -> ZorgAbError {
    if e.is_timeout() {
        ZorgAbError::Timeout(url.to_owned())
    } else {
        ZorgAbError::Unavailable(format!("{url}: {e}"))
    }
}

impl ZorgAb {
    pub fn new(http: reqwest::Client, settings: ZorgAbSettings, development: bool) -> Self {
        ZorgAb {
            http,
            settings,
            development,
            apps: Mutex::new(HashMap::new()),
            jwks: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &ZorgAbSettings {
        &self.settings
    }

    /// GETs `url` with a new AORTA-ID request id and the trace context, recording the exchange
    /// (status or error) in `log` for the audit trail.
    async fn get_logged(
        &self,
        url: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<reqwest::Response, ZorgAbError> {
        let out = id.outgoing();
        let mut ex = Exchange {
            url: url.to_owned(),
            aorta_id: out.clone(),
            status: None,
            error: None,
        };
        let result = self
            .http
            .get(url)
            .header(crate::aorta_id::HEADER, out.header_value())
            .header("accept", "application/json")
            .timeout(self.settings.timeout)
            .headers(service_kit::telemetry::current_trace_headers())
            .send()
            .await;
        match result {
            Ok(resp) => {
                ex.status = Some(resp.status().as_u16());
                log.push(ex);
                Ok(resp)
            }
            Err(e) => {
                let err = classify(url, &e);
                ex.error = Some(err.to_string());
                log.push(ex);
                Err(err)
            }
        }
    }

    /// An application by client id, from cache or ZORG-AB. Outgoing calls go into `log`.
    pub async fn application(
        &self,
        client_id: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<Arc<Application>, ZorgAbError> {
        if let Some((at, app)) = self.apps.lock().unwrap_or_else(|e| e.into_inner()).get(client_id)
            && at.elapsed() < self.settings.cache_ttl
        {
            return Ok(app.clone());
        }
        let base = self.settings.url.trim_end_matches('/');
        let mut u = url::Url::parse(&format!("{base}/applications"))
            .map_err(|e| ZorgAbError::Unavailable(format!("zorg_ab.url {base}: {e}")))?;
        u.query_pairs_mut().append_pair("client_id", client_id);
        let url = u.to_string();
        let resp = self.get_logged(&url, id, log).await?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(ZorgAbError::UnknownApplication(client_id.to_owned())),
            s => return Err(ZorgAbError::Unavailable(format!("{url}: HTTP {s}"))),
        }
        let app: Application = resp
            .json()
            .await
            .map_err(|e| ZorgAbError::Unavailable(format!("{url}: onleesbaar antwoord: {e}")))?;
        let app = Arc::new(app);
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_owned(), (Instant::now(), app.clone()));
        Ok(app)
    }

    /// The JWK `kid` of application `client_id`.
    pub async fn key(
        &self,
        client_id: &str,
        kid: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<Value, ZorgAbError> {
        let cached = {
            let map = self.jwks.lock().unwrap_or_else(|e| e.into_inner());
            map.get(client_id)
                .map(|e| (e.fetched.elapsed(), crate::jws::find_key(&e.jwks, kid).cloned()))
        };
        match cached {
            Some((age, Some(k))) if age < self.settings.cache_ttl => return Ok(k),
            // Unknown kid but fetched recently: no new fetch (rate limit).
            Some((age, None)) if age < self.settings.jwks_refresh_min_interval => {
                return Err(ZorgAbError::UnknownKid(kid.to_owned()));
            }
            _ => {}
        }
        let app = self.application(client_id, id, log).await?;
        let uri = app
            .jwks_uri
            .clone()
            .ok_or_else(|| ZorgAbError::Jwks(format!("geen jwks_uri geregistreerd voor {client_id}")))?;
        let parsed =
            url::Url::parse(&uri).map_err(|_| ZorgAbError::Jwks(format!("jwks_uri {uri} is geen URL")))?;
        let scheme_ok = parsed.scheme() == "https" || (self.development && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(ZorgAbError::Jwks(format!("jwks_uri {uri} is niet https")));
        }
        let resp = self.get_logged(&uri, id, log).await?;
        if !resp.status().is_success() {
            return Err(ZorgAbError::Unavailable(format!(
                "jwks_uri {uri}: HTTP {}",
                resp.status()
            )));
        }
        let jwks: Value = resp
            .json()
            .await
            .map_err(|_| ZorgAbError::Jwks(format!("jwks_uri {uri} levert geen JWKS")))?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err(ZorgAbError::Jwks(format!("jwks_uri {uri} levert geen JWKS")));
        }
        let key = crate::jws::find_key(&jwks, kid).cloned();
        self.jwks.lock().unwrap_or_else(|e| e.into_inner()).insert(
            client_id.to_owned(),
            JwksEntry {
                jwks,
                fetched: Instant::now(),
            },
        );
        key.ok_or_else(|| ZorgAbError::UnknownKid(kid.to_owned()))
    }
}
