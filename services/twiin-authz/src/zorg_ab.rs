//! Client registrations of external GtKs (SPEC.md §3.2 steps 3, 4, 6, 7; §3.1 audience): from
//! this service's configuration (`[[clients]]`, consulted first) or from ZORG-AB, and each
//! client's JWKS from its registered jwks_uri.
//!
//! Records and JWKS are cached for `zorg_ab.cache_ttl`; an unknown client id or authorization
//! server is remembered for `zorg_ab.negative_cache_ttl`, so requests with made-up issuers cost
//! at most one ZORG-AB query per name and interval. A JWKS is fetched again for an unknown
//! `kid` at most once per `jwks_refresh_min_interval`; a failed fetch is not repeated for a few
//! seconds. Concurrent requests that miss the cache share one fetch ([`SingleFlight`]).
//! Outside development only `https` jwks_uris are used.
//!
//! Errors shown to callers are generic ("ZORG-AB niet bereikbaar"); what went wrong in detail
//! goes into the exchange of the audit trail and the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::aorta_id::AortaId;
use crate::config::{Capability, ClientRegistration, ZorgAbSettings};
use crate::outbound::{self, Exchange, MAX_DOCUMENT_BYTES};
use crate::single_flight::SingleFlight;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct Application {
    pub(crate) client_id: String,
    pub(crate) ura: String,
    #[serde(default)]
    pub(crate) jwks_uri: Option<String>,
    /// The HTTPS URL of the authorization server that issues its assertions.
    #[serde(default)]
    pub(crate) authorization_server: Option<String>,
    #[serde(default)]
    pub(crate) capabilities: Vec<Capability>,
    #[serde(default)]
    pub(crate) receives_via_twiin: Vec<String>,
}

impl Application {
    /// Step 6: may this application initiate `interaction` on behalf of `ura`?
    pub(crate) fn may_initiate(&self, interaction: &str, ura: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.interaction == interaction && c.on_behalf_of.iter().any(|u| u == ura))
    }

    /// Step 7: does this (destination) application want `interaction` via Twiin?
    pub(crate) fn receives(&self, interaction: &str) -> bool {
        self.receives_via_twiin.iter().any(|i| i == interaction)
    }

    /// Is `iss` a name this client's assertions may be issued under: its client id (RFC 7523)
    /// or its registered authorization server (AORTA-TWIIN assertions)?
    pub(crate) fn issues_as(&self, iss: &str) -> bool {
        iss == self.client_id
            || self
                .authorization_server
                .as_deref()
                .is_some_and(|a| normalize(a) == normalize(iss))
    }
}

impl From<&ClientRegistration> for Application {
    fn from(c: &ClientRegistration) -> Self {
        Application {
            client_id: c.client_id.clone(),
            ura: c.ura.clone(),
            jwks_uri: Some(c.jwks_uri.clone()),
            authorization_server: c.authorization_server.clone(),
            capabilities: c.capabilities.clone(),
            receives_via_twiin: c.receives_via_twiin.clone(),
        }
    }
}

