//! The card's own threads. Card operations are blocking (PKCS#11) and serialised per session;
//! they run on `sessions` dedicated threads fed by one queue, so a thread that finishes an
//! operation takes the next one at once. With the blocking pool instead, every operation
//! waited for an async hop (permit released, task woken, a blocking thread woken) while the
//! card sat idle: under load that idle time was a tenth of the card's throughput.
//!
//! A caller waits at most `card_wait` for its operation to *start*; once started, it runs to the
//! end (a card cannot be interrupted mid-signature) and the caller gets its result.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::Card;
use crate::error::RelayError;

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

type Job = Box<dyn FnOnce(&dyn Card) + Send>;

struct Queued {
    job: Job,
    state: Arc<AtomicU8>,
}

/// The queue in front of the card threads. Dropping it ends the threads once the operations
/// already queued are done.
pub(crate) struct CardQueue {
    jobs: mpsc::Sender<Queued>,
    card_wait: Duration,
}

impl CardQueue {
    /// Starts `threads` card threads (at least one) on `card`.
    pub(crate) fn start(card: Arc<dyn Card>, threads: usize, card_wait: Duration) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Queued>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (card, rx) = (card.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("card-{i}"))
                .spawn(move || card_thread(card.as_ref(), &rx))?;
        }
        Ok(CardQueue { jobs, card_wait })
    }

    /// Runs `op` on a card thread once one is free, waiting at most `card_wait` for that.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Card) -> Result<T, RelayError> + Send + 'static,
    ) -> Result<T, RelayError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job: Job = Box::new(move |card| {
            let _ = tx.send(op(card));
        });
        self.jobs
            .send(Queued {
                job,
                state: state.clone(),
            })
            .map_err(|_| stopped())?;
        match tokio::time::timeout(self.card_wait, &mut rx).await {
            Ok(result) => result.map_err(|_| stopped())?,
            // Not started yet: withdrawn, the card thread will skip it.
            Err(_) if claim(&state, ABANDONED) => Err(RelayError::CardBusy(self.card_wait)),
            // Started meanwhile: it finishes, and its result is the caller's.
            Err(_) => rx.await.map_err(|_| stopped())?,
        }
    }
}

/// Moves `state` from queued to `to`; false when the other side got there first.
fn claim(state: &AtomicU8, to: u8) -> bool {
    state
        .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn stopped() -> RelayError {
    RelayError::Internal("the card operation stopped before answering".into())
}

/// How long an idle card thread keeps checking the queue before it sleeps. Waking a sleeping
/// thread costs ~90 µs on the two-core test machines (the idle vCPU must be woken), a quarter
/// of what the relay adds to a signature; a thread that yields for a moment after each
/// operation takes a caller's next one (a gateway's handshakes come in bursts) without that
/// cost. Bounded, and spent only while the queue is empty.
const IDLE_POLL: Duration = Duration::from_micros(500);

fn next_job(rx: &mpsc::Receiver<Queued>) -> Result<Queued, mpsc::RecvError> {
    let until = std::time::Instant::now() + IDLE_POLL;
    loop {
        match rx.try_recv() {
            Ok(job) => return Ok(job),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < until => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv(),
        }
    }
}

fn card_thread(card: &dyn Card, rx: &Mutex<mpsc::Receiver<Queued>>) {
    loop {
        let next = next_job(&rx.lock().unwrap_or_else(|e| e.into_inner()));
        let Ok(Queued { job, state }) = next else {
            return;
        };
        if !claim(&state, STARTED) {
            continue;
        }
        // A panicking operation drops its reply (its caller gets an internal error); the thread
        // stays up for the next ones.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(card))).is_err() {
            tracing::error!("a card operation panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardStatus;
    use crate::certificate::CardCertificate;
    use crate::scheme::Scheme;
    use std::sync::atomic::AtomicUsize;

    /// The operations under test are closures; the card itself is never asked anything.
    struct NoCard;

    impl Card for NoCard {
        fn certificate(&self) -> Result<CardCertificate, RelayError> {
            Err(RelayError::Internal("not used".into()))
        }
        fn schemes(&self) -> Result<Vec<Scheme>, RelayError> {
            Ok(vec![])
        }
        fn status(&self) -> Result<CardStatus, RelayError> {
            Ok(CardStatus::default())
        }
        fn login(&self, _pin: &crate::card::Pin, _confirm: bool) -> Result<(), RelayError> {
            Ok(())
        }
        fn logout(&self) -> Result<(), RelayError> {
            Ok(())
        }
        fn sign(&self, _scheme: Scheme, _data: &[u8]) -> Result<Vec<u8>, RelayError> {
            Ok(vec![])
        }
    }

    #[tokio::test]
    async fn an_operation_withdrawn_after_card_wait_never_runs() {
        let queue = CardQueue::start(Arc::new(NoCard), 1, Duration::from_millis(50)).expect("thread");
        let ran = Arc::new(AtomicUsize::new(0));
        let slow = {
            let ran = ran.clone();
            move |_: &dyn Card| {
                std::thread::sleep(Duration::from_millis(200));
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let quick = {
            let ran = ran.clone();
            move |_: &dyn Card| {
                ran.fetch_add(10, Ordering::SeqCst);
                Ok(())
            }
        };
        let (first, second) = tokio::join!(queue.run(slow), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            queue.run(quick).await
        });
        // Started before the deadline: runs to the end and answers, though past `card_wait`.
        first.expect("the started operation finishes");
        assert!(matches!(second, Err(RelayError::CardBusy(_))), "{second:?}");
        // The next operation runs after the withdrawn one would have.
        queue.run(|_| Ok(())).await.expect("the card is free again");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            1,
            "the withdrawn operation did not run"
        );
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_alone() {
        let queue = CardQueue::start(Arc::new(NoCard), 1, Duration::from_secs(5)).expect("thread");
        let err = queue
            .run(|_| -> Result<(), RelayError> { panic!("driver bug") })
            .await
            .expect_err("no answer");
        assert!(matches!(err, RelayError::Internal(_)), "{err:?}");
        assert_eq!(queue.run(|_| Ok(7)).await.expect("still serving"), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operations_on_one_session_never_overlap() {
        let queue = Arc::new(CardQueue::start(Arc::new(NoCard), 1, Duration::from_secs(5)).expect("thread"));
        let busy = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (queue, busy) = (queue.clone(), busy.clone());
                tokio::spawn(async move {
                    queue
                        .run(move |_| {
                            let overlapping = busy.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            busy.fetch_sub(1, Ordering::SeqCst);
                            Ok(overlapping)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("ran"), 0, "two operations at once");
        }
    }
}
