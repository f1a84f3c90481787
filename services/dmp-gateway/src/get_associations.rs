//! GetAssociations: the ITI-18 RegistryStoredQuery GetAssociations, the associations whose
//! source or target is one of the given entries — how a caller follows replacements (`RPLC`).

use dmp_protocol::ebrim;
use dmp_protocol::transactions::{GET_ASSOCIATIONS, WebService, action};
use dmp_protocol::vihf::VihfContext;
use dmp_protocol::xds::{self, Ins};
use dmp_protocol::xml::ns;
use ehealth_proto::dmp::v1 as pb;

use crate::config::XdsSettings;
use crate::conversions;
use crate::error::DmpError;
use crate::exchange::{CallContext, Message, Reply, Retry, Transaction, registry_status, registry_verdict};

/// GetAssociations.
#[derive(Debug, Clone, Copy)]
pub struct GetAssociations;

/// A GetAssociations request, checked.
#[derive(Debug, Clone)]
pub struct AssociationsQuery {
    patient: Ins,
    vihf: VihfContext,
    entry_uuids: Vec<String>,
}

impl Transaction for GetAssociations {
    type Request = pb::GetAssociationsRequest;
    type Valid = AssociationsQuery;
    type Response = pb::GetAssociationsResponse;

    const USE_CASE: &'static str = "td3.1_get_associations";
    const WEB_SERVICE: WebService = WebService::Registry;
    const ACTION: &'static str = action::ITI18;
    const RETRY: Retry = Retry::Idempotent;

    fn audit_request(req: &Self::Request) -> serde_json::Value {
        serde_json::json!({ "transaction": "TD3.1 GetAssociations", "entry_uuids": req.entry_uuids })
    }

    fn audit_response(r: &pb::GetAssociationsResponse) -> (Option<String>, serde_json::Value) {
        (
            registry_verdict(r.status, &r.errors),
            serde_json::json!({ "associations_found": r.associations.len() }),
        )
    }

    fn validate(
        req: pb::GetAssociationsRequest,
        settings: &XdsSettings,
        _now: time::OffsetDateTime,
    ) -> Result<AssociationsQuery, DmpError> {
        let patient = conversions::ins("patient", req.patient.as_ref())?;
        let vihf = conversions::vihf_context(req.auth_context.as_ref(), &settings.default_purpose_of_use)?;
        if req.entry_uuids.is_empty() {
            return Err(DmpError::field(
                "entry_uuids",
                "at least one entryUUID is required",
            ));
        }
        for (i, id) in req.entry_uuids.iter().enumerate() {
            xds::check_entry_id(&format!("entry_uuids[{i}]"), id)?;
        }
        Ok(AssociationsQuery {
            patient,
            vihf,
            entry_uuids: req.entry_uuids,
        })
    }

    fn build(q: &AssociationsQuery, ctx: &CallContext<'_>) -> Result<Message, DmpError> {
        let assertion = ctx.vihf(&q.vihf, &q.patient)?;
        Ok(Message::soap(
            assertion,
            ebrim::adhoc_query(
                GET_ASSOCIATIONS,
                &[("$uuid".to_string(), ebrim::query_list(&q.entry_uuids))],
            ),
        ))
    }

    fn parse(_: &AssociationsQuery, reply: &Reply) -> Result<pb::GetAssociationsResponse, DmpError> {
        let r = reply.payload(ns::QUERY, "AdhocQueryResponse")?;
        let (status, errors) = registry_status(r)?;
        let associations = r
            .child(ns::RIM, "RegistryObjectList")
            .map(|l| {
                ebrim::read_object_list(l)
                    .associations
                    .into_iter()
                    .map(|a| pb::DocumentAssociation {
                        id: a.id,
                        association_type: a.association_type,
                        source: a.source,
                        target: a.target,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(pb::GetAssociationsResponse {
            status: status as i32,
            errors,
            associations,
        })
    }
}
