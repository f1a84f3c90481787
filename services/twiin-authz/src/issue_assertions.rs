//! Use case "Uitgeven TWIIN Assertions" (SPEC.md §3.1), for the Resource Broker GtK only (see
//! [`crate::broker`]). The assertions' audience must be the authorization server of an external
//! GtK registered in ZORG-AB (or `[[clients]]`): never this AS, never the AS ZA.

use crate::Authz;
use crate::assertion::{ClientAssertionClaims, GrantAssertionClaims, unix_now};
use crate::broker::CallerCertificate;
use crate::client_auth::{Step, registry_error};
use crate::error::{AuthzError, MISSING_AUTHZ_BASE};
use crate::source_token::{AccessTokenRules, validate_access_token};
use crate::trail::{Outcome, Trail, UC_ASSERTIONS};
use crate::zorg_ab::ZorgAbError;

pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// `Debug` shows the sizes of tokens, never their text (bearer credentials).
#[derive(Clone, Default, PartialEq)]
pub(crate) struct AssertionsRequest {
    pub(crate) source_token: String,
    /// The external GtK's authorization server.
    pub(crate) audience: String,
    pub(crate) authz_base: Option<String>,
}

/// `Debug` shows the sizes of the assertions, never their text.
#[derive(Clone, PartialEq)]
pub(crate) struct AssertionsResponse {
    pub(crate) client_assertion: String,
    pub(crate) assertion: String,
    pub(crate) scope: Option<String>,
    pub(crate) expires_at: u64,
}

fn bytes(token: &str) -> String {
    format!("<{} bytes>", token.len())
}

impl std::fmt::Debug for AssertionsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionsRequest")
            .field("source_token", &bytes(&self.source_token))
            .field("audience", &self.audience)
            .field("authz_base", &self.authz_base.as_deref().map(bytes))
            .finish()
    }
}

