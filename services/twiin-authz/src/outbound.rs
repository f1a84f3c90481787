//! The calls this service makes: ZORG-AB, the jwks_uris of external GtKs, the AORTA Stelsel
//! Metadata Interface and the Autorisatie Server ZA (SPEC.md §3 "safe by default").
//!
//! One HTTP client for all of them: redirects are never followed (an https URL must not lead to
//! http or to an internal host), answers are read with a size cap, outside development only
//! https is spoken, and the client certificate of `outbound_tls` is presented to servers that
//! ask for one (ZORG-AB and the AS ZA admit a GtK by its UZI server certificate).
//!
//! Every call is described by an [`Exchange`] for the audit trail: method, URL, AORTA-ID, when
//! it was sent and how long the answer took, status, error and what it carried.

use std::time::{Duration, Instant, SystemTime};

use crate::aorta_id::AortaId;
use crate::config::OutboundTlsSettings;

/// Largest JWKS, metadata or ZORG-AB answer read.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Largest Stelseltoken read (it carries a certificate chain and a key set).
pub(crate) const MAX_STELSELTOKEN_BYTES: usize = 256 * 1024;
/// Largest token response of the AS ZA read.
pub(crate) const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The outbound HTTP client.
pub(crate) fn client(tls: &OutboundTlsSettings, development: bool) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!development)
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(60));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let mut pem =
            std::fs::read(cert).map_err(|e| format!("outbound_tls.cert {}: {e}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| format!("outbound_tls.key {}: {e}", key.display()))?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|e| format!("outbound_tls.cert/key: {e}"))?;
        b = b.identity(identity);
    }
    if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("outbound_tls.ca {}: {e}", ca.display()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("outbound_tls.ca: {e}"))?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| format!("outbound HTTP client: {e}"))
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("antwoord groter dan {0} bytes")]
    TooLarge(usize),
    #[error("antwoord niet op tijd")]
    Timeout,
    #[error("antwoord afgebroken: {0}")]
    Broken(String),
}

/// The body of `resp`, at most `cap` bytes (a larger one is refused before it is read whole).
pub(crate) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(ReadError::TooLarge(cap));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(ReadError::Timeout),
            Err(e) => return Err(ReadError::Broken(e.to_string())),
        }
    }
}

/// One outgoing call, for the audit trail (a sent-request and a received-response event).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exchange {
    pub(crate) method: &'static str,
    pub(crate) url: String,
    /// The AORTA-ID the call carried (same `initialRequestID`, its own `requestID`).
    pub(crate) aorta_id: AortaId,
    pub(crate) sent_at: SystemTime,
    /// Until the answer (or the failure) was complete.
    pub(crate) latency: Option<Duration>,
    pub(crate) status: Option<u16>,
    /// The OAuth error of the answer, or what went wrong (`timeout`, `unreachable`, ...).
    pub(crate) error: Option<String>,
    /// The answer's `error_description`, or the failure in detail (internal: audit only).
    pub(crate) error_description: Option<String>,
    /// The AORTA scope a GetTokenRequest asked for.
    pub(crate) aorta_scope: Option<String>,
    /// `jti` of the subject token sent.
    pub(crate) subject_token_jti: Option<String>,
    /// `expires_in` of a token answer.
    pub(crate) expires_in: Option<i64>,
    /// `scope` of a token answer (the granted AORTA scope).
    pub(crate) granted_scope: Option<String>,
    /// `jti` of a token received (an AORTA access token, a Stelseltoken).
    pub(crate) token_jti: Option<String>,
    started: Instant,
}

impl Exchange {
    /// A call about to be sent now.
    pub(crate) fn start(method: &'static str, url: &str, aorta_id: AortaId) -> Exchange {
        Exchange {
            method,
            url: url.to_owned(),
            aorta_id,
            sent_at: SystemTime::now(),
            latency: None,
            status: None,
            error: None,
            error_description: None,
            aorta_scope: None,
            subject_token_jti: None,
            expires_in: None,
            granted_scope: None,
            token_jti: None,
            started: Instant::now(),
        }
    }

    /// Marks the answer (or the failure) complete now.
    pub(crate) fn done(&mut self) {
        self.latency = Some(self.started.elapsed());
    }

    /// Records a failure of the call itself.
    pub(crate) fn failed(&mut self, kind: &str, detail: impl Into<String>) {
        self.done();
        self.error = Some(kind.to_owned());
        self.error_description = Some(detail.into());
    }
}

/// `timeout` or `unreachable`, for a reqwest error.
pub(crate) fn failure_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "unreachable"
    }
}
