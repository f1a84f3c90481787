//! The card session (issue 13): opened by each successful Login (or at start-up when the card
//! is already unlocked: software key, HSM operator PIN), with a random 128-bit id, bound to the
//! card it was opened on (token serial and certificate SHA-256). It ends with Logout, card
//! removal, card swap, PIN lock, or the relay's restart; its grants end with it. Watchers
//! (gateways, through WatchSession) see every change; while someone watches and a session is
//! open, the relay polls the token every `card.poll_interval`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ehealth_proto::cps::v1::{SessionReason, SessionState};
use tokio::sync::watch;

use crate::card::queue::CardQueue;
use crate::card::{Card, CardIdentity};
use crate::error::RelayError;
use crate::grant::{GrantBook, GrantSigner, IssuedGrant, SessionFacts, unix_now};
use crate::scheme::sha256;

/// An open card session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CardSession {
    pub(crate) id: String,
    pub(crate) professional_id: String,
    /// SHA-256 of the card's authentication certificate, lower-case hex.
    pub(crate) certificate_sha256: String,
    pub(crate) certificate_der: Vec<u8>,
    pub(crate) token_serial: String,
}

impl CardSession {
    fn open(identity: &CardIdentity) -> Result<Self, RelayError> {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| RelayError::Internal("no randomness for the card session id".into()))?;
        let leaf = &identity.certificate.leaf;
        Ok(CardSession {
            id: B64.encode(id),
            professional_id: identity.certificate.describe(&[])?.professional_id,
            certificate_sha256: hex::encode(sha256(leaf)),
            certificate_der: leaf.clone(),
            token_serial: identity.serial.clone(),
        })
    }

    fn same_card(&self, identity: &CardIdentity) -> bool {
        self.token_serial == identity.serial && self.certificate_der == identity.certificate.leaf
    }
}

/// What a look at the token found.
#[derive(Debug)]
pub(crate) enum Observation {
    /// Token gone, or its certificate gone.
    Removed,
    /// The card's identity alone (read for another purpose).
    Identity(CardIdentity),
    Present {
        identity: CardIdentity,
        logged_in: bool,
        pin_locked: bool,
    },
}

