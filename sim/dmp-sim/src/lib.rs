//! The DMP simulator's SOAP side (SPEC.md §2 "DMP simulator"): given the client certificate the
//! TLS listener authenticated and an HTTP request, it answers as the DMP does.
//!
//! It checks WS-Addressing and the VIHF (attributes present, direct mode with the card's
//! professional as NameID, who must be an author or legal authenticator of what is submitted,
//! resource-id = the patient of the request), parses MTOM, validates XDS metadata the way a
//! registry does (answering RegistryErrors with the XDS error codes), stores documents in
//! memory and answers TD3.1/TD3.2/TD0.2/TD3.3 from what it stored. See `sim/README-dmp.md`.
//!
//! It is transport-free: the TLS listener calls [`DmpSimulator::handle`] (or mounts
//! [`SimService`], a `tower::Service`) with the DER certificate of the authenticated client.

mod habilitations;
mod registry;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use dmp_protocol::mtom::{self, Multipart};
use dmp_protocol::soap::{self, Envelope};
use dmp_protocol::transactions::action;
use dmp_protocol::vihf::{self, ParsedVihf, ProfessionalIdentity};
use dmp_protocol::xds::{Ins, InsAuthority};
use ehealth_proto::dmp::v1::Authorization;
use http::{Method, Request, Response, StatusCode, header};

use habilitations::Grants;
pub use registry::Registry;

/// The endpoints (the path of each DMP web service).
pub mod paths {
    pub use dmp_protocol::transactions::default_paths::*;
}

/// A patient the simulated DMP knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPatient {
    /// The patient's INS (the DMP's key).
    pub ins: Ins,
    /// The authorization of every professional on this DMP (VALIDE lets XDS transactions in).
    pub authorization: Authorization,
    /// A closed DMP refuses every transaction but TD0.2.
    pub closed: bool,
    /// Identity traits TD0.2 answers.
    pub given: String,
    /// Family name.
    pub family: String,
    /// M, F or U.
    pub gender: String,
    /// YYYYMMDD.
    pub birth_date: String,
}

impl SimPatient {
    /// A patient with the official examples' traits (LAURENCE patb-quatre, born 1907-05-25).
    pub fn new(ins: Ins, authorization: Authorization, closed: bool) -> SimPatient {
        SimPatient {
            ins,
            authorization,
            closed,
            given: "LAURENCE".into(),
            family: "patb-quatre".into(),
            gender: "M".into(),
            birth_date: "19070525".into(),
        }
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The repository OID documents are stored under (TD3.2 asks for it).
    pub repository_unique_id: String,
    /// Largest accepted HTTP body.
    pub max_body_bytes: usize,
    /// The patients that have a DMP.
    pub patients: Vec<SimPatient>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let ins = |v: &str| Ins::new("sim", v, InsAuthority::TEST_NIR_OID);
        let patients = [("207058575627097", Authorization::Valide, false)]
            .into_iter()
            .filter_map(|(v, authorization, closed)| {
                ins(v).ok().map(|ins| SimPatient::new(ins, authorization, closed))
            })
            .collect();
        SimConfig {
            repository_unique_id: "1.2.250.1.213.4.1.1.1.2".into(),
            max_body_bytes: 64 * 1024 * 1024,
            patients,
        }
    }
}

/// The simulated DMP: registry, repository and patient service, in memory.
pub struct DmpSimulator {
    config: SimConfig,
    registry: Mutex<Registry>,
    requests: std::sync::atomic::AtomicU64,
    grants: Mutex<Grants>,
}

/// A SOAP fault to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub code: &'static str,
    pub subcode: &'static str,
    pub reason: String,
}

pub(crate) fn sender(subcode: &'static str, reason: impl Into<String>) -> Fault {
    Fault {
        code: "Sender",
        subcode,
        reason: reason.into(),
    }
}

/// What a handler gets: the parsed request.
pub(crate) struct Call<'a> {
    pub envelope: &'a Envelope,
    pub multipart: Option<&'a Multipart>,
    pub vihf: &'a ParsedVihf,
    /// The professional of the client certificate (the VIHF's NameID).
    pub card: &'a ProfessionalIdentity,
    /// The patient the VIHF names (resource-id).
    pub vihf_patient: &'a Ins,
}

/// A handler's answer: SOAP action and body, and MTOM attachments.
pub(crate) struct Answer {
    pub action: &'static str,
    pub body: String,
    pub attachments: Vec<mtom::Attachment>,
}

