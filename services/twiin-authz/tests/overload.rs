//! Overload and slow clients on the OAuth2 HTTP endpoint (issue 19): past the concurrency limit
//! a request is answered 429 at once, before its body is read or anything checked; a client
//! that sends its request head slowly (slowloris) is cut off after `http.header_read_timeout`.
mod common;

use std::time::{Duration, Instant};

use common::{Options, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts a token request and never finishes its body: it holds one concurrency slot.
async fn hold_a_slot(w: &World) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(w.http).await.expect("connect");
    tcp.write_all(
        b"POST /oauth2/token HTTP/1.1\r\nHost: twiin.test\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
    )
    .await
    .expect("request head");
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_answered_429_at_once() {
    let w = World::start_with(Options {
        tweak: |c| c.server.concurrency_limit = 1,
        ..Options::default()
    })
    .await;
    let held = hold_a_slot(&w).await;
    // The held request is in the handler once the server has read its head.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body, headers, took) = loop {
        let started = Instant::now();
        let (status, body, headers) = w.post(&w.form("system/Task.c")).await;
        if status == 429 || Instant::now() > deadline {
            break (status, body, headers, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(w.metrics.shed_count() >= 1);
    // Shed before anything was checked: no client lookup, no audit trail.
    assert_eq!(
        w.events_of("uitgeven_aorta_access_token")
            .iter()
            .filter(|e| e.status.as_deref() == Some("429"))
            .count(),
        0
    );
    eprintln!("429 answered in {took:?} while the only slot was held");
    drop(held);
    // The slot comes free once the held request is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body, _) = w.post(&w.form("system/Task.c")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_after_the_header_read_timeout() {
    let w = World::start_with(Options {
        tweak: |c| c.http.header_read_timeout = Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(w.http).await.expect("connect");
    let started = Instant::now();
    let head = b"POST /oauth2/token HTTP/1.1\r\nHost: twiin.test\r\nX-Slow: ";
    tcp.write_all(head).await.expect("start of the head");
    // One byte every 100 ms, never the end of the head; the server closes the connection.
    let closed_after = loop {
        if tcp.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => break started.elapsed(), // an answer or EOF: cut off
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a slow client held its connection for 10 s"
        );
    };
    eprintln!("slowloris cut off after {closed_after:?} (header_read_timeout 500ms)");
    assert!(
        closed_after >= Duration::from_millis(400) && closed_after < Duration::from_millis(2500),
        "cut off after {closed_after:?}, expected about the configured 500 ms"
    );
    // A well-behaved client is still served.
    assert_eq!(w.post(&w.form("system/Task.c")).await.0, 200);
}
