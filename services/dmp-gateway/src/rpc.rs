//! The `dmp.v1.DmpGateway` RPCs (SPEC.md §2). Every RPC is one [`Transaction`], run the same
//! way: the request is validated, the card's certificate is fetched from the relay (the VIHF
//! names its professional), the message is built once, posted on the professional's
//! connection, and the answer parsed; each call is audited before and after.
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

use crate::config::XdsSettings;
use crate::connections::{DmpConnections, Professional};
use crate::error::{DmpError, TransportError};
use crate::exchange::{CallContext, DmpRequest as _, Incoming, Retry, Transaction, open_response};
use crate::find::Find;
use crate::get_associations::GetAssociations;
use crate::get_documents::GetDocuments;
use crate::habilitations::{ListAuthorizations, SetAuthorization};
use crate::list_patients::ListPatients;
use crate::retrieve::Retrieve;
use crate::set_visibility::SetVisibility;
use crate::submit::Submit;
use crate::test_patient::TestPatient;
use crate::update_status::UpdateStatus;

/// What the RPCs need from the transport.
#[tonic::async_trait]
pub trait DmpTransport: Send + Sync + 'static {
    /// The DER certificate of the professional's card (opening the session if needed).
    async fn card_certificate(&self, auth: &pb::AuthenticationContext) -> Result<Vec<u8>, DmpError>;
    /// POSTs `body` to `path` on the professional's connection.
    async fn post(
        &self,
        auth: &pb::AuthenticationContext,
        path: &str,
        body: &HttpBody,
    ) -> Result<Incoming, DmpError>;
}

#[tonic::async_trait]
impl DmpTransport for DmpConnections {
    async fn card_certificate(&self, auth: &pb::AuthenticationContext) -> Result<Vec<u8>, DmpError> {
        let who = Professional {
            relay_id: &auth.relay_id,
            professional_id: &auth.professional_id,
        };
        let session = self.session(&who).await?;
        Ok(session.certificate.leaf_der.clone())
    }

    async fn post(
        &self,
        auth: &pb::AuthenticationContext,
        path: &str,
        body: &HttpBody,
    ) -> Result<Incoming, DmpError> {
        let who = Professional {
            relay_id: &auth.relay_id,
            professional_id: &auth.professional_id,
        };
        let session = self.session(&who).await?;
        let r = DmpConnections::post(self, &session, path, &body.content_type, &[], body.to_bytes()).await?;
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
    signer: Arc<dyn xades::Signer>,
    paths: ServicePaths,
}

impl<T: DmpTransport> Gateway<T> {
    /// The service: `lps` and `settings` go into every message, `signer` signs submissions.
    pub fn new(
        transport: Arc<T>,
        audit: AuditLog,
        lps: LpsIdentity,
        settings: XdsSettings,
        signer: Arc<dyn xades::Signer>,
        paths: ServicePaths,
    ) -> Self {
        Gateway {
            transport,
            audit,
            lps,
            settings,
            signer,
            paths,
        }
    }

    fn path(&self, s: WebService) -> &str {
        match s {
            WebService::Repository => &self.paths.repository,
            WebService::Registry => &self.paths.registry,
            WebService::Patients => &self.paths.patients,
            WebService::Habilitations => &self.paths.habilitations,
        }
    }

    async fn professional(&self, auth: &pb::AuthenticationContext) -> Result<ProfessionalIdentity, DmpError> {
        let der = self.transport.card_certificate(auth).await?;
        ProfessionalIdentity::from_certificate(&der).map_err(|e| {
            DmpError::Transport(TransportError::RelayRefused {
                code: tonic::Code::FailedPrecondition,
                message: format!("the card's certificate: {e}"),
            })
        })
    }

    /// One transaction: validated before the relay is asked anything, built once for the
    /// card's professional, posted (and posted again as [`Transaction::RETRY`] allows), and its
    /// answer parsed.
    pub async fn exchange<X: Transaction>(&self, req: X::Request) -> Result<X::Response, DmpError> {
        let auth = auth_of(req.auth_context())?.clone();
        let patient = req.patient().cloned();
        let mut valid = X::validate(req, &self.settings, time::OffsetDateTime::now_utc())?;
        if let Some(entry_uuids) = X::precheck(&valid) {
            let lookup = pb::GetDocumentsRequest {
                auth_context: Some(auth.clone()),
                patient,
                entry_uuids,
                unique_ids: Vec::new(),
            };
            let found = Box::pin(self.exchange::<GetDocuments>(lookup)).await?;
            X::check(&mut valid, &found)?;
        }
        let professional = self.professional(&auth).await?;
        let endpoint = format!(
            "{}{}",
            self.paths.base_url.trim_end_matches('/'),
            self.path(X::WEB_SERVICE)
        );
        let ctx = CallContext {
            professional: &professional,
            lps: &self.lps,
            settings: &self.settings,
            signer: self.signer.as_ref(),
            endpoint: &endpoint,
            now: time::OffsetDateTime::now_utc(),
        };
        let message = X::build(&valid, &ctx)?;
        let path = self.path(X::WEB_SERVICE);
        let mut outgoing = message.outgoing(X::WEB_SERVICE, X::ACTION, &endpoint);
        let mut retried = false;
        let incoming = loop {
            match self.transport.post(&auth, path, &outgoing.body).await {
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
        X::parse(&valid, &open_response(&incoming, &outgoing.addressing)?)
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
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context().cloned(), req.patient().cloned());
        let attributes = X::audit_request(&req);
        let event = |direction: Direction| {
            let mut e = AuditEvent::new("dmp-gateway", X::USE_CASE, direction);
            e.user_id = auth
                .as_ref()
                .map(|a| a.professional_id.clone())
                .filter(|s| !s.is_empty());
            e.patient_ins = patient.as_ref().map(|p| p.ins.clone()).filter(|s| !s.is_empty());
            e.peer = auth.as_ref().map(|a| format!("relay {}", a.relay_id));
            e.trace_id = service_kit::telemetry::current_trace_id();
            e.attributes = attributes.clone();
            e
        };
        self.audit
            .record(event(Direction::ReceivedRequest))
            .await
            .map_err(DmpError::from)?;
        let result = self.exchange::<X>(req).await.map_err(Status::from);
        let mut outcome = event(Direction::ReturnedResponse);
        match &result {
            Ok(r) => {
                outcome.status = Some("OK".into());
                let (verdict, details) = X::audit_response(r);
                outcome.error_code = verdict;
                outcome.attributes = serde_json::json!({ "request": attributes, "response": details });
            }
            Err(status) => {
                outcome.status = Some(service_kit::metrics::code_name(status.code() as i32).to_owned());
                outcome.attributes = serde_json::json!({ "request": attributes, "error": status.message() });
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