impl std::fmt::Debug for AssertionsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionsResponse")
            .field("client_assertion", &bytes(&self.client_assertion))
            .field("assertion", &bytes(&self.assertion))
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Authz {
    /// Runs use case 3.1 for a caller that presented `caller` (its client certificate), writing
    /// `trail` before the answer leaves.
    pub(crate) async fn issue_assertions(
        &self,
        req: AssertionsRequest,
        caller: Option<&CallerCertificate>,
        mut trail: Trail,
    ) -> Result<AssertionsResponse, AuthzError> {
        trail.note("audience", req.audience.as_str());
        if req.authz_base.is_some() {
            trail.note("authz_base", true);
        }
        if let Some(c) = caller {
            trail.note("caller_certificate", c.subject.as_str());
            trail.note("caller_fingerprint", c.fingerprint.as_str());
        }
        let result = match self.brokers.admit(caller) {
            Ok(()) => self.assertions_steps(req, &mut trail).await,
            Err(e) => Err(e),
        };
        self.metrics.record(UC_ASSERTIONS, &result);
        if let Ok(r) = &result
            && let Some(s) = &r.scope
        {
            trail.note_returned("granted_scope", s.as_str());
        }
        trail.finish(&Outcome::of(&result)).await?;
        result
    }

    async fn assertions_steps(
        &self,
        req: AssertionsRequest,
        trail: &mut Trail,
    ) -> Result<AssertionsResponse, AuthzError> {
        // Step 2: the request conforms to the interface.
        let bad = |field: &'static str, m: &str| AuthzError::InvalidField {
            field,
            message: format!("Ongeldig verzoek: {m}"),
        };
        if req.source_token.is_empty() {
            return Err(bad("source_token", "sourceToken ontbreekt"));
        }
        if req.source_token.len() > self.limits.max_token_bytes {
            return Err(bad("source_token", "sourceToken is te groot"));
        }
        if req.audience.is_empty() {
            return Err(bad("audience", "audience ontbreekt"));
        }
        match url::Url::parse(&req.audience) {
            Ok(u) if u.scheme() == "https" || (self.development && u.scheme() == "http") => {}
            _ => {
                return Err(bad(
                    "audience",
                    "audience moet de https-URL van de autorisatieserver van het externe GtK zijn",
                ));
            }
        }
        let audience = crate::zorg_ab::normalize(&req.audience);
        if audience == crate::zorg_ab::normalize(&self.issuer)
            || audience == crate::zorg_ab::normalize(&self.as_za.audience)
        {
            return Err(bad(
                "audience",
                "audience moet de autorisatieserver van een extern GtK zijn (niet deze, niet de Autorisatie Server ZA)",
            ));
        }
        if let Some(b) = &req.authz_base
            && (b.len() > self.limits.max_token_bytes || b.chars().any(char::is_control))
        {
            return Err(bad("authz_base", "authzBase is ongeldig"));
        }
        // Precondition: a sufficiently current Stelseltoken.
        let now = unix_now();
        let stelsel = self.stelsel.current(now)?;
        // Step 3: the sourceToken.
        let rules = AccessTokenRules {
            issuer: self.stelsel_settings.access_token_issuer.clone(),
            audience: self.stelsel_settings.access_token_audience.clone(),
            max_skew: self.client_auth.max_clock_skew.as_secs(),
            max_lifetime: self.max_assertion_lifetime.as_secs(),
        };
        let at = validate_access_token(&req.source_token, &stelsel, &rules, now)?;
        trail.subject.jtis.push(at.jti.clone());
        let ura = at.vrb.ura.clone().unwrap_or_else(|| at.sub.clone());
        if !crate::grant::valid_ura(&ura) {
            return Err(AuthzError::InvalidToken(
                "geen URA in het AORTA access_token".into(),
            ));
        }
        trail.subject.ura = Some(ura.clone());
        trail.subject.user_id = at.vrb.user_id.clone();
        trail.subject.user_role = at.vrb.user_role.clone();
        trail.subject.bsn = at.vrb.bsn.clone();
        trail.subject.scope = Some(at.scope.clone());
        // The assertions' audience must be the authorization server of a registered GtK.
        let id = trail.aorta_id();
        let peer = self
            .zorg_ab
            .authorization_server(audience, &id, trail.exchanges())
            .await
            .map_err(|e| match e {
                ZorgAbError::UnknownAuthorizationServer(_) => bad(
                    "audience",
                    "audience is geen in ZORG-AB geregistreerde autorisatieserver",
                ),
                other => registry_error(Step::ClientAssertion, other),
            })?;
        trail.subject.client_id = Some(peer.client_id.clone());
        // Step 5 decides before step 4 signs, so that no assertion is made for a refused request.
        let scope = if at.scope.contains(&self.notification_marker) {
            Some(self.notification_scope.clone())
        } else {
            if at.vrb.authz_base.as_deref().is_none_or(str::is_empty) {
                return Err(AuthzError::BadRequest(MISSING_AUTHZ_BASE.into()));
            }
            None
        };
        // Step 4: both assertions, exp = the AORTA access_token's exp.
        let client = ClientAssertionClaims {
            iss: self.issuer.clone(),
            sub: self.client_id.clone(),
            aud: req.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: at.exp,
        };
        let grant = GrantAssertionClaims {
            iss: self.issuer.clone(),
            sub: ura,
            aud: req.audience,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: at.exp,
            bsn: at.vrb.bsn.clone(),
            user_id: at.vrb.user_id.clone(),
            user_role: at.vrb.user_role.clone(),
            authorization_base: req
                .authz_base
                .filter(|b| !b.is_empty())
                .or(at.vrb.authz_base.clone()),
        };
        trail.subject.jtis.push(client.jti.clone());
        trail.subject.jtis.push(grant.jti.clone());
        let sign_err = |e: crate::assertion::KeyError| AuthzError::Internal(e.to_string());
        let client_assertion = self.keys.sign(&client).map_err(sign_err)?.into_string();
        let assertion = self.keys.sign(&grant).map_err(sign_err)?.into_string();
        // Step 6.
        Ok(AssertionsResponse {
            client_assertion,
            assertion,
            scope,
            expires_at: at.exp,
        })
    }
}