impl Observation {
    /// Looks at the card (on a card thread). `Ok(None)`: the card could not be read for another
    /// reason; nothing is concluded from that.
    pub(crate) fn read(card: &dyn Card) -> Option<Observation> {
        let identity = match card.current_identity() {
            Ok(i) => i,
            Err(
                RelayError::NoToken { .. }
                | RelayError::TokenNotFound { .. }
                | RelayError::ObjectNotFound { .. },
            ) => {
                return Some(Observation::Removed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the card could not be read; the session is kept until the next look");
                return None;
            }
        };
        match card.status() {
            Ok(s) if !s.token_present => Some(Observation::Removed),
            Ok(s) => Some(Observation::Present {
                identity,
                logged_in: s.logged_in,
                pin_locked: s.pin_locked,
            }),
            Err(RelayError::NoToken { .. }) => Some(Observation::Removed),
            Err(e) => {
                tracing::warn!(error = %e, "the card status could not be read");
                None
            }
        }
    }
}

struct Inner {
    current: Option<CardSession>,
    /// The last session that ended, and why.
    ended: Option<(CardSession, SessionReason)>,
    grants: GrantBook,
    /// Set when the last change was a revocation in an open session.
    revoked_last: bool,
}

pub(crate) struct CardSessions {
    inner: Mutex<Inner>,
    state: watch::Sender<SessionState>,
}

impl Default for CardSessions {
    fn default() -> Self {
        let (state, _) = watch::channel(SessionState {
            reason: SessionReason::NoSession as i32,
            ..Default::default()
        });
        CardSessions {
            inner: Mutex::new(Inner {
                current: None,
                ended: None,
                grants: GrantBook::default(),
                revoked_last: false,
            }),
            state,
        }
    }
}

impl CardSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, inner: &Inner) {
        let now = unix_now();
        let revoked_grant_ids = inner.grants.revoked(now);
        let state = match (&inner.current, &inner.ended) {
            (Some(s), _) => SessionState {
                card_session_id: s.id.clone(),
                professional_id: s.professional_id.clone(),
                certificate_sha256: s.certificate_sha256.clone(),
                revoked_grant_ids,
                reason: if inner.revoked_last {
                    SessionReason::GrantsRevoked
                } else {
                    SessionReason::Active
                } as i32,
            },
            (None, Some((s, reason))) => SessionState {
                card_session_id: String::new(),
                professional_id: s.professional_id.clone(),
                certificate_sha256: s.certificate_sha256.clone(),
                revoked_grant_ids,
                reason: *reason as i32,
            },
            (None, None) => SessionState {
                revoked_grant_ids,
                reason: SessionReason::NoSession as i32,
                ..Default::default()
            },
        };
        self.state.send_replace(state);
    }

    /// Opens a new session on `identity`, ending the one before.
    pub(crate) fn open(&self, identity: &CardIdentity) -> Result<CardSession, RelayError> {
        let session = CardSession::open(identity)?;
        let mut inner = self.lock();
        if let Some(old) = inner.current.take() {
            inner.ended = Some((old, SessionReason::LoggedOut));
        }
        inner.current = Some(session.clone());
        inner.revoked_last = false;
        tracing::info!(professional = %session.professional_id, "card session opened");
        self.publish(&inner);
        Ok(session)
    }

    /// Ends the open session, if any, for `reason`.
    pub(crate) fn end(&self, reason: SessionReason) {
        let mut inner = self.lock();
        if let Some(old) = inner.current.take() {
            tracing::info!(professional = %old.professional_id, reason = reason.as_str_name(), "card session ended");
            inner.ended = Some((old, reason));
            inner.revoked_last = false;
            self.publish(&inner);
        }
    }

    /// Ends session `id` (not a later one) for `reason`.
    pub(crate) fn end_if(&self, id: &str, reason: SessionReason) {
        let is_current = self.lock().current.as_ref().is_some_and(|s| s.id == id);
        if is_current {
            self.end(reason);
        }
    }

    pub(crate) fn current(&self) -> Option<CardSession> {
        self.lock().current.clone()
    }

    /// The open session, if `grant_id` is one of its live grants.
    pub(crate) fn check_grant(&self, grant_id: &str) -> Result<CardSession, RelayError> {
        let inner = self.lock();
        let session = inner.current.clone().ok_or(RelayError::NotLoggedIn)?;
        inner
            .grants
            .check(grant_id, &session.id, unix_now())
            .map_err(RelayError::NoSessionGrant)?;
        Ok(session)
    }

    /// Issues a grant of the open session to `grantee` (already checked against
    /// `access.grant_callers`).
    pub(crate) fn issue(
        &self,
        signer: &GrantSigner,
        grantee: &str,
        lifetime: Duration,
    ) -> Result<IssuedGrant, RelayError> {
        let mut inner = self.lock();
        let session = inner.current.clone().ok_or(RelayError::NotLoggedIn)?;
        let now = unix_now();
        let claims = signer.claims(
            &SessionFacts {
                session_id: &session.id,
                professional_id: &session.professional_id,
                certificate_der: &session.certificate_der,
            },
            grantee,
            lifetime,
            now,
        );
        let grant = signer.sign(&claims)?;
        inner.grants.insert(&claims, now)?;
        Ok(IssuedGrant {
            grantee: grantee.to_owned(),
            grant,
            grant_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    pub(crate) fn revoke(&self, ids: &[String]) -> Vec<String> {
        let mut inner = self.lock();
        let revoked = inner.grants.revoke(ids, unix_now());
        if !revoked.is_empty() {
            inner.revoked_last = inner.current.is_some();
            self.publish(&inner);
        }
        revoked
    }

    pub(crate) fn watch(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    fn watched(&self) -> bool {
        self.state.receiver_count() > 0 && self.lock().current.is_some()
    }

    /// Ends the open session when the card says it is over.
    pub(crate) fn observe(&self, seen: &Observation) {
        let Some(session) = self.current() else {
            return;
        };
        let reason = match seen {
            Observation::Removed => SessionReason::CardRemoved,
            Observation::Identity(identity) if !session.same_card(identity) => SessionReason::CardChanged,
            Observation::Identity(_) => return,
            Observation::Present { identity, .. } if !session.same_card(identity) => {
                SessionReason::CardChanged
            }
            Observation::Present { pin_locked: true, .. } => SessionReason::PinLocked,
            Observation::Present { logged_in: false, .. } => SessionReason::LoggedOut,
            Observation::Present { .. } => return,
        };
        self.end_if(&session.id, reason);
    }
}

/// Polls the token while a session is open and watched; stops when the relay is dropped.
pub(crate) fn start_polling(sessions: Arc<CardSessions>, queue: Weak<CardQueue>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(queue) = queue.upgrade() else {
                return;
            };
            if !sessions.watched() {
                continue;
            }
            match queue.run(|card| Ok(Observation::read(card))).await {
                Ok(Some(seen)) => sessions.observe(&seen),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "card poll skipped"),
            }
        }
    });
}