/// An authorization server URL without its trailing slash.
pub(crate) fn normalize(url: &str) -> &str {
    url.trim_end_matches('/')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZorgAbError {
    #[error("ZORG-AB niet bereikbaar")]
    Unavailable,
    #[error("ZORG-AB antwoordt niet op tijd")]
    Timeout,
    #[error("onbekende applicatie {0} in ZORG-AB")]
    UnknownApplication(String),
    #[error("{0} is geen in ZORG-AB geregistreerde autorisatieserver")]
    UnknownAuthorizationServer(String),
    /// The client's registration cannot be used (no jwks_uri, not https, not a JWKS).
    #[error("{0}")]
    Jwks(String),
    #[error("JWKS van de client niet bereikbaar")]
    JwksUnavailable,
    #[error("JWKS van de client niet op tijd ontvangen")]
    JwksTimeout,
    #[error("onbekende kid {0}")]
    UnknownKid(String),
}

/// A cached lookup: found, or known not to exist.
#[derive(Clone)]
enum Known {
    Found(Arc<Application>),
    Unknown,
}

struct Entry {
    at: Instant,
    value: Known,
}

/// A client's JWKS, or the failure of its last fetch.
struct JwksEntry {
    fetched: Instant,
    jwks: Option<Value>,
}

/// Cached entries kept at most (per map); past it expired ones are dropped, then unknown ones.
const MAX_ENTRIES: usize = 20_000;
/// How long a failed JWKS fetch is not repeated.
const JWKS_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

type Lookup = Result<Arc<Application>, ZorgAbError>;

pub(crate) struct ZorgAb {
    http: reqwest::Client,
    settings: ZorgAbSettings,
    development: bool,
    internal: Vec<Arc<Application>>,
    apps: Mutex<HashMap<String, Entry>>,
    servers: Mutex<HashMap<String, Entry>>,
    jwks: Mutex<HashMap<String, JwksEntry>>,
    app_flights: SingleFlight<Lookup>,
    jwks_flights: SingleFlight<Result<Value, ZorgAbError>>,
}

impl std::fmt::Debug for ZorgAb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZorgAb").field("url", &self.settings.url).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ZorgAb {
    pub(crate) fn new(
        http: reqwest::Client,
        settings: ZorgAbSettings,
        clients: &[ClientRegistration],
        development: bool,
    ) -> Self {
        ZorgAb {
            http,
            settings,
            development,
            internal: clients.iter().map(|c| Arc::new(Application::from(c))).collect(),
            apps: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            jwks: Mutex::new(HashMap::new()),
            app_flights: SingleFlight::default(),
            jwks_flights: SingleFlight::default(),
        }
    }

    pub(crate) fn settings(&self) -> &ZorgAbSettings {
        &self.settings
    }

    fn cached(&self, map: &Mutex<HashMap<String, Entry>>, key: &str) -> Option<Known> {
        let map = lock(map);
        let e = map.get(key)?;
        let ttl = match e.value {
            Known::Found(_) => self.settings.cache_ttl,
            Known::Unknown => self.settings.negative_cache_ttl,
        };
        (e.at.elapsed() < ttl).then(|| e.value.clone())
    }

    fn store(&self, map: &Mutex<HashMap<String, Entry>>, key: &str, value: Known) {
        let mut map = lock(map);
        if map.len() >= MAX_ENTRIES {
            let (ttl, negative) = (self.settings.cache_ttl, self.settings.negative_cache_ttl);
            map.retain(|_, e| match e.value {
                Known::Found(_) => e.at.elapsed() < ttl,
                Known::Unknown => e.at.elapsed() < negative,
            });
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, e| matches!(e.value, Known::Found(_)));
            }
        }
        map.insert(
            key.to_owned(),
            Entry {
                at: Instant::now(),
                value,
            },
        );
    }

    /// An application by client id: configured, cached, or from ZORG-AB. Calls go into `log`.
    pub(crate) async fn application(&self, client_id: &str, id: &AortaId, log: &mut Vec<Exchange>) -> Lookup {
        if let Some(a) = self.internal.iter().find(|a| a.client_id == client_id) {
            return Ok(a.clone());
        }
        self.lookup(&self.apps, "client_id", client_id, id, log, || {
            ZorgAbError::UnknownApplication(client_id.to_owned())
        })
        .await
    }

    /// The application whose authorization server is `url` (3.1: the audience must be one).
    pub(crate) async fn authorization_server(
        &self,
        url: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Lookup {
        let url = normalize(url);
        if let Some(a) = self
            .internal
            .iter()
            .find(|a| a.authorization_server.as_deref().map(normalize) == Some(url))
        {
            return Ok(a.clone());
        }
        self.lookup(&self.servers, "authorization_server", url, id, log, || {
            ZorgAbError::UnknownAuthorizationServer(url.to_owned())
        })
        .await
    }

    async fn lookup(
        &self,
        map: &Mutex<HashMap<String, Entry>>,
        param: &'static str,
        value: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
        unknown: impl Fn() -> ZorgAbError,
    ) -> Lookup {
        let answer = |k: Known| match k {
            Known::Found(a) => Ok(a),
            Known::Unknown => Err(unknown()),
        };
        if let Some(k) = self.cached(map, value) {
            return answer(k);
        }
        self.app_flights
            .run(&format!("{param}={value}"), || async {
                // A flight that ended just before this one started may have filled the cache.
                if let Some(k) = self.cached(map, value) {
                    return answer(k);
                }
                let result = self.fetch_application(param, value, id, log).await;
                match &result {
                    Ok(Some(app)) => self.store(map, value, Known::Found(app.clone())),
                    Ok(None) => self.store(map, value, Known::Unknown),
                    Err(_) => {}
                }
                match result {
                    Ok(Some(app)) => Ok(app),
                    Ok(None) => Err(unknown()),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// One ZORG-AB query; `None` when it knows no such application.
    async fn fetch_application(
        &self,
        param: &str,
        value: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<Option<Arc<Application>>, ZorgAbError> {
        let base = self.settings.url.trim_end_matches('/');
        let mut u = url::Url::parse(&format!("{base}/applications")).map_err(|e| {
            tracing::error!(error = %e, "zorg_ab.url is not a URL");
            ZorgAbError::Unavailable
        })?;
        u.query_pairs_mut().append_pair(param, value);
        let url = u.to_string();
        // In the trail before it is sent: a request abandoned while waiting is still recorded.
        log.push(Exchange::start("GET", &url, id.outgoing()));
        let ex = log.last_mut().ok_or(ZorgAbError::Unavailable)?;
        let fail = |ex: &mut Exchange, kind: &str, detail: String| {
            tracing::warn!(url = %ex.url, error = %detail, "ZORG-AB query failed");
            ex.failed(kind, detail);
            if kind == "timeout" {
                ZorgAbError::Timeout
            } else {
                ZorgAbError::Unavailable
            }
        };
        let resp = match self
            .http
            .get(&url)
            .header(crate::aorta_id::HEADER, ex.aorta_id.header_value())
            .header("accept", "application/json")
            .timeout(self.settings.timeout)
            .headers(service_kit::telemetry::current_trace_headers())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(fail(ex, outbound::failure_kind(&e), e.to_string())),
        };
        let status = resp.status().as_u16();
        ex.status = Some(status);
        let body = match outbound::read_capped(resp, MAX_DOCUMENT_BYTES).await {
            Ok(b) => b,
            Err(outbound::ReadError::Timeout) => {
                return Err(fail(ex, "timeout", "antwoord niet op tijd".into()));
            }
            Err(e) => return Err(fail(ex, "unreadable", e.to_string())),
        };
        match status {
            200 => {}
            404 => {
                ex.done();
                ex.error = Some("not_found".into());
                return Ok(None);
            }
            s => return Err(fail(ex, "unexpected_status", format!("HTTP {s}"))),
        }
        let app: Application = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return Err(fail(ex, "unreadable", format!("geen applicatie: {e}"))),
        };
        ex.done();
        Ok(Some(Arc::new(app)))
    }

    /// What the cache says about `kid` of `client_id`: `Some` answers without a fetch.
    fn cached_key(&self, client_id: &str, kid: &str) -> Option<Result<Value, ZorgAbError>> {
        let map = lock(&self.jwks);
        let e = map.get(client_id)?;
        let age = e.fetched.elapsed();
        match &e.jwks {
            Some(jwks) => match crate::jws::find_key(jwks, kid) {
                Some(k) if age < self.settings.cache_ttl => Some(Ok(k.clone())),
                // Unknown kid but fetched recently: no new fetch (rate limit).
                None if age < self.settings.jwks_refresh_min_interval => {
                    Some(Err(ZorgAbError::UnknownKid(kid.to_owned())))
                }
                _ => None,
            },
            None if age < JWKS_FAILURE_BACKOFF.min(self.settings.jwks_refresh_min_interval) => {
                Some(Err(ZorgAbError::JwksUnavailable))
            }
            None => None,
        }
    }

    /// The JWK `kid` of `app`.
    pub(crate) async fn key(
        &self,
        app: &Application,
        kid: &str,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<Value, ZorgAbError> {
        if let Some(answer) = self.cached_key(&app.client_id, kid) {
            return answer;
        }
        let jwks = self
            .jwks_flights
            .run(&app.client_id, || async {
                // A fetch that ended while this request waited counts as this one's fetch.
                let recent = {
                    let map = lock(&self.jwks);
                    map.get(&app.client_id).and_then(|e| match &e.jwks {
                        Some(j) if e.fetched.elapsed() < self.settings.jwks_refresh_min_interval => {
                            Some(Ok(j.clone()))
                        }
                        None if e.fetched.elapsed() < JWKS_FAILURE_BACKOFF => {
                            Some(Err(ZorgAbError::JwksUnavailable))
                        }
                        _ => None,
                    })
                };
                if let Some(r) = recent {
                    return r;
                }
                let result = self.fetch_jwks(app, id, log).await;
                let entry = JwksEntry {
                    fetched: Instant::now(),
                    jwks: result.as_ref().ok().cloned(),
                };
                let remember = !matches!(result, Err(ZorgAbError::Jwks(_)));
                if remember {
                    let mut map = lock(&self.jwks);
                    if map.len() >= MAX_ENTRIES {
                        map.clear();
                    }
                    map.insert(app.client_id.clone(), entry);
                }
                result
            })
            .await?;
        crate::jws::find_key(&jwks, kid)
            .cloned()
            .ok_or_else(|| ZorgAbError::UnknownKid(kid.to_owned()))
    }

    async fn fetch_jwks(
        &self,
        app: &Application,
        id: &AortaId,
        log: &mut Vec<Exchange>,
    ) -> Result<Value, ZorgAbError> {
        let uri = app.jwks_uri.clone().ok_or_else(|| {
            ZorgAbError::Jwks(format!("geen jwks_uri geregistreerd voor {}", app.client_id))
        })?;
        let parsed =
            url::Url::parse(&uri).map_err(|_| ZorgAbError::Jwks(format!("jwks_uri {uri} is geen URL")))?;
        let scheme_ok = parsed.scheme() == "https" || (self.development && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(ZorgAbError::Jwks(format!("jwks_uri {uri} is niet https")));
        }
        log.push(Exchange::start("GET", &uri, id.outgoing()));
        let ex = log.last_mut().ok_or(ZorgAbError::JwksUnavailable)?;
        let fail = |ex: &mut Exchange, kind: &str, detail: String| {
            tracing::warn!(url = %ex.url, error = %detail, "JWKS fetch failed");
            ex.failed(kind, detail);
            if kind == "timeout" {
                ZorgAbError::JwksTimeout
            } else {
                ZorgAbError::JwksUnavailable
            }
        };
        let resp = match self
            .http
            .get(&uri)
            .header(crate::aorta_id::HEADER, ex.aorta_id.header_value())
            .header("accept", "application/json")
            .timeout(self.settings.timeout)
            .headers(service_kit::telemetry::current_trace_headers())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(fail(ex, outbound::failure_kind(&e), e.to_string())),
        };
        let status = resp.status().as_u16();
        ex.status = Some(status);
        let body = match outbound::read_capped(resp, MAX_DOCUMENT_BYTES).await {
            Ok(b) => b,
            Err(outbound::ReadError::Timeout) => {
                return Err(fail(ex, "timeout", "antwoord niet op tijd".into()));
            }
            Err(e) => return Err(fail(ex, "unreadable", e.to_string())),
        };
        if status != 200 {
            return Err(fail(ex, "unexpected_status", format!("HTTP {status}")));
        }
        let jwks: Option<Value> = serde_json::from_slice(&body)
            .ok()
            .filter(|j: &Value| j.get("keys").is_some_and(Value::is_array));
        ex.done();
        match jwks {
            Some(j) => Ok(j),
            None => {
                ex.error = Some("not_a_jwks".into());
                Err(ZorgAbError::Jwks(format!("jwks_uri {uri} levert geen JWKS")))
            }
        }
    }
}