impl DmpSimulator {
    /// A simulator with an empty registry over `config`.
    pub fn new(config: SimConfig) -> Self {
        DmpSimulator {
            config,
            registry: Mutex::new(Registry::default()),
            requests: std::sync::atomic::AtomicU64::new(0),
            grants: Mutex::new(Grants::default()),
        }
    }

    /// What it was started with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Number of documents stored (tests, logs).
    pub fn document_count(&self) -> usize {
        self.registry.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// HTTP requests received so far, whatever they were (tests: "nothing reached the DMP").
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers one HTTP request. `client_cert` is the DER certificate the TLS layer
    /// authenticated (chaining to the test IGC-Santé CA).
    pub fn handle(&self, client_cert: Option<&[u8]>, request: Request<Bytes>) -> Response<Bytes> {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if request.method() != Method::POST {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the DMP services accept POST only",
            );
        }
        let path = request.uri().path().to_string();
        let allowed: &[&str] = match path.as_str() {
            paths::REPOSITORY => &[action::ITI41, action::ITI43],
            paths::REGISTRY => &[action::ITI18, action::ITI57],
            paths::PATIENTS => &[action::TD02, action::TD04],
            paths::HABILITATIONS => &[action::TD03, action::TD16],
            _ => return plain(StatusCode::NOT_FOUND, "no DMP service at this path"),
        };
        if request.body().len() > self.config.max_body_bytes {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request is larger than the DMP accepts",
            );
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (mime, _) = mtom::parse_content_type(&content_type);
        let body = request.into_body();
        let (xml, multipart) = match mime.as_str() {
            "multipart/related" => match mtom::parse(&content_type, &body) {
                Ok(mp) => {
                    let root_type = mp.root.content_type.clone().unwrap_or_default();
                    let (root_mime, params) = mtom::parse_content_type(&root_type);
                    // The root part is XOP-packaged SOAP: application/xop+xml with
                    // type="application/soap+xml" (also when the envelope inside uses the SOAP
                    // 1.1 namespace, as the official TD2.1 example does).
                    if root_mime != "application/xop+xml" {
                        return fault_response(
                            None,
                            &sender(
                                "InvalidMtom",
                                format!("the MTOM root part is `{root_mime}`, not application/xop+xml"),
                            ),
                        );
                    }
                    if params
                        .get("type")
                        .is_some_and(|t| t != "application/soap+xml" && t != "text/xml")
                    {
                        return fault_response(
                            None,
                            &sender("InvalidMtom", "the MTOM root part is not a SOAP message"),
                        );
                    }
                    (mp.root.body.clone(), Some(mp))
                }
                Err(e) => return fault_response(None, &sender("InvalidMtom", format!("MTOM: {e}"))),
            },
            "application/soap+xml" | "text/xml" => (body, None),
            other => {
                return plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Content-Type `{other}`: SOAP (application/soap+xml) or MTOM expected"),
                );
            }
        };
        let envelope = match soap::parse_envelope(&xml) {
            Ok(e) => e,
            Err(e) => return fault_response(None, &sender("InvalidSoap", e.to_string())),
        };
        let relates = envelope.message_id().map(str::to_string);
        match self.dispatch(client_cert, &envelope, multipart.as_ref(), allowed) {
            Ok(answer) => {
                let env = soap::response_envelope(answer.action, relates.as_deref(), &answer.body);
                let body = if answer.attachments.is_empty() && answer.action != action::ITI43_RESPONSE {
                    mtom::HttpBody::soap(env, answer.action)
                } else {
                    mtom::write(env, answer.action, answer.attachments)
                };
                let mut resp = Response::new(body.to_bytes());
                set_content_type(&mut resp, &body.content_type);
                resp
            }
            Err(f) => fault_response(relates.as_deref(), &f),
        }
    }

    fn dispatch(
        &self,
        client_cert: Option<&[u8]>,
        envelope: &Envelope,
        multipart: Option<&Multipart>,
        allowed: &[&str],
    ) -> Result<Answer, Fault> {
        // WS-Addressing.
        let action = envelope.action().filter(|a| !a.is_empty()).ok_or_else(|| {
            sender(
                "wsa:MessageAddressingHeaderRequired",
                "the WS-Addressing Action header is missing",
            )
        })?;
        if envelope.message_id().is_none_or(str::is_empty) {
            return Err(sender(
                "wsa:MessageAddressingHeaderRequired",
                "the WS-Addressing MessageID header is missing",
            ));
        }
        if envelope.to().is_none() {
            return Err(sender(
                "wsa:MessageAddressingHeaderRequired",
                "the WS-Addressing To header is missing",
            ));
        }
        if let Some(r) = envelope.reply_to_address()
            && r != soap::ANONYMOUS
        {
            return Err(sender(
                "wsa:InvalidAddressingHeader",
                format!("ReplyTo `{r}`: the DMP answers on the same connection only (anonymous)"),
            ));
        }
        if !allowed.contains(&action) {
            return Err(sender(
                "wsa:ActionNotSupported",
                format!("the action `{action}` is not served at this endpoint"),
            ));
        }

        // The card's professional.
        let cert = client_cert.ok_or_else(|| {
            sender(
                "DMPAuthenticationFailed",
                "no client certificate on the connection",
            )
        })?;
        let card = ProfessionalIdentity::from_certificate(cert)
            .map_err(|e| sender("DMPAuthenticationFailed", format!("client certificate: {e}")))?;

        // VIHF.
        let assertion = envelope.security_assertion().ok_or_else(|| {
            sender(
                "DMPVIHFAbsent",
                "the wsse:Security header carries no VIHF (saml2:Assertion)",
            )
        })?;
        let v = vihf::parse(assertion).map_err(|e| sender("DMPVIHFInvalide", e.to_string()))?;
        let patient = check_vihf(&v, &card)?;

        let call = Call {
            envelope,
            multipart,
            vihf: &v,
            card: &card,
            vihf_patient: &patient,
        };
        let mut grants = self.grants.lock().map_err(|_| poisoned())?;
        use dmp_protocol::transactions::action as a;
        if action == a::TD02 {
            return registry::test_patient(&self.config, &grants, &call);
        }
        if action == a::TD04 {
            let registry = self.registry.lock().map_err(|_| poisoned())?;
            return grants.patient_list(&self.config.patients, &|p| registry.last_added(p), &call);
        }
        // The other transactions need an open DMP; all but TD0.3 need the professional
        // authorized on it.
        let record = self
            .config
            .patients
            .iter()
            .find(|p| p.ins == patient)
            .ok_or_else(|| sender("DMPPatientNotFound", format!("no DMP for the patient {patient}")))?;
        if record.closed {
            return Err(sender("DMPClosed", format!("the DMP of {patient} is closed")));
        }
        if action == a::TD03 {
            return grants.set(record, &call);
        }
        let (authorization, _) = grants.of(record, &card.id);
        if authorization != Authorization::Valide {
            return Err(sender(
                "DMPAccessDenied",
                format!(
                    "the professional {} is not authorized on this DMP ({}): declare the authorization first (TD0.3)",
                    v.name_id,
                    authorization.as_str_name()
                ),
            ));
        }
        if action == a::TD16 {
            return grants.list(record, &call);
        }
        drop(grants);
        let mut registry = self.registry.lock().map_err(|_| poisoned())?;
        match action {
            x if x == a::ITI41 => registry.provide_and_register(&self.config, &call),
            x if x == a::ITI18 => registry.stored_query(&call),
            x if x == a::ITI43 => registry.retrieve(&self.config, &call),
            _ => registry.update_status(&call),
        }
    }
}

