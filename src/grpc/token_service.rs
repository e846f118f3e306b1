//! The `identity.v1.TokenService` handlers, for backend services: authorize the service
//! (its token or its client certificate), convert, call, convert.

use std::{pin::Pin, time::Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{convert, status::to_status};
use crate::{
    pb::{self, token_service_server::TokenService},
    services::{Services, token_service::Revocation},
};

/// Revocations a stream may hold for a slow reader before it waits for it.
const STREAM_BUFFER: usize = 64;

/// Serves the service-facing API over gRPC.
#[derive(Clone)]
pub struct TokenApi {
    services: Services,
    /// Turns true when the server drains, so endless streams end and the drain completes.
    stopping: watch::Receiver<bool>,
}

impl TokenApi {
    /// An adapter over `services`; its streams end when `stopping` turns true.
    #[must_use]
    pub fn new(services: Services, stopping: watch::Receiver<bool>) -> Self {
        Self { services, stopping }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn get_jwks(&self, request: Request<pb::GetJwksRequest>) -> Reply<pb::GetJwksResponse> {
        let credentials = convert::access_credentials(&request);
        let keys = self
            .services
            .published_keys(&credentials)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetJwksResponse {
            keys: keys.iter().map(convert::json_web_key).collect(),
        }))
    }

    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Reply<pb::IntrospectTokenResponse> {
        let credentials = convert::access_credentials(&request);
        let token = convert::introspected_token(request.get_ref());
        let outcome = self
            .services
            .introspect(&credentials, token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::introspection(outcome)))
    }

    type WatchRevocationsStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Reply<Self::WatchRevocationsStream> {
        let credentials = convert::access_credentials(&request);
        self.services
            .admit_revocation_reader(&credentials)
            .await
            .map_err(to_status)?;
        let mut cursor =
            convert::revocation_cursor(&request.get_ref().cursor).map_err(to_status)?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let services = self.services.clone();
        let mut stopping = self.stopping.clone();
        let interval = services.config.revocation_poll_interval;
        let heartbeat = services.config.revocation_heartbeat_interval;
        tokio::spawn(async move {
            // When the reader was last told it is caught up; `None` until the first time.
            let mut told_caught_up: Option<Instant> = None;
            loop {
                let batch = match services.revocations_after(cursor).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = sender.send(Err(to_status(error))).await;
                        return;
                    }
                };
                for revocation in batch.revocations {
                    cursor = match &revocation {
                        Revocation::Session { cursor, .. } | Revocation::User { cursor, .. } => {
                            *cursor
                        }
                    };
                    if sender
                        .send(Ok(convert::revocation(revocation)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let heartbeat_due = told_caught_up.is_none_or(|at| at.elapsed() >= heartbeat);
                if batch.drained && heartbeat_due {
                    if sender.send(Ok(convert::caught_up(cursor))).await.is_err() {
                        return;
                    }
                    told_caught_up = Some(Instant::now());
                }
                if !batch.drained {
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = sender.closed() => return,
                    _ = stopping.wait_for(|stopped| *stopped) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
