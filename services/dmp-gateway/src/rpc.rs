//! The `dmp.v1.DmpGateway` RPCs (SPEC.md §2). Every RPC is one [`Transaction`], run the same
//! way: the caller's right to act for the professional is checked (issue 13: the caller named by
//! the interceptor, the session grant in metadata `dmp-session-grant`, the card session), the
//! request is validated, the message is built once for the card's professional (the VIHF names
//! them), posted on the professional's connection, and the answer parsed; each call is audited
//! before and after, naming the caller, the grant and the professional on the card.
//!
//! **Decision — retries (SPEC.md §2):** FindDocuments, RetrieveDocument and TestPatientDmp are
//! retried once, with a new MessageID, when the connection was lost or the request never left.
//! SubmitDocuments is retried only when the transport is sure the request never reached the DMP;
//! otherwise the caller gets `UNAVAILABLE` with the document uniqueIds, so that resubmitting is
//! idempotent at the registry (a document already stored answers
//! `XDSDuplicateUniqueIdInRegistry`). UpdateDocumentStatus is handled like SubmitDocuments.

use std::sync::Arc;

use audit_log::{AuditEvent, AuditLog, Direction};
use dmp_protocol::mtom::HttpBody;
use dmp_protocol::transactions::WebService;
use dmp_protocol::vihf::{LpsIdentity, ProfessionalIdentity};
use dmp_protocol::xades;
use dmp_protocol::xds::FieldError;
use ehealth_proto::dmp::v1 as pb;
use ehealth_proto::dmp::v1::dmp_gateway_server::DmpGateway;
use tonic::{Request, Response, Status};

use crate::caller::CallerIdentity;
use crate::config::XdsSettings;
use crate::connections::{DmpConnections, Professional, ProfessionalSession};
use crate::error::{DmpError, TransportError};
use crate::exchange::{CallContext, DmpRequest, Incoming, Retry, Transaction, open_response};
use crate::find::Find;
use crate::get_associations::GetAssociations;
use crate::get_documents::GetDocuments;
use crate::grant::GRANT_METADATA;
use crate::habilitations::{ListAuthorizations, SetAuthorization};
use crate::list_patients::ListPatients;
use crate::retrieve::Retrieve;
use crate::set_visibility::SetVisibility;
use crate::structure::CallerStructures;
use crate::submit::Submit;
use crate::test_patient::TestPatient;
use crate::update_status::UpdateStatus;

/// Who asks to act for whom, and under which consent.
#[derive(Debug, Clone, Copy)]
pub struct CallAccess<'a> {
    /// The relay holding the card (`auth_context.relay_id`).
    pub relay_id: &'a str,
    /// The professional the call names (`auth_context.professional_id`).
    pub professional_id: &'a str,
    /// The authenticated caller.
    pub caller: &'a str,
    /// The session grant the caller presented.
    pub grant: Option<&'a str>,
}

/// A call the transport let through: the card it authenticates with and the grant it acts
/// under.
pub struct Opened<S> {
    /// DER of the card's authentication certificate.
    pub certificate_der: Vec<u8>,
    /// The session grant's id (`jti`), when the transport checked one.
    pub grant_id: Option<String>,
    /// What [`DmpTransport::post`] needs.
    pub session: S,
}

/// What the RPCs need from the transport.
#[tonic::async_trait]
pub trait DmpTransport: Send + Sync + 'static {
    /// The professional's connection, as the transport keeps it.
    type Session: Send + Sync + 'static;
    /// Checks that the call may act for the professional and opens (or reuses) their
    /// connection; nothing reaches the DMP.
    async fn open(&self, access: &CallAccess<'_>) -> Result<Opened<Self::Session>, DmpError>;
    /// POSTs `body` to `path` on the professional's connection.
    async fn post(&self, session: &Self::Session, path: &str, body: &HttpBody) -> Result<Incoming, DmpError>;
    /// The professional's *signature* certificate (DER, nonRepudiation): the signer of a
    /// submission's XAdES signature document.
    async fn signature_certificate(&self, opened: &Opened<Self::Session>) -> Result<Vec<u8>, DmpError>;
    /// The signature of a canonical XAdES `SignedInfo` by the professional's signature key,
    /// under the call's grant; `certificate_der` is the certificate the SignedInfo names.
    async fn sign_xades(
        &self,
        opened: &Opened<Self::Session>,
        signed_info: Vec<u8>,
        certificate_der: &[u8],
    ) -> Result<Vec<u8>, DmpError>;
}

#[tonic::async_trait]
impl DmpTransport for DmpConnections {
    type Session = Arc<ProfessionalSession>;

