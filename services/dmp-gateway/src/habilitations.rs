//! TD0.3 SetAuthorization and TD1.6 ListAuthorizations: the DMP's `Habilitations` web service
//! (SOAP 1.2, `Habilitations.wsdl`). The patient is the VIHF's resource-id; the bodies carry
//! only the action (and treating-doctor role) or the list mode.
//!
//! An answer whose `status` is not `DMPOk` is the DMP refusing the request: it reaches the
//! caller as a Sender fault would (FAILED_PRECONDITION with the DMP's status and context).

use dmp_protocol::habilitations::{
    self, AuthorizationAction, HabilitationsError, ListMode, WebServiceStatus,
};
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::Ins;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction};

/// TD0.3.
#[derive(Debug, Clone, Copy)]
pub struct SetAuthorization;

/// A SetAuthorization request, checked.
#[derive(Debug, Clone)]
pub struct AuthorizationChange {
    patient: Ins,
    vihf: VihfContext,
    action: AuthorizationAction,
    treating_doctor: bool,
}

fn malformed(e: HabilitationsError) -> DmpError {
    DmpError::MalformedResponse(e.to_string())
}

fn refused(s: WebServiceStatus) -> DmpError {
    DmpError::SoapFault {
        code: "Sender".into(),
        subcode: Some(s.status),
        reason: if s.context.is_empty() {
            "the DMP refused the request".into()
        } else {
            s.context
        },
    }
}

impl Transaction for SetAuthorization {
    type Request = pb::SetAuthorizationRequest;
    type Valid = AuthorizationChange;
    type Response = pb::SetAuthorizationResponse;

    const USE_CASE: &'static str = "td0.3_set_authorization";
    const WEB_SERVICE: WebService = WebService::Habilitations;
    const ACTION: &'static str = action::TD03;
    // Declaring an authorization twice is answered "already present": sending again is safe.
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({
            "transaction": "TD0.3",
            "action": pb::AuthorizationAction::try_from(req.action).map(|a| a.as_str_name()).unwrap_or("?"),
            "treating_doctor": req.treating_doctor,
        })
    }

    fn audit_response(r: &pb::SetAuthorizationResponse) -> (Option<String>, serde_json::Value) {
        (
            Some(r.status.clone()),
            serde_json::json!({ "context": r.context }),
        )
    }

    fn validate(
        req: pb::SetAuthorizationRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<AuthorizationChange, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        let action = conversions::authorization_action(req.action)
            .ok_or_else(|| DmpError::field("action", "required: GRANT (AJOUT) or REMOVE (SUPPRESSION)"))?;
        Ok(AuthorizationChange {
            patient,
            vihf,
            action,
            treating_doctor: req.treating_doctor,
        })
    }

    fn build(c: &AuthorizationChange, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&c.vihf, &c.patient)?;
        Ok(Message::soap(
            assertion,
            habilitations::set_authorization(c.action, c.treating_doctor),
        ))
    }

    fn parse(_: &AuthorizationChange, reply: &Reply) -> Result<pb::SetAuthorizationResponse, DmpError> {
        let s = habilitations::read_set_authorization_response(
            reply.payload(habilitations::NS, "setAuthorizationResponse")?,
        )
        .map_err(malformed)?;
        if !s.is_ok() {
            return Err(refused(s));
        }
        Ok(pb::SetAuthorizationResponse {
            status: s.status,
            context: s.context,
        })
    }
}

/// TD1.6.
#[derive(Debug, Clone, Copy)]
pub struct ListAuthorizations;

/// A ListAuthorizations request, checked.
#[derive(Debug, Clone)]
pub struct AuthorizationQuery {
    patient: Ins,
    vihf: VihfContext,
    mode: ListMode,
}

impl Transaction for ListAuthorizations {
    type Request = pb::ListAuthorizationsRequest;
    type Valid = AuthorizationQuery;
    type Response = pb::ListAuthorizationsResponse;

    const USE_CASE: &'static str = "td1.6_list_authorizations";
    const WEB_SERVICE: WebService = WebService::Habilitations;
    const ACTION: &'static str = action::TD16;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD1.6", "mode": req.mode })
    }

    fn audit_response(r: &pb::ListAuthorizationsResponse) -> (Option<String>, serde_json::Value) {
        (
            None,
            serde_json::json!({ "professionals": r.professionals.len() }),
        )
    }

    fn validate(
        req: pb::ListAuthorizationsRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<AuthorizationQuery, DmpError> {
        Ok(AuthorizationQuery {
            patient: conversions::ins("patient", req.patient.as_ref())?,
            vihf: conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?,
            mode: conversions::list_mode(req.mode)
                .ok_or_else(|| DmpError::field("mode", "ACTIVE, BLOCKED or ALL (the default)"))?,
        })
    }

    fn build(q: &AuthorizationQuery, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&q.vihf, &q.patient)?;
        Ok(Message::soap(
            assertion,
            habilitations::list_authorization_by_patient(q.mode),
        ))
    }

    fn parse(_: &AuthorizationQuery, reply: &Reply) -> Result<pb::ListAuthorizationsResponse, DmpError> {
        let list = habilitations::read_authorization_list(
            reply.payload(habilitations::NS, "listAuthorizationByPatientResponse")?,
        )
        .map_err(malformed)?;
        if !list.status.is_ok() {
            return Err(refused(list.status));
        }
        Ok(pb::ListAuthorizationsResponse {
            professionals: list
                .professionals
                .iter()
                .map(conversions::professional_authorization)
                .collect(),
        })
    }
}
