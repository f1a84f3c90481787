//! The relay service and its `cps.v1.CpsRelay` gRPC face. The two use cases a gateway calls,
//! `authentication_certificate` and `sign_for_authentication` (one child module each), are
//! shared with the seed's CPS agent HTTP face (`crate::agent_http`): same roles, purpose limits
//! and audit, whichever face is asked. The service authorises the caller by role ([`Roles`]), checks the
//! request, runs the card operation on one of `sessions` card threads ([`CardQueue`], waiting
//! at most `card_wait` for the card), and records every signature and every PIN attempt
//! (caller, professional and certificate from the card, scheme, SHA-256 of the data, outcome —
//! never the data, the signature or a PIN). Signatures happen only inside a card session and,
//! unless `grants.required = false` (development), a live session grant of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_log::{AuditEvent, AuditLog, Direction};
use ehealth_proto::cps::v1::cps_relay_server::CpsRelay;
use ehealth_proto::cps::v1::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use service_kit::CancellationToken;
use service_kit::error::ServiceError;
use tonic::{Request, Response, Status};

use relay_client::GRANT_ID_METADATA;

use crate::access::{Access, Caller, caller};
use crate::card::queue::CardQueue;
use crate::card::{Card, Pin, check_pin_format};
use crate::error::RelayError;
use crate::grant::{GrantSigner, IssuedGrant};
use crate::pin::PinThrottle;
use crate::roles::{Role, Roles, Rpc};
use crate::scheme::Scheme;
use crate::session::{CardSession, CardSessions, Observation, start_polling};
use crate::transcript::ServerPolicy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignLabels {
    scheme: &'static str,
    outcome: &'static str,
}

/// The relay's own metrics: signatures by scheme and outcome, and the card's signing time.
#[derive(Clone)]
pub struct RelayMetrics {
    signatures: Family<SignLabels, Counter>,
    card_seconds: Histogram,
}

impl RelayMetrics {
    pub(crate) fn register(metrics: &service_kit::metrics::Metrics) -> Self {
        let m = RelayMetrics {
            signatures: Family::default(),
            card_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        metrics.register(
            "cps_relay_signatures",
            "Signatures asked of the card, by scheme and outcome",
            m.signatures.clone(),
        );
        metrics.register(
            "cps_relay_card_seconds",
            "Time the card took to sign",
            m.card_seconds.clone(),
        );
        m
    }

    /// Signatures made successfully so far (all schemes).
    pub fn signatures_made(&self) -> u64 {
        [
            Scheme::RsaPkcs1Sha256,
            Scheme::RsaPssSha256,
            Scheme::EcdsaP256Sha256,
        ]
        .iter()
        .map(|s| {
            self.signatures
                .get_or_create(&SignLabels {
                    scheme: s.name(),
                    outcome: "ok",
                })
                .get()
        })
        .sum()
    }
}

/// What the relay enforces besides the card itself, built from its configuration.
pub(crate) struct Policy {
    /// Which certificates may call, and how often they may sign.
    pub(crate) access: Access,
    /// What each caller identity may call, and for which professionals.
    pub(crate) roles: Roles,
    /// Which TLS servers the card may authenticate to.
    pub(crate) servers: ServerPolicy,
    /// Signs the session grants.
    pub(crate) grants: GrantSigner,
    /// Whether a signature needs a live session grant.
    pub(crate) grants_required: bool,
    /// How often a watched card is polled for removal and swap.
    pub(crate) poll_interval: Duration,
    /// Cancelled at shutdown: WatchSession streams end then, so the server can drain.
    pub(crate) shutdown: CancellationToken,
}

pub(crate) struct RelayService {
    card: Arc<dyn Card>,
    access: Access,
    roles: Roles,
    servers: ServerPolicy,
    grants: GrantSigner,
    grants_required: bool,
    sessions: Arc<CardSessions>,
    pin: PinThrottle,
    shutdown: CancellationToken,
    audit: AuditLog,
    queue: Arc<CardQueue>,
    metrics: RelayMetrics,
}

/// The card's answer to a signature request made for a session.
enum Signed {
    Signature(Vec<u8>),
    /// The card in the reader is not the session's: nothing was signed.
    CardChanged,
}

/// Which face of the relay a request came through, recorded in the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Face {
    /// `cps.v1.CpsRelay`.
    Grpc,
    /// The seed's CPS agent HTTP API (`crate::agent_http`).
    AgentHttp,
}

