//! The audit trail of one request (SPEC.md §4, the seed's post-conditions): the received
//! request, every request sent and response received while handling it, and the returned
//! response — also when the request is refused before a use case starts (wrong Content-Type,
//! a repeated parameter, an oversized body, a malformed AORTA-ID, a caller that is not the
//! Resource Broker) and when handling is abandoned (time-out, caller gone).
//!
//! Each event carries its own time (when it happened), the trace id, the AORTA-ID (the
//! `initialRequestID` of the chain and the event's own `requestID`), the peer, and the subject
//! attributes learnt during the run (client id, URA, user, role, BSN, the requested scope and
//! every `jti` involved) — never a token. The services README maps each post-condition to the
//! column or `attributes` key that holds it.
//!
//! **Decision** — the events of one request are written together, before the response leaves
//! (one write per request keeps the audit log off the critical path, see the benchmark); if the
//! write fails the caller gets UNAVAILABLE and nothing issued leaves the service unlogged. A
//! trail dropped before it was finished (the handler was cancelled) writes itself from its drop
//! guard, with the time-out or cancellation as its returned response.

use std::time::{Duration, Instant, SystemTime};

use audit_log::{AuditEvent, AuditLog, Direction};
use serde_json::{Map, Value, json};
use service_kit::error::ServiceError;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::outbound::Exchange;

pub(crate) const SERVICE: &str = "twiin-authz";
pub(crate) const UC_ASSERTIONS: &str = "uitgeven_twiin_assertions";
pub(crate) const UC_TOKEN: &str = "uitgeven_aorta_access_token";
/// The background fetch of the AORTA Stelseltoken (the precondition of both use cases).
pub(crate) const UC_STELSEL: &str = "ophalen_stelseltoken";

/// Attributes learnt during the run, copied into every event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    pub(crate) client_id: Option<String>,
    pub(crate) ura: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) user_role: Option<String>,
    pub(crate) bsn: Option<String>,
    /// The scope as the caller asked for it (3.2: SMART on FHIR; 3.1: the AORTA access
    /// token's scope). The granted scope is `attributes.granted_scope` of the returned response.
    pub(crate) scope: Option<String>,
    pub(crate) jtis: Vec<String>,
}

/// The trace id of the events: the current OpenTelemetry trace, else the caller's W3C
/// `traceparent`, else a new one, so the events of one request are always found together.
pub(crate) fn trace_id(traceparent: Option<&str>) -> String {
    if let Some(id) = service_kit::telemetry::current_trace_id() {
        return id;
    }
    let from_caller = traceparent.and_then(|tp| {
        let mut parts = tp.trim().split('-');
        let (_, id) = (parts.next()?, parts.next()?);
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
            .then(|| id.to_ascii_lowercase())
    });
    from_caller.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// How a request ended, for its returned-response event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The HTTP status answered (gRPC answers record the HTTP status of the same outcome and
    /// their code in `attributes.grpc_code`).
    pub(crate) status: u16,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    /// The gRPC code of the same outcome (recorded for gRPC calls).
    pub(crate) grpc_code: &'static str,
}

impl Outcome {
    pub(crate) fn ok() -> Outcome {
        Outcome {
            status: 200,
            error: None,
            error_description: None,
            grpc_code: "OK",
        }
    }

    pub(crate) fn of<T>(result: &Result<T, AuthzError>) -> Outcome {
        match result {
            Ok(_) => Outcome::ok(),
            Err(e) => Outcome {
                status: e.http_status().as_u16(),
                error: Some(e.oauth_error().to_owned()),
                error_description: Some(e.description()),
                grpc_code: service_kit::metrics::code_name(e.error_code().grpc_code() as i32),
            },
        }
    }
}

pub(crate) struct Trail {
    audit: AuditLog,
    use_case: &'static str,
    id: AortaId,
    peer: Option<String>,
    transport: &'static str,
    trace_id: String,
    pub(crate) subject: Subject,
    received_at: SystemTime,
    received: Map<String, Value>,
    returned: Map<String, Value>,
    exchanges: Vec<Exchange>,
    started: Instant,
    /// The longest the request may take; a trail dropped after it was a time-out.
    deadline: Option<Duration>,
    finished: bool,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("use_case", &self.use_case)
            .field("id", &self.id)
            .finish()
    }
}

impl Trail {
    /// A request received now.
    pub(crate) fn new(
        audit: AuditLog,
        use_case: &'static str,
        id: AortaId,
        peer: Option<String>,
        transport: &'static str,
        trace_id: String,
    ) -> Trail {
        let mut received = Map::new();
        received.insert("transport".into(), json!(transport));
        Trail {
            audit,
            use_case,
            id,
            peer,
            transport,
            trace_id,
            subject: Subject::default(),
            received_at: SystemTime::now(),
            received,
            returned: Map::new(),
            exchanges: Vec::new(),
            started: Instant::now(),
            deadline: None,
            finished: false,
        }
    }