fn poisoned() -> Fault {
    Fault {
        code: "Receiver",
        subcode: "DMPInternal",
        reason: "simulator state poisoned".into(),
    }
}

fn check_vihf(v: &ParsedVihf, card: &ProfessionalIdentity) -> Result<Ins, Fault> {
    for name in vihf::attr::REQUIRED {
        if v.attributes
            .get(name)
            .is_none_or(|vals| vals.iter().all(String::is_empty))
        {
            return Err(sender(
                "DMPVIHFInvalide",
                format!("the VIHF lacks the attribute {name}"),
            ));
        }
    }
    let mode = v.first(vihf::attr::MODE).unwrap_or_default();
    if mode != "DIRECTE" {
        return Err(sender(
            "DMPVIHFInvalide",
            format!(
                "Authentification_mode `{mode}`: this DMP accepts direct mode (DIRECTE) only, an indirect VIHF must be signed"
            ),
        ));
    }
    if v.authn_context != vihf::SMARTCARD_PKI {
        return Err(sender(
            "DMPVIHFInvalide",
            format!(
                "AuthnContextClassRef `{}`: direct mode requires SmartcardPKI",
                v.authn_context
            ),
        ));
    }
    if v.first(vihf::attr::RESOURCE_URN) != Some("urn:dmp") {
        return Err(sender("DMPVIHFInvalide", "Ressource_URN must be urn:dmp"));
    }
    if v.first(vihf::attr::VERSION) != Some(vihf::VIHF_VERSION) {
        return Err(sender(
            "DMPVIHFInvalide",
            format!("VIHF_Version must be {}", vihf::VIHF_VERSION),
        ));
    }
    if v.name_id != card.id {
        return Err(sender(
            "DMPVIHFInvalide",
            format!(
                "the VIHF NameID `{}` is not the professional of the card (`{}`)",
                v.name_id, card.id
            ),
        ));
    }
    // The card's IGC-Santé profession and specialty are the only ones a direct-mode VIHF may
    // state (issue 16). The Issuer is not compared: the official TD2.1 example's Issuer names
    // another card (CN=899900038839) than its NameID (899900063480), and the DMP accepts it.
    if card.roles_from_card {
        let roles = v.attributes.get(vihf::attr::ROLE).cloned().unwrap_or_default();
        let expected: Vec<String> = card
            .profession
            .iter()
            .chain(card.specialty.iter())
            .cloned()
            .collect();
        if roles != expected {
            return Err(sender(
                "DMPVIHFInvalide",
                format!(
                    "the VIHF roles {roles:?} are not the card's (profession and specialty {expected:?} in its certificate)"
                ),
            ));
        }
    }
    let rid = v.first(vihf::attr::RESOURCE_ID).unwrap_or_default();
    Ins::parse_cx("resource-id", rid)
        .map_err(|e| sender("DMPVIHFInvalide", format!("resource-id: {}", e.reason)))
}