impl Face {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Face::Grpc => "grpc",
            Face::AgentHttp => "cps-agent-http",
        }
    }
}

/// A grant id as a caller sent it (metadata or header), bounded.
pub(crate) fn grant_id_of(raw: &str) -> String {
    raw.chars().take(64).collect()
}

fn ended_by(e: &RelayError) -> Option<SessionReason> {
    match e {
        RelayError::NoToken { .. } | RelayError::TokenNotFound { .. } | RelayError::ObjectNotFound { .. } => {
            Some(SessionReason::CardRemoved)
        }
        RelayError::NotLoggedIn => Some(SessionReason::LoggedOut),
        RelayError::PinBlocked => Some(SessionReason::PinLocked),
        _ => None,
    }
}

fn timestamp(unix: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(unix).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

fn issued(g: IssuedGrant) -> SessionGrantIssued {
    SessionGrantIssued {
        grantee: g.grantee,
        grant: g.grant,
        grant_id: g.grant_id,
        expires_at: Some(timestamp(g.expires_at)),
    }
}

impl RelayService {
    pub(crate) fn new(
        card: Arc<dyn Card>,
        policy: Policy,
        audit: AuditLog,
        sessions: usize,
        card_wait: Duration,
        metrics: RelayMetrics,
    ) -> std::io::Result<Self> {
        let card_sessions = Arc::new(CardSessions::default());
        // An unlocked card at start-up (software key, HSM operator PIN) has a session already.
        if card.status().is_ok_and(|s| s.logged_in) {
            match card.current_identity().and_then(|id| card_sessions.open(&id)) {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the card is unlocked but its certificate cannot be read")
                }
            }
        }
        let queue = Arc::new(CardQueue::start(card.clone(), sessions, card_wait)?);
        start_polling(
            card_sessions.clone(),
            Arc::downgrade(&queue),
            policy.poll_interval,
        );
        Ok(RelayService {
            queue,
            card,
            access: policy.access,
            roles: policy.roles,
            servers: policy.servers,
            grants: policy.grants,
            grants_required: policy.grants_required,
            sessions: card_sessions,
            pin: PinThrottle::default(),
            shutdown: policy.shutdown,
            audit,
            metrics,
        })
    }

    /// Runs a blocking card operation once the card is free, waiting at most `card_wait`.
    async fn on_card<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Card) -> Result<T, RelayError> + Send + 'static,
    ) -> Result<T, RelayError> {
        self.queue.run(op).await
    }

    fn authorise<T>(&self, req: &Request<T>, rpc: Rpc) -> Result<(Caller, Role), RelayError> {
        let c = caller(req)?;
        let role = self.admit(&c, rpc)?;
        Ok((c, role))
    }

    /// The caller's certificate is allowed (pinned set) and its identity holds a role for `rpc`.
    fn admit(&self, caller: &Caller, rpc: Rpc) -> Result<Role, RelayError> {
        self.access.check(caller)?;
        self.roles.authorise(caller, rpc)
    }

    /// The professional on the card as last read (no card access).
    fn card_professional(&self) -> Option<String> {
        self.card
            .certificate()
            .and_then(|c| c.describe(&[]))
            .map(|d| d.professional_id)
            .ok()
            .filter(|id| !id.is_empty())
    }

    /// A gateway may see the card only while its professional is one it may act for.
    fn check_card_professional(&self, caller: &Caller, role: Role) -> Result<(), RelayError> {
        match self.card_professional() {
            Some(p) => self.roles.check_professional(caller, role, &p),
            None => Ok(()),
        }
    }

    async fn audit(
        &self,
        use_case: &str,
        caller: &Caller,
        professional: Option<String>,
        outcome: &Result<(), &RelayError>,
        attributes: serde_json::Value,
    ) -> Result<(), RelayError> {
        let mut e = AuditEvent::new("cps-relay", use_case, Direction::ReturnedResponse);
        e.peer = Some(caller.identity.clone());
        e.user_id = professional;
        e.status = Some(match outcome {
            Ok(()) => "OK".to_owned(),
            Err(err) => service_kit::metrics::code_name(err.error_code().grpc_code() as i32).to_owned(),
        });
        e.error_code = outcome.as_ref().err().map(|err| err.kind().to_owned());
        e.attributes = attributes;
        e.attributes["caller_fingerprint"] = serde_json::Value::String(caller.fingerprint.clone());
        e.attributes["caller_subject"] = serde_json::Value::String(caller.subject.clone());
        self.audit.record(e).await?;
        Ok(())
    }

    /// The card session a signature is made in: the grant's, or (development, no grant) the
    /// open one.
    fn signing_session(&self, grant_id: Option<&str>, rpc: &str) -> Result<CardSession, RelayError> {
        match grant_id {
            Some(id) => self.sessions.check_grant(id),
            None if self.grants_required => Err(RelayError::NoSessionGrant(format!(
                "no session grant: {rpc} needs metadata {GRANT_ID_METADATA} naming a live \
                 grant of the card session (the card holder issues it with IssueSessionGrant)"
            ))),
            None => self.sessions.current().ok_or(RelayError::NotLoggedIn),
        }
    }

    /// One PIN attempt that passed the caller check: grantees, PIN format, throttle, then the
    /// card. Opens the new card session on success.
    async fn login_attempt(
        &self,
        pin: Pin,
        confirm_final_try: bool,
        grant_to: &[String],
    ) -> Result<CardSession, RelayError> {
        for grantee in grant_to {
            self.roles.check_grantee(grantee)?;
        }
        check_pin_format(secrecy::ExposeSecret::expose_secret(&pin))?;
        self.pin.check(Instant::now())?;
        let result = self
            .on_card(move |card| {
                card.login(&pin, confirm_final_try)?;
                card.current_identity()
            })
            .await;
        self.pin.record(&result, Instant::now());
        match result {
            Ok(identity) => self.sessions.open(&identity),
            Err(e) => {
                match &e {
                    // The card was logged out before the PIN was checked.
                    RelayError::WrongPin { .. } => self.sessions.end(SessionReason::LoggedOut),
                    other => {
                        if let Some(reason) = ended_by(other) {
                            self.sessions.end(reason);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    async fn issue_grant(
        &self,
        caller: &Caller,
        grantee: &str,
        lifetime: Duration,
    ) -> Result<IssuedGrant, RelayError> {
        let result = self.sessions.issue(&self.grants, grantee, lifetime);
        let professional = self.sessions.current().map(|s| s.professional_id);
        let attrs = match &result {
            Ok(g) => {
                serde_json::json!({ "grant_id": g.grant_id, "grantee": g.grantee, "expires_at": g.expires_at })
            }
            Err(_) => serde_json::json!({ "grantee": grantee }),
        };
        self.audit(
            "issue_session_grant",
            caller,
            professional,
            &result.as_ref().map(|_| ()),
            attrs,
        )
        .await?;
        result
    }
}

#[tonic::async_trait]
impl CpsRelay for RelayService {
    async fn get_authentication_certificate(
        &self,
        request: Request<GetAuthenticationCertificateRequest>,
    ) -> Result<Response<GetAuthenticationCertificateResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.authentication_certificate(&caller).await?))
    }

    async fn sign_for_authentication(
        &self,
        request: Request<SignForAuthenticationRequest>,
    ) -> Result<Response<SignForAuthenticationResponse>, Status> {
        let caller = caller(&request)?;
        let grant_id = request
            .metadata()
            .get(GRANT_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(grant_id_of);
        let req = request.into_inner();
        let scheme = req.scheme;
        let signature = self
            .sign_for_authentication(&caller, Face::Grpc, grant_id, req.scheme, req.data)
            .await?;
        Ok(Response::new(SignForAuthenticationResponse { signature, scheme }))
    }

    async fn get_signature_certificate(
        &self,
        request: Request<GetSignatureCertificateRequest>,
    ) -> Result<Response<GetSignatureCertificateResponse>, Status> {
        let (caller, role) = self.authorise(&request, Rpc::GetSignatureCertificate)?;
        self.check_card_professional(&caller, role)?;
        let certificate = self.on_card(|card| card.signature_certificate()).await?;
        Ok(Response::new(GetSignatureCertificateResponse {
            leaf_der: certificate.leaf,
            chain_der: certificate.chain,
        }))
    }

    async fn sign_xades_signed_info(
        &self,
        request: Request<SignXadesSignedInfoRequest>,
    ) -> Result<Response<SignXadesSignedInfoResponse>, Status> {
        let (caller, role) = self.authorise(&request, Rpc::SignXadesSignedInfo)?;
        let grant_id = request
            .metadata()
            .get(GRANT_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(grant_id_of);
        let signed_info = request.into_inner().signed_info;
        let (signature, certificate_der) = self.sign_xades(&caller, role, grant_id, signed_info).await?;
        Ok(Response::new(SignXadesSignedInfoResponse {
            signature,
            certificate_der,
        }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let (caller, role) = self.authorise(&request, Rpc::GetStatus)?;
        self.check_card_professional(&caller, role)?;
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(status.to_proto()))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        let caller = caller(&request)?;
        let admitted = self
            .access
            .check(&caller)
            .and_then(|()| self.roles.authorise(&caller, Rpc::Login));
        let LoginRequest {
            pin,
            confirm_final_try,
            grant_to,
        } = request.into_inner();
        // The PIN moves straight into a zeroising secret; the request keeps no copy.
        let pin = Pin::from(pin);
        let result = match admitted {
            Ok(_) => self.login_attempt(pin, confirm_final_try, &grant_to).await,
            Err(e) => Err(e),
        };
        let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind());
        tracing::info!(caller = %caller.identity, outcome, "login");
        let professional = match &result {
            Ok(s) => Some(s.professional_id.clone()),
            Err(_) => self.card_professional(),
        };
        self.audit(
            "login",
            &caller,
            professional,
            &result.as_ref().map(|_| ()),
            serde_json::json!({ "confirm_final_try": confirm_final_try, "grant_to": grant_to }),
        )
        .await?;
        result?;
        let mut grants = Vec::with_capacity(grant_to.len());
        for grantee in &grant_to {
            grants.push(issued(self.issue_grant(&caller, grantee, Duration::ZERO).await?));
        }
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(LoginResponse {
            status: Some(status.to_proto()),
            grants,
        }))
    }

    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        let (caller, _) = self.authorise(&request, Rpc::Logout)?;
        let professional = self.sessions.current().map(|s| s.professional_id);
        let result = self.on_card(|card| card.logout()).await;
        match &result {
            Ok(()) => self.sessions.end(SessionReason::LoggedOut),
            Err(e) => {
                if let Some(reason) = ended_by(e) {
                    self.sessions.end(reason);
                }
            }
        }
        self.audit(
            "logout",
            &caller,
            professional,
            &result.as_ref().map(|_| ()),
            serde_json::json!({}),
        )
        .await?;
        result?;
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(LogoutResponse {
            status: Some(status.to_proto()),
        }))
    }

    async fn issue_session_grant(
        &self,
        request: Request<IssueSessionGrantRequest>,
    ) -> Result<Response<IssueSessionGrantResponse>, Status> {
        let (caller, _) = self.authorise(&request, Rpc::IssueSessionGrant)?;
        let req = request.into_inner();
        self.roles.check_grantee(&req.grantee)?;
        // Look at the card first: a grant is never issued for a card that has left.
        if let Ok(Some(seen)) = self.on_card(|card| Ok(Observation::read(card))).await {
            self.sessions.observe(&seen);
        }
        let lifetime = Duration::from_secs(u64::from(req.lifetime_seconds));
        let g = self.issue_grant(&caller, &req.grantee, lifetime).await?;
        Ok(Response::new(IssueSessionGrantResponse {
            grant: g.grant,
            grant_id: g.grant_id,
            expires_at: Some(timestamp(g.expires_at)),
        }))
    }

    async fn revoke_session_grants(
        &self,
        request: Request<RevokeSessionGrantsRequest>,
    ) -> Result<Response<RevokeSessionGrantsResponse>, Status> {
        let (caller, _) = self.authorise(&request, Rpc::RevokeSessionGrants)?;
        let ids = request.into_inner().grant_ids;
        let revoked = self.sessions.revoke(&ids);
        self.audit(
            "revoke_session_grants",
            &caller,
            self.sessions.current().map(|s| s.professional_id),
            &Ok(()),
            serde_json::json!({ "revoked": revoked }),
        )
        .await?;
        Ok(Response::new(RevokeSessionGrantsResponse {
            revoked_grant_ids: revoked,
        }))
    }

    async fn watch_session(
        &self,
        request: Request<WatchSessionRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<SessionState>>, Status> {
        let (caller, role) = self.authorise(&request, Rpc::WatchSession)?;
        self.check_card_professional(&caller, role)?;
        let rx = self.sessions.watch();
        let shutdown = self.shutdown.clone();
        let stream = futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
            let shutdown = shutdown.clone();
            async move {
                if !first {
                    tokio::select! {
                        changed = rx.changed() => changed.ok()?,
                        () = shutdown.cancelled() => return None,
                    }
                }
                let state = rx.borrow_and_update().clone();
                Some((Ok(state), (rx, false)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

mod authentication_certificate;
mod sign_for_authentication;
mod sign_xades_signed_info;
#[cfg(test)]
mod tests;