    pub(crate) fn with_deadline(mut self, deadline: Duration) -> Trail {
        self.deadline = Some(deadline);
        self
    }

    pub(crate) fn aorta_id(&self) -> AortaId {
        self.id.clone()
    }

    /// The AORTA-ID the request is handled under (a malformed one is replaced by a new one,
    /// the received text kept in `attributes.aorta_id_received`).
    pub(crate) fn set_aorta_id(&mut self, id: AortaId) {
        self.id = id;
    }

    /// An attribute of the received request.
    pub(crate) fn note(&mut self, key: &str, value: impl Into<Value>) {
        self.received.insert(key.to_owned(), value.into());
    }

    /// An attribute of the returned response.
    pub(crate) fn note_returned(&mut self, key: &str, value: impl Into<Value>) {
        self.returned.insert(key.to_owned(), value.into());
    }

    pub(crate) fn exchanges(&mut self) -> &mut Vec<Exchange> {
        &mut self.exchanges
    }

    fn event(
        &self,
        direction: Direction,
        time: SystemTime,
        request_id: &uuid::Uuid,
        peer: Option<String>,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(SERVICE, self.use_case, direction);
        e.time = time;
        e.trace_id = Some(self.trace_id.clone());
        e.initial_request_id = Some(self.id.initial_request_id.to_string());
        e.request_id = Some(request_id.to_string());
        e.peer = peer;
        let s = &self.subject;
        e.client_id = s.client_id.clone();
        e.ura = s.ura.clone();
        e.user_id = s.user_id.clone();
        e.user_role = s.user_role.clone();
        e.patient_bsn = s.bsn.clone();
        e.scope = s.scope.clone();
        e.token_jtis = s.jtis.clone();
        e
    }

    /// Every event of the trail, the returned response ending as `outcome`.
    fn events(&mut self, outcome: &Outcome) -> Vec<AuditEvent> {
        let mut events = Vec::with_capacity(2 + 2 * self.exchanges.len());
        let mut received = self.event(
            Direction::ReceivedRequest,
            self.received_at,
            &self.id.request_id,
            self.peer.clone(),
        );
        received.attributes = Value::Object(std::mem::take(&mut self.received));
        events.push(received);
        for ex in &self.exchanges {
            events.extend(exchange_events(ex, |d, t, id, peer| self.event(d, t, id, peer)));
        }
        let mut returned = self.event(
            Direction::ReturnedResponse,
            SystemTime::now(),
            &self.id.request_id,
            self.peer.clone(),
        );
        returned.status = Some(outcome.status.to_string());
        returned.error_code = outcome.error.clone();
        let mut attrs = std::mem::take(&mut self.returned);
        if let Some(d) = &outcome.error_description {
            attrs.insert("error_description".into(), json!(d));
        }
        if self.transport == "grpc" {
            attrs
                .entry("grpc_code")
                .or_insert_with(|| json!(outcome.grpc_code));
        }
        attrs.insert("latency_ms".into(), json!(millis(self.started.elapsed())));
        returned.attributes = Value::Object(attrs);
        events.push(returned);
        events
    }

