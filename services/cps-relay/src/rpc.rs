//! The `cps.v1.CpsRelay` gRPC service: authorises the caller, checks the request, runs the
//! card operation on one of `sessions` card threads ([`CardQueue`], waiting at most `card_wait`
//! for the card), and records every signature (caller, scheme, SHA-256 of the data,
//! outcome — never the data, the signature or a PIN).

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_log::{AuditEvent, AuditLog, Direction};
use ehealth_proto::cps::v1::cps_relay_server::CpsRelay;
use ehealth_proto::cps::v1::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use service_kit::error::ServiceError;
use tonic::{Request, Response, Status};

use crate::access::{Access, Caller, caller};
use crate::card::queue::CardQueue;
use crate::card::{Card, Pin, check_pin_format};
use crate::error::RelayError;
use crate::handshake;
use crate::scheme::{Scheme, sha256};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignLabels {
    scheme: &'static str,
    outcome: &'static str,
}

/// The relay's own metrics: signatures by scheme and outcome, and the card's signing time.
#[derive(Clone)]
pub struct RelayMetrics {
    signatures: Family<SignLabels, Counter>,
    card_seconds: Histogram,
}

impl RelayMetrics {
    pub(crate) fn register(metrics: &service_kit::metrics::Metrics) -> Self {
        let m = RelayMetrics {
            signatures: Family::default(),
            card_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        metrics.register(
            "cps_relay_signatures",
            "Signatures asked of the card, by scheme and outcome",
            m.signatures.clone(),
        );
        metrics.register(
            "cps_relay_card_seconds",
            "Time the card took to sign",
            m.card_seconds.clone(),
        );
        m
    }

    /// Signatures made successfully so far (all schemes).
    pub fn signatures_made(&self) -> u64 {
        [
            Scheme::RsaPkcs1Sha256,
            Scheme::RsaPssSha256,
            Scheme::EcdsaP256Sha256,
        ]
        .iter()
        .map(|s| {
            self.signatures
                .get_or_create(&SignLabels {
                    scheme: s.name(),
                    outcome: "ok",
                })
                .get()
        })
        .sum()
    }
}

pub(crate) struct RelayService {
    card: Arc<dyn Card>,
    /// The card holder's professional id, recorded with every audit event.
    professional_id: Option<String>,
    access: Access,
    audit: AuditLog,
    queue: CardQueue,
    metrics: RelayMetrics,
}

impl RelayService {
    pub(crate) fn new(
        card: Arc<dyn Card>,
        access: Access,
        audit: AuditLog,
        sessions: usize,
        card_wait: Duration,
        metrics: RelayMetrics,
    ) -> std::io::Result<Self> {
        let professional_id = card
            .certificate()
            .and_then(|c| c.describe(&[]))
            .map(|d| d.professional_id)
            .ok()
            .filter(|id| !id.is_empty());
        Ok(RelayService {
            queue: CardQueue::start(card.clone(), sessions, card_wait)?,
            card,
            professional_id,
            access,
            audit,
            metrics,
        })
    }

    /// Runs a blocking card operation once the card is free, waiting at most `card_wait`.
    async fn on_card<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Card) -> Result<T, RelayError> + Send + 'static,
    ) -> Result<T, RelayError> {
        self.queue.run(op).await
    }

    fn authorise<T>(&self, req: &Request<T>) -> Result<Caller, RelayError> {
        let c = caller(req)?;
        self.access.check(&c)?;
        Ok(c)
    }

    async fn audit(
        &self,
        use_case: &str,
        caller: &Caller,
        outcome: &Result<(), &RelayError>,
        attributes: serde_json::Value,
    ) -> Result<(), RelayError> {
        let mut e = AuditEvent::new("cps-relay", use_case, Direction::ReturnedResponse);
        e.peer = Some(caller.subject.clone());
        e.user_id = self.professional_id.clone();
        e.status = Some(match outcome {
            Ok(()) => "OK".to_owned(),
            Err(err) => service_kit::metrics::code_name(err.error_code().grpc_code() as i32).to_owned(),
        });
        e.error_code = outcome.as_ref().err().map(|err| err.kind().to_owned());
        e.attributes = attributes;
        e.attributes["caller_fingerprint"] = serde_json::Value::String(caller.fingerprint.clone());
        self.audit.record(e).await?;
        Ok(())
    }

    async fn sign(&self, caller: &Caller, req: SignForAuthenticationRequest) -> Result<Vec<u8>, RelayError> {
        let scheme = Scheme::from_proto(req.scheme).ok_or_else(|| RelayError::UnsupportedScheme {
            requested: format!("{} (unknown or unspecified)", req.scheme),
            supported: "rsa_pkcs1_sha256, rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256".into(),
        })?;
        let input = handshake::classify(scheme, &req.data)?;
        self.access.take_signature_token(caller)?;
        let digest = hex::encode(sha256(&req.data));
        let data = req.data;
        let start = Instant::now();
        let result = self.on_card(move |card| card.sign(scheme, &data)).await;
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
            caller = %caller.subject,
            scheme = scheme.name(),
            handshake = input.name(),
            data_sha256 = %digest,
            outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind()),
            "signature for authentication"
        );
        let attrs =
            serde_json::json!({ "scheme": scheme.name(), "handshake": input.name(), "data_sha256": digest });
        // Fail closed: a signature that cannot be audited is not handed out.
        self.audit(
            "sign_for_authentication",
            caller,
            &result.as_ref().map(|_| ()),
            attrs,
        )
        .await?;
        result
    }
}