    async fn open(&self, access: &CallAccess<'_>) -> Result<Opened<Self::Session>, DmpError> {
        let who = Professional {
            relay_id: access.relay_id,
            professional_id: access.professional_id,
            caller: access.caller,
            grant: access.grant,
        };
        let authorized = self.authorize(&who).await?;
        Ok(Opened {
            certificate_der: authorized.session.certificate.leaf_der.clone(),
            grant_id: Some(authorized.grant_id),
            session: authorized.session,
        })
    }

    async fn signature_certificate(&self, opened: &Opened<Self::Session>) -> Result<Vec<u8>, DmpError> {
        Ok(self.signature_certificate(&opened.session).await?)
    }

    async fn sign_xades(
        &self,
        opened: &Opened<Self::Session>,
        signed_info: Vec<u8>,
        certificate_der: &[u8],
    ) -> Result<Vec<u8>, DmpError> {
        let grant_id = opened.grant_id.as_deref().unwrap_or_default();
        Ok(self
            .sign_xades(&opened.session, grant_id, signed_info, certificate_der)
            .await?)
    }

    async fn post(&self, session: &Self::Session, path: &str, body: &HttpBody) -> Result<Incoming, DmpError> {
        let r = DmpConnections::post(self, session, path, &body.content_type, &[], body.to_bytes()).await?;
        Ok(Incoming {
            status: r.status.as_u16(),
            content_type: r
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: r.body,
        })
    }
}

/// The caller of a call and the session grant it presented.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated identity ([`CallerIdentity`]).
    pub identity: String,
    /// The session grant (compact JWS) of metadata `dmp-session-grant`.
    pub grant: Option<String>,
}

impl Caller {
    fn of<R>(request: &Request<R>) -> Result<Self, Status> {
        // The interceptor put it there; a service mounted without it refuses every call.
        let identity = request
            .extensions()
            .get::<CallerIdentity>()
            .map(|c| c.0.clone())
            .ok_or_else(|| Status::unauthenticated("no authenticated caller"))?;
        let grant = request
            .metadata()
            .get(GRANT_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned());
        Ok(Caller { identity, grant })
    }
}

/// The DMP's web-service paths (configuration `xds.*_path`), under the transport's base URL.
#[derive(Debug, Clone)]
pub struct ServicePaths {
    /// The DMP's base URL (`dmp.url`).
    pub base_url: String,
    /// `xds.repository_path`.
    pub repository: String,
    /// `xds.registry_path`.
    pub registry: String,
    /// `xds.patients_path`.
    pub patients: String,
    /// `xds.habilitations_path`.
    pub habilitations: String,
}

/// The checks every request starts with: an authentication context naming a relay.
fn auth_of(a: Option<&pb::AuthenticationContext>) -> Result<&pb::AuthenticationContext, DmpError> {
    let a = a.ok_or_else(|| FieldError::new("auth_context", "required"))?;
    if a.relay_id.is_empty() {
        return Err(FieldError::new(
            "auth_context.relay_id",
            "required (the cps-relay holding the card)",
        )
        .into());
    }
    Ok(a)
}

/// The gRPC service over a transport.
pub struct Gateway<T = DmpConnections> {
    transport: Arc<T>,
    /// Every transaction is recorded (SPEC.md §4): who, which patient, which transaction, outcome.
    audit: AuditLog,
    lps: LpsIdentity,
    settings: XdsSettings,
    paths: ServicePaths,
    structures: CallerStructures,
}

impl<T: DmpTransport> Gateway<T> {
    /// The service: `lps` and `settings` go into every message; submissions are signed by the
    /// professional's card through the transport ([`DmpTransport::sign_xades`]).
    pub fn new(
        transport: Arc<T>,
        audit: AuditLog,
        lps: LpsIdentity,
        settings: XdsSettings,
        paths: ServicePaths,
    ) -> Self {
        Gateway {
            transport,
            audit,
            lps,
            settings,
            paths,
            structures: CallerStructures::default(),
        }
    }

    /// The structure each caller acts for ([`CallerStructures`]); without it, a request's own
    /// structure and sector are used (development).
    pub fn with_caller_structures(mut self, structures: CallerStructures) -> Self {
        self.structures = structures;
        self
    }

    /// The XAdES signature document over `documents`, signed by the professional's card:
    /// its signature certificate, the canonical SignedInfo, the relay's signature.
    async fn signature_document(
        &self,
        opened: &Opened<T::Session>,
        documents: &[(&dmp_protocol::xds::UniqueId, &bytes::Bytes)],
        now: time::OffsetDateTime,
    ) -> Result<String, DmpError> {
        let certificate = self.transport.signature_certificate(opened).await?;
        let unsigned = xades::prepare(documents, &certificate, now)?;
        let signature = self
            .transport
            .sign_xades(opened, unsigned.signed_info().to_vec(), &certificate)
            .await?;
        Ok(unsigned.finish(&signature))
    }

