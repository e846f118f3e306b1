//! The bridge's HTTP server: hyper, with the bounds `axum::serve` does not offer. A client
//! must send a request's headers within the header read timeout, and the same timer closes
//! an HTTP/1 connection left idle between requests (slowloris); its body must arrive within
//! the request timeout, which bounds the whole request; HTTP/2 connections are pinged and
//! closed when the pings go unanswered; the listener holds at most so many connections.
//! Shutdown drains in-flight requests.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, time::Instant};
use tower::ServiceExt;

use crate::net::ConnectionLimit;

/// The bounds a listener holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A request's headers must arrive within this; an idle HTTP/1 connection closes after it.
    pub header_read_timeout: Duration,
    /// The whole request, its body included, must be done within this.
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// When the request must be done by: its arrival plus the request timeout. The bridge gives
/// the call what is left of it.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
///
/// # Errors
/// None today: connection errors end that connection only; kept fallible for the caller.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(bounds.header_read_timeout))
        .keep_alive_timeout(bounds.header_read_timeout);
    let limit = ConnectionLimit::new(bounds.max_connections);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = limit.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let app = router.clone();
        let request_timeout = bounds.request_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let deadline = Instant::now() + request_timeout;
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
            // Where axum's `ConnectInfo` extractor looks for the client's address.
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(RequestDeadline(deadline));
            app.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "a bridge connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The error a request body gives once its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the request timeout")]
pub struct BodyTimedOut;

/// A request body that fails once the request's deadline passes, so a client trickling it
/// cannot hold a connection (and a handler) past the request timeout.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}
