//! What every listener shares: a cap on the connections it holds open (`MAX_CONNECTIONS`),
//! so a flood of clients that connect and idle cannot exhaust the process's file
//! descriptors. Past the cap the listener stops accepting; new connections wait in the
//! kernel's backlog until one closes.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long to wait after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The places for open connections of one listener.
#[derive(Clone)]
pub struct ConnectionLimit(Arc<Semaphore>);

impl ConnectionLimit {
    /// At most `max` connections open at once (at least one).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.max(1))))
    }

    /// Waits for a free place, then for the next connection, which holds the place until it
    /// is dropped. A failed accept is logged and retried after a pause.
    pub async fn accept(&self, listener: &TcpListener) -> (Limited<TcpStream>, SocketAddr) {
        // The semaphore is never closed, so acquiring only waits.
        let place = loop {
            if let Ok(place) = Arc::clone(&self.0).acquire_owned().await {
                break place;
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    // Without it a reply waits on delayed ACKs (40 ms).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(error = %error, "could not turn off Nagle's algorithm");
                    }
                    return (
                        Limited {
                            inner: stream,
                            _place: place,
                        },
                        peer,
                    );
                }
                Err(error) => {
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// The connections `listener` accepts within the limit, as the stream tonic serves.
    #[must_use]
    pub fn incoming(self, listener: TcpListener) -> ReceiverStream<io::Result<Limited<TcpStream>>> {
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let (connection, _) = tokio::select! {
                    accepted = self.accept(&listener) => accepted,
                    // The server stopped taking connections: close the listener.
                    () = sender.closed() => return,
                };
                if sender.send(Ok(connection)).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// A connection holding its place under a [`ConnectionLimit`].
pub struct Limited<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// tonic learns the peer's address (for per-client budgets) from the connection.
impl Connected for Limited<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