fn set_content_type(resp: &mut Response<Bytes>, ct: &str) {
    if let Ok(v) = header::HeaderValue::from_str(ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(text.to_string()));
    *resp.status_mut() = status;
    set_content_type(&mut resp, "text/plain; charset=UTF-8");
    resp
}

fn fault_response(relates_to: Option<&str>, f: &Fault) -> Response<Bytes> {
    let env = soap::fault_envelope(f.code, Some(f.subcode), &f.reason, relates_to);
    let mut resp = Response::new(Bytes::from(env));
    // SOAP 1.2 HTTP binding: Sender faults are 400, Receiver faults 500.
    *resp.status_mut() = if f.code == "Sender" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    set_content_type(&mut resp, "application/soap+xml; charset=UTF-8");
    resp
}

/// The simulator as a `tower::Service` for one connection (the TLS layer knows the client
/// certificate per connection).
#[derive(Clone)]
pub struct SimService {
    /// The simulator all connections share.
    pub sim: Arc<DmpSimulator>,
    /// This connection's client certificate (DER), as the TLS layer verified it.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

impl tower::Service<Request<Bytes>> for SimService {
    type Response = Response<Bytes>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<Bytes>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(self
            .sim
            .handle(self.client_cert.as_deref().map(Vec::as_slice), req)))
    }
}

/// The simulator as an axum application for `service_kit::https::serve` (the DMP's TLS 1.2
/// listener), which passes each request the client's verified certificate chain.
pub fn router(sim: Arc<DmpSimulator>) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let sim = sim.clone();
        async move {
            let (parts, body) = req.into_parts();
            let cert = parts
                .extensions
                .get::<service_kit::https::PeerCertificates>()
                .and_then(|c| c.0.first())
                .map(|c| c.to_vec());
            let bytes = match axum::body::to_bytes(body, sim.config.max_body_bytes).await {
                Ok(b) => b,
                Err(_) => {
                    return plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request is larger than the DMP accepts",
                    )
                    .map(axum::body::Body::from);
                }
            };
            sim.handle(cert.as_deref(), Request::from_parts(parts, bytes))
                .map(axum::body::Body::from)
        }
    })
}

/// Strips the quotes of a stored-query value (`'x'`) and splits a list (`('a','b')`).
pub(crate) fn query_values(raw: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in raw {
        let v = v.trim();
        let inner = v.strip_prefix('(').and_then(|v| v.strip_suffix(')')).unwrap_or(v);
        for item in inner.split(',') {
            let item = item.trim();
            let item = item
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .unwrap_or(item);
            if !item.is_empty() {
                out.push(item.replace("''", "'"));
            }
        }
    }
    out
}

pub(crate) type SlotMap = HashMap<String, Vec<String>>;
