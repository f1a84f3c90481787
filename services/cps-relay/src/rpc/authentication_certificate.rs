//! Use case: hand a gateway the card's authentication certificate (gRPC
//! `GetAuthenticationCertificate`, CPS agent `GET /cps/authenticationCertificate`). The card is
//! read now, so a swapped or removed card is seen even when nobody watches, and a gateway sees
//! only the cards of professionals it may act for.

use ehealth_proto::cps::v1::{GetAuthenticationCertificateResponse, SessionReason};

use super::{RelayService, ended_by};
use crate::access::Caller;
use crate::error::RelayError;
use crate::roles::Rpc;
use crate::session::Observation;

impl RelayService {
    pub(crate) async fn authentication_certificate(
        &self,
        caller: &Caller,
    ) -> Result<GetAuthenticationCertificateResponse, RelayError> {
        let role = self.admit(caller, Rpc::GetAuthenticationCertificate)?;
        let read = self
            .on_card(|card| Ok((card.current_identity(), card.schemes())))
            .await?;
        let identity = match read.0 {
            Ok(identity) => identity,
            Err(e) => {
                if let Some(SessionReason::CardRemoved) = ended_by(&e) {
                    self.sessions.end(SessionReason::CardRemoved);
                }
                return Err(e);
            }
        };
        self.sessions.observe(&Observation::Identity(identity.clone()));
        let described = identity.certificate.describe(&read.1?)?;
        self.roles
            .check_professional(caller, role, &described.professional_id)?;
        Ok(described)
    }
}
