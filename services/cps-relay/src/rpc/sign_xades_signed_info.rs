//! Use case: sign a XAdES `SignedInfo` with the card's *signature* key (gRPC
//! `SignXadesSignedInfo`, issue 16). Purpose-limited: only a gateway role, only the one canonical
//! SignedInfo shape a DMP submission's signature has (`crate::signed_info`), only the key whose
//! certificate has nonRepudiation, inside a live session grant of the card session and for a
//! professional the gateway may act for, within the caller's rate; audited like every signature
//! (digests, never the data), and not handed out if it cannot be audited.

use std::time::Instant;

use ehealth_proto::cps::v1::SessionReason;

use super::{RelayService, SignLabels, ended_by};
use crate::access::Caller;
use crate::certificate::KeyPurpose;
use crate::error::RelayError;
use crate::roles::Role;
use crate::scheme::sha256;
use crate::signed_info;

impl RelayService {
    /// A XAdES signature with the card's signature key (issue 16): the same session, grant,
    /// professional and rate checks as a TLS signature, then the SignedInfo's exact shape, then
    /// the key's purpose; audited like every signature (digests, never the data).
    pub(super) async fn sign_xades(
        &self,
        caller: &Caller,
        role: Role,
        grant_id: Option<String>,
        signed_info: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), RelayError> {
        let digest = hex::encode(sha256(&signed_info));
        let (shape, result) = match signed_info::check(&signed_info) {
            Ok(shape) => {
                let r = self
                    .sign_xades_checked(caller, role, grant_id.as_deref(), signed_info)
                    .await;
                (Some(shape), r)
            }
            Err(e) => (None, Err(e)),
        };
        let (professional, certificate_sha256) = match &result {
            Ok((_, cert, professional)) => (Some(professional.clone()), Some(hex::encode(sha256(cert)))),
            Err(_) => (self.card_professional(), None),
        };
        let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind());
        self.metrics
            .signatures
            .get_or_create(&SignLabels {
                scheme: "xades_rsa_pkcs1_sha256",
                outcome: if result.is_ok() { "ok" } else { "error" },
            })
            .inc();
        tracing::info!(
            caller = %caller.identity,
            professional = professional.as_deref().unwrap_or("-"),
            data_sha256 = %digest,
            outcome,
            "XAdES signature"
        );
        let attrs = serde_json::json!({
            "scheme": "rsa_pkcs1_sha256",
            "key": "signature",
            "purpose": "xades_signed_info",
            "data_sha256": digest,
            "manifest_sha256": shape.as_ref().map(|s| s.manifest_sha256.clone()),
            "signed_properties_sha256": shape.as_ref().map(|s| s.signed_properties_sha256.clone()),
            "certificate_sha256": certificate_sha256,
            "grant_id": grant_id,
        });
        // Fail closed, as for TLS signatures.
        self.audit(
            "sign_xades_signed_info",
            caller,
            professional,
            &result.as_ref().map(|_| ()),
            attrs,
        )
        .await?;
        result.map(|(signature, certificate, _)| (signature, certificate))
    }

    async fn sign_xades_checked(
        &self,
        caller: &Caller,
        role: Role,
        grant_id: Option<&str>,
        signed_info: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>, String), RelayError> {
        let session = self.signing_session(grant_id, "SignXadesSignedInfo")?;
        self.roles
            .check_professional(caller, role, &session.professional_id)?;
        self.access.take_signature_token(caller)?;
        let expected = session.certificate_der.clone();
        let start = Instant::now();
        let signed = self
            .on_card(move |card| {
                if card.certificate()?.leaf != expected {
                    return Ok(None);
                }
                let certificate = card.signature_certificate()?;
                certificate.check_purpose(KeyPurpose::Signature)?;
                let signature = card.sign_with_signature_key(&signed_info)?;
                Ok(Some((signature, certificate.leaf)))
            })
            .await;
        self.metrics.card_seconds.observe(start.elapsed().as_secs_f64());
        match signed {
            Ok(Some((signature, certificate))) => Ok((signature, certificate, session.professional_id)),
            Ok(None) => {
                self.sessions.end_if(&session.id, SessionReason::CardChanged);
                Err(RelayError::NoToken {
                    reason: "another card is in the reader; the holder must log in again".into(),
                })
            }
            Err(e) => {
                if let Some(reason) = ended_by(&e) {
                    self.sessions.end_if(&session.id, reason);
                }
                Err(e)
            }
        }
    }
}
