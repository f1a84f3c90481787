//! Who is calling (issue 13). Every `dmp.v1` call must name its caller before anything else
//! happens: the tower service [`Authenticated`] in front of `dmp.v1.DmpGateway` answers
//! `UNAUTHENTICATED` to a call without a valid credential, before the request is even decoded,
//! so no relay is asked and nothing is audited under a claimed name.
//!
//! A caller is named by [`service_kit::tls::caller_identity`] of its client certificate (mutual
//! TLS; the same function names callers at the relay, so one configured string means one caller
//! on both), or, with `auth.jwt`, by a bearer JWT of the configured issuer:
//! `jwt:<issuer>#<sub>`. **Decision** — a bearer token, when present, names the caller even over
//! mutual TLS: behind an API gateway the certificate is the gateway's, the token the
//! integrator's. A token the gateway cannot verify is refused, never ignored in favour of the
//! certificate.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use service_kit::CancellationToken;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::config::JwtSettings;

/// The authenticated caller of a gateway call, put into the request's extensions by
/// [`Authenticated`] (tests that call the service directly insert it themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity(pub String);

/// How callers are named: the check every `dmp.v1` call passes first.
#[derive(Clone)]
pub(crate) struct CallerAuth {
    jwt: Option<Arc<JwtVerifier>>,
}

impl CallerAuth {
    pub(crate) fn new(jwt: Option<Arc<JwtVerifier>>) -> Self {
        CallerAuth { jwt }
    }

    /// The caller of a request with `headers` over a connection whose client presented
    /// `certificates`.
    fn identify(
        &self,
        headers: &http::HeaderMap,
        certificates: Option<&[CertificateDer<'static>]>,
    ) -> Result<String, Status> {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default())
            .map(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
            });
        match (bearer, &self.jwt) {
            (Some(Some(token)), Some(jwt)) => jwt
                .verify(token)
                .map_err(|reason| Status::unauthenticated(format!("bearer token refused: {reason}"))),
            (Some(_), Some(_)) => Err(Status::unauthenticated(
                "the authorization metadata is not `Bearer <JWT>`",
            )),
            (Some(_), None) => Err(Status::unauthenticated(
                "bearer tokens are not accepted here (auth.jwt is not configured); present a client \
                 certificate",
            )),
            (None, _) => match certificates.and_then(<[_]>::first) {
                Some(leaf) => Ok(service_kit::tls::caller_identity(leaf)),
                None => Err(Status::unauthenticated(match &self.jwt {
                    Some(jwt) => format!(
                        "no caller credential: present a client certificate (mutual TLS) or a bearer JWT \
                         of {}",
                        jwt.settings.issuer
                    ),
                    None => "no caller credential: present a client certificate (mutual TLS)".to_owned(),
                })),
            },
        }
    }
}

/// A gRPC service whose every call is refused `UNAUTHENTICATED` unless [`CallerAuth`] names its
/// caller, which the service then finds as [`CallerIdentity`] in the request's extensions.
#[derive(Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    auth: CallerAuth,
}

impl<S> Authenticated<S> {
    pub(crate) fn new(inner: S, auth: CallerAuth) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Authenticated<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<http::Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let certificates = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        match self
            .auth
            .identify(req.headers(), certificates.as_deref().map(Vec::as_slice))
        {
            Ok(identity) => {
                req.extensions_mut().insert(CallerIdentity(identity));
                futures_util::future::Either::Right(self.inner.call(req))
            }
            Err(status) => {
                tracing::info!(path = %req.uri().path(), reason = status.message(), "call refused: no caller identity");
                futures_util::future::Either::Left(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// Where the issuer's keys are read from.
enum JwksSource {
    File(PathBuf),
    Url { url: String, http: reqwest::Client },
}

impl JwksSource {
    async fn load(&self) -> Result<JwkSet, String> {
        let text = match self {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            JwksSource::Url { url, http } => {
                let resp = http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{url}: HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| format!("{url}: {e}"))?
            }
        };
        serde_json::from_str(&text).map_err(|e| format!("not a JWKS: {e}"))
    }
}

/// Verifies bearer JWTs against the configured issuer's keys, kept in memory and read again
/// every `auth.jwt.jwks_refresh` (sooner, at most every 30 s, when a token names an unknown key).
pub(crate) struct JwtVerifier {
    settings: JwtSettings,
    source: JwksSource,
    keys: RwLock<Arc<JwkSet>>,
    unknown_kid: Arc<tokio::sync::Notify>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

/// How long a token may be late or early against this clock, as for session grants.
const LEEWAY_SECONDS: u64 = 30;
/// A flood of tokens with unknown key ids must not turn into a flood of JWKS requests.
const MIN_EARLY_REFRESH: Duration = Duration::from_secs(30);

impl JwtVerifier {
    /// Reads the keys once; start-up fails, naming `auth.jwt.jwks`, when they cannot be read.
    pub(crate) async fn load(settings: &JwtSettings) -> Result<Arc<Self>, String> {
        let source = if settings.jwks.starts_with("https://") {
            let mut http = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10));
            if let Some(ca) = &settings.jwks_ca {
                let pem = std::fs::read(ca).map_err(|e| format!("auth.jwt.jwks_ca {}: {e}", ca.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("auth.jwt.jwks_ca {}: {e}", ca.display()))?;
                http = http.tls_certs_only(certs);
            }
            JwksSource::Url {
                url: settings.jwks.clone(),
                http: http
                    .build()
                    .map_err(|e| format!("auth.jwt.jwks: HTTP client: {e}"))?,
            }
        } else {
            JwksSource::File(PathBuf::from(&settings.jwks))
        };
        let keys = source.load().await.map_err(|e| format!("auth.jwt.jwks: {e}"))?;
        Ok(Arc::new(JwtVerifier {
            settings: settings.clone(),
            source,
            keys: RwLock::new(Arc::new(keys)),
            unknown_kid: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// Reads the keys again every `jwks_refresh` until `shutdown`; a failed read keeps the
    /// previous keys.
    pub(crate) fn spawn_refresh(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = Arc::downgrade(self);
        let unknown_kid = self.unknown_kid.clone();
        let every = self.settings.jwks_refresh;
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                let early_allowed = (last + MIN_EARLY_REFRESH).saturating_duration_since(Instant::now());
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = async {
                        tokio::time::sleep(early_allowed).await;
                        unknown_kid.notified().await;
                    } => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(verifier) = me.upgrade() else { return };
                last = Instant::now();
                match verifier.source.load().await {
                    Ok(keys) => *verifier.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys),
                    Err(e) => {
                        tracing::warn!(error = %e, "auth.jwt.jwks could not be read again; keeping the keys")
                    }
                }
            }
        });
    }

    /// The caller identity of a valid token, or why it is refused (never the token).
    fn verify(&self, token: &str) -> Result<String, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        };
        let Some(jwk) = jwk else {
            self.unknown_kid.notify_one();
            return Err(format!(
                "no key {} in the JWKS of {}",
                header.kid.as_deref().unwrap_or("(no kid)"),
                self.settings.issuer
            ));
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err("the JWKS key is symmetric".into());
        }
        if let Some(alg) = jwk.common.key_algorithm
            && alg != KeyAlgorithm::from(header.alg)
        {
            return Err(format!("the key is for {alg:?}, the token says {:?}", header.alg));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWKS key: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| e.to_string())?
            .claims;
        if claims.sub.trim().is_empty() {
            return Err("empty sub".into());
        }
        Ok(format!("jwt:{}#{}", claims.iss, claims.sub))
    }
}
