//! Clients as a fleet uses them, and the loop that measures a group of them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;

/// Throughput and latency of one group of clients.
#[derive(Clone)]
pub struct Outcome {
    /// Calls per second, all clients together.
    pub rate: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th-percentile latency.
    pub p99_ms: f64,
}

/// Runs each client's calls back to back for `duration`, every call on its own task so the
/// clients run at once; every call must succeed. Must run inside a `LocalSet`.
pub async fn measure<F>(name: &str, clients: Vec<F>, duration: Duration) -> Outcome
where
    F: AsyncFnMut() -> bool + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut call| {
            let name = name.to_owned();
            tokio::task::spawn_local(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let begun = Instant::now();
                    assert!(call().await, "{name} failed");
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    Outcome {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// One keep-alive HTTP/1.1 connection to the bridge, as a load tool holds it.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
}

impl Http {
    /// Opens the connection.
    pub async fn connect(addr: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::task::spawn_local(connection);
        Self { send }
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Bytes) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        self.send.ready().await.unwrap();
        let response = self.send.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }
}
