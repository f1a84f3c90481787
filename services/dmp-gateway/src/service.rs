//! The `dmp.v1.DmpGateway` RPCs (SPEC.md §2): each validates its request, asks the transport
//! for the card's certificate (which the VIHF names), builds the transaction, posts it on the
//! professional's connection and reads the answer.
//!
//! **Decision — retries (SPEC.md §2):** FindDocuments, RetrieveDocument and TestPatientDmp are
//! retried once, with a new MessageID, when the connection was lost or the request never left.
//! SubmitDocuments is retried only when the transport is sure the request never reached the DMP;
//! otherwise the caller gets `UNAVAILABLE` with the document uniqueIds, so that resubmitting is
//! idempotent at the registry (a document already stored answers
//! `XDSDuplicateUniqueIdInRegistry`). UpdateDocumentStatus is handled like SubmitDocuments.

use std::sync::Arc;

use audit_log::{AuditEvent, AuditLog, Direction};

use ehealth_proto::dmp::v1 as pb;
use ehealth_proto::dmp::v1::dmp_gateway_server::DmpGateway;
use tonic::{Request, Response, Status};

use crate::connections::{DmpConnections, Professional};
use crate::dsg::DsgSigner;
use crate::error::{DmpError, TransportError};
use crate::mtom::HttpBody;
use crate::transactions::{self as tx, CallContext, Incoming, Service, XdsSettings};
use crate::vihf::{LpsIdentity, ProfessionalIdentity};
use crate::xds::FieldError;

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
    pub base_url: String,
    pub repository: String,
    pub registry: String,
    pub patients: String,
}

/// The RPC implementation over a transport.
pub struct Transactions<T> {
    pub transport: Arc<T>,
    /// Every transaction is recorded (SPEC.md §4): who, which patient, which transaction, outcome.
    pub audit: AuditLog,
    pub lps: LpsIdentity,
    pub settings: XdsSettings,
    pub signer: Arc<dyn DsgSigner>,
    pub paths: ServicePaths,
}

fn auth_of(a: &Option<pb::AuthenticationContext>) -> Result<&pb::AuthenticationContext, DmpError> {
    let a = a
        .as_ref()
        .ok_or_else(|| FieldError::new("auth_context", "required"))?;
    if a.relay_id.is_empty() {
        return Err(FieldError::new(
            "auth_context.relay_id",
            "required (the cps-relay holding the card)",
        )
        .into());
    }
    Ok(a)
}

/// A stand-in for the card's identity, to validate a request before the relay is asked.
fn placeholder(auth: &pb::AuthenticationContext) -> ProfessionalIdentity {
    ProfessionalIdentity {
        id: auth.professional_id.clone(),
        subject_dn: format!("CN={}", auth.professional_id),
        family: String::new(),
        given: String::new(),
        profession: None,
    }
}

fn retryable(e: &DmpError) -> bool {
    matches!(e, DmpError::Transport(t) if matches!(t, TransportError::ConnectionLost(_)) || t.before_sending())
}

impl<T: DmpTransport> Transactions<T> {
    fn path(&self, s: Service) -> &str {
        match s {
            Service::Repository => &self.paths.repository,
            Service::Registry => &self.paths.registry,
            Service::Patients => &self.paths.patients,
        }
    }

    fn endpoint(&self, s: Service) -> String {
        format!("{}{}", self.paths.base_url.trim_end_matches('/'), self.path(s))
    }