    fn path(&self, s: WebService) -> &str {
        match s {
            WebService::Repository => &self.paths.repository,
            WebService::Registry => &self.paths.registry,
            WebService::Patients => &self.paths.patients,
            WebService::Habilitations => &self.paths.habilitations,
        }
    }

    /// Checks that `caller` may act for the professional `req` names, and opens their
    /// connection.
    async fn open<R: DmpRequest>(&self, caller: &Caller, req: &R) -> Result<Opened<T::Session>, DmpError> {
        let auth = auth_of(req.auth_context())?;
        self.transport
            .open(&CallAccess {
                relay_id: &auth.relay_id,
                professional_id: &auth.professional_id,
                caller: &caller.identity,
                grant: caller.grant.as_deref(),
            })
            .await
    }

    /// One transaction for `caller`: its access checked before anything else, validated before
    /// anything is built, built once for the card's professional, posted (and posted again as
    /// [`Transaction::RETRY`] allows), and its answer parsed.
    pub async fn exchange<X: Transaction>(
        &self,
        caller: &Caller,
        mut req: X::Request,
    ) -> Result<X::Response, DmpError> {
        let opened = self.open(caller, &req).await?;
        self.structures.apply(&caller.identity, req.auth_context_mut())?;
        self.exchange_opened::<X>(req, &opened).await
    }

    async fn exchange_opened<X: Transaction>(
        &self,
        req: X::Request,
        opened: &Opened<T::Session>,
    ) -> Result<X::Response, DmpError> {
        let auth = auth_of(req.auth_context())?.clone();
        let patient = req.patient().cloned();
        let mut valid = X::validate(req, &self.settings, time::OffsetDateTime::now_utc())?;
        if let Some(entry_uuids) = X::precheck(&valid) {
            // The lookup acts under the same caller, grant and card session as the call itself.
            let lookup = pb::GetDocumentsRequest {
                auth_context: Some(auth.clone()),
                patient: patient.clone(),
                entry_uuids,
                unique_ids: Vec::new(),
            };
            let found = Box::pin(self.exchange_opened::<GetDocuments>(lookup, opened)).await?;
            X::check(&mut valid, &found)?;
        }
        let professional = ProfessionalIdentity::from_certificate(&opened.certificate_der).map_err(|e| {
            DmpError::Transport(TransportError::RelayRefused {
                code: tonic::Code::FailedPrecondition,
                message: format!("the card's certificate: {e}"),
            })
        })?;
        let endpoint = format!(
            "{}{}",
            self.paths.base_url.trim_end_matches('/'),
            self.path(X::WEB_SERVICE)
        );
        let now = time::OffsetDateTime::now_utc();
        let signature_document = match X::signed_documents(&valid) {
            Some(documents) => Some(self.signature_document(opened, &documents, now).await?),
            None => None,
        };
        let ctx = CallContext {
            professional: &professional,
            lps: &self.lps,
            settings: &self.settings,
            signature_document: signature_document.as_deref(),
            signer: None,
            endpoint: &endpoint,
            now,
        };
        let message = X::build(&valid, &ctx)?;
        let path = self.path(X::WEB_SERVICE);
        let mut outgoing = message.outgoing(X::WEB_SERVICE, X::ACTION, &endpoint);
        let mut retried = false;
        let incoming = loop {
            match self.transport.post(&opened.session, path, &outgoing.body).await {
                Ok(incoming) => break incoming,
                Err(DmpError::Transport(t)) if !retried && X::RETRY.allows(&t) => {
                    tracing::warn!(error = %t, "DMP call interrupted; retrying once");
                    retried = true;
                    if X::RETRY == Retry::Idempotent {
                        outgoing = message.outgoing(X::WEB_SERVICE, X::ACTION, &endpoint);
                    }
                }
                Err(DmpError::Transport(t)) => return Err(X::interrupted(&valid, t)),
                Err(e) => return Err(e),
            }
        };
        let mut response = X::parse(&valid, &open_response(&incoming, &outgoing.addressing)?)?;
        if let Some(entry_uuids) = X::follow_up(&response) {
            // Under the same caller, grant and card session, on the same connection.
            let lookup = pb::GetAssociationsRequest {
                auth_context: Some(auth),
                patient,
                entry_uuids,
            };
            let found = Box::pin(self.exchange_opened::<GetAssociations>(lookup, opened)).await?;
            X::complete(&mut response, found);
        }
        Ok(response)
    }

