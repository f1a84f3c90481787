//! Use case: sign TLS handshake data with the card (gRPC `SignForAuthentication`, CPS agent
//! `POST /cps/sign/for/authentication/SHA256WithRSA`). Not a signing oracle (SPEC.md §1): only
//! a gateway role, only TLS handshake signing input of an allowed server, only inside a live
//! session grant of the card session and for a professional the gateway may act for, within the
//! caller's rate; the card in the reader must still be the session's. Every signature asked of
//! the card is audited (the face it came through included), and a signature that cannot be
//! audited is not handed out.

use std::time::Instant;

use ehealth_proto::cps::v1::SessionReason;

use super::{Face, RelayService, SignLabels, Signed, ended_by};
use crate::access::Caller;
use crate::certificate::KeyPurpose;
use crate::error::RelayError;
use crate::handshake;
use crate::roles::Rpc;
use crate::scheme::{Scheme, sha256};

impl RelayService {
    /// A signature over TLS handshake data for `caller`, under the session grant `grant_id`.
    pub(crate) async fn sign_for_authentication(
        &self,
        caller: &Caller,
        face: Face,
        grant_id: Option<String>,
        scheme: i32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RelayError> {
        let role = self.admit(caller, Rpc::SignForAuthentication)?;
        let requested = scheme;
        let scheme = Scheme::from_proto(requested).ok_or_else(|| RelayError::UnsupportedScheme {
            requested: format!("{requested} (unknown or unspecified)"),
            supported: "rsa_pkcs1_sha256, rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256".into(),
        })?;
        let input = handshake::classify(scheme, &data)?;
        let server = self.servers.check(input, &data)?;
        let session = self.signing_session(grant_id.as_deref(), "SignForAuthentication")?;
        self.roles
            .check_professional(caller, role, &session.professional_id)?;
        self.access.take_signature_token(caller)?;
        let digest = hex::encode(sha256(&data));
        let expected = session.certificate_der.clone();
        let start = Instant::now();
        // The card in the reader must still be the session's: a card read again since (another
        // token) is never asked to sign for the old session.
        let signed = self
            .on_card(move |card| {
                let certificate = card.certificate()?;
                if certificate.leaf != expected {
                    return Ok(Signed::CardChanged);
                }
                // A signature (nonRepudiation) key never signs a TLS handshake.
                certificate.check_purpose(KeyPurpose::Authentication)?;
                card.sign(scheme, &data).map(Signed::Signature)
            })
            .await;
        let result = match signed {
            Ok(Signed::Signature(s)) => Ok(s),
            Ok(Signed::CardChanged) => {
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
        };
        self.metrics.card_seconds.observe(start.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .signatures
            .get_or_create(&SignLabels {
                scheme: scheme.name(),
                outcome,
            })
            .inc();
        tracing::info!(
            caller = %caller.identity,
            professional = %session.professional_id,
            scheme = scheme.name(),
            handshake = input.name(),
            server = server.as_deref().unwrap_or("-"),
            data_sha256 = %digest,
            outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind()),
            api = face.name(),
            "signature for authentication"
        );
        let attrs = serde_json::json!({
            "scheme": scheme.name(),
            "handshake": input.name(),
            "data_sha256": digest,
            "server": server,
            "certificate_sha256": session.certificate_sha256,
            "grant_id": grant_id,
            "api": face.name(),
        });
        // Fail closed: a signature that cannot be audited is not handed out.
        self.audit(
            "sign_for_authentication",
            caller,
            Some(session.professional_id.clone()),
            &result.as_ref().map(|_| ()),
            attrs,
        )
        .await?;
        result
    }
}
