//! The tonic surface of twiin-authz (`twiin.v1.TwiinAuthz`): both use cases over gRPC. It only
//! translates: the request into the use case's input, its caller (address, client certificate,
//! AORTA-ID, trace context) into the audit trail, the outcome into a gRPC status carrying the
//! OAuth error (`oauth-error`, `oauth-error-description`, `http-status` metadata).

use std::sync::Arc;

use ehealth_proto::twiin::v1 as pb;
use ehealth_proto::twiin::v1::twiin_authz_server::TwiinAuthz;

use crate::aorta_id::{self, AortaId};
use crate::broker::CallerCertificate;
use crate::error::AuthzError;
use crate::trail::{Outcome, Trail, UC_ASSERTIONS, UC_TOKEN};
use crate::{Authz, issue_assertions, issue_token};

/// The gRPC face of a request: its trail (with the AORTA-ID of the metadata, or a new one when
/// that is malformed, which the caller then gets refused).
fn grpc_trail<T>(
    authz: &Authz,
    use_case: &'static str,
    req: &tonic::Request<T>,
) -> (Trail, Result<AortaId, AuthzError>) {
    let md = req.metadata();
    let traceparent = md.get("traceparent").and_then(|v| v.to_str().ok());
    let mut trail = authz
        .trail(
            use_case,
            AortaId::new(),
            req.remote_addr().map(|a| a.to_string()),
            "grpc",
            traceparent,
        )
        .with_deadline(deadline(md, authz.grpc_timeout));
    trail.note(
        "method",
        match use_case {
            UC_ASSERTIONS => "twiin.v1.TwiinAuthz/IssueTwiinAssertions",
            _ => "twiin.v1.TwiinAuthz/IssueAortaAccessToken",
        },
    );
    let id = match md.get(aorta_id::HEADER) {
        None => Ok(AortaId::new()),
        Some(v) => {
            let parsed = v
                .to_str()
                .map_err(|_| ())
                .and_then(|t| AortaId::accept(Some(t)).map_err(|_| ()));
            match parsed {
                Ok(id) => Ok(id),
                Err(()) => {
                    let raw: String = String::from_utf8_lossy(v.as_bytes()).chars().take(200).collect();
                    trail.note("aorta_id_received", raw);
                    Err(AuthzError::InvalidRequest(format!(
                        "Ongeldig verzoek: {}",
                        aorta_id::MalformedAortaId
                    )))
                }
            }
        }
    };
    if let Ok(id) = &id {
        trail.set_aorta_id(id.clone());
    }
    (trail, id)
}

/// The call's deadline: the server's `server.request_timeout`, or the caller's shorter
/// `grpc-timeout` (the gRPC over HTTP/2 form: up to 8 digits and a unit H, M, S, m, u or n).
fn deadline(md: &tonic::metadata::MetadataMap, server: std::time::Duration) -> std::time::Duration {
    use std::time::Duration;
    let caller = md
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
            let n: u64 = digits.parse().ok().filter(|_| digits.len() <= 8)?;
            Some(match unit {
                "H" => Duration::from_secs(n.saturating_mul(3600)),
                "M" => Duration::from_secs(n.saturating_mul(60)),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                _ => return None,
            })
        });
    caller.map_or(server, |c| c.min(server))
}

/// A refusal before the use case, written to the trail first.
async fn grpc_refuse(trail: Trail, e: AuthzError) -> tonic::Status {
    match trail.finish(&Outcome::of::<()>(&Err(e.clone()))).await {
        Ok(()) => e.into(),
        Err(audit) => audit.into(),
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct Grpc(pub(crate) Arc<Authz>);

#[tonic::async_trait]
impl TwiinAuthz for Grpc {
    async fn issue_twiin_assertions(
        &self,
        request: tonic::Request<pb::IssueTwiinAssertionsRequest>,
    ) -> Result<tonic::Response<pb::IssueTwiinAssertionsResponse>, tonic::Status> {
        let (trail, id) = grpc_trail(&self.0, UC_ASSERTIONS, &request);
        if let Err(e) = id {
            return Err(grpc_refuse(trail, e).await);
        }
        let caller = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|leaf| CallerCertificate::from_der(leaf)));
        let r = request.into_inner();
        let req = issue_assertions::AssertionsRequest {
            source_token: r.source_token,
            audience: r.audience,
            authz_base: opt(r.authz_base),
        };
        let out = self.0.issue_assertions(req, caller.as_ref(), trail).await?;
        Ok(tonic::Response::new(pb::IssueTwiinAssertionsResponse {
            client_assertion: out.client_assertion,
            client_assertion_type: issue_assertions::CLIENT_ASSERTION_TYPE.into(),
            assertion: out.assertion,
            grant_type: issue_assertions::JWT_BEARER.into(),
            scope: out.scope,
            expires_at: out.expires_at as i64,
        }))
    }

    async fn issue_aorta_access_token(
        &self,
        request: tonic::Request<pb::TokenRequest>,
    ) -> Result<tonic::Response<pb::TokenResponse>, tonic::Status> {
        let (trail, id) = grpc_trail(&self.0, UC_TOKEN, &request);
        if let Err(e) = id {
            return Err(grpc_refuse(trail, e).await);
        }
        let r = request.into_inner();
        let req = issue_token::TokenRequest {
            grant_type: opt(r.grant_type),
            assertion: opt(r.assertion),
            client_assertion_type: opt(r.client_assertion_type),
            client_assertion: opt(r.client_assertion),
            scope: opt(r.scope),
            client_id: opt(r.client_id),
        };
        let t = self.0.issue_token(req, trail).await?;
        Ok(tonic::Response::new(pb::TokenResponse {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            scope: t.scope,
            issued_token_type: t.issued_token_type,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_shorter_deadline_wins() {
        let server = Duration::from_secs(30);
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(super::deadline(&md, server), server);
        md.insert("grpc-timeout", "500m".parse().expect("ascii"));
        assert_eq!(super::deadline(&md, server), Duration::from_millis(500));
        md.insert("grpc-timeout", "2H".parse().expect("ascii"));
        assert_eq!(super::deadline(&md, server), server);
        md.insert("grpc-timeout", "x".parse().expect("ascii"));
        assert_eq!(super::deadline(&md, server), server);
    }
}
