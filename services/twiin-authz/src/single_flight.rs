//! One fetch per key at a time: concurrent callers that need the same missing entry (a client's
//! ZORG-AB record, its JWKS) wait for the one call already under way and share its outcome,
//! failures included, instead of each sending their own (the issue-14 cold start: 32 first
//! requests made 32 fetches and a p99 of ~1 s).
//!
//! The caller that starts the fetch does the work (and logs the call in its own audit trail);
//! when it is cancelled, a waiting caller takes over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub(crate) struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for SingleFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.flights.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("SingleFlight").field("in_flight", &n).finish()
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `fetch` unless a fetch for `key` is under way, whose result is then returned.
    pub(crate) async fn run<F, Fut>(&self, key: &str, fetch: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let result = cell.get_or_init(fetch).await.clone();
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        // The next caller after this flight reads the cache the fetch filled (or fetches anew).
        if flights.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let flights = Arc::new(SingleFlight::<Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("client", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err("down".to_owned())
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(
                t.await.expect("task"),
                Err("down".to_owned()),
                "the failure is shared too"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Afterwards a new flight starts.
        assert_eq!(flights.run("client", || async { Ok(2) }).await, Ok(2));
    }
}
