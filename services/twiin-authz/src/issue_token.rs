//! Use case "Uitgeven AORTA access_token" (SPEC.md §3.2): the RFC 6749 §4.5 + RFC 7523 token
//! request of an external GtK, steps 2–11 in the seed's order. Transport-free: gRPC and
//! `POST /oauth2/token` both call [`Authz::issue_token`].

use serde_json::json;

use crate::Authz;
use crate::as_za::{self, TokenResponse};
use crate::assertion::unix_now;
use crate::client_auth::{self, JwtRules, Step};
use crate::error::{
    AuthzError, BSN_MISSING, CANNOT_TRANSLATE, DESTINATION_REFUSES, NOT_QUALIFIED, PULL_WITHOUT_BASE,
};
use crate::grant::{self, Grant};
use crate::issue_assertions::{CLIENT_ASSERTION_TYPE, JWT_BEARER};
use crate::trail::{Outcome, Trail, UC_TOKEN};
use crate::zorg_ab::ZorgAbError;

/// The token request's parameters as received (each at most once). Its `Debug` shows whether
/// the assertions are present and how long, never their text: they are bearer credentials.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct TokenRequest {
    pub(crate) grant_type: Option<String>,
    pub(crate) assertion: Option<String>,
    pub(crate) client_assertion_type: Option<String>,
    pub(crate) client_assertion: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) client_id: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|t| format!("<{} bytes>", t.len()));
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("assertion", &redacted(&self.assertion))
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &redacted(&self.client_assertion))
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl TokenRequest {
    /// From form pairs; a repeated parameter is an invalid request (RFC 6749 §3.2), unknown
    /// parameters are ignored (RFC 6749 §3.2).
    pub(crate) fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Result<Self, AuthzError> {
        let mut r = TokenRequest::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "grant_type" => &mut r.grant_type,
                "assertion" => &mut r.assertion,
                "client_assertion_type" => &mut r.client_assertion_type,
                "client_assertion" => &mut r.client_assertion,
                "scope" => &mut r.scope,
                "client_id" => &mut r.client_id,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthzError::InvalidRequest(format!(
                    "Ongeldig verzoek: parameter {k} komt meer dan eens voor"
                )));
            }
            *slot = Some(v);
        }
        Ok(r)
    }
}

/// What step 2 established.
struct Checked {
    assertion: String,
    client_assertion: String,
    scope: Option<String>,
    client_id: Option<String>,
    consent_contextcode: Option<String>,
}