#[tonic::async_trait]
impl CpsRelay for RelayService {
    async fn get_authentication_certificate(
        &self,
        request: Request<GetAuthenticationCertificateRequest>,
    ) -> Result<Response<GetAuthenticationCertificateResponse>, Status> {
        self.authorise(&request)?;
        let card = self.card.clone();
        let described = tokio::task::spawn_blocking(move || card.certificate()?.describe(&card.schemes()?))
            .await
            .map_err(|e| RelayError::Internal(format!("card task: {e}")))??;
        Ok(Response::new(described))
    }

    async fn sign_for_authentication(
        &self,
        request: Request<SignForAuthenticationRequest>,
    ) -> Result<Response<SignForAuthenticationResponse>, Status> {
        let caller = self.authorise(&request)?;
        let req = request.into_inner();
        let scheme = req.scheme;
        let signature = self.sign(&caller, req).await?;
        Ok(Response::new(SignForAuthenticationResponse { signature, scheme }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        self.authorise(&request)?;
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(status.to_proto()))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        let caller = self.authorise(&request)?;
        // The PIN moves straight into a zeroising secret; the request keeps no copy.
        let pin = Pin::from(std::mem::take(&mut request.into_inner().pin));
        let result = match check_pin_format(secrecy::ExposeSecret::expose_secret(&pin)) {
            Ok(()) => self.on_card(move |card| card.login(&pin)).await,
            Err(e) => Err(e),
        };
        tracing::info!(caller = %caller.subject, outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind()), "login");
        self.audit(
            "login",
            &caller,
            &result.as_ref().map(|_| ()),
            serde_json::json!({}),
        )
        .await?;
        result?;
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(LoginResponse {
            status: Some(status.to_proto()),
        }))
    }

    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        let caller = self.authorise(&request)?;
        let result = self.on_card(|card| card.logout()).await;
        self.audit(
            "logout",
            &caller,
            &result.as_ref().map(|_| ()),
            serde_json::json!({}),
        )
        .await?;
        result?;
        let status = self.on_card(|card| card.status()).await?;
        Ok(Response::new(LogoutResponse {
            status: Some(status.to_proto()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardStatus;
    use crate::certificate::CardCertificate;

    /// A card that takes 300 ms per signature, like a slow physical card.
    struct SlowCard;

    impl Card for SlowCard {
        fn certificate(&self) -> Result<CardCertificate, RelayError> {
            Err(RelayError::Internal("not used".into()))
        }
        fn schemes(&self) -> Result<Vec<Scheme>, RelayError> {
            Ok(vec![Scheme::RsaPkcs1Sha256])
        }
        fn status(&self) -> Result<CardStatus, RelayError> {
            Ok(CardStatus::default())
        }
        fn login(&self, _pin: &Pin) -> Result<(), RelayError> {
            Ok(())
        }
        fn logout(&self) -> Result<(), RelayError> {
            Ok(())
        }
        fn sign(&self, _scheme: Scheme, _data: &[u8]) -> Result<Vec<u8>, RelayError> {
            std::thread::sleep(Duration::from_millis(300));
            Ok(vec![1; 256])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_card_answers_deadline_exceeded() {
        let svc = RelayService::new(
            Arc::new(SlowCard),
            Access::new(&[], 0, 1),
            AuditLog::disabled(),
            1,
            Duration::from_millis(50),
            RelayMetrics::register(&service_kit::metrics::Metrics::new()),
        )
        .expect("card thread");
        let caller = Caller {
            fingerprint: "00".into(),
            subject: "CN=test".into(),
        };
        let req = || SignForAuthenticationRequest {
            scheme: Scheme::RsaPkcs1Sha256.to_proto() as i32,
            data: crate::handshake::tests::tls12_transcript(),
        };
        let (first, second) = tokio::join!(svc.sign(&caller, req()), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            svc.sign(&caller, req()).await
        });
        assert!(first.is_ok());
        let err = second.expect_err("the card is busy with the first signature");
        assert!(matches!(err, RelayError::CardBusy(_)), "{err:?}");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::DeadlineExceeded);
        assert_eq!(svc.metrics.signatures_made(), 1);
    }
}