    fn ctx<'a>(&'a self, professional: &'a ProfessionalIdentity, endpoint: &'a str) -> CallContext<'a> {
        CallContext {
            professional,
            lps: &self.lps,
            settings: &self.settings,
            endpoint,
            now: time::OffsetDateTime::now_utc(),
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

    /// An idempotent exchange: validated first, then built and posted, retried once.
    async fn idempotent<R>(
        &self,
        auth: &pb::AuthenticationContext,
        service: Service,
        build: impl Fn(&CallContext<'_>) -> Result<tx::Outgoing, DmpError> + Send + Sync,
        parse: impl Fn(&Incoming, &tx::Outgoing) -> Result<R, DmpError> + Send + Sync,
    ) -> Result<R, DmpError> {
        let endpoint = self.endpoint(service);
        build(&self.ctx(&placeholder(auth), &endpoint))?;
        let professional = self.professional(auth).await?;
        let mut attempt = 0;
        loop {
            let out = build(&self.ctx(&professional, &endpoint))?;
            match self.transport.post(auth, self.path(service), &out.body).await {
                Ok(incoming) => return parse(&incoming, &out),
                Err(e) if attempt == 0 && retryable(&e) => {
                    tracing::warn!(error = %e, "DMP call interrupted; retrying once");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn submit_documents(
        &self,
        req: pb::SubmitDocumentsRequest,
    ) -> Result<pb::SubmitDocumentsResponse, DmpError> {
        let auth = auth_of(&req.auth_context)?.clone();
        let validated = tx::validate_submit(req, &self.settings, time::OffsetDateTime::now_utc())?;
        let professional = self.professional(&auth).await?;
        let endpoint = self.endpoint(Service::Repository);
        let prepared = tx::build_submit(
            validated,
            &self.ctx(&professional, &endpoint),
            self.signer.as_ref(),
        )?;
        let path = self.path(Service::Repository);
        let incoming = match self.transport.post(&auth, path, &prepared.outgoing.body).await {
            Err(DmpError::Transport(t)) if t.before_sending() => {
                // Never reached the DMP: sending it again is not a blind retry.
                self.transport.post(&auth, path, &prepared.outgoing.body).await
            }
            other => other,
        };
        let incoming = incoming.map_err(|e| match e {
            DmpError::Transport(t) => DmpError::SubmissionInterrupted {
                reason: t.to_string(),
                document_unique_ids: prepared.document_unique_ids().join(", "),
            },
            e => e,
        })?;
        tx::parse_submit_response(&incoming, &prepared)
    }

    pub async fn find_documents(
        &self,
        req: pb::FindDocumentsRequest,
    ) -> Result<pb::FindDocumentsResponse, DmpError> {
        let auth = auth_of(&req.auth_context)?;
        self.idempotent(
            auth,
            Service::Registry,
            |c| tx::prepare_find(&req, c),
            tx::parse_find_response,
        )
        .await
    }

    pub async fn retrieve_document(
        &self,
        req: pb::RetrieveDocumentRequest,
    ) -> Result<pb::RetrieveDocumentResponse, DmpError> {
        let auth = auth_of(&req.auth_context)?;
        let uid = req.document_unique_id.clone();
        self.idempotent(
            auth,
            Service::Repository,
            |c| tx::prepare_retrieve(&req, c),
            |i, o| tx::parse_retrieve_response(i, o, &uid),
        )
        .await
    }

    pub async fn test_patient_dmp(
        &self,
        req: pb::TestPatientDmpRequest,
    ) -> Result<pb::TestPatientDmpResponse, DmpError> {
        let auth = auth_of(&req.auth_context)?;
        self.idempotent(
            auth,
            Service::Patients,
            |c| tx::prepare_test_patient(&req, c),
            tx::parse_test_patient_response,
        )
        .await
    }

    pub async fn update_document_status(
        &self,
        req: pb::UpdateDocumentStatusRequest,
    ) -> Result<pb::UpdateDocumentStatusResponse, DmpError> {
        let auth = auth_of(&req.auth_context)?;
        let endpoint = self.endpoint(Service::Registry);
        tx::prepare_update_status(&req, &self.ctx(&placeholder(auth), &endpoint))?;
        let professional = self.professional(auth).await?;
        let out = tx::prepare_update_status(&req, &self.ctx(&professional, &endpoint))?;
        let path = self.path(Service::Registry);
        let incoming = match self.transport.post(auth, path, &out.body).await {
            Err(DmpError::Transport(t)) if t.before_sending() => {
                self.transport.post(auth, path, &out.body).await
            }
            other => other,
        }?;
        tx::parse_update_status_response(&incoming, &out)
    }
}

/// What a response says about the outcome, for the audit log.
trait Outcome {
    fn registry_status(&self) -> Option<String>;
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

fn registry_status_name(status: i32, errors: &[pb::RegistryError]) -> Option<String> {
    let name = pb::RegistryResponseStatus::try_from(status)
        .map(|s| s.as_str_name().to_owned())
        .ok()?;
    let codes: Vec<&str> = errors.iter().map(|e| e.error_code.as_str()).collect();
    Some(if codes.is_empty() {
        name
    } else {
        format!("{name} {}", codes.join(","))
    })
}

impl Outcome for pb::SubmitDocumentsResponse {
    fn registry_status(&self) -> Option<String> {
        registry_status_name(self.status, &self.errors)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "document_unique_ids": self.document_unique_ids, "submission_set_unique_id": self.submission_set_unique_id })
    }
}

impl Outcome for pb::FindDocumentsResponse {
    fn registry_status(&self) -> Option<String> {
        registry_status_name(self.status, &self.errors)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "documents_found": self.documents.len() })
    }
}

impl Outcome for pb::RetrieveDocumentResponse {
    fn registry_status(&self) -> Option<String> {
        registry_status_name(self.status, &self.errors)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "document_unique_id": self.document_unique_id, "size": self.content.len() })
    }
}

impl Outcome for pb::TestPatientDmpResponse {
    fn registry_status(&self) -> Option<String> {
        pb::Authorization::try_from(self.authorization)
            .map(|a| a.as_str_name().to_owned())
            .ok()
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "dmp_exists": self.dmp_exists, "dmp_closed": self.dmp_closed })
    }
}

impl Outcome for pb::UpdateDocumentStatusResponse {
    fn registry_status(&self) -> Option<String> {
        registry_status_name(self.status, &self.errors)
    }
}