impl Authz {
    /// Runs use case 3.2, writing `trail` before the answer leaves.
    pub(crate) async fn issue_token(
        &self,
        req: TokenRequest,
        mut trail: Trail,
    ) -> Result<TokenResponse, AuthzError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "uitgeven_aorta_access_token",
            initial_request_id = %trail.aorta_id().initial_request_id,
            request_id = %trail.aorta_id().request_id,
        );
        let result = self.token_steps(req, &mut trail).instrument(span.clone()).await;
        self.metrics.record(UC_TOKEN, &result);
        if let Err(e) = &result {
            span.in_scope(|| tracing::info!(error = e.oauth_error(), description = %e.description(), "token request refused"));
        }
        if let Ok(t) = &result {
            trail.note_returned("granted_scope", t.scope.as_str());
            trail.note_returned("expires_in", t.expires_in);
            if let Some(j) = crate::as_za::unverified_jti(&t.access_token) {
                trail.subject.jtis.push(j);
            }
        }
        trail.finish(&Outcome::of(&result)).await?;
        result
    }

    /// Step 2.
    fn check_request(&self, req: TokenRequest) -> Result<Checked, AuthzError> {
        let bad = |field: &'static str, m: &str| AuthzError::InvalidField {
            field,
            message: format!("Ongeldig verzoek: {m}"),
        };
        let present = |v: Option<String>, name: &'static str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| bad(name, &format!("{name} ontbreekt")))
        };
        let grant_type = present(req.grant_type, "grant_type")?;
        if grant_type != JWT_BEARER {
            return Err(bad("grant_type", &format!("grant_type moet {JWT_BEARER} zijn")));
        }
        let assertion = present(req.assertion, "assertion")?;
        let cat = present(req.client_assertion_type, "client_assertion_type")?;
        if cat != CLIENT_ASSERTION_TYPE {
            return Err(bad(
                "client_assertion_type",
                &format!("client_assertion_type moet {CLIENT_ASSERTION_TYPE} zijn"),
            ));
        }
        let client_assertion = present(req.client_assertion, "client_assertion")?;
        for (name, t) in [("assertion", &assertion), ("client_assertion", &client_assertion)] {
            if t.len() > self.limits.max_token_bytes {
                return Err(bad(
                    name,
                    &format!("{name} is groter dan {} bytes", self.limits.max_token_bytes),
                ));
            }
        }
        let parsed = crate::jws::parse(&assertion).map_err(|_| bad("assertion", "assertion is geen JWT"))?;
        crate::jws::parse(&client_assertion)
            .map_err(|_| bad("client_assertion", "client_assertion is geen JWT"))?;
        let base = parsed
            .unverified_claims
            .get("authorization_base")
            .and_then(|b| b.as_str())
            .filter(|b| !b.is_empty());
        let consent_contextcode = match base {
            Some(b) => Some(
                grant::consent_contextcode(b)
                    .ok_or_else(|| bad("assertion", "authorization_base is geen SAML AORTA consent_token"))?,
            ),
            None => None,
        };
        let scope = req.scope.filter(|s| !s.trim().is_empty());
        if scope.is_none() && consent_contextcode.is_none() {
            return Err(bad(
                "scope",
                "scope ontbreekt (verplicht zonder authorization_base)",
            ));
        }
        if let Some(s) = &scope
            && (s.len() > 2048 || s.chars().any(|c| c.is_control()))
        {
            return Err(bad("scope", "scope is ongeldig"));
        }
        Ok(Checked {
            assertion,
            client_assertion,
            scope,
            client_id: req.client_id.filter(|c| !c.is_empty()),
            consent_contextcode,
        })
    }

    async fn token_steps(&self, req: TokenRequest, trail: &mut Trail) -> Result<TokenResponse, AuthzError> {
        trail.subject.scope = req.scope.clone().filter(|s| !s.is_empty());
        for (key, value) in [
            ("grant_type", &req.grant_type),
            ("client_assertion_type", &req.client_assertion_type),
            ("client_id", &req.client_id),
        ] {
            if let Some(v) = value {
                trail.note(key, v.chars().take(256).collect::<String>());
            }
        }
        let checked = self.check_request(req)?;
        let now = unix_now();
        // Precondition of the seed for this use case too: a sufficiently current Stelseltoken.
        self.stelsel.current(now)?;
        let id = trail.aorta_id();
        let rules = JwtRules {
            settings: &self.client_auth,
            audiences: &self.audiences,
            max_age: None,
        };
        // Step 3: client_assertion (its jti is registered with the grant's, see `client_auth`).
        let (client, app) = client_auth::authenticate(
            &checked.client_assertion,
            &rules,
            &self.zorg_ab,
            &id,
            trail.exchanges(),
            now,
        )
        .await?;
        let client_id = app.client_id.clone();
        trail.subject.client_id = Some(client_id.clone());
        // Step 4: assertion.
        let grant_rules = JwtRules {
            max_age: Some(self.client_auth.max_grant_age),
            ..rules
        };
        let verified_grant = match client_auth::verify_jwt(
            Step::Grant,
            &checked.assertion,
            &app,
            &grant_rules,
            &self.zorg_ab,
            &id,
            trail.exchanges(),
            now,
        )
        .await
        {
            Ok(g) => g,
            Err(e) => {
                // Step 3 ends with its jti registered: a replayed client assertion is reported
                // as such before the grant's fault.
                client_auth::register(&self.audit, &[&client]).await?;
                trail.subject.jtis.push(client.checked.jti.clone());
                return Err(e);
            }
        };
        let registered = client_auth::register(&self.audit, &[&client, &verified_grant]).await;
        if !matches!(&registered, Err(AuthzError::InvalidClient(_))) {
            trail.subject.jtis.push(client.checked.jti.clone());
        }
        registered?;
        let checked_grant = verified_grant.checked;
        trail.subject.jtis.push(checked_grant.jti.clone());
        let grant = grant::grant_from(checked_grant, &app)?;
        trail.subject.ura = Some(grant.ura.clone());
        trail.subject.bsn = grant.bsn.clone();
        trail.subject.user_id = grant.user_id.clone();
        trail.subject.user_role = grant.user_role.clone();
        // Step 5: client_id = sub.
        if let Some(given) = &checked.client_id
            && *given != client_id
        {
            return Err(AuthzError::InvalidRequest(
                "Ongeldig verzoek: client_id komt niet overeen met sub van de client_assertion".into(),
            ));
        }
        // The interactions of the scope (step 8's translation, needed by steps 6 and 7).
        let translated = checked.scope.as_deref().map(|s| self.scope_table.translate(s));
        if let Some(Ok(rows)) = &translated {
            let interactions: Vec<&str> = rows.iter().map(|r| r.interaction.as_str()).collect();
            self.check_zorg_ab(&client_id, &grant, &interactions, &id, trail)
                .await?;
        }
        // Step 8.
        let scope_items: Option<String> = match translated {
            None => None,
            Some(Err(e)) => {
                let item = if e.0.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.0)
                };
                return Err(AuthzError::InvalidRequest(format!("{CANNOT_TRANSLATE}{item}")));
            }
            Some(Ok(rows)) => {
                let has_base = checked.consent_contextcode.is_some();
                if !has_base && rows.iter().any(|r| r.pull) {
                    return Err(AuthzError::InvalidRequest(PULL_WITHOUT_BASE.into()));
                }
                // Step 9: broader than sending/updating a notification needs a BSN.
                if rows.iter().any(|r| !r.notification) && grant.bsn.is_none() {
                    return Err(AuthzError::InvalidRequest(BSN_MISSING.into()));
                }
                Some(
                    rows.iter()
                        .map(|r| match (&checked.consent_contextcode, r.pull) {
                            (Some(code), true) => {
                                format!("{}~aorta.contextcode.{code}~normaal", r.interaction)
                            }
                            _ => format!("{}~~normaal", r.interaction),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
        };
        if scope_items.is_none() && grant.bsn.is_none() {
            // The consent token's scope is decided by the AS ZA: always pull, so broader.
            return Err(AuthzError::InvalidRequest(BSN_MISSING.into()));
        }
        // Step 10: GetTokenRequest.
        let subject_jti = uuid::Uuid::new_v4().to_string();
        let subject = json!({
            "iss": self.issuer,
            "sub": grant.ura,
            "aud": self.as_za.audience,
            "iat": now,
            "exp": now + 60,
            "jti": subject_jti,
            "client_id": client_id,
            "bsn": grant.bsn,
            "user_id": grant.user_id,
            "user_role": grant.user_role,
            "authorization_base": grant.authorization_base,
        });
        let subject_token = self
            .keys
            .sign_typed(&subject, as_za::SUBJECT_TOKEN_TYP)
            .map_err(|e| AuthzError::Internal(e.to_string()))?;
        trail.subject.jtis.push(subject_jti.clone());
        let token = as_za::get_token(
            &self.http,
            &self.as_za,
            as_za::GetTokenRequest {
                subject_token: subject_token.as_str(),
                subject_token_jti: &subject_jti,
                scope: scope_items.as_deref(),
            },
            &id,
            trail.exchanges(),
        )
        .await?;
        if scope_items.is_none() {
            // **Decision** — with only a consent token the AS ZA decided the scope; steps 6 and
            // 7 are applied to the granted interactions before the token leaves. A token
            // refused here is discarded, and the trail says so.
            let granted: Vec<&str> = token
                .scope
                .split_ascii_whitespace()
                .map(|i| i.split('~').next().unwrap_or(i))
                .collect();
            if let Err(e) = self.check_zorg_ab(&client_id, &grant, &granted, &id, trail).await {
                trail.note_returned("discarded_granted_scope", token.scope.as_str());
                if let Some(j) = as_za::unverified_jti(&token.access_token) {
                    trail.note_returned("discarded_access_token_jti", j.as_str());
                    trail.subject.jtis.push(j);
                }
                return Err(e);
            }
        }
        // Step 11.
        Ok(token)
    }

    /// Steps 6 and 7, each switchable by configuration.
    async fn check_zorg_ab(
        &self,
        client_id: &str,
        grant: &Grant,
        interactions: &[&str],
        id: &crate::aorta_id::AortaId,
        trail: &mut Trail,
    ) -> Result<(), AuthzError> {
        let settings = self.zorg_ab.settings();
        let map = |e: ZorgAbError| match e {
            ZorgAbError::Timeout => AuthzError::Timeout(e.to_string()),
            other => AuthzError::Unavailable(other.to_string()),
        };
        if settings.check_capabilities {
            let app = match self.zorg_ab.application(client_id, id, trail.exchanges()).await {
                Ok(a) => a,
                Err(ZorgAbError::UnknownApplication(_)) => {
                    return Err(AuthzError::AccessDenied(NOT_QUALIFIED));
                }
                Err(e) => return Err(map(e)),
            };
            if !interactions.iter().all(|i| app.may_initiate(i, &grant.ura)) {
                return Err(AuthzError::AccessDenied(NOT_QUALIFIED));
            }
        }
        if settings.check_destination {
            let dest = grant
                .destination
                .clone()
                .unwrap_or_else(|| settings.destination.clone());
            let app = match self.zorg_ab.application(&dest, id, trail.exchanges()).await {
                Ok(a) => a,
                Err(ZorgAbError::UnknownApplication(_)) => {
                    return Err(AuthzError::AccessDenied(DESTINATION_REFUSES));
                }
                Err(e) => return Err(map(e)),
            };
            if !interactions.iter().all(|i| app.receives(i)) {
                return Err(AuthzError::AccessDenied(DESTINATION_REFUSES));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_never_shows_assertions() {
        let r = super::TokenRequest {
            assertion: Some("eyJhbGciOiJFUzUxMiJ9.secret.sig".into()),
            client_assertion: Some("eyJhbGciOiJFUzUxMiJ9.other.sig".into()),
            scope: Some("system/Task.c".into()),
            ..Default::default()
        };
        let text = format!("{r:?}");
        assert!(
            !text.contains("eyJ") && text.contains("system/Task.c") && text.contains("bytes"),
            "{text}"
        );
    }
}
