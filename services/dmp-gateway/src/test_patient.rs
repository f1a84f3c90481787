//! TD0.2 TestPatientDmp: does the patient have a DMP, is it closed, and is the professional
//! authorized on it, whether they are the treating doctor, and the patient's identity traits (HL7v3 PRPA_IN201307UV02 → PRPA_IN201308UV02, SPEC.md §2).

use dmp_protocol::hl7v3::{self, ExistenceQuery, Hl7v3Error};
use dmp_protocol::transactions::{WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::Ins;
use dmp_protocol::xml::ns;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction};

/// TD0.2.
#[derive(Debug, Clone, Copy)]
pub struct TestPatient;

/// A TestPatientDmp request, checked.
#[derive(Debug, Clone)]
pub struct PatientTest {
    patient: Ins,
    vihf: VihfContext,
}

impl Transaction for TestPatient {
    type Request = pb::TestPatientDmpRequest;
    type Valid = PatientTest;
    type Response = pb::TestPatientDmpResponse;

    const USE_CASE: &'static str = "td0.2_test_patient_dmp";
    const WEB_SERVICE: WebService = WebService::Patients;
    const ACTION: &'static str = action::TD02;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(_: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD0.2" })
    }

    fn audit_response(r: &pb::TestPatientDmpResponse) -> (Option<String>, serde_json::Value) {
        (
            pb::Authorization::try_from(r.authorization)
                .map(|a| a.as_str_name().to_owned())
                .ok(),
            serde_json::json!({
                "dmp_exists": r.dmp_exists,
                "dmp_closed": r.dmp_closed,
                "treating_doctor": r.treating_doctor,
            }),
        )
    }

    fn validate(
        req: pb::TestPatientDmpRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<PatientTest, DmpError> {
        Ok(PatientTest {
            patient: conversions::ins("patient", req.patient.as_ref())?,
            vihf: conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?,
        })
    }

    fn build(t: &PatientTest, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&t.vihf, &t.patient)?;
        let body = hl7v3::existence_query(&ExistenceQuery {
            sender_oid: &ctx.settings.hl7_sender_oid,
            software_name: &ctx.lps.name,
            patient: &t.patient,
            now: ctx.now,
        });
        Ok(Message::soap(assertion, body))
    }

    /// An acknowledgement other than AA is the DMP refusing the request, as a SOAP Sender fault
    /// would.
    fn parse(_: &PatientTest, reply: &Reply) -> Result<pb::TestPatientDmpResponse, DmpError> {
        let answer =
            hl7v3::read_existence_answer(reply.payload(ns::HL7, hl7v3::ANSWER)?).map_err(|e| match e {
                Hl7v3Error::UnknownAuthorization(_) => DmpError::MalformedResponse(e.to_string()),
                Hl7v3Error::Refused { ack, detail } => DmpError::SoapFault {
                    code: "Sender".into(),
                    subcode: Some(format!("HL7 acknowledgement {ack}")),
                    reason: if detail.is_empty() {
                        "the DMP refused the request".into()
                    } else {
                        detail
                    },
                },
            })?;
        Ok(pb::TestPatientDmpResponse {
            dmp_exists: answer.dmp_exists,
            dmp_closed: answer.dmp_closed,
            authorization: conversions::authorization(answer.authorization) as i32,
            treating_doctor: answer.treating_doctor.unwrap_or(false),
            patient_traits: answer.patient.as_ref().map(conversions::patient_traits),
        })
    }
}
