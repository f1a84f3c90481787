//! TD0.4 ListPatients: the DMPs the professional is authorized on, changed since a date (the
//! DMP's `PatientsSpecific` web service, `patientList`). The VIHF names a patient, as the
//! official example does.

use dmp_protocol::habilitations::WebServiceStatus;
use dmp_protocol::patients::{self, DateType};
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{Dtm, Ins};
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction};

/// TD0.4.
#[derive(Debug, Clone, Copy)]
pub struct ListPatients;

/// A ListPatients request, checked.
#[derive(Debug, Clone)]
pub struct PatientListQuery {
    patient: Ins,
    vihf: VihfContext,
    since: Dtm,
    date_type: DateType,
}

impl Transaction for ListPatients {
    type Request = pb::ListPatientsRequest;
    type Valid = PatientListQuery;
    type Response = pb::ListPatientsResponse;

    const USE_CASE: &'static str = "td0.4_list_patients";
    const WEB_SERVICE: WebService = WebService::Patients;
    const ACTION: &'static str = action::TD04;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD0.4", "date_type": req.date_type })
    }

    fn audit_response(r: &pb::ListPatientsResponse) -> (Option<String>, serde_json::Value) {
        (None, serde_json::json!({ "patients": r.patients.len() }))
    }

    fn validate(
        req: pb::ListPatientsRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<PatientListQuery, DmpError> {
        let since = req
            .since
            .as_ref()
            .ok_or_else(|| DmpError::field("since", "required (the DMP lists changes since a date)"))?;
        let date_type = match pb::PatientListDateType::try_from(req.date_type) {
            Ok(pb::PatientListDateType::LastAuthorization) => DateType::LastAuthorization,
            Ok(pb::PatientListDateType::LastDocument | pb::PatientListDateType::Unspecified) => {
                DateType::LastDocument
            }
            Err(_) => {
                return Err(DmpError::field(
                    "date_type",
                    "LAST_DOCUMENT or LAST_AUTHORIZATION",
                ));
            }
        };
        Ok(PatientListQuery {
            patient: conversions::ins("patient", req.patient.as_ref())?,
            vihf: conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?,
            since: conversions::dtm("since", since)?,
            date_type,
        })
    }

    fn build(q: &PatientListQuery, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&q.vihf, &q.patient)?;
        Ok(Message::soap(
            assertion,
            patients::patient_list(q.since.as_str(), q.date_type),
        ))
    }

    fn parse(_: &PatientListQuery, reply: &Reply) -> Result<pb::ListPatientsResponse, DmpError> {
        let list = patients::read_patient_list(reply.payload(patients::NS, "patientListResponse")?)
            .map_err(|e| DmpError::MalformedResponse(e.to_string()))?;
        if !list.status.is_ok() {
            let WebServiceStatus { status, context } = list.status;
            return Err(DmpError::SoapFault {
                code: "Sender".into(),
                subcode: Some(status),
                reason: context,
            });
        }
        Ok(pb::ListPatientsResponse {
            patients: list
                .patients
                .iter()
                .map(conversions::authorized_patient)
                .collect(),
        })
    }
}
