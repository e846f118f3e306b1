//! A service that trusts `identity`'s access tokens: every route but `/healthz` needs one,
//! and a handler reads whose it is from the request.
//!
//! ```sh
//! IDENTITY_GRPC_URL=http://127.0.0.1:50051 IDENTITY_SERVICE_TOKEN=... \
//!     cargo run -p identity-client --example orders
//! curl -H "authorization: Bearer $ACCESS" http://127.0.0.1:8081/orders/mine
//! ```

use axum::{Extension, Router, routing::get};
use identity_client::{VerifiedToken, Verifier};
use tonic::transport::Channel;

/// The service's routes, behind the verifier.
pub fn router(verifier: &Verifier) -> Router {
    Router::new()
        .route("/orders/mine", get(my_orders))
        .route("/healthz", get(|| async { "ok" }))
        .layer(verifier.layer().allow_without_token("/healthz"))
}

async fn my_orders(Extension(token): Extension<VerifiedToken>) -> String {
    format!("orders of user {}", token.user_id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let identity = std::env::var("IDENTITY_GRPC_URL")?;
    let channel = Channel::from_shared(identity)?.connect_lazy();
    let verifier = Verifier::builder(channel, std::env::var("IDENTITY_SERVICE_TOKEN")?)
        .connect()
        .await?;
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router(&verifier)).await?;
    Ok(())
}