    /// Runs one transaction between two audit events.
    ///
    /// **Decision — fail closed before, never lose an outcome after:** the request event (who,
    /// which patient, which transaction) is committed before anything is sent to the DMP; if it
    /// cannot be, the call answers UNAVAILABLE and nothing leaves. The outcome event follows;
    /// if that one cannot be written, the DMP has already acted, so the caller still gets the
    /// DMP's answer (hiding it would invite a blind resubmission) and the failure is logged as
    /// an error for operators.
    async fn audited<X: Transaction>(
        &self,
        request: Request<X::Request>,
    ) -> Result<Response<X::Response>, Status> {
        let caller = Caller::of(&request)?;
        let mut req = request.into_inner();
        let structure = self.structures.apply(&caller.identity, req.auth_context_mut());
        let (auth, patient) = (req.auth_context().cloned(), req.patient().cloned());
        let attributes = X::audit_request(&req);
        // Who may act is settled before the request is recorded: the record then names the
        // professional on the card and the grant, not only what the caller claims.
        let opened = self.open(&caller, &req).await;
        let card_professional = opened
            .as_ref()
            .ok()
            .and_then(|o| ProfessionalIdentity::from_certificate(&o.certificate_der).ok())
            .map(|p| p.id);
        let grant_id = opened.as_ref().ok().and_then(|o| o.grant_id.clone());
        let claimed = auth
            .as_ref()
            .map(|a| a.professional_id.clone())
            .filter(|s| !s.is_empty());
        let access = serde_json::json!({
            "caller": caller.identity,
            "claimed_professional": claimed,
            "grant_presented": caller.grant.is_some(),
        });
        let event = |direction: Direction| {
            let mut e = AuditEvent::new("dmp-gateway", X::USE_CASE, direction);
            e.user_id = card_professional.clone().or_else(|| claimed.clone());
            e.client_id = Some(caller.identity.clone());
            e.token_jtis = grant_id.iter().cloned().collect();
            e.patient_ins = patient.as_ref().map(|p| p.ins.clone()).filter(|s| !s.is_empty());
            e.peer = auth.as_ref().map(|a| format!("relay {}", a.relay_id));
            e.trace_id = service_kit::telemetry::current_trace_id();
            e.attributes = attributes.clone();
            if let Some(a) = e.attributes.as_object_mut() {
                a.insert("access".into(), access.clone());
            }
            e
        };
        self.audit
            .record(event(Direction::ReceivedRequest))
            .await
            .map_err(DmpError::from)?;
        // Who may act is answered first; then which structure the caller acts for.
        let result = match (opened, structure) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(opened), Ok(())) => self.exchange_opened::<X>(req, &opened).await,
        }
        .map_err(Status::from);
        let mut outcome = event(Direction::ReturnedResponse);
        match &result {
            Ok(r) => {
                outcome.status = Some("OK".into());
                let (verdict, details) = X::audit_response(r);
                outcome.error_code = verdict;
                outcome.attributes =
                    serde_json::json!({ "request": attributes, "access": access, "response": details });
            }
            Err(status) => {
                outcome.status = Some(service_kit::metrics::code_name(status.code() as i32).to_owned());
                outcome.attributes =
                    serde_json::json!({ "request": attributes, "access": access, "error": status.message() });
            }
        }
        if let Err(e) = self.audit.record(outcome).await {
            tracing::error!(use_case = X::USE_CASE, error = %e, "the outcome of a DMP transaction could not be audited");
        }
        result.map(Response::new)
    }
}

/// Every RPC is its transaction, audited: `method: Transaction`.
macro_rules! rpcs {
    ($($method:ident: $transaction:ty),* $(,)?) => {
        #[tonic::async_trait]
        impl<T: DmpTransport> DmpGateway for Gateway<T> {
            $(
                async fn $method(
                    &self,
                    request: Request<<$transaction as Transaction>::Request>,
                ) -> Result<Response<<$transaction as Transaction>::Response>, Status> {
                    self.audited::<$transaction>(request).await
                }
            )*
        }
    };
}

rpcs! {
    submit_documents: Submit,
    find_documents: Find,
    retrieve_document: Retrieve,
    test_patient_dmp: TestPatient,
    update_document_status: UpdateStatus,
    set_authorization: SetAuthorization,
    list_authorizations: ListAuthorizations,
    get_documents: GetDocuments,
    get_associations: GetAssociations,
    list_patients: ListPatients,
    set_document_visibility: SetVisibility,
}
