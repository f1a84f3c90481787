//! Each relay's card session as the relay reports it (issue 13): one WatchSession stream per
//! relay, opened on the first call that names the relay. The gateway acts for a professional
//! only inside the session the relay says is open, and ends that professional's connections as
//! soon as the relay reports Logout, card removal or swap, PIN lock, or revoked grants.
//!
//! **Decision — unknown means no:** while the stream is down the state is unknown: calls for
//! that relay's professionals answer UNAVAILABLE and its pools are closed (a resumed TLS session
//! must not outlive a card session nobody watches). The watcher then polls: every
//! [`RETRY`] (sooner when a call is waiting) it asks the relay again, and the first message of
//! a new stream is the relay's current state.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ehealth_proto::cps::v1::{SessionReason, SessionState};
use service_kit::CancellationToken;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::grant::AccessError;
use crate::relay::{RelayDirectory, RelayEndpoint};

/// The polling period while a relay's stream is down.
pub(crate) const RETRY: Duration = Duration::from_secs(5);

/// The card session a relay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CardSession {
    /// The open session's id (the grants' `sid`); empty when none is open.
    pub(crate) id: String,
    /// The professional of the open session, or of the one that just ended.
    pub(crate) professional_id: String,
    /// SHA-256 (hex) of that session's card certificate.
    pub(crate) certificate_sha256: String,
    /// Revoked grants that have not expired.
    pub(crate) revoked: HashSet<String>,
    /// Why the session is in this state.
    pub(crate) reason: SessionReason,
}

impl From<SessionState> for CardSession {
    fn from(s: SessionState) -> Self {
        CardSession {
            reason: s.reason(),
            id: s.card_session_id,
            professional_id: s.professional_id,
            certificate_sha256: s.certificate_sha256,
            revoked: s.revoked_grant_ids.into_iter().collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Observed {
    /// Bumped at every message and every failed attempt, so a waiting call knows an attempt
    /// made after it arrived has finished.
    generation: u64,
    session: Result<CardSession, String>,
}

/// Told of every change of a relay's state: (before, after); `None` is "unknown".
pub(crate) type OnChange = Arc<dyn Fn(Option<&CardSession>, Option<&CardSession>) + Send + Sync>;

/// One relay's watcher.
pub(crate) struct SessionWatch {
    relay: RelayEndpoint,
    directory: RelayDirectory,
    state: watch::Sender<Observed>,
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
    on_change: OnChange,
}

impl SessionWatch {
    /// A watcher of `relay`, started by the first [`current`](Self::current); it stops with
    /// `stop`.
    pub(crate) fn new(
        relay: RelayEndpoint,
        directory: RelayDirectory,
        stop: CancellationToken,
        on_change: OnChange,
    ) -> Arc<Self> {
        let (state, _) = watch::channel(Observed {
            generation: 0,
            session: Err("not watched yet".into()),
        });
        Arc::new(SessionWatch {
            relay,
            directory,
            state,
            wake: Notify::new(),
            task: Mutex::new(None),
            stop,
            on_change,
        })
    }

    /// The relay's card session now; when unknown, the watcher tries again at once and this
    /// waits for that attempt, at most `wait`.
    pub(crate) async fn current(self: &Arc<Self>, wait: Duration) -> Result<CardSession, AccessError> {
        self.ensure_running();
        let mut rx = self.state.subscribe();
        let asked_at = {
            let now = rx.borrow_and_update();
            if let Ok(session) = &now.session {
                return Ok(session.clone());
            }
            now.generation
        };
        self.wake.notify_one();
        let _ = tokio::time::timeout(
            wait,
            rx.wait_for(|o| o.session.is_ok() || o.generation > asked_at),
        )
        .await;
        let observed = rx.borrow().clone();
        observed.session.map_err(|reason| AccessError::SessionUnknown {
            relay_id: self.relay.id.clone(),
            reason,
        })
    }

    fn ensure_running(self: &Arc<Self>) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        // A task ends with its runtime (a benchmark's, a test's): the next call restarts it.
        if task.as_ref().is_none_or(|t| t.is_finished()) && !self.stop.is_cancelled() {
            let me = Arc::downgrade(self);
            let stop = self.stop.clone();
            *task = Some(tokio::spawn(async move {
                tokio::select! {
                    () = run(me) => {}
                    () = stop.cancelled() => {}
                }
            }));
        }
    }

    fn publish(&self, session: Result<CardSession, String>) {
        let mut before = None;
        let mut changed = false;
        self.state.send_modify(|o| {
            o.generation += 1;
            changed = o.session != session;
            before = Some(std::mem::replace(&mut o.session, session.clone()));
        });
        if changed {
            let before = before.and_then(Result::ok);
            if let Err(why) = &session {
                tracing::warn!(relay = %self.relay.id, reason = %why, "card session state unknown; the relay's pools are closed");
            }
            (self.on_change)(before.as_ref(), session.as_ref().ok());
        }
    }

    /// Follows one WatchSession stream until it breaks; returns why.
    async fn follow(&self) -> String {
        let mut client = match self.directory.client(&self.relay) {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let mut stream = match client.watch_session().await {
            Ok(s) => s,
            Err(s) => return format!("WatchSession: {}", s.message()),
        };
        loop {
            match stream.message().await {
                Ok(Some(state)) => self.publish(Ok(state.into())),
                Ok(None) => return "the relay closed the WatchSession stream".into(),
                Err(s) => return format!("WatchSession: {}", s.message()),
            }
        }
    }
}

async fn run(watch: std::sync::Weak<SessionWatch>) {
    loop {
        let Some(w) = watch.upgrade() else { return };
        let why = w.follow().await;
        w.publish(Err(why));
        let sleep = tokio::time::sleep(RETRY);
        tokio::select! {
            () = sleep => {}
            () = w.wake.notified() => {}
        }
    }
}
