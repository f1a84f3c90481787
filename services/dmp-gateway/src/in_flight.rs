//! Memory bounded by a bytes-in-flight limit (issue 19): the request bodies of all calls being
//! handled share one budget (`xds.max_bytes_in_flight`). Each body frame takes its size from
//! the budget as it arrives and the call gives it back when it has been answered; a frame that
//! does not fit fails its call with `RESOURCE_EXHAUSTED` at once, before the message is decoded
//! or anything else is done. One message is already capped (`max_request_bytes`); this caps
//! their sum, so many large submissions at once cannot exhaust the gateway's memory.
//!
//! **Decision — fail, don't wait:** a call that does not fit is refused rather than queued
//! (its bytes are already arriving; waiting would hold them, and hold the caller, for as long
//! as the others take). The caller may retry; the status says why.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::server::NamedService;

/// Wraps a gRPC service so its request bodies draw on a shared byte budget.
#[derive(Clone)]
pub(crate) struct BytesInFlight<S> {
    inner: S,
    budget: Arc<Semaphore>,
    max: u64,
}

impl<S> BytesInFlight<S> {
    pub(crate) fn new(inner: S, max_bytes: u64) -> Self {
        let permits = usize::try_from(max_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BytesInFlight {
            inner,
            budget: Arc::new(Semaphore::new(permits)),
            max: max_bytes,
        }
    }
}

impl<S: NamedService> NamedService for BytesInFlight<S> {
    const NAME: &'static str = S::NAME;
}

/// The budget a call holds until it is answered.
type Held = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

impl<S> tower::Service<http::Request<Body>> for BytesInFlight<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let held: Held = Arc::default();
        let (budget, max, in_body) = (self.budget.clone(), self.max, held.clone());
        let req = req.map(|inner| {
            Body::new(Counted {
                inner,
                budget,
                held: in_body,
                max,
            })
        });
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await;
            // Answered: the call's bytes are given back (its message has been handled).
            drop(held);
            response
        })
    }
}

struct Counted {
    inner: Body,
    budget: Arc<Semaphore>,
    held: Held,
    max: u64,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let taken = u32::try_from(data.len())
                .ok()
                .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok());
            let Some(taken) = taken else {
                return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(format!(
                    "the gateway is handling {} MiB of requests already (xds.max_bytes_in_flight); retry shortly",
                    self.max / (1024 * 1024)
                )))));
            };
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            match held.as_mut() {
                Some(permit) => permit.merge(taken),
                None => *held = Some(taken),
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{Service, ServiceExt};

    /// Reads the whole body, then waits until released; answers 200 or the body's error code.
    #[derive(Clone)]
    struct Reader {
        release: Arc<Semaphore>,
    }

    impl tower::Service<http::Request<Body>> for Reader {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let release = self.release.clone();
            Box::pin(async move {
                let code = match req.into_body().collect().await {
                    Ok(_) => {
                        release.acquire().await.expect("open").forget();
                        tonic::Code::Ok
                    }
                    Err(status) => status.code(),
                };
                Ok(http::Response::builder()
                    .header("code", code as i32)
                    .body(Body::empty())
                    .expect("response"))
            })
        }
    }

    fn request(bytes: usize) -> http::Request<Body> {
        http::Request::new(Body::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; bytes])).map_err(|e: Infallible| match e {}),
        ))
    }

    fn code(r: &http::Response<Body>) -> i32 {
        r.headers()["code"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number")
    }

    #[tokio::test]
    async fn calls_beyond_the_budget_are_resource_exhausted_and_the_budget_comes_back() {
        let release = Arc::new(Semaphore::new(0));
        let svc = BytesInFlight::new(
            Reader {
                release: release.clone(),
            },
            1000,
        );
        // 600 bytes held by a call being handled.
        let first = tokio::spawn(svc.clone().oneshot(request(600)));
        tokio::task::yield_now().await;
        while svc.budget.available_permits() == 1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(svc.budget.available_permits(), 400);
        // 500 more do not fit: refused at once; 300 do.
        let refused = svc.clone().oneshot(request(500)).await.expect("answer");
        assert_eq!(code(&refused), tonic::Code::ResourceExhausted as i32);
        assert_eq!(
            svc.budget.available_permits(),
            400,
            "a refused call holds nothing"
        );
        let mut other = svc.clone();
        let second =
            tokio::spawn(async move { other.ready().await.expect("ready").call(request(300)).await });
        while svc.budget.available_permits() == 400 {
            tokio::task::yield_now().await;
        }
        release.add_permits(2);
        assert_eq!(code(&first.await.expect("task").expect("answer")), 0);
        assert_eq!(code(&second.await.expect("task").expect("answer")), 0);
        assert_eq!(
            svc.budget.available_permits(),
            1000,
            "answered calls give their bytes back"
        );
    }
}
