//! The audit trail of one use case run (SPEC.md §4, seed post-conditions): the received
//! request, every request sent and response received, and the returned response, each with
//! the AORTA-ID, peer, outcome and the subject attributes — `jti`s, never tokens.
//!
//! **Decision** — the events of one run are written together, before the response leaves
//! (one write per request keeps the audit log off the critical path, see the benchmark); if the
//! write fails the caller gets UNAVAILABLE and nothing issued leaves the service unlogged.

use audit_log::{AuditEvent, AuditLog, Direction};
use serde_json::json;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::zorg_ab::Exchange;

pub const SERVICE: &str = "twiin-authz";
pub const UC_ASSERTIONS: &str = "uitgeven_twiin_assertions";
pub const UC_TOKEN: &str = "uitgeven_aorta_access_token";

/// Attributes learnt during the run, copied into every event.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub client_id: Option<String>,
    pub ura: Option<String>,
    pub user_id: Option<String>,
    pub user_role: Option<String>,
    pub bsn: Option<String>,
    pub scope: Option<String>,
    pub jtis: Vec<String>,
}

pub struct Trail {
    use_case: &'static str,
    id: AortaId,
    peer: Option<String>,
    transport: &'static str,
    pub subject: Subject,
    exchanges: Vec<Exchange>,
}

impl Trail {
    pub fn new(use_case: &'static str, id: AortaId, peer: Option<String>, transport: &'static str) -> Self {
        Trail {
            use_case,
            id,
            peer,
            transport,
            subject: Subject::default(),
            exchanges: Vec::new(),
        }
    }

    pub fn aorta_id(&self) -> AortaId {
        self.id.clone()
    }

    pub fn exchanges(&mut self) -> &mut Vec<Exchange> {
        &mut self.exchanges
    }

    fn event(&self, direction: Direction, id: &AortaId, peer: Option<String>) -> AuditEvent {
        let mut e = AuditEvent::new(SERVICE, self.use_case, direction);
        e.initial_request_id = Some(id.initial_request_id.to_string());
        e.request_id = Some(id.request_id.to_string());
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

    /// Writes the whole trail with the returned outcome; fails closed.
    pub async fn finish(
        self,
        audit: &AuditLog,
        outcome: &Result<String, AuthzError>,
    ) -> Result<(), AuthzError> {
        let mut events = Vec::with_capacity(2 + 2 * self.exchanges.len());
        let mut received = self.event(Direction::ReceivedRequest, &self.id, self.peer.clone());
        received.attributes = json!({"transport": self.transport});
        events.push(received);
        for ex in &self.exchanges {
            let mut sent = self.event(Direction::SentRequest, &ex.aorta_id, Some(ex.url.clone()));
            sent.attributes = json!({"url": ex.url});
            events.push(sent);
            let mut got = self.event(Direction::ReceivedResponse, &ex.aorta_id, Some(ex.url.clone()));
            got.status = ex.status.map(|s| s.to_string());
            got.error_code = ex.error.clone();
            events.push(got);
        }
        let mut returned = self.event(Direction::ReturnedResponse, &self.id, self.peer.clone());
        match outcome {
            Ok(status) => returned.status = Some(status.clone()),
            Err(e) => {
                returned.status = Some(e.http_status().as_u16().to_string());
                returned.error_code = Some(e.oauth_error().to_owned());
                returned.attributes = json!({"error_description": e.description()});
            }
        }
        events.push(returned);
        audit.record_all(events).await.map_err(AuthzError::from)
    }
}