impl<T: DmpTransport> Transactions<T> {
    /// Runs one transaction between two audit events.
    ///
    /// **Decision — fail closed before, never lose an outcome after:** the request event (who,
    /// which patient, which transaction) is committed before anything is sent to the DMP; if it
    /// cannot be, the call answers UNAVAILABLE and nothing leaves. The outcome event follows;
    /// if that one cannot be written, the DMP has already acted, so the caller still gets the
    /// DMP's answer (hiding it would invite a blind resubmission) and the failure is logged as
    /// an error for operators.
    async fn audited<R: Outcome>(
        &self,
        use_case: &'static str,
        auth: Option<&pb::AuthenticationContext>,
        patient: Option<&pb::PatientId>,
        attributes: serde_json::Value,
        call: impl std::future::Future<Output = Result<R, DmpError>>,
    ) -> Result<R, Status> {
        let event = |direction: Direction| {
            let mut e = AuditEvent::new("dmp-gateway", use_case, direction);
            e.user_id = auth.map(|a| a.professional_id.clone()).filter(|s| !s.is_empty());
            e.patient_ins = patient.map(|p| p.ins.clone()).filter(|s| !s.is_empty());
            e.peer = auth.map(|a| format!("relay {}", a.relay_id));
            e.trace_id = service_kit::telemetry::current_trace_id();
            e.attributes = attributes.clone();
            e
        };
        self.audit
            .record(event(Direction::ReceivedRequest))
            .await
            .map_err(DmpError::from)?;
        let result = call.await.map_err(Status::from);
        let mut outcome = event(Direction::ReturnedResponse);
        match &result {
            Ok(r) => {
                outcome.status = Some("OK".into());
                outcome.error_code = r.registry_status();
                outcome.attributes = serde_json::json!({ "request": attributes, "response": r.details() });
            }
            Err(status) => {
                outcome.status = Some(service_kit::metrics::code_name(status.code() as i32).to_owned());
                outcome.attributes = serde_json::json!({ "request": attributes, "error": status.message() });
            }
        }
        if let Err(e) = self.audit.record(outcome).await {
            tracing::error!(use_case, error = %e, "the outcome of a DMP transaction could not be audited");
        }
        result
    }
}

#[tonic::async_trait]
impl<T: DmpTransport> DmpGateway for Transactions<T> {
    async fn submit_documents(
        &self,
        request: Request<pb::SubmitDocumentsRequest>,
    ) -> Result<Response<pb::SubmitDocumentsResponse>, Status> {
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context.clone(), req.patient.clone());
        let attrs = serde_json::json!({
            "transaction": "TD2.1",
            "document_unique_ids": req.documents.iter().filter_map(|d| d.metadata.as_ref().map(|m| m.unique_id.clone())).collect::<Vec<_>>(),
        });
        let call = Transactions::submit_documents(self, req);
        Ok(Response::new(
            self.audited(
                "td2.1_submit_documents",
                auth.as_ref(),
                patient.as_ref(),
                attrs,
                call,
            )
            .await?,
        ))
    }

    async fn find_documents(
        &self,
        request: Request<pb::FindDocumentsRequest>,
    ) -> Result<Response<pb::FindDocumentsResponse>, Status> {
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context.clone(), req.patient.clone());
        let attrs = serde_json::json!({ "transaction": "TD3.1", "statuses": req.statuses });
        let call = Transactions::find_documents(self, req);
        Ok(Response::new(
            self.audited(
                "td3.1_find_documents",
                auth.as_ref(),
                patient.as_ref(),
                attrs,
                call,
            )
            .await?,
        ))
    }

    async fn retrieve_document(
        &self,
        request: Request<pb::RetrieveDocumentRequest>,
    ) -> Result<Response<pb::RetrieveDocumentResponse>, Status> {
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context.clone(), req.patient.clone());
        let attrs =
            serde_json::json!({ "transaction": "TD3.2", "document_unique_id": req.document_unique_id });
        let call = Transactions::retrieve_document(self, req);
        Ok(Response::new(
            self.audited(
                "td3.2_retrieve_document",
                auth.as_ref(),
                patient.as_ref(),
                attrs,
                call,
            )
            .await?,
        ))
    }

    async fn test_patient_dmp(
        &self,
        request: Request<pb::TestPatientDmpRequest>,
    ) -> Result<Response<pb::TestPatientDmpResponse>, Status> {
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context.clone(), req.patient.clone());
        let attrs = serde_json::json!({ "transaction": "TD0.2" });
        let call = Transactions::test_patient_dmp(self, req);
        Ok(Response::new(
            self.audited(
                "td0.2_test_patient_dmp",
                auth.as_ref(),
                patient.as_ref(),
                attrs,
                call,
            )
            .await?,
        ))
    }

    async fn update_document_status(
        &self,
        request: Request<pb::UpdateDocumentStatusRequest>,
    ) -> Result<Response<pb::UpdateDocumentStatusResponse>, Status> {
        let req = request.into_inner();
        let (auth, patient) = (req.auth_context.clone(), req.patient.clone());
        let attrs = serde_json::json!({
            "transaction": "TD3.3",
            "document_unique_id": req.document_unique_id,
            "new_status": req.new_status,
        });
        let call = Transactions::update_document_status(self, req);
        Ok(Response::new(
            self.audited(
                "td3.3_update_document_status",
                auth.as_ref(),
                patient.as_ref(),
                attrs,
                call,
            )
            .await?,
        ))
    }
}
