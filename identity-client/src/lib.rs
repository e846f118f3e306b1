//! What a Rust service that trusts `identity`'s access tokens adds to its own code.
//!
//! A [`Verifier`] checks bearer access tokens locally, as the server checks them: the
//! signature against the published key set (cached, refetched on an unknown `kid` at a
//! bounded rate), the kind, issuer, audience and lifetime, and the revocations the server
//! streams (logout, logout-all, password change), applied as they happen. Optionally it also
//! asks the server (`IntrospectToken`) about every token. When the revocations known here
//! are staler than [`VerifierBuilder::max_staleness`] (the stream is down), it asks the
//! server or refuses ([`WhenStale`]), never passing tokens on old knowledge; [`Verifier::staleness`]
//! says how old it is.
//!
//! [`Verifier::layer`] is a tower layer for tonic and axum services alike: a verified
//! request carries a [`VerifiedToken`] in its extensions; any other is refused with
//! `UNAUTHENTICATED` (gRPC) or `401` (HTTP) before it reaches the service.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use identity_client::{Verifier, VerifiedToken};
//!
//! let channel = tonic::transport::Channel::from_static("http://identity:50051").connect_lazy();
//! let verifier = Verifier::builder(channel, std::env::var("IDENTITY_SERVICE_TOKEN")?)
//!     .connect()
//!     .await?;
//! let app: axum::Router = axum::Router::new()
//!     .route(
//!         "/me",
//!         axum::routing::get(|axum::Extension(token): axum::Extension<VerifiedToken>| async move {
//!             token.user_id.to_string()
//!         }),
//!     )
//!     .layer(verifier.layer());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod claims;
mod credential;
mod keys;
mod layer;
mod revocations;
mod verifier;

pub use claims::VerifiedToken;
pub use credential::ServiceToken;
pub use layer::{RequireAccessToken, RequireAccessTokenService};
pub use verifier::{
    ConnectError, Refusal, TokenServiceChannel, Verifier, VerifierBuilder, WhenStale,
};

/// The tonic client and messages generated from `identity`'s contract.
#[allow(
    missing_docs,
    clippy::doc_markdown,
    reason = "generated code; its docs come from the .proto"
)]
pub mod pb {
    tonic::include_proto!("identity.v1");
}