    /// Writes the whole trail with `outcome`; fails closed (UNAVAILABLE, nothing issued).
    pub(crate) async fn finish(mut self, outcome: &Outcome) -> Result<(), AuthzError> {
        self.finished = true;
        let events = self.events(outcome);
        self.audit.record_all(events).await.map_err(|e| {
            // While the store is down the breaker refuses every write at once: it said so once
            // (WARN, `audit_breaker_open`), so each refused request is no ERROR line of its own.
            if matches!(e, audit_log::AuditError::StoreDown { .. }) {
                tracing::debug!(error = %e, "audit store down; answering UNAVAILABLE");
            } else {
                tracing::error!(error = %e, "audit log write failed; answering UNAVAILABLE");
            }
            AuthzError::from(e)
        })
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The handler was cancelled: by the deadline, or because the caller went away.
        let elapsed = self.started.elapsed();
        let timed_out = self
            .deadline
            .is_some_and(|d| elapsed + Duration::from_millis(20) >= d);
        let outcome = if timed_out {
            Outcome {
                status: 504,
                error: Some("temporarily_unavailable".into()),
                error_description: Some(
                    "time-out: de verwerking duurde te lang; er is niets uitgegeven".into(),
                ),
                grpc_code: "DEADLINE_EXCEEDED",
            }
        } else {
            Outcome {
                status: 499,
                error: Some("cancelled".into()),
                error_description: Some(
                    "de aanroeper verbrak de verbinding voor het antwoord; er is niets uitgegeven".into(),
                ),
                grpc_code: "CANCELLED",
            }
        };
        let events = self.events(&outcome);
        let audit = self.audit.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = audit.record_all(events).await {
                        tracing::error!(error = %e, "audit log: the trail of an abandoned request was not written");
                    }
                });
            }
            Err(_) => tracing::error!("audit log: no runtime to write the trail of an abandoned request"),
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The sent-request and received-response events of one outgoing call.
fn exchange_events(
    ex: &Exchange,
    event: impl Fn(Direction, SystemTime, &uuid::Uuid, Option<String>) -> AuditEvent,
) -> [AuditEvent; 2] {
    let mut sent = event(
        Direction::SentRequest,
        ex.sent_at,
        &ex.aorta_id.request_id,
        Some(ex.url.clone()),
    );
    let mut attrs = Map::new();
    attrs.insert("method".into(), json!(ex.method));
    attrs.insert("url".into(), json!(ex.url));
    if let Some(s) = &ex.aorta_scope {
        attrs.insert("aorta_scope".into(), json!(s));
    }
    if let Some(j) = &ex.subject_token_jti {
        attrs.insert("subject_token_jti".into(), json!(j));
    }
    sent.attributes = Value::Object(attrs);
    let answered_at = ex.sent_at + ex.latency.unwrap_or_default();
    let mut got = event(
        Direction::ReceivedResponse,
        answered_at,
        &ex.aorta_id.request_id,
        Some(ex.url.clone()),
    );
    got.status = ex.status.map(|s| s.to_string());
    got.error_code = ex.error.clone();
    let mut attrs = Map::new();
    if let Some(d) = &ex.error_description {
        attrs.insert("error_description".into(), json!(d));
    }
    if ex.latency.is_none() && ex.error.is_none() {
        // Sent, but handling was abandoned before the answer came.
        got.error_code = Some("no_answer".into());
        attrs.insert(
            "error_description".into(),
            json!("geen antwoord ontvangen voordat de verwerking werd afgebroken"),
        );
    }
    if let Some(l) = ex.latency {
        attrs.insert("latency_ms".into(), json!(millis(l)));
    }
    if let Some(e) = ex.expires_in {
        attrs.insert("expires_in".into(), json!(e));
    }
    if let Some(s) = &ex.granted_scope {
        attrs.insert("granted_scope".into(), json!(s));
    }
    if let Some(j) = &ex.token_jti {
        attrs.insert("token_jti".into(), json!(j));
    }
    got.attributes = Value::Object(attrs);
    [sent, got]
}

/// Records a Stelseltoken fetch (no received request: the service fetches it by itself).
pub(crate) async fn record_stelsel_fetch(audit: &AuditLog, ex: &Exchange) {
    let trace = trace_id(None);
    let events = exchange_events(ex, |d, t, id, peer| {
        let mut e = AuditEvent::new(SERVICE, UC_STELSEL, d);
        e.time = t;
        e.trace_id = Some(trace.clone());
        e.initial_request_id = Some(ex.aorta_id.initial_request_id.to_string());
        e.request_id = Some(id.to_string());
        e.peer = peer;
        e.token_jtis = ex.token_jti.iter().cloned().collect();
        e
    });
    if let Err(e) = audit.record_all(events.into()).await {
        tracing::warn!(error = %e, "audit log: a Stelseltoken fetch was not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_the_caller_or_are_made() {
        assert_eq!(
            trace_id(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let made = trace_id(Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert_eq!(made.len(), 32);
        assert_ne!(made, "00000000000000000000000000000000");
        assert_eq!(trace_id(None).len(), 32);
    }

    #[tokio::test]
    async fn a_dropped_trail_records_its_end() {
        let (audit, sink) = AuditLog::memory();
        let mut t = Trail::new(audit, UC_TOKEN, AortaId::new(), None, "grpc", trace_id(None))
            .with_deadline(Duration::from_millis(1));
        t.subject.client_id = Some("c".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(t);
        for _ in 0..100 {
            if sink.events().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let events = sink.events();
        assert_eq!(events.len(), 2);
        let ret = &events[1];
        assert_eq!(ret.direction, Direction::ReturnedResponse);
        assert_eq!(ret.status.as_deref(), Some("504"));
        assert_eq!(ret.attributes["grpc_code"], "DEADLINE_EXCEEDED");
        assert_eq!(ret.client_id.as_deref(), Some("c"));
        assert!(events[0].time < ret.time, "each event has its own time");
    }
}
